"""Recovery paths the chaos soak (tests/test_chaos.py) does not take: a coordinator killed before the run's first
checkpoint (the round is redone from its written selection), and a failed run resumed over REST whose newest
checkpoint has meanwhile been corrupted (the one before it is loaded)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actors.launch import coordinator_actor
from benchmarks.chaos import SMALL_RUN, control_plane
from tests.conftest import TEST_NAMESPACE
from tests.test_round_control import control_config  # noqa: F401 - a fixture
from visiong1.config import absolute_paths
from visiong1.faults import fault_env
from visiong1.store import RoundState, RunStatus, RunStore
from visiong1.training.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow


def start_armed(config, markers: Path, *points: str):
    """A run whose processes SIGKILL themselves once at each of `points`; returns (id, handle, ref)."""
    config = absolute_paths(config)
    run_id = f"faults-{uuid.uuid4().hex[:8]}"
    markers.mkdir()
    coordinator = coordinator_actor(run_id, config, str(Path(config.output_dir) / run_id), detached=False,
                                    env=fault_env(markers, *points))
    return run_id, coordinator, coordinator.run.remote()


def test_a_coordinator_killed_before_the_first_checkpoint_redoes_round_0_from_its_selection(
        ray_cluster, control_config, tmp_path):
    config = control_config("round.rounds=1", "round.steps=4", "round.checkpoint_every=0")
    run_id, _, done = start_armed(config, tmp_path / "markers", "committed_step_1")
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 4 and (tmp_path / "markers" / "committed_step_1@1").exists()
    with RunStore.open(config.output_dir) as store:
        kinds = [event.kind for event in store.events_after(run_id, 0, limit=10_000)]
        assert [row.step for row in store.metrics_for(run_id)] == [0, 1, 2, 3]
        assert [row.step for row in store.superseded_for(run_id)] == [0, 1]
        ledger = store.ledger_summary(run_id, 0)  # 4 prompts x 4 samples a step; none lost
        assert (ledger["lost"], ledger["in_flight"], ledger["superseded"]) == (0, 0, 32)
        assert ledger["trained"] + ledger["dropped"].get("excluded", 0) == 4 * 16
        assert kinds.count("selection") == 1  # the redo reused the round's written selection
        assert kinds.count("run_resumed") == 1 and kinds.count("steps_superseded") == 1
        resumed = next(e for e in store.events_after(run_id, 0, limit=10_000) if e.kind == "run_resumed")
        assert resumed.payload == {"checkpoint": None, "steps_done": 0, "round": None}
        assert store.get_round(run_id, 0).state is RoundState.DONE


def test_a_failed_run_resumed_over_rest_falls_back_past_a_corrupt_newest_checkpoint(ray_cluster, model_cache,
                                                                                    tmp_path):
    """No retry is allowed, so the learner rank killed in step 3's training fails the run. A byte of the newest
    checkpoint (after step 2) is then flipped: the resume refuses it, loads the one after step 1, redoes steps 2 on,
    and finishes with every step committed once and no sample lost."""
    overrides = SMALL_RUN + ["round.rounds=1", "round.steps=5", "round.checkpoint_every=1", "round.max_retries=0"]
    with control_plane(tmp_path, model_cache, ["train@4"], TEST_NAMESPACE) as (client, store):
        run_id = client.create_run(overrides=overrides)["id"]
        events = list(client.events(run_id))
        assert events[-1]["type"] == "run_failed" and "ActorDiedError" in events[-1]["payload"]["error"]
        assert store.get_run(run_id).status is RunStatus.FAILED
        checkpoints = CheckpointStore(str(tmp_path / run_id / "checkpoints"))
        newest = Path(checkpoints.latest())
        shard = max((p for p in newest.rglob("*.distcp")), key=lambda p: p.stat().st_size)
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))

        assert client.resume_run(run_id)["status"] == "failed"  # 202: the new coordinator has not resumed yet
        events += client.events(run_id, after=events[-1]["id"])
        kinds = [event["type"] for event in events]
        assert kinds[-1] == "run_finished" and kinds.count("checkpoint_refused") == 1
        assert [row.step for row in store.metrics_for(run_id)] == list(range(5))
        assert [row.step for row in store.superseded_for(run_id)] == [2]
        ledger = store.ledger_summary(run_id, 0)
        assert (ledger["lost"], ledger["superseded"]) == (0, 2 * 16)  # step 2 committed, step 3 in flight
        assert store.get_round(run_id, 0).state is RoundState.DONE
