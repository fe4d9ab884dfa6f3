"""MathVista (testmini): the official answer extraction's rule-based path and the official scoring, quirks included.

Source: lupantech/MathVista @ 53d525874bdde205128e6b160b7357a88277d479,
`evaluation/extract_answer.py` (extract_answer with quick_extract), `evaluation/calculate_score.py`
(normalize_extracted_answer, get_most_similar, safe_equal), `evaluation/prompts/ext_ans.py` (the judge's demo prompt).

The official rule, in order:
1. extraction: an empty response extracts ""; a multi-choice response that *is* one of the choices is taken as is;
   an `integer` response that `int()` parses, or a `float` response that `float()` parses, is taken as its number;
   a response matching `The answer is "(.*)"\\.` gives the quoted text; otherwise GPT extracts the answer.
2. normalisation: multi-choice takes the first `(X)` letter, maps a capital letter within range to its choice, and
   maps anything else to the choice with the smallest Levenshtein distance (so `B.` or `b` are *not* letters: they
   go to the nearest choice text); integer: `str(int(float(x)))` (truncates); float: `str(round(float(x),
   precision))`; list: `str(x)`.
3. verdict: the normalised prediction equals the ground-truth string (`safe_equal`).

Deviations, all forced by running without a judge model:
- No GPT extraction. Where the official pipeline would call GPT, a `\\boxed{}` answer plays the extractor's part (its
  content is the extraction); a response with no box and no rule-based match scores `no_answer`. Callers who want the
  official judge build its prompt with `judge_prompt` and score the judge's reply with `score_mathvista_extraction`.
- Empty extractions score `no_answer`, as with the official `--ignore_empty_extractions` flag (by default the
  official code maps "" to the nearest, i.e. shortest, choice).
- Multi-choice extractions longer than MAX_CHOICE_MATCH_CHARS score `parse_error` instead of being matched by edit
  distance, which bounds the quadratic cost; no real option answer comes near that length.
"""

from __future__ import annotations

import math
import re

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import extract_boxed

MAX_CHOICE_MATCH_CHARS = 300
_QUICK_ANSWER = re.compile(r'The answer is "(.*)"\.')  # greedy, as in the official quick extraction
_PARENTHESISED_LETTER = re.compile(r"\(([a-zA-Z])\)")
_VALUE_TYPES = ("integer", "float", "list")

# Verbatim from evaluation/prompts/ext_ans.py (pids 852, 104, 824, 506, 540): the official judge's few-shot prompt.
JUDGE_DEMO_PROMPT = """
Please read the following example. Then extract the answer from the model response and type it at the end of the prompt.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: Which number is missing?

Model response: The number missing in the sequence is 14.

Extracted answer: 14

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the fraction of females facing the camera?

Model response: The fraction of females facing the camera is 0.6, which means that six out of ten females in the group are facing the camera.

Extracted answer: 0.6

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: How much money does Luca need to buy a sour apple candy and a butterscotch candy? (Unit: $)

Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.

Extracted answer: 1.45

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: Between which two years does the line  graph saw its maximum peak?

Model response: The line graph saw its maximum peak between 2007 and 2008.

Extracted answer: [2007, 2008]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5

Model response: The correct answer is (B) 8/11.

Extracted answer: B
"""


def judge_prompt(query: str, response: str) -> str:
    """The prompt the official pipeline sends its GPT extractor (`create_test_prompt`): demo, query, response."""
    return f"{JUDGE_DEMO_PROMPT.strip()}\n\n{query}\n\n{response}\n\nExtracted answer: "


def score_mathvista(response: str, ground_truth: str, question_type: str = "", value_type: str = "",
                    precision: float | None = None, choices: list[str] | None = None, **meta) -> RewardResult:
    """Judge a whole response by MathVista's rule (module docstring). `question_type` is `multi_choice` or
    `free_form`, `value_type` the dataset's `answer_type` (`text`, `integer`, `float`, `list`), `precision` the
    decimals a float answer is rounded to, `choices` the options (the ground truth is the correct option's text)."""
    _check_ground_truth(ground_truth, question_type, value_type, precision, choices)
    boxed = extract_boxed(response)
    text = response if boxed is None else boxed
    extraction = _rule_extraction(text, question_type, value_type, choices)
    if extraction is None:
        extraction = boxed  # the box stands in for the GPT extractor; without one there is no answer
    if not extraction:
        return RewardResult.failure("no_answer", None)
    return _judge_extraction(extraction, ground_truth, question_type, value_type, precision, choices)


