"""MMMU, MMMU-Pro, MMStar, AI2D and ScienceQA-IMG: loading their official release formats (written here as tiny
fixtures) and scoring responses through `score` by each benchmark's official rule, quirks included."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visiong1.eval.benchmarks import load_benchmark
from visiong1.eval.benchmarks.formats import BenchmarkFormatError
from visiong1.eval.benchmarks.multiple_choice import split_inline_options
from visiong1.rewards import GroundTruthError, score
from visiong1.rewards.official.multiple_choice import judge_prompt
from visiong1.types import PromptItem

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PETS = ["cat", "dog", "bird", "fish"]


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def hf_image(shade: int | None) -> dict | None:
    return None if shade is None else {"bytes": png(shade), "path": f"{shade}.png"}


def write_parquet(path: Path, rows: list[dict], image_columns: tuple[str, ...] = ()) -> None:
    """Rows as an HF-style Parquet file: `image_columns` hold `{bytes, path}` image structs (or nulls)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    arrays = [pa.array(values, type=IMAGE_STRUCT if name in image_columns else None)
              for name, values in columns.items()]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(columns)), path)


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(cells) for cells in [header, *rows]) + "\n", encoding="utf-8")


def b64png(shade: int) -> str:
    return base64.b64encode(png(shade)).decode()


def judged(item: PromptItem, response: str):
    return score(response, item.answer, item.answer_type, **item.scorer_meta())


# --- MMMU -------------------------------------------------------------------------------------------------------

MMMU_IMAGES = tuple(f"image_{n}" for n in range(1, 8))


def mmmu_row(**values) -> dict:
    row = {"id": "", "question": "", "options": "[]", "explanation": "", **{name: None for name in MMMU_IMAGES},
           "img_type": "['Diagrams']", "answer": "", "topic_difficulty": "Easy", "question_type": "multiple-choice",
           "subfield": "Accounting"}
    return {**row, **values}


@pytest.fixture
def mmmu_root(tmp_path) -> Path:
    rows = [mmmu_row(id="validation_Accounting_1", question="<image 1> Which animal is shown?",
                     options=str(PETS), answer="B", image_1=hf_image(10)),
            mmmu_row(id="validation_Math_15", question="Compute the ratio in <image 2>.",
                     options="[]", answer="['24/7', '3.429']", question_type="open", image_2=hf_image(20)),
            mmmu_row(id="validation_Art_3", question="Which painting? <image 1>",
                     options=str(["<image 2>", "<image 1>", "neither"]), answer="A",
                     image_1=hf_image(30), image_2=hf_image(40))]
    write_parquet(tmp_path / "mmmu" / "Accounting" / "validation-00000-of-00001.parquet", rows, MMMU_IMAGES)
    write_parquet(tmp_path / "mmmu" / "Accounting" / "dev-00000-of-00001.parquet",
                  [mmmu_row(id="dev_Accounting_1", question="<image 1>?", options=str(PETS), answer="A",
                            image_1=hf_image(1))], MMMU_IMAGES)
    return tmp_path


def test_mmmu_loads_the_validation_split_with_the_official_prompt(mmmu_root):
    items = {item.id: item for item in load_benchmark("mmmu", mmmu_root)}
    assert sorted(items) == ["mmmu/validation_Accounting_1", "mmmu/validation_Art_3", "mmmu/validation_Math_15"]
    choice = items["mmmu/validation_Accounting_1"]
    assert choice.question == ("<image 1> Which animal is shown?\n(A) cat\n(B) dog\n(C) bird\n(D) fish\n\n"
                               "Answer with the option's letter from the given choices directly.")
    assert (choice.answer, choice.answer_type, choice.source, choice.domain) == ("B", "mmmu", "mmmu", "mmmu")
    assert choice.choices == PETS and choice.images == [png(10)]
    assert choice.metadata == {"question_type": "multiple-choice", "item_id": "validation_Accounting_1"}
    open_item = items["mmmu/validation_Math_15"]
    assert open_item.question == "Compute the ratio in <image 2>.\nAnswer the question using a single word or phrase."
    assert open_item.choices is None and open_item.images == [png(20)]
    assert open_item.metadata["question_type"] == "open"
    assert items["mmmu/validation_Art_3"].images == [png(30), png(40)]  # first mention first, each once


