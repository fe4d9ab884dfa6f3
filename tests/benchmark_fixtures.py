"""Small copies of the nine public benchmarks in their official Hugging Face Parquet layouts (the column
conventions of `tests/test_benchmarks_math.py` and `tests/test_benchmarks_choice.py`), with images large enough for
the model and answers every official scorer accepts. Each writer cycles through its benchmark's item kinds
(multiple choice, free form, settings), so `n` items cover them all once `n` reaches their number."""

from __future__ import annotations

import base64
import io
import string
from pathlib import Path

from PIL import Image

from tests.test_benchmarks_choice import MMMU_IMAGES, mmmu_row, write_parquet, write_tsv
from visiong1.eval.benchmarks import BENCHMARKS


def png(benchmark: str, number: int, side: int) -> bytes:
    """A `side`-px PNG whose colour no other fixture image has: red names the benchmark, green and blue `number`
    (distinct for numbers below 65,536)."""
    buffer = io.BytesIO()
    colour = (25 * BENCHMARKS.index(benchmark), 53 * number % 256, number // 256)
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def hf_image(benchmark: str, number: int, side: int) -> dict:
    """An HF image struct `{bytes, path}` holding `png(benchmark, number, side)`."""
    return {"bytes": png(benchmark, number, side), "path": f"images/{number}.png"}


def kinds(variants: tuple[dict, ...], n: int) -> list[tuple[int, dict]]:
    """(row number, item kind) for `n` rows, cycling through `variants`."""
    return [(number, variants[number % len(variants)]) for number in range(n)]


def inline_options(options: list[str]) -> str:
    """MMStar's inline option list: `A: x, B: y, ...`."""
    return ", ".join(f"{letter}: {option}" for letter, option in zip(string.ascii_uppercase, options))


# --- MathVista (AI4Math/MathVista testmini) ---------------------------------------------------------------------

MATHVISTA_KINDS = (
    {"question": "What fraction of the shapes are blue?", "choices": ["3/11", "8/11", "6/11", "3/5"], "unit": None,
     "precision": None, "answer": "8/11", "question_type": "multi_choice", "answer_type": "text",
     "query": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
              "Question: What fraction of the shapes are blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5"},
    {"question": "How many bars have values smaller than 6?", "choices": None, "unit": None, "precision": None,
     "answer": "2", "question_type": "free_form", "answer_type": "integer",
     "query": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, "
              "3, at the end.\nQuestion: How many bars have values smaller than 6?"},
    {"question": "Move the ruler to measure the length of the line to the nearest centimeter.", "choices": None,
     "unit": "cm", "precision": 1.0, "answer": "3.5", "question_type": "free_form", "answer_type": "float",
     "query": "Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
              "the final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: Move the ruler to measure the length of "
              "the line to the nearest centimeter. (Unit: cm)"},
)


def write_mathvista(root: Path, n: int, side: int) -> None:
    """`data/testmini-*.parquet`: multi_choice, free_form integer and free_form float (with its precision)."""
    rows = [{"pid": str(number + 1), "image": f"images/{number + 1}.jpg",
             "decoded_image": hf_image("mathvista", number, side), **kind,
             "metadata": {"split": "testmini", "language": "english", "img_width": side, "img_height": side,
                          "source": "FigureQA", "category": "math-targeted-vqa", "task": "figure question answering",
                          "context": "bar chart", "grade": "elementary school", "skills": ["arithmetic reasoning"]}}
            for number, kind in kinds(MATHVISTA_KINDS, n)]
    write_parquet(root / "mathvista" / "data" / "testmini-00000-of-00001.parquet", rows, ("decoded_image",))


# --- MMMU (MMMU/MMMU validation) and MMMU-Pro (MMMU/MMMU_Pro test) -----------------------------------------------

MMMU_KINDS = (
    {"question": "<image 1> What is the area of the shaded region?", "options": "['12', '14', '16', '18']",
     "answer": "C", "question_type": "multiple-choice"},
    {"question": "In <image 1>, what is the value of x?", "options": "[]", "answer": "14", "question_type": "open"},
)
ERAS = ["Stone Age", "Bronze Age", "Iron Age", "Classical antiquity", "Middle Ages", "Renaissance", "Baroque",
        "Enlightenment", "Industrial Revolution", "Modern era"]


def write_mmmu(root: Path, n: int, side: int) -> None:
    """`Math/validation-*.parquet` (one config per subject): multiple-choice and open questions."""
    rows = [mmmu_row(id=f"validation_Math_{number + 1}", image_1=hf_image("mmmu", number, side), subfield="Geometry",
                     **kind) for number, kind in kinds(MMMU_KINDS, n)]
    write_parquet(root / "mmmu" / "Math" / "validation-00000-of-00001.parquet", rows, MMMU_IMAGES)


def mmmu_pro_standard(number: int, side: int) -> dict:
    """A `standard (10 options)` row: the question names its image."""
    return {"id": f"test_History_{number // 2 + 1}", "question": "Which era is depicted in <image 1>?",
            "options": str(ERAS), "explanation": "", **{name: None for name in MMMU_IMAGES},
            "image_1": hf_image("mmmu_pro", number, side), "image_type": "['Photographs']", "answer": "E",
            "topic_difficulty": "Medium", "subject": "History"}


def mmmu_pro_vision(number: int, side: int) -> dict:
    """A `vision` row: question and options are in the screenshot."""
    return {"id": f"test_History_{number // 2 + 1}", "image": hf_image("mmmu_pro", number, side),
            "options": str(ERAS), "answer": "E", "subject": "History"}


def write_mmmu_pro(root: Path, n: int, side: int) -> None:
    """`standard (10 options)/test-*.parquet` and `vision/test-*.parquet`, alternating, so each official id occurs
    in both settings as in the release."""
    settings = (("standard (10 options)", mmmu_pro_standard, MMMU_IMAGES), ("vision", mmmu_pro_vision, ("image",)))
    for offset, (setting, row, image_columns) in enumerate(settings):
        if rows := [row(number, side) for number in range(offset, n, 2)]:
            write_parquet(root / "mmmu_pro" / setting / "test-00000-of-00001.parquet", rows, image_columns)


# --- MMStar (Lin-Chen/MMStar), AI2D (lmms-lab/ai2d), ScienceQA-IMG (derek-thomas/ScienceQA) ----------------------

MMSTAR_KINDS = (
    {"question": "Which option describe the object relationship in the image correctly?",
     "options": ["The suitcase is on the book.", "The suitcase is beneath the cat.", "The suitcase is beneath the bed.",
                 "The suitcase is beneath the book."], "answer": "A", "category": "instance reasoning",
     "l2_category": "single-instance reasoning"},
    {"question": "What is the main colour of the square?", "options": ["red", "green", "blue", "yellow"],
     "answer": "C", "category": "coarse perception", "l2_category": "image scene and topic"},
)


def write_mmstar(root: Path, n: int, side: int) -> None:
    """`mmstar.parquet`: the options inline in the question (`Options: A: ..., B: ...`), the answer a letter."""
    rows = [{"index": number, "question": f"{kind['question']}\nOptions: {inline_options(kind['options'])}",
             "image": hf_image("mmstar", number, side), "answer": kind["answer"], "category": kind["category"],
             "l2_category": kind["l2_category"],
             "meta_info": {"source": "MMBench", "split": "val", "image_path": f"images/{number}.jpg"}}
            for number, kind in kinds(MMSTAR_KINDS, n)]
    write_parquet(root / "mmstar" / "mmstar.parquet", rows, ("image",))


def write_mmstar_tsv(root: Path, n: int, side: int) -> None:
    """VLMEvalKit's `MMStar.tsv` (the second format): option columns A-D and base64 images, the same items as
    `write_mmstar`."""
    header = ["index", "question", "A", "B", "C", "D", "answer", "category", "l2_category", "image"]
    rows = [[str(number), kind["question"], *kind["options"], kind["answer"], kind["category"], kind["l2_category"],
             base64.b64encode(png("mmstar", number, side)).decode()] for number, kind in kinds(MMSTAR_KINDS, n)]
    write_tsv(root / "mmstar" / "MMStar.tsv", header, rows)


AI2D_KINDS = (
    {"question": "Which stage of the life cycle comes right after the egg?",
     "options": ["adult", "larva", "pupa", "nymph"], "answer": "1"},
    {"question": "Which organism is a producer in this food web?", "options": ["hawk", "snake", "grass", "mouse"],
     "answer": "2"},
)


def write_ai2d(root: Path, n: int, side: int) -> None:
    """`data/test-*.parquet`: options as a list, the answer the correct option's index as text."""
    rows = [{**kind, "image": hf_image("ai2d", number, side)} for number, kind in kinds(AI2D_KINDS, n)]
    write_parquet(root / "ai2d" / "data" / "test-00000-of-00001.parquet", rows, ("image",))


SCIENCEQA_KINDS = (
    {"question": "Which of these states is farthest north?",
     "choices": ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], "answer": 0, "hint": "",
     "task": "closed choice", "grade": "grade2", "subject": "social science", "topic": "geography",
     "category": "Geography", "skill": "Read a map: cardinal directions"},
    {"question": "Which animal's feet are also adapted for digging?", "choices": ["aardvark", "white-handed gibbon"],
     "answer": 0, "hint": "Moles have feet with long claws that help them dig in the ground.", "task": "closed choice",
     "grade": "grade4", "subject": "natural science", "topic": "biology", "category": "Adaptations",
     "skill": "Animal adaptations: feet, hands, and arms"},
)


