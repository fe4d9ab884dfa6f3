"""Pass-rate selection: band boundaries, per-source/per-domain overrides, the difficulty store, and the dynamic
sampler's control logic (refill, trim, give up)."""

import pytest

from actors.selection import (DynamicSamplingExhausted, SampledStep, accuracy_histogram, check_trainable,
                              dynamic_metrics, dynamic_sample)
from visiong1.config import ConfigError, PassRateBand, load_config
from visiong1.data.synthetic import generate_pool
from visiong1.selection.difficulty import DifficultyStore, decide, difficulty_record, pass_rate
from visiong1.types import GroupScores


@pytest.mark.parametrize("rate, expected", [(0.0, (False, "too_hard")), (0.2, (False, "too_hard")),
                                            (0.2000001, (True, "in_band")), (0.5, (True, "in_band")),
                                            (0.7999999, (True, "in_band")), (0.8, (False, "too_easy")),
                                            (1.0, (False, "too_easy"))])
def test_band_boundaries_are_exclusive(rate, expected):
    assert decide(rate, PassRateBand(low=0.2, high=0.8)) == expected


def test_pass_rate_counts_binary_accuracy_not_shaped_reward():
    assert pass_rate([1.0, 0.0, 1.0, 1.0]) == 0.75
    with pytest.raises(ValueError):
        pass_rate([])


def test_source_band_beats_domain_band_beats_default():
    selection = load_config(None, ["selection.domain_bands={gui: {low: 0.0, high: 0.5}}",
                                   "selection.source_bands={synthetic/gui: {low: 0.5, high: 1.0}}"]).selection
    assert selection.band("synthetic/gui", "gui") == PassRateBand(low=0.5, high=1.0)
    assert selection.band("mine/gui", "gui") == PassRateBand(low=0.0, high=0.5)
    assert selection.band("mine/x", "spatial") == PassRateBand(low=0.2, high=0.8)


def test_overrides_change_the_decision_recorded_for_an_item():
    selection = load_config(None, ["selection.domain_bands={counting: {low: 0.7, high: 1.0}}"]).selection
    counting, spatial = generate_pool(["counting", "spatial"], 2)
    accuracies = [1.0, 1.0, 1.0, 0.0, 0.0]  # pass rate 0.6
    assert difficulty_record(0, counting, accuracies, accuracies, selection.band(counting.source, "counting"))["reason"] == "too_hard"
    assert difficulty_record(0, spatial, accuracies, accuracies, selection.band(spatial.source, "spatial"))["keep"]


def test_an_inverted_band_is_refused_with_its_path():
    with pytest.raises(ConfigError, match="selection.domain_bands.gui"):
        load_config(None, ["selection.domain_bands={gui: {low: 0.8, high: 0.2}}"])


def test_difficulty_store_keeps_whole_chunks_only(tmp_path):
    store = DifficultyStore(tmp_path)
    items = generate_pool(["counting"], 4)
    band = PassRateBand(low=0.2, high=0.8)
    store.append([difficulty_record(0, item, [1.0, 0.0], [1.0, 0.0], band) for item in items[:2]])
    (tmp_path / "chunk-000001.partial").write_bytes(b"half a parquet file")  # what a crash mid-write leaves
    assert store.scored_ids() == {items[0].id, items[1].id}
    store.append([difficulty_record(0, items[2], [0.0, 0.0], [0.0, 0.0], band)])
    rows = store.read().to_pylist()
    assert [row["id"] for row in rows] == [item.id for item in items[:3]]
    assert [row["reason"] for row in rows] == ["in_band", "in_band", "too_hard"]


