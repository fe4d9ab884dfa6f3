import pytest
import torch

from visiong1.algorithms.advantages import grpo_advantages
from visiong1.algorithms.losses import ClipSettings, ppo_clip_loss


def test_grpo_advantages_are_standardised_per_group():
    advantages = grpo_advantages([[1, 0, 0, 1], [0, 0, 0, 0]])
    assert advantages[1] == [0.0, 0.0, 0.0, 0.0]
    assert sum(advantages[0]) == pytest.approx(0.0)
    assert advantages[0][0] == pytest.approx(0.5 / (torch.tensor([1.0, 0, 0, 1]).std().item() + 1e-6))


def test_ppo_clip_loss_clips_higher_and_dual_clips():
    clip = ClipSettings(low=0.2, high=0.28, dual_clip=3.0)
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 5.0]]))  # ratios 1.5, 0.5, 5.0
    mask = torch.ones(1, 3)
    positive, _ = ppo_clip_loss(new, old, torch.ones(1, 1), mask, clip, token_count=3)
    # A > 0: min(r, clip(r)) per token -> 1.28, 0.5, 1.28
    assert positive.item() == pytest.approx(-(1.28 + 0.5 + 1.28) / 3)
    negative, stats = ppo_clip_loss(new, old, -torch.ones(1, 1), mask, clip, token_count=3)
    # A < 0: max(r, clip(r)) -> 1.5, 0.8, 5.0, then dual clip caps 5.0 at c=3
    assert negative.item() == pytest.approx((1.5 + 0.8 + 3.0) / 3)
    assert 0 < stats["clip_fraction"] <= 1


def test_ppo_clip_loss_is_a_token_mean_over_the_step():
    clip = ClipSettings()
    logprobs = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    loss, _ = ppo_clip_loss(logprobs, torch.zeros(2, 4), torch.ones(2, 1), mask, clip, token_count=6)
    assert loss.item() == pytest.approx(-1.0)
