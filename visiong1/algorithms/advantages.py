"""Group-relative advantages. numpy only: the coordinator computes them without importing torch."""

from __future__ import annotations

import numpy as np


def grpo_advantages(group_rewards: list[list[float]], excluded: list[list[bool]] | None = None,
                    eps: float = 1e-6) -> list[list[float | None]]:
    """GRPO: (r - mean(group)) / (std(group) + eps) per group, with the unbiased std (as verl computes it).

    Excluded samples (`excluded[g][s]`) get None and take no part in their group's mean and std. A group whose
    remaining rewards are all equal, or with fewer than two left, gets zero advantages (no signal).

    >>> [[round(a, 4) for a in row] for row in grpo_advantages([[1.0, 0.0], [1.0, 1.0]])]
    [[0.7071, -0.7071], [0.0, 0.0]]
    >>> grpo_advantages([[1.0, 0.0, 0.0]], excluded=[[False, False, True]])[0][2] is None
    True
    """
    advantages = []
    for index, rewards in enumerate(group_rewards):
        dropped = excluded[index] if excluded and excluded[index] else [False] * len(rewards)
        kept = np.asarray([r for r, out in zip(rewards, dropped) if not out], dtype=np.float64)
        mean = kept.mean() if len(kept) else 0.0
        scale = kept.std(ddof=1) + eps if len(kept) > 1 else np.inf
        advantages.append([None if out else float((r - mean) / scale) for r, out in zip(rewards, dropped)])
    return advantages