class ScriptedRollout:
    """Stands in for rollout + reward groups in a unit test of the sampler's control logic: each generation
    batch answers with the next scripted list of per-group accuracies."""

    def __init__(self, script):
        self.script = list(script)
        self.batches = 0
        self.accuracies = []

    def generate(self, prompts, timeout_s, greedy=False, samples=None, on_group=None):
        """One stand-in group ref per prompt, each handed to `on_group` as it "lands"."""
        self.batches += 1
        self.accuracies = self.script.pop(0)
        refs = [f"group-{self.batches}-{row}" for row in range(prompts.num_rows)]
        for row, ref in enumerate(refs):
            on_group(row, ref)
        return refs

    def async_score(self, group_refs, training=None):
        (ref,) = group_refs
        row = int(ref.rsplit("-", 1)[1])
        accuracy = self.accuracies[row]
        return [[GroupScores(f"p{row}", accuracy, accuracy, ["x"] * len(accuracy), 0)]]


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr("actors.selection.get_within", lambda refs, timeout, what: refs)

    def run(script, *overrides):
        config = load_config(None, ["round.prompts_per_step=3", "selection.dynamic_sampling=true", *overrides])
        rollout = ScriptedRollout(script)
        items = iter(generate_pool(["counting"], 100))
        return dynamic_sample(lambda n: [next(items) for _ in range(n)], rollout, rollout, config), rollout
    return run


MIXED, ALL_RIGHT, ALL_WRONG = [1.0, 0.0, 1.0, 0.0], [1.0] * 4, [0.0] * 4


def test_dynamic_sampling_refills_until_the_step_is_full_and_trims_extras(scripted):
    step, rollout = scripted([[ALL_RIGHT, MIXED, ALL_WRONG], [ALL_WRONG, MIXED, ALL_RIGHT], [MIXED, MIXED, MIXED]])
    assert rollout.batches == 3 and step.batches == 3
    assert step.keep == [False, True, False, False, True, False, True, False, False]  # third batch: one needed
    metrics = dynamic_metrics(step)
    assert metrics["dynamic/groups_kept"] == 3 and metrics["dynamic/groups_generated"] == 9
    assert metrics["dynamic/groups_acc_1"] == 2 and metrics["dynamic/groups_acc_0"] == 2
    assert metrics["dynamic/groups_acc_0.4_0.6"] == 5
    assert step.drop_reasons == ["out_of_band", None, "out_of_band", "out_of_band", None, "out_of_band", None,
                                 "surplus", "surplus"]
    plans = step.ledger_plan()  # every generated sample's planned fate, group by group
    assert [plan.drop_reasons for plan in plans[:2]] == [["out_of_band"] * 4, [None] * 4]


def test_dynamic_sampling_gives_up_with_a_named_error(scripted):
    with pytest.raises(DynamicSamplingExhausted, match="kept 1 of 3 groups after 2 generation batches"):
        scripted([[ALL_RIGHT, MIXED, ALL_RIGHT], [ALL_WRONG] * 3], "selection.max_generation_batches=2")


def test_samples_the_reward_pool_excluded_are_planned_as_dropped_and_a_step_needs_enough_usable_groups():
    config = load_config(None, ["round.prompts_per_step=4", "round.min_step_groups_fraction=0.5",
                                "rollout.max_staleness=1"])
    usable = GroupScores("p0", [1.0, 0.0], [1.0, 0.0], ["correct", "wrong"], 3, excluded=[False, True])
    all_excluded = GroupScores("p1", [0.0, 0.0], [0.0, 0.0], ["timeout"] * 2, 3, excluded=[True, True])
    step = SampledStep([], [usable, all_excluded], [True, True], 1, [None, None])
    assert [plan.drop_reasons for plan in step.ledger_plan()] == [[None, "excluded"], ["excluded", "excluded"]]
    check_trainable([usable, usable], policy_version=4, config=config)  # 2 of 4 groups, 1 version behind: fine
    with pytest.raises(RuntimeError, match=r"1 groups with a trainable sample.*min_step_groups_fraction=0.5"):
        check_trainable([usable, all_excluded], policy_version=4, config=config)
    with pytest.raises(RuntimeError, match="2 weight versions behind.*max_staleness=1"):
        check_trainable([usable, usable], policy_version=5, config=config)


def test_accuracy_histogram_bins_cover_every_group():
    scores = [GroupScores("p", [0.0], acc, [], 0) for acc in ([0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0],
                                                               [1.0, 1.0, 1.0, 0.0])]
    histogram = accuracy_histogram(scores)
    assert sum(histogram.values()) == 4
    assert histogram["dynamic/groups_acc_0.0_0.2"] == 1 and histogram["dynamic/groups_acc_0.6_0.8"] == 1
    assert dynamic_metrics(SampledStep([], scores, [False] * 4, 1))["dynamic/groups_kept"] == 0
