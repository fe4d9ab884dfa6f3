"""Cheap structural checks that reject answer bombs in microseconds, before any symbolic work.

They bound what the symbolic path is asked to do; the killable sandbox (sandbox.py) remains the real bound for
whatever slips through. Thresholds are far above what real answers need (a boxed answer is rarely 100 characters).
"""

from __future__ import annotations

import math
import re

from visiong1.rewards.base import AnswerParseError, ResourceLimitError

MAX_ANSWER_CHARS = 2_000
MAX_NESTING = 40
MAX_RESULT_DIGITS = 10_000
MAX_FACTORIAL_ARGUMENT = 1_000
# Python-only syntax has no place in a math answer; refusing it means nothing downstream ever sees a payload.
_CODE_MARKERS = re.compile(r"__|\bimport\b|\blambda\b|\beval\b|\bexec\b|[\"'`;@]|\bos\.|\bsys\.")
_POWER = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*(?:\{\s*)?(\d+(?:\.\d+)?)")
_FACTORIAL = re.compile(r"(\d+|\}|\))\s*!")


def check_answer(answer: str) -> None:
    """Raise ResourceLimitError for bombs and AnswerParseError for code; return None for answers worth judging."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise ResourceLimitError(f"answer of {len(answer)} characters exceeds {MAX_ANSWER_CHARS}")
    if _CODE_MARKERS.search(answer):
        raise AnswerParseError("answer contains program syntax")
    depth = _max_nesting(answer)
    if depth > MAX_NESTING:
        raise ResourceLimitError(f"nesting depth {depth} exceeds {MAX_NESTING}")
    _check_powers(answer)
    _check_factorials(answer)


def _max_nesting(answer: str) -> int:
    depth = deepest = 0
    for char in answer:
        if char in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")}]":
            depth -= 1
    return deepest


def _check_powers(answer: str) -> None:
    """Refuse numeric towers (a power inside a numeric exponent) and powers whose value has too many digits.
    Symbolic exponents (`e^{x^2}`) are left alone: nothing evaluates them to a number."""
    for match in re.finditer(r"\^\s*\{", answer):
        exponent = _braced(answer, match.end() - 1)
        if ("^" in exponent or "!" in exponent) and not re.search(r"[A-Za-z]", exponent):
            raise ResourceLimitError(f"power tower in exponent {{{exponent[:40]}}}")
    for base, exponent in _POWER.findall(answer):
        base_value, exponent_value = float(base), float(exponent)
        if base_value > 1 and exponent_value * math.log10(base_value) > MAX_RESULT_DIGITS:
            raise ResourceLimitError(f"{base}^{exponent} has more than {MAX_RESULT_DIGITS} digits")


def _check_factorials(answer: str) -> None:
    for match in _FACTORIAL.finditer(answer):
        operand = match.group(1)
        if operand.isdigit():
            if int(operand) > MAX_FACTORIAL_ARGUMENT:
                raise ResourceLimitError(f"factorial of {operand}")
        elif re.search(r"\^|\d{4,}", answer[: match.start()]):
            raise ResourceLimitError("factorial of a large expression")


def _braced(text: str, open_index: int) -> str:
    """Text inside the braces that open at `open_index` (to the end if they never close)."""
    depth = 0
    for position in range(open_index, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[open_index + 1 : position]
    return text[open_index + 1 :]