MMMU_CHOICE_CASES = [
    ("(B)", "B", "parse_multi_choice: (X) form"),
    ("B.", "B", "parse_multi_choice: edge punctuation stripped, then ' X '"),
    (r"So \boxed{B}", "B", "contract: last box content, then ' X '"),
    ("I weighed (A) against (B).", "B", "parse_multi_choice: several (X), last occurrence wins"),
    ("(B) looks right but (C) is it", "C", "parse_multi_choice: several (X), last occurrence wins"),
    ("A B C", "C", "parse_multi_choice: several ' X ', last occurrence wins"),
    ("(A) seemed plausible, yet D is the one", "A", "parse_multi_choice: any (X) beats a bare ' X '"),
    ("The picture clearly shows a small dog", "B", "parse_multi_choice: option text in a response over 5 words"),
    ("a dog", None, "parse_multi_choice: option text ignored in 5 words or fewer -> random"),
    ("It is (b)", None, "parse_multi_choice: letters are case-sensitive -> random"),
    ("A dog, surely.", "A", "parse_multi_choice: the article ' A ' reads as option A"),
]


@pytest.mark.parametrize("response,picked,rule", MMMU_CHOICE_CASES, ids=[case[2] for case in MMMU_CHOICE_CASES])
def test_mmmu_multiple_choice_follows_parse_multi_choice_response(mmmu_root, response, picked, rule):
    item = next(i for i in load_benchmark("mmmu", mmmu_root) if i.id == "mmmu/validation_Accounting_1")
    result = judged(item, response)
    if picked is None:  # nothing parsed: a seeded random letter, the same one every time for this item
        assert result.extracted in "ABCD" and judged(item, response).extracted == result.extracted
        assert judged(item, "no letter here").extracted == result.extracted
    else:
        assert (result.extracted, result.reason) == (picked, "correct" if picked == "B" else "wrong")


def test_mmmu_random_pick_is_seeded_by_the_item():
    picks = {score("nothing", "A", "mmmu", choices=PETS, item_id=f"validation_Art_{n}").extracted for n in range(40)}
    assert picks == {"A", "B", "C", "D"}  # varies across items, as a random guess should
    again = {score("nothing", "A", "mmmu", choices=PETS, item_id=f"validation_Art_{n}").extracted for n in range(40)}
    assert again == picks


MMMU_OPEN_CASES = [
    ("['24/7', '3.429']", "The ratio is 3.4289", True, "eval_open: numbers equal after rounding to 2 decimals"),
    ("['24/7', '3.429']", "so it is 24/7", True, "eval_open: list-literal ground truth, string answer contained"),
    ("['24/7', '3.429']", "The ratio is 3.44", False, "eval_open: 3.44 != round(3.429, 2)"),
    ("1000", "Therefore the total is 1,000 dollars", True, "extract_numbers: thousands commas"),
    ("1000", "the answer is 1e3", True, "check_is_number: float() reads scientific notation"),
    ("2", "x = 2.004", True, "parse_open_response: '=' on the last line, rounding tolerance"),
    ("2", "The answer is 12", False, "normalize_str: numbers compare as values, not substrings"),
    ("Tampa", "The city is tampa, florida", True, "eval_open: lower-cased substring of the key response"),
    ("['Tampa', 'Florida']", "Florida", True, "eval_open: any answer of the list"),
    ("C", "It is C", True, "normalize_str: one-character answers padded (' c')"),
    ("C", "It is Cc", False, "normalize_str: one-character answers must stand at a word edge"),
    ("8", r"Counting again... \boxed{8}", True, "contract: the last box is the response"),
]


