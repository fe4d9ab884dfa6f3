"""The curriculum between rounds (carry-over, retired-item replay) and the step sampler's resumable state."""

from collections import Counter

import pytest

from visiong1.config import CurriculumConfig
from visiong1.data.synthetic import generate_pool
from visiong1.selection.curriculum import CurriculumSampler, answer_strata, carry_over
from visiong1.types import PromptItem

POOL = {**{f"g{i}": "gui" for i in range(6)}, **{f"s{i}": "science" for i in range(10)}}
RETIRED = {f"r{i}": "science" for i in range(5)}
# Skewed answers: science reads 30 on 7 of 10 thermometers; gui items are all distinct points.
STRATA = {**{f"g{i}": ("click", f"({i}, {i})") for i in range(6)},
          **{f"s{i}": ("thermometer", "30" if i < 7 else ("20" if i < 9 else "40")) for i in range(10)}}


def lineage(fates: dict[str, str]) -> list[dict]:
    return [{"id": item_id, "difficulty": fate} for item_id, fate in fates.items()]


def test_easy_items_retire_and_are_named_hard_ones_wait():
    rows = lineage({"a": "too_easy", "b": "too_hard", "c": "in_band", "t": "not_scored"})
    pool, retired_easy, counts = carry_over(rows, ["a", "b", "c", "t"], CurriculumConfig())
    assert pool == ["b", "c", "t"] and retired_easy == ["a"] and counts == {"curriculum/retired_too_easy": 1}
    pool, retired_easy, counts = carry_over(rows, ["a", "b", "c", "t"], CurriculumConfig(drop_hard=True))
    assert pool == ["c", "t"] and retired_easy == ["a"]
    assert counts == {"curriculum/retired_too_easy": 1, "curriculum/retired_too_hard": 1}
    pool, retired_easy, _ = carry_over(rows, ["a", "b", "c", "t"], CurriculumConfig(retire_easy=False))
    assert pool == ["a", "b", "c", "t"] and retired_easy == []


def test_replay_takes_its_share_of_every_batch_from_the_retired_items():
    sampler = CurriculumSampler(POOL, {}, seed=0, replay=RETIRED, replay_share=0.25)
    batches = [sampler.next_batch(10) for _ in range(40)]
    replayed = [item for batch in batches for item in batch if item in RETIRED]
    assert all(len(batch) == 10 for batch in batches)
    assert 0.2 < len(replayed) / 400 < 0.3  # 2 or 3 per batch of 10, stochastically rounded
    assert sorted(replayed[:5]) == sorted(RETIRED)  # without replacement: every retired item once, then again
    sampler.observe(batches[0])
    assert sampler.metrics()["curriculum/replay_drawn"] == len(replayed)
    assert sampler.metrics()["curriculum/replay_trained"] == sum(item in RETIRED for item in batches[0])
    assert sum(n for key, n in sampler.metrics().items() if key.startswith("curriculum/drawn_")) == 400 - len(replayed)


def test_no_replay_without_retired_items_or_share():
    first_round = CurriculumSampler(POOL, {}, seed=0, replay={}, replay_share=0.25)
    off = CurriculumSampler(POOL, {}, seed=0, replay=RETIRED, replay_share=0.0)
    for sampler in (first_round, off):
        assert all(item in POOL for _ in range(10) for item in sampler.next_batch(8))
        assert not any(key.startswith("curriculum/replay") for key in sampler.metrics())


def test_answer_balance_draws_a_templates_answers_in_turn_and_keeps_the_domain_mix():
    balanced = CurriculumSampler(POOL, {}, seed=0, strata=STRATA)
    drawn = [item for _ in range(60) for item in balanced.next_batch(16)]
    science = Counter(STRATA[item][1] for item in drawn if POOL[item] == "science")
    assert sum(science.values()) == 600 and set(science.values()) == {200}  # 20, 30, 40 alike
    twenties = Counter(item for item in drawn if POOL[item] == "science" and STRATA[item][1] == "20")
    assert twenties == {"s7": 100, "s8": 100}
    assert set(Counter(item for item in drawn if POOL[item] == "gui").values()) == {60}  # singletons: uniform
    unbalanced = [item for _ in range(60) for item in CurriculumSampler(POOL, {}, seed=0).next_batch(16)]
    assert Counter(STRATA[item][1] for item in unbalanced if POOL[item] == "science")["30"] == 420


def test_answer_strata_are_template_and_answer_else_answer_type_and_answer():
    thermometer, scan = generate_pool(["science", "medical"], 2, seed=0)
    imported = PromptItem("x", "jsonl", "science", "Which?", [], "B", "choice", ["A", "B"])
    assert answer_strata([thermometer, scan, imported]) == {
        thermometer.id: ("thermometer", thermometer.answer), scan.id: (scan.metadata["template"], scan.answer),
        "x": ("choice", "B")}


@pytest.mark.parametrize("replay_share, strata", [(0.0, None), (0.3, None), (0.3, STRATA)])
def test_sampler_state_round_trip_continues_the_same_draws(replay_share, strata):
    original = CurriculumSampler(POOL, {"gui": 2.0}, seed=3, replay=RETIRED, replay_share=replay_share, strata=strata)
    for _ in range(3):
        original.observe(original.next_batch(7))
    resumed = CurriculumSampler(POOL, {"gui": 2.0}, seed=99, replay=RETIRED, replay_share=replay_share,
                                strata=strata)
    resumed.load_state_dict(original.state_dict())
    assert [resumed.next_batch(7) for _ in range(5)] == [original.next_batch(7) for _ in range(5)]
    assert resumed.metrics() == original.metrics()


def test_state_saved_before_replay_existed_still_loads():
    sampler = CurriculumSampler(POOL, {}, seed=0)
    state = sampler.state_dict()
    for key in ("replay_queue", "replayed"):
        state.pop(key)
    loaded = CurriculumSampler(POOL, {}, seed=0, replay=RETIRED, replay_share=0.5)
    loaded.load_state_dict(state)
    batch = loaded.next_batch(8)
    assert loaded.metrics()["curriculum/replay_drawn"] == sum(item in RETIRED for item in batch) > 0
