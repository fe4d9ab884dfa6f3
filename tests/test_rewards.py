"""Scorers per answer type, the labelled equivalence set, adversarial inputs and property tests."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visiong1.rewards import (ANSWER_TYPES, GroundTruthError, SymbolicSandbox, extract_answer, extract_boxed,
                              score)
from visiong1.rewards.grounding import iou
from visiong1.rewards.math import SYMBOLIC_FUNCTION
from visiong1.rewards.official import OFFICIAL_SCORERS

PAIRS = [json.loads(line) for line in (Path(__file__).parent / "data" / "reward_pairs.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sandbox():
    """One worker, so every adversarial case and the sample after it share a process."""
    pool = SymbolicSandbox(workers=1, deadline_s=2.0, preload=(SYMBOLIC_FUNCTION,))
    yield pool
    pool.close()


# --- extraction ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (r"first \boxed{1}, finally \boxed{2}", "2"),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
    (r"\fbox{7}", "7"),
    (r"\boxed{1} then \fbox{9}", "9"),
    (r"\boxed{\text{red square}}", "red square"),
    (r"\boxed{3", None),
    ("the answer is 3", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_fallbacks_are_off_by_default_and_ordered():
    response = "<answer>B</answer> so the answer is C."
    assert extract_answer(response) is None
    assert extract_answer(response, ("answer_tag", "answer_is")) == "B"
    assert extract_answer(response, ("answer_is", "answer_tag")) == "C"
    assert extract_answer(r"\boxed{A} <answer>B</answer>", ("answer_tag",)) == "A"


def test_no_box_is_no_answer():
    result = score("it is 3", "3", "count")
    assert (result.reason, result.score, result.extracted) == ("no_answer", 0.0, None)


# --- the labelled set ---------------------------------------------------------------------------------------------
def test_labelled_pairs_cover_every_type_and_are_enough():
    assert len(PAIRS) >= 200
    assert {pair["type"] for pair in PAIRS} == set(ANSWER_TYPES) - set(OFFICIAL_SCORERS)  # benchmarks: own tests
    assert sum(pair.get("group") == "ground_truth_forms" for pair in PAIRS) >= 50


def test_scorers_agree_with_the_labels(sandbox):
    agree = [(score(rf"\boxed{{{p['answer']}}}", p["truth"], p["type"], sandbox=sandbox, **p["meta"]).accuracy == 1.0)
             == p["equivalent"] for p in PAIRS]
    assert sum(agree) / len(agree) >= 0.97, [p for p, ok in zip(PAIRS, agree) if not ok]


def test_ground_truths_as_datasets_write_them_agree_with_the_labels(sandbox):
    """LaTeX wrappers, percent words, units, `\\text{(B)}` choices and ordered or free multi-answers."""
    forms = [p for p in PAIRS if p.get("group") == "ground_truth_forms"]
    agree = [(score(rf"\boxed{{{p['answer']}}}", p["truth"], p["type"], sandbox=sandbox, **p["meta"]).accuracy == 1.0)
             == p["equivalent"] for p in forms]
    assert sum(agree) / len(agree) >= 0.95, [p for p, ok in zip(forms, agree) if not ok]  # unit conversion: 2 misses


def test_exact_string_matching_fails_the_labelled_set():
    agree = [(p["answer"] == p["truth"]) == p["equivalent"] for p in PAIRS]
    assert sum(agree) / len(agree) < 0.97


# --- per type -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, truth, reason", [
    ("0.5", r"\frac{1}{2}", "correct"), (r"50\%", "0.5", "correct"), ("[1, 2)", "[1,2)", "correct"),
    (r"\{2, 1\}", r"\{1, 2\}", "correct"), (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", "correct"), ("3", "4", "wrong"),
    ("\\\\", "1", "parse_error"),
])
def test_math(sandbox, answer, truth, reason):
    assert score(rf"\boxed{{{answer}}}", truth, "math", sandbox=sandbox).reason == reason


@pytest.mark.parametrize("answer, reason", [
    ("(B)", "correct"), ("B.", "correct"), ("Option B", "correct"), ("b", "correct"), ("beta", "correct"),
    ("A", "wrong"), ("A, B", "wrong"), ("B and C", "wrong"), ("BC", "wrong"),
])
def test_choice(answer, reason):
    assert score(rf"\boxed{{{answer}}}", "B", "choice", choices=["alpha", "beta", "gamma"]).reason == reason


def test_choice_ground_truth_must_name_one_option():
    with pytest.raises(GroundTruthError):
        score(r"\boxed{A}", "A or B", "choice")


@pytest.mark.parametrize("box, expected", [
    ([0, 0, 10, 10], 1.0),                       # identical
    ([20, 20, 30, 30], 0.0),                     # disjoint
    ([2, 2, 8, 8], 36 / 100),                    # nested inside the truth
    ([5, 0, 15, 10], 50 / 150),                  # half overlap
    ([0, 0, 10, 0], 0.0),                        # degenerate (zero height)
    ([10, 0, 0, 10], 0.0),                       # x2 < x1
    ([0, 0, 1e308, 1e308], 100 / 1e308 / 1e308 * 1e0),  # huge but finite: no overflow to nan
])
def test_iou_by_hand(box, expected):
    assert iou(box, [0, 0, 10, 10]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("answer", ["[nan, 0, 10, 10]", "[0, 0, inf, 10]", "[0, 0, 10]", "box"])
def test_bbox_unreadable_coordinates_are_parse_errors(answer):
    result = score(rf"\boxed{{{answer}}}", "[0, 0, 10, 10]", "bbox")
    assert (result.reason, result.score) == ("parse_error", 0.0)


def test_bbox_partial_credit_and_threshold():
    half = score(r"\boxed{[5, 0, 15, 10]}", "[0, 0, 10, 10]", "bbox")
    assert half.score == pytest.approx(1 / 3) and (half.accuracy, half.reason) == (0.0, "wrong")
    lenient = score(r"\boxed{[5, 0, 15, 10]}", "[0, 0, 10, 10]", "bbox", iou_threshold=0.3)
    assert (lenient.accuracy, lenient.reason) == (1.0, "correct")


def test_bbox_coordinate_conventions():
    assert score(r"\boxed{[0, 0, 500, 1000]}", "[0, 0, 50, 200]", "bbox", predicted_coords="per_mille",
                 image_size=[100, 200]).score == pytest.approx(1.0)
    with pytest.raises(GroundTruthError, match="image_size"):
        score(r"\boxed{[0, 0, 0.5, 1]}", "[0, 0, 50, 100]", "bbox", predicted_coords="normalized")


@pytest.mark.parametrize("point, reason", [("(10, 5)", "correct"), ("(0, 0)", "correct"), ("(10.001, 5)", "wrong"),
                                           ("(5, 5)", "correct"), ("(5)", "parse_error")])
def test_point_edges_count_as_inside(point, reason):
    assert score(rf"\boxed{{{point}}}", "[0, 0, 10, 10]", "point").reason == reason


def test_unknown_answer_type_is_a_caller_error():
    with pytest.raises(ValueError, match="unknown answer type 'poem'"):
        score(r"\boxed{x}", "x", "poem")


def test_custom_scorer_by_dotted_path_runs_in_the_sandbox(sandbox):
    custom = {"palindrome": "tests.custom_scorer:score_palindrome"}
    assert score(r"\boxed{level}", "", "palindrome", sandbox=sandbox, custom_scorers=custom).reason == "correct"
    assert score(r"\boxed{levels}", "", "palindrome", sandbox=sandbox, custom_scorers=custom).reason == "wrong"
    slow = score(r"\boxed{sleep}", "", "palindrome", sandbox=sandbox, custom_scorers=custom)
    assert slow.reason == "timeout"


# --- adversarial --------------------------------------------------------------------------------------------------
ADVERSARIAL = [
    ("power tower", r"\boxed{9^{9^{9^9}}}", "resource_limit"),
    ("huge factorial", r"\boxed{(10^{100})!}", "resource_limit"),
    ("10^4 nested fractions", r"\boxed{" + r"\frac{1}{" * 10_000 + "2" + "}" * 10_000 + "}", "resource_limit"),
    ("1 MB of parentheses", r"\boxed{" + "(" * 1_000_000 + "}", "resource_limit"),
    ("unclosed 1 MB of parentheses", "(" * 1_000_000, "no_answer"),
    ("100 KB response", "lorem ipsum " * 8_500 + r"\boxed{7}", "wrong"),
    ("invalid UTF-8 and NUL", b"\xff\xfe\x00\\boxed{1\x00}", "wrong"),
    ("symbolic that never ends", r"\boxed{\int_0^1 x^{x^{x^{x}}} dx}", "timeout"),
]


@pytest.mark.parametrize("name, response, reason", ADVERSARIAL, ids=[case[0] for case in ADVERSARIAL])
def test_adversarial_inputs_return_with_their_reason(sandbox, name, response, reason):
    """`timeout` and `resource_limit` are the sandbox's deadline and limits at work: the call returns with them."""
    result = score(response, "2", "math", sandbox=sandbox)
    assert (result.reason, result.score) == (reason, 0.0)
    assert score(r"\boxed{3}", "2", "math", sandbox=sandbox).reason == "wrong"  # the worker still judges