@pytest.mark.parametrize("truth,response,correct,rule", MMMU_OPEN_CASES, ids=[case[3] for case in MMMU_OPEN_CASES])
def test_mmmu_open_answers_follow_eval_open(truth, response, correct, rule):
    result = score(response, truth, "mmmu", question_type="open")
    assert result.reason == ("correct" if correct else "wrong")


def test_mmmu_open_item_loaded_from_the_release(mmmu_root):
    item = next(i for i in load_benchmark("mmmu", mmmu_root) if i.id == "mmmu/validation_Math_15")
    assert judged(item, "The result is 3.429").reason == "correct"
    assert judged(item, "The result is 3.5").reason == "wrong"


@pytest.mark.parametrize("truth,meta", [("E", {"choices": PETS}), ("B", {}), ("", {"question_type": "open"}),
                                        ("[1, 2,,]", {"question_type": "open"}),
                                        ("B", {"choices": PETS, "question_type": "essay"}),
                                        ("B", {"choices": PETS, "setting": "standard (4 options)"})])
def test_mmmu_unusable_ground_truth_raises(truth, meta):
    with pytest.raises(GroundTruthError):
        score("B", truth, "mmmu", **meta)


def test_mmmu_reads_the_vlmevalkit_tsv(tmp_path):
    header = ["index", "question", "A", "B", "C", "D", "answer", "image", "split", "id"]
    write_tsv(tmp_path / "mmmu" / "MMMU_DEV_VAL.tsv", header, [
        ["1", "<image 1> Which animal?", *PETS, "B", b64png(5), "validation", "validation_Bio_1"],
        ["2", "<image 1> How many?", "", "", "", "", "7", str([b64png(6), b64png(7)]), "validation",
         "validation_Math_2"],
        ["3", "<image 1> Dev item", "x", "y", "", "", "A", b64png(8), "dev", "dev_Bio_1"]])
    items = {item.id: item for item in load_benchmark("mmmu", tmp_path)}
    assert sorted(items) == ["mmmu/validation_Bio_1", "mmmu/validation_Math_2"]
    assert items["mmmu/validation_Bio_1"].choices == PETS
    assert items["mmmu/validation_Math_2"].metadata["question_type"] == "open"
    assert items["mmmu/validation_Math_2"].images == [png(6), png(7)]
    assert judged(items["mmmu/validation_Bio_1"], "(B)").reason == "correct"
    assert judged(items["mmmu/validation_Math_2"], "so it is 7").reason == "correct"


# --- MMMU-Pro ---------------------------------------------------------------------------------------------------

TEN = [f"option {n}" for n in range(10)]


@pytest.fixture
def mmmu_pro_root(tmp_path) -> Path:
    standard = {"id": "test_History_1", "question": "Which era is shown in <image 1>?", "options": str(TEN),
                "explanation": "", **{name: None for name in MMMU_IMAGES}, "image_type": "['Photos']", "answer": "J",
                "topic_difficulty": "Hard", "subject": "History"}
    standard["image_1"] = hf_image(50)
    write_parquet(tmp_path / "mmmu_pro" / "standard (10 options)" / "test-00000-of-00001.parquet", [standard],
                  MMMU_IMAGES)
    write_parquet(tmp_path / "mmmu_pro" / "standard (4 options)" / "test-00000-of-00001.parquet",
                  [{**standard, "options": str(TEN[:4]), "answer": "A"}], MMMU_IMAGES)
    vision = {"id": "test_History_1", "image": hf_image(60), "options": str(TEN), "answer": "J",
              "subject": "History"}
    write_parquet(tmp_path / "mmmu_pro" / "vision" / "test-00000-of-00001.parquet", [vision], ("image",))
    return tmp_path


