"""The curriculum between rounds (carry-over, retired-item replay) and the step sampler's resumable state."""

import pytest

from visiong1.config import CurriculumConfig
from visiong1.selection.curriculum import CurriculumSampler, carry_over

POOL = {**{f"g{i}": "gui" for i in range(6)}, **{f"s{i}": "science" for i in range(10)}}
RETIRED = {f"r{i}": "science" for i in range(5)}


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


@pytest.mark.parametrize("replay_share", [0.0, 0.3])
def test_sampler_state_round_trip_continues_the_same_draws(replay_share):
    original = CurriculumSampler(POOL, {"gui": 2.0}, seed=3, replay=RETIRED, replay_share=replay_share)
    for _ in range(3):
        original.observe(original.next_batch(7))
    resumed = CurriculumSampler(POOL, {"gui": 2.0}, seed=99, replay=RETIRED, replay_share=replay_share)
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