CODE_PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"open('{marker}', 'w')\")",
]


@pytest.mark.parametrize("payload", CODE_PAYLOADS)
def test_code_in_a_box_is_never_run(sandbox, tmp_path, payload):
    marker = tmp_path / "pwned"
    result = score(rf"\boxed{{{payload.format(marker=marker)}}}", "1", "math", sandbox=sandbox)
    assert result.reason == "parse_error" and not marker.exists()
    # Even past the guard, the sandbox parses LaTeX only: nothing evaluates the text.
    outcome = sandbox.call(SYMBOLIC_FUNCTION, payload.format(marker=marker), "1")
    assert outcome.value in (False, None) and not marker.exists()
    assert score(r"\boxed{5}", "1", "math", sandbox=sandbox).reason == "wrong"
    assert score(r"\boxed{1}", "1", "math", sandbox=sandbox).reason == "correct"


def test_a_killed_worker_is_replaced(sandbox):
    before = set(sandbox.pids())
    assert score(r"\boxed{\int_0^1 x^{x^{x^{x}}} dx}", "1", "math", sandbox=sandbox).reason == "timeout"
    after = set(sandbox.pids())
    assert len(after) == 1 and after != before
    assert not any(Path(f"/proc/{pid}").exists() for pid in before - after)


# --- properties ---------------------------------------------------------------------------------------------------
TRUTHS = {"math": "\\frac{1}{2}", "choice": "B", "text": "red", "count": "3", "bbox": "[0, 0, 10, 10]",
          "point": "[0, 0, 10, 10]"}
answers = st.one_of(st.text(max_size=200), st.binary(max_size=200),
                    st.text(alphabet="0123456789.,-+/^{}()[]\\%$ abcfrqtx!", max_size=60).map(lambda s: rf"\boxed{{{s}}}"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(response=answers, answer_type=st.sampled_from(sorted(TRUTHS)))
def test_no_exception_escapes_score(sandbox, response, answer_type):
    result = score(response, TRUTHS[answer_type], answer_type, sandbox=sandbox)
    assert 0.0 <= result.score <= 1.0 and result.accuracy in (0.0, 1.0)
    assert not math.isnan(result.score)
