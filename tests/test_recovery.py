"""A run survives the loss of any one process: its coordinator (restarted by Ray, killed at deterministic points:
after a committed step, during the resume itself) or an actor of a role (the run retries from its newest
checkpoint). Every step ends with exactly one committed row; the rows a restart redoes are superseded."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from actors.launch import coordinator_actor
from tests.test_round_control import control_config, wait_for  # noqa: F401 - control_config is a fixture
from visiong1.config import absolute_paths
from visiong1.faults import fault_env
from visiong1.store import RoundState, RunStore

pytestmark = pytest.mark.slow


def start_armed(config, markers: Path, *points: str):
    """A run whose coordinator process SIGKILLs itself once at each of `points`; returns (id, handle, ref)."""
    config = absolute_paths(config)
    run_id = f"faults-{uuid.uuid4().hex[:8]}"
    markers.mkdir()
    coordinator = coordinator_actor(run_id, config, str(Path(config.output_dir) / run_id), detached=False,
                                    env=fault_env(markers, *points))
    return run_id, coordinator, coordinator.run.remote()


def committed(store: RunStore, run_id: str) -> tuple[list[int], list[int], list[str]]:
    """Committed steps, superseded steps, and the kinds of the run's events; checks that the sample ledger of
    round 0 lost nothing and that the steps redone are exactly the superseded ones (16 samples a step)."""
    kinds = [event.kind for event in store.events_after(run_id, 0, limit=10_000)]
    steps = [row.step for row in store.metrics_for(run_id)]
    superseded = [row.step for row in store.superseded_for(run_id)]
    ledger = store.ledger_summary(run_id, 0)
    assert (ledger["lost"], ledger["in_flight"]) == (0, 0), ledger
    assert ledger["trained"] + ledger["dropped"].get("excluded", 0) == 16 * len(steps), ledger
    assert ledger["superseded"] >= 16 * len(superseded), ledger  # also a step that died before committing
    return steps, superseded, kinds


def test_a_coordinator_killed_before_the_first_checkpoint_redoes_round_0_from_its_selection(
        ray_cluster, control_config, tmp_path):
    config = control_config("round.rounds=1", "round.steps=4", "round.checkpoint_every=0")
    run_id, _, done = start_armed(config, tmp_path / "markers", "committed_step_1")
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 4 and (tmp_path / "markers" / "committed_step_1@1").exists()
    with RunStore.open(config.output_dir) as store:
        steps, superseded, kinds = committed(store, run_id)
        assert steps == [0, 1, 2, 3] and superseded == [0, 1]
        assert kinds.count("selection") == 1  # the redo reused the round's written selection
        assert kinds.count("run_resumed") == 1 and kinds.count("steps_superseded") == 1
        resumed = next(e for e in store.events_after(run_id, 0, limit=10_000) if e.kind == "run_resumed")
        assert resumed.payload == {"checkpoint": None, "steps_done": 0, "round": None}
        assert store.get_round(run_id, 0).state is RoundState.DONE


def test_a_coordinator_killed_between_checkpoints_and_again_during_its_resume_redoes_only_the_later_steps(
        ray_cluster, control_config, tmp_path):
    config = control_config("round.rounds=1", "round.steps=6", "round.checkpoint_every=2", "round.max_retries=2")
    run_id, _, done = start_armed(config, tmp_path / "markers", "committed_step_2", "resuming")
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 6
    with RunStore.open(config.output_dir) as store:
        steps, superseded, kinds = committed(store, run_id)
        assert steps == list(range(6)) and superseded == [2]  # step 2 came after the checkpoint at 2 steps done
        assert kinds.count("run_resumed") == 1  # the first resume died before announcing itself
        resumed = next(e for e in store.events_after(run_id, 0, limit=10_000) if e.kind == "run_resumed")
        assert resumed.payload["steps_done"] == 2 and resumed.payload["round"] == 0
        assert store.get_round(run_id, 0).state is RoundState.DONE


def live_actor_pids(ray_cluster, class_name: str) -> list[int]:
    """PIDs of the cluster's live actors of `class_name` (from the GCS: the test cluster runs no dashboard)."""
    return [actor["Pid"] for actor in ray_cluster._private.state.actors().values()
            if actor["ActorClassName"] == class_name and actor["State"] == "ALIVE"]


def test_a_reward_worker_killed_mid_round_is_retried_from_the_newest_checkpoint(ray_cluster, control_config):
    config = control_config("round.rounds=1", "round.steps=5", "round.checkpoint_every=1",
                            "round.retry_backoff_s=0.5")
    run_id, coordinator, done = start_armed(config, Path(config.output_dir) / "unarmed")
    wait_for(coordinator, ray_cluster, "step", step=1)
    workers = live_actor_pids(ray_cluster, "RewardWorker")
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)  # the reward pool's real process
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 5
    with RunStore.open(config.output_dir) as store:
        steps, superseded, kinds = committed(store, run_id)
        assert steps == list(range(5)) and kinds.count("run_retrying") == 1
        retry = next(e for e in store.events_after(run_id, 0, limit=10_000) if e.kind == "run_retrying")
        assert retry.payload["attempt"] == 1 and "RewardWorker" in retry.payload["error"]
        assert "run_failed" not in kinds and store.get_round(run_id, 0).state is RoundState.DONE


def test_a_replica_killed_while_it_loads_weights_is_replaced_and_the_run_goes_on(ray_cluster, control_config,
                                                                                  tmp_path):
    config = control_config("round.rounds=1", "round.steps=3", "rollout.weight_sync=object_store",
                            "round.max_retries=0")  # no retry to lean on: the replacement alone must carry it
    run_id, _, done = start_armed(config, tmp_path / "markers", "weight_load")
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 3 and (tmp_path / "markers" / "weight_load@1").exists()
    with RunStore.open(config.output_dir) as store:
        steps, superseded, kinds = committed(store, run_id)
        assert steps == [0, 1, 2] and superseded == [] and "run_retrying" not in kinds
        replaced = [e.payload for e in store.events_after(run_id, 0, limit=10_000)
                    if e.kind == "rollout_replica_replaced"]
        assert [payload["reason"] for payload in replaced] == ["dropped from a weight sync"]
        last = store.metrics_for(run_id)[-1].metrics
        assert last["rollout/replicas"] == 1 and last["rollout/weight_version"] == last["train/version"]