def test_mmmu_pro_loads_both_settings_with_the_official_prompts(mmmu_pro_root):
    items = {item.id: item for item in load_benchmark("mmmu_pro", mmmu_pro_root)}
    assert sorted(items) == ["mmmu_pro/standard/test_History_1", "mmmu_pro/vision/test_History_1"]
    standard, vision = items["mmmu_pro/standard/test_History_1"], items["mmmu_pro/vision/test_History_1"]
    lettered = "\n".join(f"{letter}. option {n}" for n, letter in enumerate("ABCDEFGHIJ"))
    assert standard.question == ("Which era is shown in <image 1>?\n" + lettered
                                 + "\nAnswer with the option letter from the given choices directly.")
    assert standard.images == [png(50)] and vision.images == [png(60)]
    assert vision.question.startswith("Answer with the option letter from the given choices directly. The last line")
    assert standard.metadata == {"setting": "standard (10 options)", "item_id": "standard/test_History_1"}
    assert vision.metadata["setting"] == "vision" and vision.answer_type == "mmmu_pro" and vision.choices == TEN


MMMU_PRO_CASES = [
    ("Reasoning...\nAnswer: J", "J", "mmmu-pro parse: a unique letter after the last 'Answer:'"),
    ("Answer: (J)", "J", "mmmu-pro parse: 'Answer:' line, brackets ignored"),
    (r"\boxed{J}", "J", "contract: the box's content, then 'X '"),
    ("(I) or (J)", "J", "mmmu-pro parse: several (X), last occurrence wins"),
    ("Answer: A or J", "J", "mmmu-pro parse: 'Answer:' not unique -> falls through, last ' X ' wins"),
    ("I think J", "J", "mmmu-pro parse: 'X ' without a leading space: 'I ' names option I, the later J wins"),
    ("I guess so", "I", "mmmu-pro parse: 'I ' alone names option I"),
    ("It must be J.", "J", "mmmu-pro parse: edge '.' stripped, then 'J '"),
    ("The era shown is clearly option 9", "J", "mmmu-pro parse: option text in a response over 5 words"),
]


@pytest.mark.parametrize("response,picked,rule", MMMU_PRO_CASES, ids=[case[2] for case in MMMU_PRO_CASES])
def test_mmmu_pro_follows_its_own_parser(mmmu_pro_root, response, picked, rule):
    for item in load_benchmark("mmmu_pro", mmmu_pro_root):
        result = judged(item, response)
        assert (result.extracted, result.reason) == (picked, "correct" if picked == "J" else "wrong"), item.id


# --- MMStar, AI2D, ScienceQA (VLMEvalKit rule) ------------------------------------------------------------------

@pytest.fixture
def mmstar_root(tmp_path) -> Path:
    rows = [{"index": 0, "question": "Which option describe the object relationship in the image correctly?\n"
                                     "Options: A: The suitcase is on the book., B: The suitcase is beneath the cat., "
                                     "C: The cat, a tabby, sits., D: The suitcase is beneath the book.",
             "image": hf_image(70), "answer": "A", "category": "coarse perception",
             "l2_category": "image scene and topic",
             "meta_info": {"source": "MMBench", "split": "val", "image_path": "0.jpg"}}]
    write_parquet(tmp_path / "mmstar" / "mmstar.parquet", rows, ("image",))
    return tmp_path


def test_mmstar_parquet_splits_the_inline_options_into_the_vlmevalkit_prompt(mmstar_root):
    [item] = load_benchmark("mmstar", mmstar_root)
    assert item.id == "mmstar/0" and item.answer == "A" and item.images == [png(70)]
    assert item.choices == ["The suitcase is on the book.", "The suitcase is beneath the cat.",
                            "The cat, a tabby, sits.", "The suitcase is beneath the book."]
    assert item.question == ("Question: Which option describe the object relationship in the image correctly?\n"
                             "Options:\nA. The suitcase is on the book.\nB. The suitcase is beneath the cat.\n"
                             "C. The cat, a tabby, sits.\nD. The suitcase is beneath the book.\n"
                             "Please select the correct answer from the options above. \n")
    assert item.metadata == {"category": "coarse perception", "l2_category": "image scene and topic"}