def score_mathvista_extraction(extraction: str, ground_truth: str, question_type: str = "", value_type: str = "",
                               precision: float | None = None, choices: list[str] | None = None,
                               **meta) -> RewardResult:
    """Judge an answer a judge model extracted (its reply to `judge_prompt`) by the official normalisation."""
    _check_ground_truth(ground_truth, question_type, value_type, precision, choices)
    extraction = extraction.strip()
    if not extraction:
        return RewardResult.failure("no_answer", None)
    return _judge_extraction(extraction, ground_truth, question_type, value_type, precision, choices)


def _check_ground_truth(ground_truth: str, question_type: str, value_type: str, precision: float | None,
                        choices: list[str] | None) -> None:
    if question_type == "multi_choice":
        if not choices or ground_truth not in choices:
            raise GroundTruthError(f"MathVista multi-choice answer {ground_truth!r} is not one of {choices}")
    elif question_type == "free_form":
        # The official normalisation has no branch for other free-form types (it would crash on them).
        if value_type not in _VALUE_TYPES:
            raise GroundTruthError(f"MathVista free-form value_type {value_type!r} not in {_VALUE_TYPES}")
        if value_type == "float" and precision is None:
            raise GroundTruthError("MathVista float answer without a precision")
    else:
        raise GroundTruthError(f"MathVista question_type {question_type!r} is neither multi_choice nor free_form")
    if not ground_truth:
        raise GroundTruthError("MathVista ground truth is empty")


def _rule_extraction(text: str, question_type: str, value_type: str, choices: list[str] | None) -> str | None:
    """The official extract_answer's rules before its GPT call; None where it would call GPT."""
    if text == "":
        return ""
    if question_type == "multi_choice" and text in choices:
        return text
    if value_type == "integer" and _python_int(text) is not None:
        return str(_python_int(text))
    if value_type == "float" and _python_float(text) is not None:
        return str(_python_float(text))
    quoted = _QUICK_ANSWER.search(text)
    return quoted.group(1) if quoted else None


def _judge_extraction(extraction: str, ground_truth: str, question_type: str, value_type: str,
                      precision: float | None, choices: list[str] | None) -> RewardResult:
    if question_type == "multi_choice":
        if len(extraction) > MAX_CHOICE_MATCH_CHARS:
            return RewardResult.failure("parse_error", extraction[:200])
        prediction = _normalise_choice(extraction.strip(), choices)
    else:
        prediction = _normalise_value(extraction, value_type, precision)
    if prediction is None:
        return RewardResult.failure("parse_error", extraction)
    return RewardResult.verdict(prediction == ground_truth, prediction)


def _normalise_choice(extraction: str, choices: list[str]) -> str:
    letters = _PARENTHESISED_LETTER.findall(extraction)
    if letters:
        extraction = letters[0].upper()
    sequential = [chr(ord("A") + index) for index in range(len(choices))]
    if extraction in sequential:
        return choices[sequential.index(extraction)]
    distances = [_levenshtein(extraction, choice) for choice in choices]
    return choices[distances.index(min(distances))]  # first of the nearest, as list.index does officially


def _normalise_value(extraction: str, value_type: str, precision: float | None) -> str | None:
    number = _python_float(extraction)
    # int() and round() raise on inf and nan, which the official code turns into a None prediction
    if value_type == "integer":
        return None if number is None or not math.isfinite(number) else str(int(number))
    if value_type == "float":
        return None if number is None or not math.isfinite(number) else str(round(number, int(precision)))
    return str(extraction)


def _python_int(text: str) -> int | None:
    """`int(text)` as Python reads it (spaces and underscores allowed), None where it raises; digit count bounded
    so a huge literal never reaches int()'s quadratic conversion."""
    if len(text) > 100:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _python_float(text: str) -> float | None:
    try:
        return float(text) if len(text) <= 100 else None
    except ValueError:
        return None


def _levenshtein(first: str, second: str) -> int:
    """Edit distance (insertions, deletions, substitutions cost 1), as python-Levenshtein's `distance`."""
    previous = list(range(len(second) + 1))
    for row, first_char in enumerate(first, start=1):
        current = [row]
        for column, second_char in enumerate(second, start=1):
            current.append(min(previous[column] + 1, current[column - 1] + 1,
                               previous[column - 1] + (first_char != second_char)))
        previous = current
    return previous[-1]
