"""Policy-gradient losses over response tokens.

Shapes: every per-token tensor is `[batch, length]` in logprob space (position t scores token t + 1);
`mask` is 1 on response tokens and 0 on prompt and padding; advantages are `[batch, 1]` (one per sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["token-mean", "seq-mean"]


@dataclass(frozen=True)
class LossSettings:
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float = 10.0
    aggregation: Aggregation = "token-mean"
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    importance_cap: float | None = None


@dataclass(frozen=True)
class StepTotals:
    """Normalisers of the whole optimizer step, so micro-batches (and ranks) sum to the step's mean."""

    tokens: int
    sequences: int


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: Aggregation, totals: StepTotals) -> torch.Tensor:
    """Sum of this micro-batch's share of the step mean: over all tokens (`token-mean`), or of per-sequence token
    means over all sequences (`seq-mean`)."""
    if mode == "token-mean":
        return (values * mask).sum() / totals.tokens
    per_sequence = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_sequence.sum() / totals.sequences


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """Per-token PPO loss with clip-higher (ratio in [1 - low, 1 + high]) and dual clip for negative advantages."""
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - settings.clip_low, 1.0 + settings.clip_high)
    loss = torch.maximum(unclipped, clipped)
    # Dual clip bounds the loss of negative-advantage tokens whose ratio exploded (at -A * c).
    return torch.where(advantages < 0, torch.minimum(loss, -advantages * settings.dual_clip), loss)


def truncated_importance_weight(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                                cap: float) -> torch.Tensor:
    """Per-token min(pi_old / pi_rollout, cap), without gradient: corrects for the rollout engine sampling from a
    slightly different distribution than the learner's (truncated importance sampling, Ionides 2008; as verl applies
    it to engine/learner mismatch)."""
    return torch.exp(old_logprobs - rollout_logprobs).clamp(max=cap).detach()


def low_variance_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(policy || reference) per token: exp(r - p) - (r - p) - 1 >= 0."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                settings: LossSettings, totals: StepTotals, ref_logprobs: torch.Tensor | None = None,
                entropy: torch.Tensor | None = None,
                rollout_logprobs: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss, plus `kl_coef` x KL to the reference and minus `entropy_coef` x entropy when given; with
    `settings.importance_cap` and the engine's `rollout_logprobs`, each token's surrogate is weighted by the
    truncated importance weight of the learner's old policy against the engine's.

    Returns (this micro-batch's contribution to the step loss, its statistics as token means).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = clipped_surrogate(ratio, advantages, settings)
    stats: dict[str, float] = {}
    if settings.importance_cap is not None and rollout_logprobs is not None:
        weight = truncated_importance_weight(old_logprobs, rollout_logprobs, settings.importance_cap)
        surrogate = surrogate * weight
        stats["importance_weight_mean"] = _token_mean(weight, mask)
        stats["importance_capped_fraction"] = _token_mean((weight >= settings.importance_cap).float(), mask)
    loss = aggregate(surrogate, mask, settings.aggregation, totals)
    if settings.kl_coef:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs reference logprobs")
        kl = low_variance_kl(logprobs, ref_logprobs)
        loss = loss + settings.kl_coef * aggregate(kl, mask, settings.aggregation, totals)
        stats["kl_ref"] = _token_mean(kl, mask)
    if settings.entropy_coef:
        if entropy is None:
            raise ValueError("entropy_coef > 0 needs per-token entropy")
        loss = loss - settings.entropy_coef * aggregate(entropy, mask, settings.aggregation, totals)
    with torch.no_grad():
        stats.update({
            "clip_fraction_low": _token_mean(((ratio < 1 - settings.clip_low) & (advantages < 0)).float(), mask),
            "clip_fraction_high": _token_mean(((ratio > 1 + settings.clip_high) & (advantages > 0)).float(), mask),
            "approx_kl": _token_mean(old_logprobs - logprobs, mask),
            "ratio_mean": _token_mean(ratio, mask),
        })
        if entropy is not None:
            stats["entropy"] = _token_mean(entropy, mask)
    return loss, stats


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values.detach() * mask).sum() / mask.sum().clamp(min=1))
