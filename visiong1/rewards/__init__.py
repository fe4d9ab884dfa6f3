"""Rule-based verifiable rewards: one entry point, one scorer per answer type.

>>> score(r"The squares number \\boxed{3}.", "3", "count")
RewardResult(score=1.0, reason='correct', extracted='3', accuracy=1.0)
>>> score("I think it is B", "B", "choice").reason
'no_answer'
"""

from __future__ import annotations

import threading

from visiong1.rewards.base import (REASONS, AnswerParseError, GroundTruthError, Reason, ResourceLimitError,
                                   RewardResult)
from visiong1.rewards.choice import score_choice
from visiong1.rewards.extract import Fallback, as_text, extract_answer, extract_boxed
from visiong1.rewards.grounding import score_bbox, score_point
from visiong1.rewards.guard import MAX_ANSWER_CHARS, check_answer
from visiong1.rewards.math import SYMBOLIC_FUNCTION, score_math
from visiong1.rewards.normalise import normalise_answer, unit_mismatch, without_unit_of
from visiong1.rewards.official import OFFICIAL_SCORERS
from visiong1.rewards.sandbox import SandboxOutcome, SymbolicSandbox
from visiong1.rewards.text import score_count, score_text

IN_PROCESS_SCORERS = {"choice": score_choice, "text": score_text, "count": score_count, "bbox": score_bbox,
                      "point": score_point}
ANSWER_TYPES = ("math", *IN_PROCESS_SCORERS, *OFFICIAL_SCORERS)
MAX_RESPONSE_CHARS = 20_000  # official scorers read the whole response: only its tail, where answers end up

_default_sandbox: SymbolicSandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> SymbolicSandbox:
    """The process-wide sandbox (one worker, 2 s deadline), started on first use."""
    global _default_sandbox
    with _default_lock:
        if _default_sandbox is None:
            _default_sandbox = SymbolicSandbox(workers=1, deadline_s=2.0, preload=(SYMBOLIC_FUNCTION,))
        return _default_sandbox


def score(response: str | bytes, ground_truth: str, answer_type: str, *, fallbacks: tuple[Fallback, ...] = (),
          sandbox: SymbolicSandbox | None = None, custom_scorers: dict[str, str] | None = None, **meta) -> RewardResult:
    """Judge one response. Never raises for anything in `response`: unreadable answers become `parse_error`,
    bombs `resource_limit` or `timeout`. Raises ValueError for an unknown answer type and GroundTruthError for a
    ground truth its type cannot use (data errors belong to the caller).

    Benchmark answer types (`visiong1.rewards.official`) get the response's last MAX_RESPONSE_CHARS characters and
    extract the answer by their benchmark's official rule; every other type judges the last `\\boxed{}` answer.

    `custom_scorers` maps extra answer types to `module:function` scorers with the built-in contract
    `(extracted, ground_truth, **meta) -> RewardResult`; they run in the sandbox like the symbolic math path.
    """
    custom_scorers = custom_scorers or {}
    if answer_type not in ANSWER_TYPES and answer_type not in custom_scorers:
        raise ValueError(f"unknown answer type {answer_type!r}; known: {sorted({*ANSWER_TYPES, *custom_scorers})}")
    if answer_type in OFFICIAL_SCORERS:
        return OFFICIAL_SCORERS[answer_type](as_text(response)[-MAX_RESPONSE_CHARS:], ground_truth, **meta)
    extracted = extract_answer(as_text(response), fallbacks)
    if extracted is None:
        return RewardResult.failure("no_answer", None)
    if len(extracted) > MAX_ANSWER_CHARS:
        return RewardResult.failure("resource_limit", extracted[:200])
    try:
        if answer_type in custom_scorers:
            return _score_in_sandbox(custom_scorers[answer_type], extracted, ground_truth, meta,
                                     sandbox or default_sandbox())
        if answer_type in ("math", "text") and unit_mismatch(extracted, ground_truth):
            return RewardResult.verdict(False, extracted)
        extracted, ground_truth = _normalised(extracted, ground_truth, answer_type)
        if answer_type == "math":
            return score_math(extracted, ground_truth, sandbox or default_sandbox(), **meta)
        return IN_PROCESS_SCORERS[answer_type](extracted, ground_truth, **meta)
    except ResourceLimitError:
        return RewardResult.failure("resource_limit", extracted)
    except GroundTruthError:
        raise
    except AnswerParseError:
        return RewardResult.failure("parse_error", extracted)


def _normalised(extracted: str, ground_truth: str, answer_type: str) -> tuple[str, str]:
    """Both sides through the same normalisation; math and text answers may give or omit the ground truth's unit."""
    if answer_type in ("math", "text"):
        return without_unit_of(extracted, ground_truth)
    return normalise_answer(extracted), normalise_answer(ground_truth)


def _score_in_sandbox(function: str, extracted: str, ground_truth: str, meta: dict,
                      sandbox: SymbolicSandbox) -> RewardResult:
    check_answer(extracted)
    outcome = sandbox.call(function, extracted, ground_truth, meta)
    if outcome.reason is not None:
        return RewardResult.failure(outcome.reason, extracted)
    result = RewardResult(**outcome.value)
    if result.reason not in REASONS or not 0.0 <= result.score <= 1.0:
        raise ValueError(f"custom scorer {function} broke the contract: {result}")
    return result


__all__ = ["ANSWER_TYPES", "AnswerParseError", "GroundTruthError", "Reason", "REASONS", "ResourceLimitError",
           "RewardResult", "SandboxOutcome", "SymbolicSandbox", "default_sandbox", "extract_answer", "extract_boxed",
           "score"]
