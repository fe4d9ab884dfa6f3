"""`bbox` and `point` answers: IoU against the ground-truth box, point inside the box.

Boxes are `[x1, y1, x2, y2]`. Each item states its coordinate convention in `meta["coords"]`: `absolute` (pixels,
the default), `normalized` (0-1) or `per_mille` (0-1000, Qwen2-VL's grounding format); the prediction may use a
different one (`meta["predicted_coords"]`), converted with `meta["image_size"] = [width, height]`.
"""

from __future__ import annotations

import math
import re

from visiong1.rewards.base import AnswerParseError, GroundTruthError, RewardResult

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf(?:inity)?|nan)", re.IGNORECASE)
_SCALE = {"absolute": None, "normalized": 1.0, "per_mille": 1000.0}


def parse_numbers(text: str, count: int) -> list[float]:
    """Exactly `count` finite numbers from text like `[10, 20, 30.5, 40]` or `(0.1, 0.2)`."""
    values = [float(token) for token in _NUMBER.findall(text)]
    if len(values) != count:
        raise AnswerParseError(f"expected {count} numbers, found {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise AnswerParseError("coordinates must be finite")
    return values


def reference_answer(answer: str, answer_type: str) -> str:
    """What a perfect response boxes: the answer itself, or for a `point` item (whose answer is the target's box
    `[x1, y1, x2, y2]`) the box centre `(x, y)`; AnswerParseError when a point item's answer is not a box.

    >>> reference_answer("[14, 28, 28, 42]", "point"), reference_answer("B", "choice")
    ('(21, 35)', 'B')
    """
    if answer_type != "point":
        return answer
    x1, y1, x2, y2 = parse_numbers(answer, 4)
    return f"({(x1 + x2) / 2:g}, {(y1 + y2) / 2:g})"


def to_absolute(values: list[float], convention: str, image_size: list[float] | None) -> list[float]:
    if convention not in _SCALE:
        raise GroundTruthError(f"unknown coordinate convention {convention!r}; known: {sorted(_SCALE)}")
    scale = _SCALE[convention]
    if scale is None:
        return values
    if image_size is None:
        raise GroundTruthError(f"coords={convention!r} needs meta image_size=[width, height]")
    width, height = image_size
    return [v / scale * (width if i % 2 == 0 else height) for i, v in enumerate(values)]


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes, in [0, 1]; 0 for an inverted or empty box.

    Coordinates are rescaled by their largest magnitude first: IoU is scale-free, and this keeps areas of boxes
    near 1e308 finite.

    >>> round(iou([0, 0, 2, 2], [1, 1, 3, 3]), 6)  # 1 / (4 + 4 - 1)
    0.142857
    >>> iou([0, 0, 1, 1], [2, 2, 3, 3]), iou([0, 0, 1, 1], [0, 0, 1, 1]), iou([2, 0, 1, 1], [0, 0, 1, 1])
    (0.0, 1.0, 0.0)
    """
    scale = max(abs(v) for v in (*a, *b)) or 1.0
    a, b = [v / scale for v in a], [v / scale for v in b]
    if a[2] <= a[0] or a[3] <= a[1] or b[2] <= b[0] or b[3] <= b[1]:
        return 0.0
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return min(1.0, intersection / union) if union > 0 else 0.0


def _boxes(extracted: str, ground_truth: str, meta: dict, predicted_count: int) -> tuple[list[float], list[float]]:
    try:
        truth = parse_numbers(ground_truth, 4)
    except AnswerParseError as error:
        raise GroundTruthError(f"ground-truth box {ground_truth!r}: {error}") from None
    convention = meta.get("coords", "absolute")
    truth = to_absolute(truth, convention, meta.get("image_size"))
    predicted = parse_numbers(extracted, predicted_count)
    predicted = to_absolute(predicted, meta.get("predicted_coords", convention), meta.get("image_size"))
    return predicted, truth


def score_bbox(extracted: str, ground_truth: str, iou_threshold: float = 0.5, **meta) -> RewardResult:
    """Score = IoU in [0, 1] (the only partial credit); accuracy = IoU >= `iou_threshold`.

    Vision-G1's released code subtracts the coordinate strings (a TypeError); this parses them as numbers.

    >>> score_bbox("[0, 0, 10, 10]", "[0, 0, 10, 20]")
    RewardResult(score=0.5, reason='correct', extracted='[0, 0, 10, 10]', accuracy=1.0)
    """
    predicted, truth = _boxes(extracted, ground_truth, meta, 4)
    overlap = iou(predicted, truth)
    accurate = overlap >= iou_threshold
    return RewardResult(overlap, "correct" if accurate else "wrong", extracted, float(accurate))


def score_point(extracted: str, ground_truth: str, **meta) -> RewardResult:
    """1 when the point `(x, y)` lies inside the ground-truth box, edges included.

    >>> score_point("(10, 5)", "[0, 0, 10, 10]").reason
    'correct'
    """
    (x, y), (x1, y1, x2, y2) = _boxes(extracted, ground_truth, meta, 2)
    return RewardResult.verdict(x1 <= x <= x2 and y1 <= y <= y2, extracted)
