"""DAPO's overlong handling (Yu et al., 2025, arXiv 2503.14476, section 3.4) of a scored group: overlong filtering
leaves truncated responses out of the loss; the soft overlong punishment lowers the reward of a response over the
last `cache_tokens` before the length limit linearly, down to -1 at the limit."""

from __future__ import annotations

from dataclasses import replace

from visiong1.types import GroupScores, RolloutSample


def overlong_penalty(length: int, max_tokens: int, cache_tokens: int) -> float:
    """0 up to `max_tokens - cache_tokens` response tokens, then -(excess / cache_tokens), reaching -1 at
    `max_tokens` (a response cannot be longer).

    >>> [overlong_penalty(n, 16, 4) for n in (10, 12, 13, 14, 16)]
    [0.0, 0.0, -0.25, -0.5, -1.0]
    """
    return -max(0, length - (max_tokens - cache_tokens)) / cache_tokens


def apply_overlong(scores: GroupScores, samples: list[RolloutSample], rollout) -> GroupScores:
    """`scores` with `rollout.overlong` (of a RolloutConfig) applied: with `filter`, a sample cut at the length limit
    (`finish_reason == "length"`) is excluded from its group; with `punish`, every reward gains `overlong_penalty`.
    Accuracies and reasons are verdicts on the answer and stay as they are."""
    config, cache_tokens = rollout.overlong, rollout.overlong_cache_tokens()
    excluded = list(scores.excluded or [False] * len(samples))
    rewards = list(scores.rewards)
    for index, sample in enumerate(samples):
        excluded[index] |= config.filter and sample.finish_reason == "length"
        if config.punish:
            rewards[index] += overlong_penalty(len(sample.token_ids), rollout.max_new_tokens, cache_tokens)
    return replace(scores, rewards=rewards, excluded=excluded if any(excluded) else [])