def write_scienceqa(root: Path, n: int, side: int) -> None:
    """`data/test-*.parquet` of the IMG subset: choices as a list, the answer the correct choice's index."""
    rows = [{"image": hf_image("scienceqa", number, side), **kind, "lecture": "", "solution": ""}
            for number, kind in kinds(SCIENCEQA_KINDS, n)]
    write_parquet(root / "scienceqa" / "data" / "test-00000-of-00001.parquet", rows, ("image",))


# --- ChartQA (HuggingFaceM4/ChartQA), MathVerse (AI4Math/MathVerse), MathVision (MathLLMs/MathVision) ----------

CHARTQA_KINDS = (
    {"query": "What is the value of the tallest bar?", "label": ["62"], "human_or_machine": 0},
    {"query": "Which country had the highest GDP growth in 2020?", "label": ["China"], "human_or_machine": 1},
)


def write_chartqa(root: Path, n: int, side: int) -> None:
    """`data/test-*.parquet`: numeric and text labels, human-written and machine-generated questions."""
    rows = [{"image": hf_image("chartqa", number, side), **kind} for number, kind in kinds(CHARTQA_KINDS, n)]
    write_parquet(root / "chartqa" / "data" / "test-00000-of-00001.parquet", rows, ("image",))


MATHVERSE_KINDS = (
    {"problem_version": "Text Dominant", "question_type": "multi-choice", "answer": "B",
     "question": "As shown in the figure, AB is the diameter of circle O, C is a point on the circle and angle ABC = "
                 "40°. What is the measure of angle BAC?\nChoices:\nA:40°\nB:50°\nC:60°\nD:80°",
     "instructions": ("Please directly answer the question and provide the correct option letter, e.g., A, B, C, D.",
                      "Please first conduct reasoning, and then answer the question and provide the correct option "
                      "letter, e.g., A, B, C, D, at the end.")},
    {"problem_version": "Vision Intensive", "question_type": "free-form", "answer": "21.8",
     "question": "The rectangle in the figure is 7.5 long. What is its perimeter?",
     "instructions": ("Please directly answer the question and provide the final value, e.g., 1, 2.5, 300.",
                      "Please first conduct reasoning, and then answer the question and provide the final value, "
                      "e.g., 1, 2.5, 300, at the end.")},
)


