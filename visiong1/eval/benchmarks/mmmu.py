"""MMMU (validation split) and MMMU-Pro (standard 10-option and vision settings), scored by the official rules
(`visiong1.rewards.official.mmmu`).

Formats (column names checked against the releases):
- MMMU/MMMU: one config per subject, `<Subject>/validation-*.parquet`: id, question (with `<image N>`
  placeholders), options (a Python list literal in a string), explanation, image_1..image_7, img_type, answer
  (letter; open answers are text, a few a list literal), topic_difficulty, question_type, subfield.
  Second format: VLMEvalKit's `MMMU_DEV_VAL.tsv` (index, image, question, A, B, ..., answer; rows of its `split`
  column other than `validation` are skipped).
- MMMU/MMMU_Pro: `standard (10 options)/test-*.parquet` (id, question, options, explanation, image_1..7, answer,
  subject, ...) and `vision/test-*.parquet` (id, image, options, answer, subject), both scored.

Prompts (MMMU-Benchmark/MMMU @ bb0b95a945998d91dfef37e969e07d49d1139438): MMMU's `mmmu/utils/data_utils.py`
construct_prompt with `mmmu/configs/llava1.5.yaml` (`(A) option` lines, "Answer with the option's letter from the
given choices directly." / "Answer the question using a single word or phrase."); MMMU-Pro's
`mmmu-pro/infer/infer_gpt.py` with the `direct` prompts of `mmmu-pro/prompts.yaml` (`A. option` lines; the vision
setting's prompt is the instruction alone, the question being in the image).

Deviations: the project's chat template puts all images before the text, so the images are the ones the text
names (`<image N>`, first mention first, each once; image_1 when none is named) and the placeholders stay in the
text as labels, where the official pipelines interleave images (MMMU's LLaVA script sends image_1 only). MMMU-Pro
ids carry the setting (`mmmu_pro/standard/<id>`, `mmmu_pro/vision/<id>`): each official id occurs in both.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, list_literal,
                                              parquet_files, read_parquet_rows, tsv_files)
from visiong1.eval.benchmarks.multiple_choice import tsv_options, vlmevalkit_rows
from visiong1.types import PromptItem

MMMU_COLUMNS = ("id", "question", "options", "answer", "question_type")
MMMU_PRO_STANDARD_COLUMNS = ("id", "question", "options", "answer")
MMMU_PRO_VISION_COLUMNS = ("id", "image", "options", "answer")
TSV_COLUMNS = ("index", "image", "question", "answer")
STANDARD, VISION = "standard (10 options)", "vision"
MMMU_CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MMMU_OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
MMMU_PRO_STANDARD_INSTRUCTION = "Answer with the option letter from the given choices directly."
MMMU_PRO_VISION_INSTRUCTION = ("Answer with the option letter from the given choices directly. The last line of your "
                               "response should be of the following format: 'Answer: $LETTER' (without quotes) "
                               "where LETTER is one of options.")
_IMAGE_TAG = re.compile(r"<image\s+(\d+)>")


def load_mmmu(directory: Path) -> list[PromptItem]:
    """MMMU's 900 validation items (Parquet, else VLMEvalKit's MMMU_DEV_VAL TSV)."""
    files = parquet_files(directory, "validation")
    if files:
        return [_mmmu_item(path, row) for path, row in read_parquet_rows(files, MMMU_COLUMNS)]
    if not tsv_files(directory):
        raise BenchmarkFormatError(f"{directory}: no validation Parquet files of MMMU/MMMU and no VLMEvalKit TSV")
    return [item for path in tsv_files(directory) for item in _mmmu_tsv_items(path)]


def load_mmmu_pro(directory: Path) -> list[PromptItem]:
    """MMMU-Pro's standard (10 options) and vision items."""
    files = {path: path.relative_to(directory).as_posix() for path in parquet_files(directory)}
    standard = [path for path, relative in files.items() if STANDARD in relative]
    vision = [path for path, relative in files.items() if f"/{VISION}/" in f"/{relative}"]
    if not standard and not vision:
        raise BenchmarkFormatError(f"{directory}: no Parquet files under '{STANDARD}/' or '{VISION}/' "
                                   "(the MMMU/MMMU_Pro configs)")
    return ([_pro_standard_item(path, row) for path, row in read_parquet_rows(standard, MMMU_PRO_STANDARD_COLUMNS)]
            + [_pro_vision_item(path, row) for path, row in read_parquet_rows(vision, MMMU_PRO_VISION_COLUMNS)])


