"""MathVista, MathVerse, MathVision and ChartQA: loading their official formats (fixtures written here, tiny PNGs)
and scoring hand-made responses through `visiong1.rewards.score` by each benchmark's official rule."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visiong1.eval.benchmarks import load_benchmark
from visiong1.eval.benchmarks.formats import BenchmarkFormatError
from visiong1.rewards import GroundTruthError, score
from visiong1.rewards.official.mathverse import judgement_prompt
from visiong1.rewards.official.mathvista import judge_prompt, score_mathvista_extraction
from visiong1.types import PromptItem

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_parquet(path: Path, columns: dict, types: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    types = types or {}
    pq.write_table(pa.table({name: pa.array(values, type=types.get(name)) for name, values in columns.items()}), path)
    return path


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(row) for row in [header, *rows]) + "\n", encoding="utf-8")
    return path


def image_column(count: int) -> list[dict]:
    return [{"bytes": png(), "path": f"images/{index}.png"} for index in range(count)]


def judge(item: PromptItem, response: str):
    return score(response, item.answer, item.answer_type, **item.scorer_meta())


# ---------------------------------------------------------------- MathVista

def mathvista_parquet(root: Path, **overrides) -> Path:
    columns = {
        "pid": ["1", "2", "3", "4"],
        "question": ["q1", "q2", "q3", "q4"],
        "image": ["images/1.jpg"] * 4,
        "decoded_image": image_column(4),
        "choices": [["3/11", "8/11", "6/11", "3/5"], None, None, None],
        "unit": [None] * 4,
        "precision": [None, None, 2.0, None],
        "answer": ["8/11", "14", "1.45", "[2007, 2008]"],
        "question_type": ["multi_choice", "free_form", "free_form", "free_form"],
        "answer_type": ["text", "integer", "float", "list"],
        "query": ["Hint: pick.\nQuestion: What fraction is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5",
                  "Question: missing?", "Question: cost?", "Question: peak?"],
    } | overrides
    types = {"decoded_image": IMAGE_STRUCT, "choices": pa.list_(pa.string()), "unit": pa.string()}
    return write_parquet(root / "mathvista" / "data" / "testmini-00000-of-00001.parquet", columns, types)


@pytest.fixture(scope="module")
def mathvista(tmp_path_factory) -> dict[str, PromptItem]:
    root = tmp_path_factory.mktemp("data")
    mathvista_parquet(root)
    write_parquet(root / "mathvista" / "data" / "test-00000-of-00001.parquet", {"pid": ["9"]})  # other split
    return {item.id: item for item in load_benchmark("mathvista", root)}


def test_mathvista_loads_the_official_parquet(mathvista):
    item = mathvista["mathvista/1"]
    assert sorted(mathvista) == ["mathvista/1", "mathvista/2", "mathvista/3", "mathvista/4"]
    assert (item.source, item.domain, item.answer_type) == ("mathvista", "mathvista", "mathvista")
    assert item.question.startswith("Hint: pick.") and item.images == [png()]
    assert item.choices == ["3/11", "8/11", "6/11", "3/5"]
    assert item.metadata == {"question_type": "multi_choice", "value_type": "text"}
    assert mathvista["mathvista/3"].metadata == {"question_type": "free_form", "value_type": "float", "precision": 2}


@pytest.mark.parametrize("pid, response, reason, extracted", [
    ("1", r"So \boxed{B}", "correct", "8/11"),              # capital letter indexes the choices
    ("1", r"\boxed{(B) 8/11}", "correct", "8/11"),          # first "(X)" letter is taken
    ("1", r"\boxed{8/11}", "correct", "8/11"),              # response in choices is taken as is
    ("1", r"\boxed{8 / 11}", "correct", "8/11"),            # option text: nearest choice by Levenshtein
    ("1", r"\boxed{B.}", "wrong", "3/5"),                   # quirk: "B." is no letter; nearest choice text wins
    ("1", r"\boxed{b}", "wrong", "3/5"),                    # quirk: lower-case letters are not indexed either
    ("1", "8/11", "correct", "8/11"),                       # unboxed response equal to a choice
    ("1", "I think it is (B)", "no_answer", None),          # official would call GPT: no judge, no answer
    ("2", "14", "correct", "14"),                           # integer: int(response) parses
    ("2", r"\boxed{14.9}", "correct", "14"),                # quirk: integer is str(int(float(x))), truncating
    ("2", r"\boxed{15.2}", "wrong", "15"),
    ("2", r"\boxed{14.0}", "correct", "14"),
    ("2", 'The answer is "14".', "correct", "14"),          # quick extraction regex
    ("2", r"\boxed{fourteen}", "parse_error", "fourteen"),  # int(float()) fails: prediction None
    ("2", r"\boxed{}", "no_answer", None),                  # empty extraction (--ignore_empty_extractions)
    ("3", r"\boxed{1.449}", "correct", "1.45"),             # float: round(float(x), precision=2)
    ("3", r"\boxed{1.4}", "wrong", "1.4"),
    ("3", r"\boxed{1.454}", "correct", "1.45"),
    ("4", r"\boxed{[2007, 2008]}", "correct", "[2007, 2008]"),  # list: str(x) equality
    ("4", r"\boxed{[2007,2008]}", "wrong", "[2007,2008]"),
])
def test_mathvista_official_rule(mathvista, pid, response, reason, extracted):
    result = judge(mathvista[f"mathvista/{pid}"], response)
    assert (result.reason, result.extracted) == (reason, extracted)


def test_mathvista_judge_hook_builds_the_official_prompt_and_scores_its_reply(mathvista):
    item = mathvista["mathvista/1"]
    prompt = judge_prompt(item.question, "It is (B) 8/11.")
    assert prompt.startswith("Please read the following example.")
    assert prompt.endswith(f"{item.question}\n\nIt is (B) 8/11.\n\nExtracted answer: ")
    assert score_mathvista_extraction("B", item.answer, **item.scorer_meta()).reason == "correct"


def test_mathvista_bad_ground_truth_raises(mathvista):
    item = mathvista["mathvista/1"]
    with pytest.raises(GroundTruthError):
        score(r"\boxed{A}", "7/11", "mathvista", **item.scorer_meta())
    with pytest.raises(GroundTruthError):
        score(r"\boxed{1}", "1.5", "mathvista", question_type="free_form", value_type="float")


def test_mathvista_reads_the_vlmevalkit_tsv(tmp_path):
    image = base64.b64encode(png()).decode()
    write_tsv(tmp_path / "mathvista" / "MathVista_MINI.tsv",
              ["index", "image", "question", "answer", "choices", "question_type", "answer_type"],
              [["1", image, "Which?", "8/11", "['3/11', '8/11']", "multi_choice", "text"],
               ["2", image, "How long?", "1.45", "", "free_form", "float"]])
    first, second = load_benchmark("mathvista", tmp_path)
    assert (first.id, first.choices, first.images) == ("mathvista/1", ["3/11", "8/11"], [png()])
    assert second.metadata["precision"] == 2  # precision from the answer's decimals when the TSV has none
    assert judge(first, r"\boxed{B}").reason == "correct"
    assert judge(second, r"\boxed{1.4521}").reason == "correct"


# ---------------------------------------------------------------- MathVerse

@pytest.fixture(scope="module")
def mathverse(tmp_path_factory) -> dict[str, PromptItem]:
    root = tmp_path_factory.mktemp("data")
    write_parquet(root / "mathverse" / "testmini.parquet", {
        "sample_index": ["1", "2"], "problem_index": ["1", "2"], "problem_version": ["Text Dominant", "Vision Only"],
        "question": ["q1", "q2"], "image": image_column(2), "answer": ["B", "22.3"],
        "question_type": ["multi-choice", "free-form"], "metadata": ["{}", "{}"],
        "query_wo": ["wo1", "wo2"], "query_cot": ["cot1\nChoices:\nA:2\nB:3", "cot2"],
        "question_for_eval": ["eval1", "eval2"]}, {"image": IMAGE_STRUCT})
    write_parquet(root / "mathverse" / "testmini_text_only.parquet", {"sample_index": ["9"]})  # no images: skipped
    return {item.id: item for item in load_benchmark("mathverse", root)}


def test_mathverse_loads_the_official_parquet(mathverse):
    item = mathverse["mathverse/1"]
    assert sorted(mathverse) == ["mathverse/1", "mathverse/2"]
    assert item.question == "cot1\nChoices:\nA:2\nB:3" and item.images == [png()] and item.answer_type == "mathverse"
    assert item.metadata == {"question_type": "multi-choice", "problem_version": "Text Dominant",
                             "question_for_eval": "eval1"}


@pytest.mark.parametrize("sample, response, reason", [
    ("1", r"\boxed{B}", "correct"),          # quick_match: extraction == answer
    ("1", r"\boxed{(B)}", "wrong"),          # exact match: no letter normalisation
    ("1", r"\boxed{b}", "wrong"),            # exact match is case-sensitive
    ("1", r"\boxed{3}", "wrong"),            # option text is not the option
    ("1", "B", "correct"),                   # unboxed: the whole (stripped) response
    ("1", "The answer is B", "wrong"),
    ("2", r"\boxed{22.3}", "correct"),
    ("2", r"\boxed{22.30}", "wrong"),        # no numeric equivalence in the rule-based path
    ("2", r"\boxed{ }", "no_answer"),
])
def test_mathverse_official_exact_match(mathverse, sample, response, reason):
    assert judge(mathverse[f"mathverse/{sample}"], response).reason == reason


def test_mathverse_judge_hook_fills_the_official_prompt(mathverse):
    item = mathverse["mathverse/1"]
    prompt = judgement_prompt(item.metadata["question_for_eval"], item.answer, "B")
    assert prompt.endswith("[Question]: eval1\n[Standard Answer]: B\n[Model_answer] : B\nJudgement:")  # strip() as official
    assert "\\frac{x^2}{81}" in prompt  # the demo's doubled braces are format() escapes


def test_mathverse_reads_the_vlmevalkit_tsv(tmp_path):
    write_tsv(tmp_path / "mathverse" / "MathVerse_MINI.tsv", ["index", "image", "question", "answer", "query_cot"],
              [["7", base64.b64encode(png()).decode(), "plain", "C", "think step by step"]])
    (item,) = load_benchmark("mathverse", tmp_path)
    assert (item.id, item.question) == ("mathverse/7", "think step by step")
    assert judge(item, r"\boxed{C}").reason == "correct"


# ---------------------------------------------------------------- MathVision

@pytest.fixture(scope="module")
def mathvision(tmp_path_factory) -> dict[str, PromptItem]:
    root = tmp_path_factory.mktemp("data")
    write_parquet(root / "mathvision" / "data" / "test-00000-of-00001.parquet", {
        "id": ["1", "2", "3"], "question": ["Which bike?\n<image1>", "Which number?\n<image1>", "Where?\n<image1>"],
        "options": [["5", "42", "7", "8", "9"], [], []], "image": ["images/1.jpg"] * 3,
        "decoded_image": image_column(3), "answer": ["B", "0.5", "(1,2)"], "solution": [None] * 3,
        "level": [2, 3, 1], "subject": ["arithmetic", "algebra", "analytic geometry"]},
        {"decoded_image": IMAGE_STRUCT, "options": pa.list_(pa.string()), "solution": pa.string()})
    write_parquet(root / "mathvision" / "data" / "testmini-00000-of-00001.parquet", {"id": ["9"]})  # other split
    return {item.id: item for item in load_benchmark("mathvision", root)}


def test_mathvision_loads_the_official_parquet(mathvision):
    item = mathvision["mathvision/1"]
    assert sorted(mathvision) == ["mathvision/1", "mathvision/2", "mathvision/3"]
    assert item.question == "Which bike?\n<image1>\n(A) 5\n(B) 42\n(C) 7\n(D) 8\n(E) 9"
    assert item.choices == ["5", "42", "7", "8", "9"] and item.images == [png()]
    assert mathvision["mathvision/2"].question == "Which number?\n<image1>" and mathvision["mathvision/2"].choices is None


@pytest.mark.parametrize("item_id, response, reason, extracted", [
    ("1", r"\boxed{B}", "correct", "b"),                   # is_equal lower-cases both sides
    ("1", r"\boxed{(B)}", "correct", "b"),                 # "(b)" -> "b"
    ("1", r"\boxed{42}", "correct", "42"),                 # the option's text matches too
    ("1", r"\boxed{C}", "wrong", "c"),
    ("1", "After all that, the answer is (B).", "correct", "b"),  # ends with " (B)."
    ("1", "(B)\nbecause it is longer", "correct", "b"),   # starts with "(B)\n"
    ("1", "the final answer is B. Done", "correct", "b"),  # answer flag, cut at ". "
    ("2", r"\boxed{\frac{1}{2}}", "correct", "\\frac{1}{2}"),  # numeric equality after rounding to 2 decimals
    ("2", r"\boxed{0.504}", "correct", "0.504"),           # round(0.504, 2) == round(0.5, 2)
    ("2", r"\boxed{0.51}", "wrong", "0.51"),
    ("2", r"\boxed{x = 1/2}", "correct", "\\frac{1}{2}"),  # after "=", and a/b -> \frac{a}{b}
    ("2", r"\boxed{50\%}", "wrong", "50"),                 # percent sign dropped, 50 != 0.5
    ("2", "so it is 0.5.", "correct", "\\frac{1}{2}"),     # number after the last "is "; 0.5 -> \frac{1}{2}
    ("3", r"\boxed{(1, 2.001)}", "correct", "(1,2.001)"),  # tuples compared element-wise at 2 decimals
    ("3", r"\boxed{(2,1)}", "wrong", "(2,1)"),
    ("2", r"\boxed{}", "no_answer", None),
])
def test_mathvision_official_rule(mathvision, item_id, response, reason, extracted):
    result = judge(mathvision[f"mathvision/{item_id}"], response)
    assert (result.reason, result.extracted) == (reason, extracted)


def test_mathvision_never_evaluates_model_output(mathvision):
    item = mathvision["mathvision/2"]
    for response in [r"\boxed{__import__('os').getcwd()}", r"\boxed{9^{9^{9^{9}}}}", r"\boxed{(" * 500 + "}",
                     r"\boxed{(-8)^{0.5}}", r"\boxed{1/0}"]:
        assert judge(item, response).reason == "wrong"
    with pytest.raises(GroundTruthError):
        score(r"\boxed{A}", "F", "mathvision", choices=["1", "2", "3", "4", "5"])


def test_mathvision_reads_the_vlmevalkit_tsv(tmp_path):
    image = base64.b64encode(png()).decode()
    write_tsv(tmp_path / "mathvision" / "MathVision.tsv", ["index", "image", "question", "answer", "choices"],
              [["1", image, "Which?", "A", "['x', 'y', 'z', 'u', 'v']"], ["2", image, "How many?", "6", "[]"]])
    write_tsv(tmp_path / "mathvision" / "MathVision_MINI.tsv", ["index"], [["9"]])  # the mini set: skipped
    first, second = load_benchmark("mathvision", tmp_path)
    assert first.question == "Which?\n(A) x\n(B) y\n(C) z\n(D) u\n(E) v" and second.choices is None
    assert judge(first, r"\boxed{x}").reason == "correct" and judge(second, r"\boxed{6}").reason == "correct"


# ---------------------------------------------------------------- ChartQA

@pytest.fixture(scope="module")
def chartqa(tmp_path_factory) -> dict[str, PromptItem]:
    root = tmp_path_factory.mktemp("data")
    write_parquet(root / "chartqa" / "data" / "test-00000-of-00001.parquet", {
        "image": image_column(5), "query": ["How many?", "Share?", "Which year?", "Colour?", "Zero?"],
        "label": [["100"], ["12%"], ["2020"], ["Blue"], ["0"]], "human_or_machine": [0, 1, 0, 0, 1]},
        {"image": IMAGE_STRUCT})
    write_parquet(root / "chartqa" / "data" / "train-00000-of-00001.parquet", {"query": ["x"]})  # other split
    return {item.id.split("-")[1]: item for item in load_benchmark("chartqa", root)}


def test_chartqa_loads_the_huggingfacem4_parquet(chartqa):
    item = chartqa["0"]
    assert (item.id, item.question, item.answer, item.answer_type) == ("chartqa/test-0", "How many?", "100", "chartqa")
    assert item.metadata == {"type": "human"} and chartqa["1"].metadata == {"type": "machine"}


@pytest.mark.parametrize("row, response, reason", [
    ("0", r"\boxed{105}", "correct"),       # relative change exactly 5%: passes (<=)
    ("0", r"\boxed{95}", "correct"),
    ("0", r"\boxed{105.01}", "wrong"),      # just over 5%
    ("0", r"\boxed{100.0}", "correct"),     # both floats
    ("1", r"\boxed{12%}", "correct"),       # "%" divides by 100 on both sides
    ("1", r"\boxed{0.12}", "correct"),      # 0.12 == 12%
    ("1", r"\boxed{12}", "wrong"),          # 12 vs 0.12
    ("2", r"\boxed{2019}", "correct"),      # quirk: years get the 5% tolerance too
    ("2", r"\boxed{1920}", "correct"),      # 1920 is within 5% of 2020
    ("2", r"\boxed{1918}", "wrong"),
    ("3", r"\boxed{blue}", "correct"),      # non-numeric: case-insensitive exact match
    ("3", r"\boxed{light blue}", "wrong"),
    ("3", "Blue", "correct"),               # unboxed: the whole stripped response
    ("4", r"\boxed{0}", "correct"),         # zero target: exact string match only
    ("4", r"\boxed{0.0}", "wrong"),
    ("4", r"\boxed{}", "no_answer"),
])
def test_chartqa_relaxed_accuracy(chartqa, row, response, reason):
    assert judge(chartqa[row], response).reason == reason


def test_chartqa_other_layouts_and_labels(tmp_path):
    write_parquet(tmp_path / "lmms" / "chartqa" / "data" / "test-00000-of-00001.parquet", {
        "type": ["human_test"], "question": ["How many?"], "answer": ["7"], "image": image_column(1)},
        {"image": IMAGE_STRUCT})
    (item,) = load_benchmark("chartqa", tmp_path / "lmms")
    assert (item.metadata, judge(item, r"\boxed{7}").reason) == ({"type": "human_test"}, "correct")
    write_tsv(tmp_path / "tsv" / "chartqa" / "ChartQA_TEST.tsv", ["index", "image", "question", "answer"],
              [["3", base64.b64encode(png()).decode(), "Which?", "Yes"]])
    (item,) = load_benchmark("chartqa", tmp_path / "tsv")
    assert (item.id, judge(item, r"\boxed{yes}").reason) == ("chartqa/3", "correct")
    assert score(r"\boxed{9}", "1", "chartqa", other_answers=["9"]).reason == "correct"  # best over the labels


# ---------------------------------------------------------------- robustness and bad input

@pytest.mark.parametrize("name", ["mathvista", "mathverse", "mathvision", "chartqa"])
def test_huge_and_malformed_responses_are_judged(mathvista, mathverse, mathvision, chartqa, name):
    item = {"mathvista": mathvista["mathvista/1"], "mathverse": mathverse["mathverse/1"],
            "mathvision": mathvision["mathvision/1"], "chartqa": chartqa["0"]}[name]
    for response in ["x" * 1_000_000, "\\boxed{" * 200_000, "(" * 1_000_000 + r"\boxed{B}",
                     "the answer is " * 70_000, "{" * 500_000 + "}" * 500_000]:
        assert judge(item, response).reason in ("correct", "wrong", "no_answer", "parse_error")


def test_a_directory_in_no_known_format_is_refused(tmp_path):
    (tmp_path / "mathvista").mkdir()
    (tmp_path / "mathvista" / "readme.txt").write_text("nothing here")
    with pytest.raises(BenchmarkFormatError, match="mathvista"):
        load_benchmark("mathvista", tmp_path)


@pytest.mark.parametrize("name, dropped", [("mathvista", "query"), ("mathvista", "decoded_image")])
def test_a_missing_column_names_file_and_field(tmp_path, name, dropped):
    path = mathvista_parquet(tmp_path)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([dropped]), path)
    with pytest.raises(BenchmarkFormatError, match=rf"testmini-00000-of-00001\.parquet.*{dropped}"):
        load_benchmark(name, tmp_path)


def test_a_missing_image_names_file_row_and_field(tmp_path):
    mathvista_parquet(tmp_path, decoded_image=[{"bytes": png(), "path": None}, {"bytes": None, "path": None},
                                               {"bytes": png(), "path": None}, {"bytes": png(), "path": None}])
    with pytest.raises(BenchmarkFormatError, match=r"testmini-00000-of-00001\.parquet pid 2 field decoded_image"):
        load_benchmark("mathvista", tmp_path)


def test_missing_fields_in_tsv_and_parquet_name_the_field(tmp_path):
    write_tsv(tmp_path / "mathvision" / "MathVision.tsv", ["index", "image", "question", "answer"], [["1", "", "q", "A"]])
    with pytest.raises(BenchmarkFormatError, match=r"MathVision\.tsv.*choices"):
        load_benchmark("mathvision", tmp_path)
    write_tsv(tmp_path / "mathverse" / "MathVerse_MINI.tsv", ["index", "image", "question", "answer"],
              [["4", "", "q", "A"]])
    with pytest.raises(BenchmarkFormatError, match=r"MathVerse_MINI\.tsv row 1 \(index 4\) field image"):
        load_benchmark("mathverse", tmp_path)
    write_parquet(tmp_path / "chartqa" / "test.parquet", {"image": image_column(1), "query": ["q"], "label": [[]],
                                                          "human_or_machine": [0]}, {"image": IMAGE_STRUCT})
    with pytest.raises(BenchmarkFormatError, match=r"test\.parquet row 0: field label"):
        load_benchmark("chartqa", tmp_path)
