"""Advantages and losses against values computed by hand."""

import math

import pytest
import torch

from visiong1.algorithms.advantages import grpo_advantages
from visiong1.algorithms.losses import (LossSettings, StepTotals, low_variance_kl, policy_loss,
                                       truncated_importance_weight)
from visiong1.config import LearnerConfig

SETTINGS = LossSettings(clip_low=0.2, clip_high=0.28, dual_clip=3.0)


def test_grpo_advantages_are_standardised_per_group():
    advantages = grpo_advantages([[1, 0, 0, 1], [0, 0, 0, 0]])
    std = torch.tensor([1.0, 0, 0, 1]).std().item()  # unbiased, 0.5774
    assert advantages[0] == pytest.approx([0.5 / (std + 1e-6), -0.5 / (std + 1e-6), -0.5 / (std + 1e-6),
                                           0.5 / (std + 1e-6)])
    assert advantages[1] == [0.0, 0.0, 0.0, 0.0]  # all-equal rewards: no signal


def test_std_free_variant_only_centres():
    assert grpo_advantages([[1, 0, 0, 0]], scale_by_std=False) == [[0.75, -0.25, -0.25, -0.25]]


def test_excluded_members_leave_the_statistics_and_small_groups_are_dropped():
    advantages = grpo_advantages([[1, 0, 5], [1, 0, 0]], excluded=[[False, False, True], [True, True, False]])
    assert advantages[0][2] is None and advantages[0][0] == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-6))
    assert advantages[1] == [None, None, None]


def one_token(ratios: list[float], advantage: float, settings: LossSettings = SETTINGS):
    logprobs = torch.log(torch.tensor([ratios]))
    mask = torch.ones_like(logprobs)
    return policy_loss(logprobs, torch.zeros_like(logprobs), torch.tensor([[advantage]]), mask, settings,
                       StepTotals(tokens=len(ratios), sequences=1))


def test_clip_high_for_positive_advantages():
    loss, stats = one_token([1.5, 0.5, 1.1], advantage=1.0)
    # min(r, clip(r)) per token: 1.28 (clipped high), 0.5 (below the low clip counts unclipped), 1.1
    assert loss.item() == pytest.approx(-(1.28 + 0.5 + 1.1) / 3)
    assert stats["clip_fraction_high"] == pytest.approx(1 / 3) and stats["clip_fraction_low"] == 0.0


def test_clip_low_and_dual_clip_for_negative_advantages():
    loss, stats = one_token([0.5, 1.1, 5.0], advantage=-1.0)
    # max(r, clip(r)): 0.8 (clipped low), 1.1, 5.0 -> dual clip caps it at c = 3
    assert loss.item() == pytest.approx((0.8 + 1.1 + 3.0) / 3)
    assert stats["clip_fraction_low"] == pytest.approx(1 / 3) and stats["clip_fraction_high"] == 0.0


def test_masks_and_aggregations():
    logprobs = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    advantages = torch.tensor([[1.0], [2.0]])
    token_mean, _ = policy_loss(logprobs, torch.zeros(2, 4), advantages, mask, SETTINGS, StepTotals(6, 2))
    assert token_mean.item() == pytest.approx(-(1 * 2 + 2 * 4) / 6)
    seq_mean, _ = policy_loss(logprobs, torch.zeros(2, 4), advantages, mask,
                              LossSettings(aggregation="seq-mean"), StepTotals(6, 2))
    assert seq_mean.item() == pytest.approx(-(1 + 2) / 2)
    token_mean.backward()
    assert logprobs.grad[0, 2:].abs().sum() == 0  # masked tokens get no gradient


def test_kl_and_entropy_terms():
    assert low_variance_kl(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0
    assert low_variance_kl(torch.tensor([math.log(0.5)]), torch.tensor([0.0])).item() == pytest.approx(
        math.exp(math.log(2)) - math.log(2) - 1)
    logprobs = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    settings = LossSettings(kl_coef=0.5, entropy_coef=0.1)
    loss, stats = policy_loss(logprobs, logprobs, torch.zeros(1, 1), mask, settings, StepTotals(2, 1),
                              ref_logprobs=torch.full((1, 2), math.log(0.5)), entropy=torch.full((1, 2), 2.0))
    kl = 0.5 - math.log(0.5) - 1
    assert loss.item() == pytest.approx(0.5 * kl - 0.1 * 2.0) and stats["kl_ref"] == pytest.approx(kl)
    with pytest.raises(ValueError, match="reference logprobs"):
        policy_loss(logprobs, logprobs, torch.zeros(1, 1), mask, settings, StepTotals(2, 1))


def test_truncated_importance_weight_caps_the_learner_to_engine_ratio_and_weighs_the_loss():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.9]]))
    rollout = torch.log(torch.tensor([[0.5, 0.1, 0.3]]))
    assert truncated_importance_weight(old, rollout, 2.0)[0].tolist() == pytest.approx([1.0, 2.0, 2.0])
    mask, advantages = torch.ones(1, 3), torch.tensor([[1.0]])
    totals = StepTotals(tokens=3, sequences=1)
    plain, _ = policy_loss(old, old, advantages, mask, LossSettings(), totals, rollout_logprobs=rollout)
    capped, stats = policy_loss(old, old, advantages, mask, LossSettings(importance_cap=2.0), totals,
                                rollout_logprobs=rollout)
    assert float(plain) == pytest.approx(-1.0) and float(capped) == pytest.approx(-5 / 3)
    assert stats["importance_weight_mean"] == pytest.approx(5 / 3)
    assert stats["importance_capped_fraction"] == pytest.approx(2 / 3)


def test_importance_cap_is_refused_without_recomputed_old_logprobs():
    with pytest.raises(ValueError, match="old_logprobs=recompute"):
        LearnerConfig(importance_cap=2.0, old_logprobs="rollout")
    assert LearnerConfig(importance_cap=2.0, old_logprobs="recompute").importance_cap == 2.0
