"""A user-defined scorer for tests: the same contract as the built-in ones, loaded by dotted path."""

import time

from visiong1.rewards import RewardResult


def score_palindrome(extracted: str, ground_truth: str, meta: dict) -> RewardResult:
    if extracted == "sleep":
        time.sleep(60)  # a scorer that hangs: the sandbox deadline must cut it off
    return RewardResult.verdict(extracted == extracted[::-1], extracted)
