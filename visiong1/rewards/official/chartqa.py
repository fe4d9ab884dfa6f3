"""ChartQA: relaxed accuracy, the metric of the ChartQA/Pix2Struct papers, quirks included.

Source: google-research/pix2struct @ 5b086ef5269a80d89fbdd37bdba263e492e83149, `pix2struct/metrics.py`
(relaxed_correctness, aggregate_metrics: the best over an item's targets), as VLMEvalKit applies it
(open-compass/VLMEvalKit @ e8e78f05f3080fe28154f2130321f17951c3be94, `vlmeval/dataset/utils/vqa_eval.py`
process_line with method='relaxed_accuracy': the prediction is stripped first).

The rule: when both prediction and target parse as Python floats (a trailing `%` divides by 100) and the target is
non-zero, correct iff |prediction - target| / |target| <= 0.05 (so year-like answers get the tolerance too: 2019 for
2020 passes, and `12` does not match `12%`); otherwise a case-insensitive exact string match (a zero target included).

Deviation: none in the rule. The prediction is the last `\\boxed{}` content, else the whole response (the official
pipelines prompt for a single word or phrase and score the whole reply).
"""

from __future__ import annotations

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import extract_boxed

MAX_RELATIVE_CHANGE = 0.05
_MAX_NUMBER_CHARS = 100  # float() on a longer string is still linear, but no chart value is that long


def score_chartqa(response: str, ground_truth: str, other_answers: list[str] | None = None, **meta) -> RewardResult:
    """Relaxed accuracy of the last box's content (else the whole response) against the ground truth, or against
    any of `other_answers` when the dataset lists several labels (the official metric takes the best target)."""
    targets = [ground_truth, *(other_answers or [])]
    if not all(target.strip() for target in targets):
        raise GroundTruthError(f"ChartQA ground truth is empty: {targets}")
    boxed = extract_boxed(response)
    prediction = (response if boxed is None else boxed).strip()
    if not prediction:
        return RewardResult.failure("no_answer", None)
    correct = any(relaxed_correctness(target, prediction) for target in targets)
    return RewardResult.verdict(correct, prediction)


def relaxed_correctness(target: str, prediction: str) -> bool:
    """pix2struct's relaxed_correctness with max_relative_change=0.05."""
    prediction_value = _to_float(prediction)
    target_value = _to_float(target)
    if prediction_value is not None and target_value:
        return abs(prediction_value - target_value) / abs(target_value) <= MAX_RELATIVE_CHANGE
    return prediction.lower() == target.lower()


def _to_float(text: str) -> float | None:
    if len(text) > _MAX_NUMBER_CHARS:
        return None
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None