def write_mathverse(root: Path, n: int, side: int) -> None:
    """`testmini.parquet`: multi-choice and free-form items, prompts `query_wo` / `query_cot`."""
    rows = [{"sample_index": str(number + 1), "problem_index": str(number + 1),
             "problem_version": kind["problem_version"], "question": kind["question"],
             "image": hf_image("mathverse", number, side), "answer": kind["answer"],
             "question_type": kind["question_type"],
             "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
             "query_wo": f"{kind['instructions'][0]}\nQuestion: {kind['question']}",
             "query_cot": f"{kind['instructions'][1]}\nQuestion: {kind['question']}",
             "question_for_eval": kind["question"]} for number, kind in kinds(MATHVERSE_KINDS, n)]
    write_parquet(root / "mathverse" / "testmini.parquet", rows, ("image",))


MATHVISION_KINDS = (
    {"question": "Which of the shapes can be drawn without lifting the pencil?\n<image1>",
     "options": ["1", "2", "3", "4", "5"], "answer": "C", "level": 2, "subject": "graph theory"},
    {"question": "How many triangles are there in the picture?\n<image1>", "options": [], "answer": "6", "level": 1,
     "subject": "counting"},
)


def write_mathvision(root: Path, n: int, side: int) -> None:
    """`data/test-*.parquet`: items with five options (the answer a letter) and free-form ones (no options)."""
    rows = [{"id": str(number + 1), "question": kind["question"], "options": kind["options"],
             "image": f"images/{number + 1}.jpg", "decoded_image": hf_image("mathvision", number, side),
             "answer": kind["answer"], "solution": None, "level": kind["level"], "subject": kind["subject"]}
            for number, kind in kinds(MATHVISION_KINDS, n)]
    write_parquet(root / "mathvision" / "data" / "test-00000-of-00001.parquet", rows, ("decoded_image",))


WRITERS = {"mathvista": write_mathvista, "mmmu": write_mmmu, "mmmu_pro": write_mmmu_pro, "mmstar": write_mmstar,
           "chartqa": write_chartqa, "mathverse": write_mathverse, "mathvision": write_mathvision,
           "ai2d": write_ai2d, "scienceqa": write_scienceqa}


def write_all_benchmarks(root: Path, items_per_benchmark: int = 2, image_side: int = 56) -> Path:
    """Every benchmark of `BENCHMARKS` under `root/<name>/` in its Hugging Face Parquet layout, `items_per_benchmark`
    items each, images `image_side` px square (the model needs at least 28); returns `root`."""
    for name in BENCHMARKS:
        WRITERS[name](root, items_per_benchmark, image_side)
    return root
