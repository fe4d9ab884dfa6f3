"""Rule-based verifiable rewards. This is the skeleton's scorer (boxed exact match); the reward issue adds the
answer-type table (math-verify, choices, bbox IoU, ...) behind the same `score` entry point."""

from visiong1.rewards.boxed import RewardResult, extract_boxed, score

__all__ = ["RewardResult", "extract_boxed", "score"]
