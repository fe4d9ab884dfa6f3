"""A coordinator killed before the run's first checkpoint: Ray restarts it and the round is redone from its
written selection, the steps committed before the kill superseded. Every other role and kill point is in the chaos
soak (tests/test_chaos.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actors.launch import coordinator_actor
from tests.test_round_control import control_config  # noqa: F401 - a fixture
from visiong1.config import absolute_paths
from visiong1.faults import fault_env
from visiong1.store import RoundState, RunStore

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