@pytest.mark.parametrize("question", ["Q?\nOptions: A: 1, 2, B: 3", "Q?\nOptions: A: 1, 2\nB: 3"])
def test_mmstar_inline_options_may_contain_commas_or_sit_on_lines(question):
    assert split_inline_options(question, "here") == ("Q?", ["1, 2", "3"])


CAN_INFER_CASES = [
    ("A", "A", "can_infer_option: a lone letter"),
    ("(A)", "A", "can_infer_option: brackets become spaces"),
    ("A.", "A", "can_infer_option: a trailing dot becomes a space"),
    (r"Thinking... \boxed{A}", "A", "contract: the box's content"),
    ("**A** on the book", "A", "can_infer_option: one letter among the last 4 words, markdown stripped"),
    ("A: the suitcase rests on top of the book in the picture", None,
     "can_infer_option: the letter must be among the last 4 words; can_infer_text: no option text -> no_answer"),
    ("After careful thought, the correct answer is **B**, since the book is under it and here is why",
     "B", "can_infer_option: the 'answer is X' fallback (A-D)"),
    ("A or B", None, "can_infer_option: two letters -> none; can_infer_text: no option text -> no_answer"),
    ("Surely the suitcase is on the book.", "A", "can_infer_text: exactly one option text contained"),
    ("The suitcase is beneath the", None, "can_infer_text: no option text fully contained -> no_answer"),
    ("I'm sorry, but without the image provided I cannot tell", "Z", "can_infer_option: refusal -> Z (wrong)"),
    ("Z", "Z", "can_infer_option: a lone Z -> Z (wrong)"),
    ("a", None, "can_infer_option: letters are case-sensitive; can_infer_text: 'a' is in no option -> no_answer"),
]


@pytest.mark.parametrize("response,picked,rule", CAN_INFER_CASES, ids=[case[2] for case in CAN_INFER_CASES])
def test_mmstar_follows_vlmevalkit_can_infer(mmstar_root, response, picked, rule):
    [item] = load_benchmark("mmstar", mmstar_root)
    result = judged(item, response)
    expected = "no_answer" if picked is None else ("correct" if picked == "A" else "wrong")
    assert (result.extracted, result.reason) == (picked, expected)


def test_ai2d_parquet_answers_are_option_indices(tmp_path):
    rows = [{"question": "Which stage comes first?", "options": ["egg", "larva", "adult"], "answer": "1",
             "image": hf_image(80)},
            {"question": "What eats grass?", "options": ["cow", "lion"], "answer": "0", "image": hf_image(81)}]
    write_parquet(tmp_path / "ai2d" / "data" / "test-00000-of-00001.parquet", rows, ("image",))
    first, second = load_benchmark("ai2d", tmp_path)
    assert (first.id, first.answer, first.choices, second.id, second.answer) == (
        "ai2d/0", "B", ["egg", "larva", "adult"], "ai2d/1", "A")
    assert first.question == ("Question: Which stage comes first?\nOptions:\nA. egg\nB. larva\nC. adult\n"
                              "Please select the correct answer from the options above. \n")
    assert judged(first, "larva").reason == "correct"  # can_infer_text
    assert judged(first, "B. larva").reason == "correct"  # can_infer_option
    assert judged(second, "cow or lion").reason == "no_answer"  # can_infer_text: two options named


