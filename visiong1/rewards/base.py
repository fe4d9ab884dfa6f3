"""The result every scorer returns, and the error a scorer raises for answers it cannot read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Reason = Literal["correct", "wrong", "no_answer", "parse_error", "timeout", "resource_limit"]
REASONS: tuple[Reason, ...] = ("correct", "wrong", "no_answer", "parse_error", "timeout", "resource_limit")


@dataclass(frozen=True)
class RewardResult:
    """`score` in [0, 1] (continuous only for bbox); `accuracy` is the binary verdict that pass rates and group
    filters use; `extracted` is the answer text that was judged (None when none was found)."""

    score: float
    reason: Reason
    extracted: str | None
    accuracy: float

    @classmethod
    def verdict(cls, correct: bool, extracted: str) -> "RewardResult":
        return cls(float(correct), "correct" if correct else "wrong", extracted, float(correct))

    @classmethod
    def failure(cls, reason: Reason, extracted: str | None) -> "RewardResult":
        return cls(0.0, reason, extracted, 0.0)


class AnswerParseError(ValueError):
    """The extracted answer is malformed for its type (scored `parse_error`, never raised out of `score`)."""


class ResourceLimitError(ValueError):
    """The answer is structurally too costly to judge (scored `resource_limit`)."""


class GroundTruthError(ValueError):
    """The item's ground truth is unusable for its answer type: a data error, raised to the caller."""