def mmmu_prompt(question: str, options: list[str], question_type: str) -> str:
    """MMMU's construct_prompt with the LLaVA config's formats."""
    if question_type == "open":
        return f"{question}\n{MMMU_OPEN_INSTRUCTION}"
    lettered = "".join(f"({letter}) {option}\n" for letter, option in zip(string.ascii_uppercase, options))
    return f"{question}\n{lettered}\n{MMMU_CHOICE_INSTRUCTION}"


def _mmmu_item(path: Path, row: dict) -> PromptItem:
    where = f"{path}: id {row['id']}"
    question_type = row["question_type"]
    options = list_literal(row["options"], f"{where}, field 'options'", allow_empty=True)
    answer = _checked_answer(str(row["answer"]), options, question_type, where)
    images = [image_bytes(row.get(f"image_{n}"), f"{where}, field 'image_{n}'")
              for n in _named_images(row["question"], options)]
    return _mmmu_prompt_item(row["id"], row["question"], options, question_type, images, answer)


def _mmmu_tsv_items(path: Path) -> list[PromptItem]:
    """VLMEvalKit rows: options in letter columns (none for open questions), images in the `image` cell."""
    items = []
    for row in vlmevalkit_rows(path, TSV_COLUMNS):
        if row.get("split", "validation") != "validation":
            continue
        where = f"{path}: index {row['index']}"
        options = tsv_options(row)
        question_type = row.get("question_type") or ("multiple-choice" if options else "open")
        official_id = row.get("id") or row["index"]
        answer = _checked_answer(row["answer"], options, question_type, where)
        items.append(_mmmu_prompt_item(official_id, row["question"], options, question_type, row["images"], answer))
    return items


def _mmmu_prompt_item(official_id: str, question: str, options: list[str], question_type: str, images: list[bytes],
                      answer: str) -> PromptItem:
    """The MMMU item `mmmu/<official_id>` with construct_prompt's text; choices only for multiple-choice ones."""
    return benchmark_item("mmmu", official_id, mmmu_prompt(question, options, question_type), images, answer,
                          {"question_type": question_type, "item_id": official_id},
                          options if question_type == "multiple-choice" else None)


def _pro_standard_item(path: Path, row: dict) -> PromptItem:
    where = f"{path}: id {row['id']}"
    options = list_literal(row["options"], f"{where}, field 'options'", allow_empty=True)
    answer = _checked_answer(str(row["answer"]), options, "multiple-choice", where)
    lettered = "\n".join(f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options))
    images = [image_bytes(row.get(f"image_{n}"), f"{where}, field 'image_{n}'")
              for n in _named_images(row["question"], options)]
    return _pro_item("standard", row["id"], f"{row['question']}\n{lettered}\n{MMMU_PRO_STANDARD_INSTRUCTION}",
                     images, answer, options, STANDARD)


def _pro_vision_item(path: Path, row: dict) -> PromptItem:
    where = f"{path}: id {row['id']}"
    options = list_literal(row["options"], f"{where}, field 'options'", allow_empty=True)
    answer = _checked_answer(str(row["answer"]), options, "multiple-choice", where)
    images = [image_bytes(row["image"], f"{where}, field 'image'")]
    return _pro_item("vision", row["id"], MMMU_PRO_VISION_INSTRUCTION, images, answer, options, VISION)


def _pro_item(kind: str, official_id: str, question: str, images: list[bytes], answer: str, options: list[str],
              setting: str) -> PromptItem:
    """The MMMU-Pro item `mmmu_pro/<kind>/<official_id>` (each official id occurs in both settings)."""
    item_id = f"{kind}/{official_id}"
    return benchmark_item("mmmu_pro", item_id, question, images, answer, {"setting": setting, "item_id": item_id},
                          options)


def _checked_answer(answer: str, options: list[str], question_type: str, where: str) -> str:
    if question_type == "open":
        if not answer.strip():
            raise BenchmarkFormatError(f"{where}, field 'answer': empty")
        return answer
    if question_type != "multiple-choice":
        raise BenchmarkFormatError(f"{where}, field 'question_type': {question_type!r} is neither "
                                   "'multiple-choice' nor 'open'")
    if answer not in list(string.ascii_uppercase[:len(options)]):
        raise BenchmarkFormatError(f"{where}, field 'answer': {answer!r} is not one of the {len(options)} "
                                   "option letters")
    return answer


def _named_images(question: str, options: list[str]) -> list[int]:
    """Image numbers the question and options name, first mention first, each once; [1] when none is named."""
    numbers = [int(n) for text in (question, *options) for n in _IMAGE_TAG.findall(text)]
    return list(dict.fromkeys(numbers)) or [1]