def test_scienceqa_parquet_keeps_image_items_and_the_hint(tmp_path):
    rows = [{"image": hf_image(90), "question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1,
             "hint": "Mammals have hair.", "task": "closed choice", "subject": "natural science"},
            {"image": None, "question": "Text only?", "choices": ["yes", "no"], "answer": 0, "hint": "",
             "task": "closed choice", "subject": "language science"},
            {"image": hf_image(91), "question": "Which is hot?", "choices": ["ice", "fire"], "answer": 1, "hint": "",
             "task": "closed choice", "subject": "natural science"}]
    write_parquet(tmp_path / "scienceqa" / "data" / "test-00000-of-00001.parquet", rows, ("image",))
    write_parquet(tmp_path / "scienceqa" / "data" / "train-00000-of-00001.parquet", rows, ("image",))
    mammal, hot = load_benchmark("scienceqa", tmp_path)
    assert (mammal.id, hot.id, mammal.answer, mammal.answer_type) == ("scienceqa/0", "scienceqa/2", "B", "scienceqa")
    assert mammal.question.startswith("Hint: Mammals have hair.\nQuestion: Which is a mammal?\nOptions:\nA. frog\n")
    assert hot.question.startswith("Question: Which is hot?\n")
    assert judged(mammal, r"\boxed{B}").reason == "correct"
    assert judged(mammal, "(A)").reason == "wrong"


def test_vlmevalkit_tsvs_load_with_shared_images(tmp_path):
    header = ["index", "image", "question", "hint", "A", "B", "C", "answer", "category", "l2_category"]
    write_tsv(tmp_path / "mmstar" / "MMStar.tsv", header, [
        ["10", b64png(100), "What colour?", "", "red", "green", "", "A", "coarse perception", "image emotion"],
        ["11", "10", "What shape?", "Look closely.", "square", "round", "oval", "C", "math", "geometry"]])
    first, second = load_benchmark("mmstar", tmp_path)
    assert (first.id, second.id) == ("mmstar/10", "mmstar/11")
    assert first.choices == ["red", "green"] and second.images == first.images == [png(100)]
    assert second.question == ("Hint: Look closely.\nQuestion: What shape?\nOptions:\nA. square\nB. round\nC. oval\n"
                               "Please select the correct answer from the options above. \n")
    assert judged(second, "The answer is C").reason == "correct"


def test_scienceqa_tsv_skips_rows_without_an_image(tmp_path):
    header = ["index", "image", "question", "hint", "A", "B", "answer"]
    write_tsv(tmp_path / "scienceqa" / "ScienceQA_TEST.tsv", header, [
        ["1", b64png(3), "Which is a mammal?", "", "frog", "whale", "B"],
        ["2", "", "Text only?", "", "yes", "no", "A"]])
    [item] = load_benchmark("scienceqa", tmp_path)
    assert item.id == "scienceqa/1" and judged(item, "whale").reason == "correct"


def test_vlmevalkit_ground_truth_outside_the_options_raises():
    with pytest.raises(GroundTruthError):
        score("A", "E", "ai2d", choices=PETS)
    with pytest.raises(GroundTruthError):
        score("A", "A", "scienceqa")


def test_judge_prompt_is_vlmevalkits_matching_prompt():
    prompt = judge_prompt("Which pet", ["cat", "dog"], "a small dog")
    assert prompt.startswith("You are an AI assistant who will help me to match an answer with several options")
    assert prompt.endswith("Example 3: \nQuestion: Which pet?\nOptions: There are several options: \nA. cat\nB. dog\n"
                           "\nAnswer: a small dog\nYour output: ")


# --- Bounded work and format errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("answer_type,truth,meta", [
    ("mmmu", "3.429", {"question_type": "open"}), ("mmmu", "B", {"choices": PETS}),
    ("mmmu_pro", "B", {"choices": PETS, "setting": "vision"}), ("mmstar", "B", {"choices": PETS})])
@pytest.mark.parametrize("bomb", ["9" * 1_000_000, "1,000" * 200_000, "1" * 20_000 + "e5", "is (A) " * 150_000])
def test_megabyte_responses_are_scored_from_their_tail(answer_type, truth, meta, bomb):
    result = score(bomb, truth, answer_type, **meta)
    assert result.reason in ("correct", "wrong", "no_answer")


