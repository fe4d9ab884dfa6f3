"""Last-`\\boxed{}` extraction and exact-match scoring (the paper's string rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Reason = Literal["correct", "wrong", "no_answer", "parse_error", "timeout", "resource_limit"]
_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_TEXT_WRAPPER = re.compile(r"\\text\{([^{}]*)\}")
EXACT_MATCH_TYPES = frozenset({"count", "text", "choice"})


@dataclass(frozen=True)
class RewardResult:
    """`score` in [0, 1]; `accuracy` is the binary verdict that pass rates use; `extracted` is what was compared."""

    score: float
    reason: Reason
    extracted: str | None
    accuracy: float


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}`, nested braces kept, `\\text{}` unwrapped.

    >>> extract_boxed("so \\\\boxed{1} then \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed("no box") is None
    True
    """
    openings = [(text.rfind(opener), opener) for opener in _BOX_OPENERS]
    found, opener = max(openings)
    if found < 0:
        return None
    start = found + len(opener)
    depth = 1
    for position in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return _TEXT_WRAPPER.sub(r"\1", text[start:position]).strip()
    return None  # unbalanced braces: the box never closed


def _normalise(answer: str) -> str:
    return " ".join(answer.casefold().split()).rstrip(".")


def score(response: str, ground_truth: str, answer_type: str, **meta) -> RewardResult:
    """Binary reward: 1 when the last boxed answer equals the ground truth after case/space normalisation.

    >>> score("I count \\\\boxed{3}", "3", "count").reason
    'correct'
    >>> score("3", "3", "count").reason
    'no_answer'
    """
    if answer_type not in EXACT_MATCH_TYPES:
        raise ValueError(f"answer type {answer_type!r} has no scorer yet; known: {sorted(EXACT_MATCH_TYPES)}")
    extracted = extract_boxed(response)
    if extracted is None:
        return RewardResult(0.0, "no_answer", None, 0.0)
    correct = _normalise(extracted) == _normalise(ground_truth)
    return RewardResult(float(correct), "correct" if correct else "wrong", extracted, float(correct))
