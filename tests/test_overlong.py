"""DAPO's overlong filtering and soft punishment on hand-made groups, and their configuration."""

import pytest

from actors.selection import trainable_accuracies
from visiong1.algorithms.advantages import grpo_advantages
from visiong1.algorithms.overlong import apply_overlong, overlong_penalty
from visiong1.config import ConfigError, load_config
from visiong1.selection.difficulty import in_band
from visiong1.types import GroupScores, RolloutSample


def samples(*shapes: tuple[int, str]) -> list[RolloutSample]:
    return [RolloutSample("p", [1], [5] * length, [-0.1] * length, "", 0, finish) for length, finish in shapes]


def rollout(*overrides: str):
    return load_config(None, ["rollout.max_new_tokens=20", *overrides]).rollout


SCORES = GroupScores("p", [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], ["correct", "correct", "wrong", "wrong"], 0)
GROUP = samples((20, "length"), (18, "stop"), (4, "stop"), (20, "length"))


def test_penalty_is_zero_before_the_cache_and_linear_to_minus_one_at_the_limit():
    assert [overlong_penalty(n, 20, 4) for n in (0, 16, 17, 18, 19, 20)] == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0]


def test_filtering_excludes_truncated_samples_from_the_group_and_its_advantages():
    filtered = apply_overlong(SCORES, GROUP, rollout("rollout.overlong.filter=true"))
    assert filtered.excluded == [True, False, False, True] and filtered.rewards == SCORES.rewards
    advantages = grpo_advantages([filtered.rewards], [filtered.excluded])[0]
    assert advantages[0] is None and advantages[3] is None and advantages[1] > 0 > advantages[2]


def test_punishment_lowers_long_responses_rewards_and_leaves_accuracies():
    punished = apply_overlong(SCORES, GROUP, rollout("rollout.overlong.punish=true", "rollout.overlong.cache_tokens=4"))
    assert punished.rewards == pytest.approx([0.0, 0.5, 0.0, -1.0])
    assert punished.accuracies == SCORES.accuracies and punished.reasons == SCORES.reasons
    assert punished.excluded == []


def test_both_together_and_an_earlier_exclusion_is_kept():
    scores = GroupScores("p", [1.0, 1.0, 0.0, 0.0], [1.0] * 2 + [0.0] * 2, ["correct"] * 2 + ["timeout"] * 2, 0,
                         [False, False, True, False])
    both = apply_overlong(scores, GROUP, rollout("rollout.overlong.filter=true", "rollout.overlong.punish=true"))
    assert both.excluded == [True, False, True, True]
    assert both.rewards == pytest.approx([0.0, 0.5, 0.0, -1.0])  # the default stretch: 20 // 5 = 4 tokens


def test_a_punished_stretch_longer_than_the_limit_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="overlong.cache_tokens"):
        rollout("rollout.overlong.cache_tokens=21")


def test_a_group_left_uniform_by_filtering_is_out_of_the_dynamic_sampling_band():
    """Three right answers and a truncated wrong one: in band before filtering, uniform (no signal) after."""
    scores = apply_overlong(GroupScores("p", [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], ["correct"] * 4, 0),
                            samples((4, "stop"), (4, "stop"), (4, "stop"), (20, "length")),
                            rollout("rollout.overlong.filter=true"))
    band = load_config(None, []).selection.band("s", "d")
    assert in_band(scores.accuracies, band) and trainable_accuracies(scores) == [1.0, 1.0, 1.0]
    assert not in_band(trainable_accuracies(scores), band)
