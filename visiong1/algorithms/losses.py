"""Policy-gradient losses over response tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipSettings:
    low: float = 0.2
    high: float = 0.28
    dual_clip: float = 10.0


def ppo_clip_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  clip: ClipSettings, token_count: int) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with DAPO clip-higher and dual clip, token-mean aggregated.

    Shapes: all inputs `[batch, response_len]` (advantages broadcast per sequence); `mask` is 1 on real response
    tokens. The sum is divided by `token_count`, the number of response tokens in the whole optimizer step, so that
    micro-batches accumulate to the token mean of the step. Returns (loss, statistics of this micro-batch).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip.low, 1.0 + clip.high)
    loss = torch.maximum(unclipped, clipped)
    # Dual clip: bound the loss of negative-advantage tokens whose ratio exploded.
    loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * clip.dual_clip), loss)
    total = (loss * mask).sum() / token_count
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        stats = {
            "clip_fraction": float(((clipped > unclipped).float() * mask).sum() / tokens),
            "approx_kl": float(((old_logprobs - logprobs) * mask).sum() / tokens),
            "ratio_mean": float((ratio * mask).sum() / tokens),
        }
    return total, stats

