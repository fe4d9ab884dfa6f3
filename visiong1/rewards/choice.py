"""`choice` answers: option letters in the forms models write, or the option's text when the choices are known."""

from __future__ import annotations

import re

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.text import normalise_text

_LETTER_FORMS = [
    re.compile(r"^\(?([a-z])\)?[.:)]?$", re.IGNORECASE),                                 # B  (B)  B.  b  B)
    re.compile(r"^(?:option|answer|choice)\s*:?\s*\(?([a-z])\)?[.:)]?$", re.IGNORECASE),  # Option B, Answer: (B)
    re.compile(r"^\(?([A-Z])\)?[.:)]\s+\S.*$"),                                           # B. forty-two, (B) text
    re.compile(r"^\(([a-z])\)\s*\S.*$", re.IGNORECASE),                                   # (b)text
]
_SEVERAL = re.compile(r"^\(?[A-Z]\)?(?:\s*(?:,|and|or|&|/)?\s*\(?[A-Z]\)?)+\.?$")


def letter_of(answer: str, choices: list[str] | None = None) -> str | None:
    """The single option letter an answer names, or None (no option, or several).

    >>> [letter_of(a) for a in ["(B)", "B.", "Option B", "b", "B. 42", "A, C", "AC"]]
    ['B', 'B', 'B', 'B', 'B', None, None]
    >>> letter_of("forty two", choices=["seven", "Forty-two"])
    'B'
    """
    answer = answer.strip()
    if _SEVERAL.match(answer) or re.fullmatch(r"[A-Z]{2,}", answer):
        return None
    for form in _LETTER_FORMS:
        match = form.match(answer)
        if match:
            return match.group(1).upper()
    if choices:
        wanted = normalise_text(answer)
        named = [chr(ord("A") + i) for i, text in enumerate(choices) if normalise_text(text) == wanted]
        return named[0] if len(named) == 1 else None
    return None


def score_choice(extracted: str, ground_truth: str, choices: list[str] | None = None, **meta) -> RewardResult:
    """Correct when the answer names exactly the ground-truth option; naming several options earns nothing.
    The ground truth is a letter, or the option's text when `choices` are given.

    >>> score_choice("Option c", "C").reason
    'correct'
    >>> score_choice("A or C", "C").reason
    'wrong'
    """
    truth = letter_of(ground_truth, choices)
    if truth is None:
        raise GroundTruthError(f"ground truth {ground_truth!r} names no single option (choices={choices})")
    return RewardResult.verdict(letter_of(extracted, choices) == truth, extracted)
