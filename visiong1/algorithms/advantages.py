"""Group-relative advantages. numpy only: the coordinator computes them without importing torch."""

from __future__ import annotations

import numpy as np


def grpo_advantages(group_rewards: list[list[float]], excluded: list[list[bool]] | None = None,
                    eps: float = 1e-6, scale_by_std: bool = True) -> list[list[float | None]]:
    """GRPO: (r - mean(group)) / (std(group) + eps) per group, with the unbiased std (as verl computes it);
    `scale_by_std=False` is the std-free variant (r - mean(group)), which does not up-weight near-uniform groups.

    Excluded samples (`excluded[g][s]`) get None and take no part in their group's mean and std; a group left with
    fewer than two members is dropped whole (all None). A group whose rewards are all equal gets zeros.

    >>> [[round(a, 4) for a in row] for row in grpo_advantages([[1.0, 0.0], [1.0, 1.0]])]
    [[0.7071, -0.7071], [0.0, 0.0]]
    >>> grpo_advantages([[1.0, 0.0, 0.0]], excluded=[[False, False, True]])[0][2] is None
    True
    >>> grpo_advantages([[1.0, 0.0]], excluded=[[False, True]])
    [[None, None]]
    """
    advantages = []
    for index, rewards in enumerate(group_rewards):
        dropped = excluded[index] if excluded and excluded[index] else [False] * len(rewards)
        kept = np.asarray([r for r, out in zip(rewards, dropped) if not out], dtype=np.float64)
        if len(kept) < 2:
            advantages.append([None] * len(rewards))
            continue
        scale = kept.std(ddof=1) + eps if scale_by_std else 1.0
        advantages.append([None if out else float((r - kept.mean()) / scale) for r, out in zip(rewards, dropped)])
    return advantages

