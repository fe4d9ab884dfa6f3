"""Group-relative advantages. numpy only: the coordinator computes them without importing torch."""

from __future__ import annotations

import numpy as np


def grpo_advantages(group_rewards: list[list[float]], eps: float = 1e-6) -> list[list[float]]:
    """GRPO: (r - mean(group)) / (std(group) + eps) per group, with the unbiased std (as verl computes it).

    A group whose rewards are all equal gets all-zero advantages (it carries no signal).

    >>> [[round(a, 4) for a in row] for row in grpo_advantages([[1.0, 0.0], [1.0, 1.0]])]
    [[0.7071, -0.7071], [0.0, 0.0]]
    """
    advantages = []
    for rewards in group_rewards:
        values = np.asarray(rewards, dtype=np.float64)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        advantages.append(((values - values.mean()) / (std + eps)).tolist())
    return advantages