def test_a_directory_in_no_known_format_names_itself(tmp_path):
    for name in ("mmmu", "mmmu_pro", "mmstar", "ai2d", "scienceqa"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.json").write_text("{}")
        with pytest.raises(BenchmarkFormatError, match=re.escape(str(tmp_path / name))):
            load_benchmark(name, tmp_path)


def test_a_missing_column_names_the_file_and_column(tmp_path):
    path = tmp_path / "ai2d" / "data" / "test-00000-of-00001.parquet"
    write_parquet(path, [{"question": "q", "options": ["x", "y"], "image": hf_image(1)}], ("image",))
    with pytest.raises(BenchmarkFormatError, match=r"test-00000-of-00001\.parquet: missing column\(s\) \['answer'\]"):
        load_benchmark("ai2d", tmp_path)
    write_tsv(tmp_path / "mmstar" / "MMStar.tsv", ["index", "image", "question", "A"], [["1", b64png(1), "q", "x"]])
    with pytest.raises(BenchmarkFormatError, match=r"MMStar\.tsv: missing column\(s\) \['answer'\]"):
        load_benchmark("mmstar", tmp_path)


def test_a_missing_image_names_the_file_item_and_field(tmp_path):
    row = mmmu_row(id="validation_Art_9", question="Compare <image 1> and <image 2>.", options=str(PETS), answer="A",
                   image_1=hf_image(1))
    write_parquet(tmp_path / "mmmu" / "Art" / "validation-00000-of-00001.parquet", [row], MMMU_IMAGES)
    with pytest.raises(BenchmarkFormatError, match=r"validation-00000-of-00001\.parquet: id validation_Art_9, "
                                                   r"field 'image_2': no image"):
        load_benchmark("mmmu", tmp_path)
    write_parquet(tmp_path / "mmstar" / "mmstar.parquet",
                  [{"index": 4, "question": "Q?\nOptions: A: x, B: y", "image": None, "answer": "A"}], ("image",))
    with pytest.raises(BenchmarkFormatError, match=r"mmstar\.parquet: index 4, field 'image'"):
        load_benchmark("mmstar", tmp_path)
    write_tsv(tmp_path / "ai2d" / "AI2D_TEST.tsv", ["index", "image", "question", "A", "B", "answer"],
              [["7", "99", "q", "x", "y", "A"]])
    with pytest.raises(BenchmarkFormatError, match=r"AI2D_TEST\.tsv: index 7, field 'image': refers to index '99'"):
        load_benchmark("ai2d", tmp_path)


def test_a_bad_field_names_the_file_item_and_field(tmp_path):
    write_parquet(tmp_path / "mmmu" / "Art" / "validation-00000-of-00001.parquet",
                  [mmmu_row(id="validation_Art_1", question="<image 1>", options="[unclosed", answer="A",
                            image_1=hf_image(1))], MMMU_IMAGES)
    with pytest.raises(BenchmarkFormatError, match=r"id validation_Art_1, field 'options'"):
        load_benchmark("mmmu", tmp_path)
    write_parquet(tmp_path / "mmstar" / "mmstar.parquet",
                  [{"index": 2, "question": "No options here", "image": hf_image(1), "answer": "A"}], ("image",))
    with pytest.raises(BenchmarkFormatError, match=r"index 2, field 'question'"):
        load_benchmark("mmstar", tmp_path)
    write_parquet(tmp_path / "ai2d" / "data" / "test-00000-of-00001.parquet",
                  [{"question": "q", "options": ["x", "y"], "answer": "5", "image": hf_image(1)}], ("image",))
    with pytest.raises(BenchmarkFormatError, match=r"row 0, field 'answer'"):
        load_benchmark("ai2d", tmp_path)
