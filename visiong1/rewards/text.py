"""`text` and `count` answers: normalised string equality, integers with number words."""

from __future__ import annotations

import re
import string

from visiong1.rewards.base import GroundTruthError, RewardResult

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans(string.punctuation, " " * len(string.punctuation))
_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_INTEGER = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?!\d)|[-+]?\d+(?:\.0+)?(?![\d.])")


def normalise_text(answer: str) -> str:
    """Case-folded, punctuation to spaces, articles dropped, whitespace collapsed.

    >>> normalise_text("  The Red  Square. ")
    'red square'
    """
    folded = answer.casefold().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", folded).split())


def score_text(extracted: str, ground_truth: str, **meta) -> RewardResult:
    """Normalised equality (case, punctuation, articles, whitespace).

    >>> score_text("the Eiffel tower!", "Eiffel Tower").reason
    'correct'
    """
    return RewardResult.verdict(normalise_text(extracted) == normalise_text(ground_truth), extracted)


def word_number(words: str) -> int | None:
    """'twenty-one' -> 21, 'seven' -> 7, 'one hundred' -> 100; None if the words are not a number under 1000."""
    total = 0
    for word in words.replace("-", " ").replace(" and ", " ").split():
        if word in _UNITS:
            total += _UNITS[word]
        elif word in _TENS:
            total += _TENS[word]
        elif word == "hundred" and 0 < total < 10:
            total *= 100
        else:
            return None
    return total if words.strip() else None


def as_count(answer: str) -> int | None:
    """The one integer an answer states (digits or words, an optional trailing noun), or None."""
    folded = answer.casefold().strip().rstrip(".")
    digits = _INTEGER.findall(folded)
    if len(digits) == 1 and not re.search(r"\d", _INTEGER.sub("", folded, count=1)):
        return int(float(digits[0].replace(",", "")))
    if digits:
        return None
    words = folded.split()
    for length in range(len(words), 0, -1):  # "three squares": longest number-word prefix
        value = word_number(" ".join(words[:length]))
        if value is not None:
            return value
    return None


def score_count(extracted: str, ground_truth: str, **meta) -> RewardResult:
    """The one integer the answer states equals the ground truth.

    >>> [score_count(a, "3").reason for a in ["3", "three", "3 squares", "3.0", "4", "3 or 4"]]
    ['correct', 'correct', 'correct', 'correct', 'wrong', 'wrong']
    """
    truth = as_count(ground_truth)
    if truth is None:
        raise GroundTruthError(f"count ground truth {ground_truth!r} is not an integer")
    return RewardResult.verdict(as_count(extracted) == truth, extracted)
