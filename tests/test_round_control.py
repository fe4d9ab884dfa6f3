"""Runs driven through the run store while they train, as the REST control plane drives them: a round started
from outside, the rollout replica target, and cancellation at a step boundary."""

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rich.console import Console

from actors.coordinator import Coordinator
from actors.launch import start_run
from actors.demo import follow
from visiong1.config import absolute_paths, load_config
from visiong1.store import RoundState, RunStatus, RunStore

pytestmark = pytest.mark.slow


def wait_for(coordinator, ray_cluster, kind: str, timeout_s: float = 300.0, **fields) -> dict:
    """The first event of `kind` (with matching fields), polling the coordinator's published events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in ray_cluster.get(coordinator.events.remote(0)):
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
            if event["type"] == "run_failed":
                raise AssertionError(event["error"])
        time.sleep(0.5)
    raise TimeoutError(f"no {kind} event within {timeout_s}s")


@pytest.fixture
def control_config(model_cache, tmp_path):
    def make(*overrides):
        return load_config(None, [f"model.cache_dir={model_cache}", "model.warm_start_steps=60",
                                  f"output_dir={tmp_path}", "data.num_items=32", "eval.enabled=false",
                                  "round.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.engine=hf",
                                  "rollout.max_new_tokens=8", "rollout.num_cpus=0.5", "reward.num_cpus=0.1",
                                  *overrides])
    return make


def test_a_round_started_in_the_store_runs_with_its_overrides_then_cancel_ends_the_run(ray_cluster, control_config):
    config = control_config("round.rounds=1", "round.steps=1", "round.idle_timeout_s=120")
    run_id, coordinator, done = start_run(config)
    with RunStore.open(config.output_dir) as store:
        wait_for(coordinator, ray_cluster, "curriculum", round=0)
        while store.active_round(run_id) is not None:  # round 0 ends: checkpointing, then done
            time.sleep(0.2)
        store.start_round(run_id, {"round.steps": 2})
        started = wait_for(coordinator, ray_cluster, "round_started", round=1)
        assert started["overrides"] == {"round.steps": 2}
        wait_for(coordinator, ray_cluster, "curriculum", round=1)
        while store.active_round(run_id) is not None:
            time.sleep(0.2)
        store.request_run_cancel(run_id)
        outcome = ray_cluster.get(done, timeout=120)
        assert "cancel" in outcome["cancelled"]
        steps = [(m.round_index, m.step) for m in store.metrics_for(run_id)]
        assert steps == [(0, 0), (1, 1), (1, 2)]
        assert [r.state for r in store.list_rounds(run_id)] == [RoundState.DONE, RoundState.DONE]
        assert store.get_run(run_id).status is RunStatus.CANCELLED


def test_rest_counts_scale_rollout_and_rewards_and_cancel_stops_the_round_at_a_step_boundary(ray_cluster,
                                                                                            control_config):
    """Weights travel by the collective sync: the replica added mid-run is brought to the current version before it
    serves (strictly on-policy steps, max_staleness 0, would fail the run otherwise)."""
    config = control_config("round.rounds=1", "round.steps=1000", "rollout.weight_sync=collective")
    run_id, coordinator, done = start_run(config)
    with RunStore.open(config.output_dir) as store:
        wait_for(coordinator, ray_cluster, "step")
        store.set_rollout_replicas(run_id, 2)
        scaled = wait_for(coordinator, ray_cluster, "rollout_scaled")
        assert (scaled["previous"], scaled["replicas"], scaled["source"]) == (1, 2, "api")
        store.set_reward_workers(run_id, 2)  # the reward pool too, as PUT /v1/runs/{id}/reward/workers does
        rewards = wait_for(coordinator, ray_cluster, "reward_scaled")
        assert (rewards["previous"], rewards["workers"], rewards["source"]) == (1, 2, "api")
        deadline = time.monotonic() + 120  # the new replica starts in the background and joins once caught up
        while store.metrics_for(run_id)[-1].metrics["rollout/replicas"] < 2:
            assert time.monotonic() < deadline, "the replica set over REST never joined"
            time.sleep(0.5)
        store.request_round_cancel(run_id, 0)
        outcome = ray_cluster.get(done, timeout=120)
        assert "round 0" in outcome["cancelled"]
        assert store.get_round(run_id, 0).state is RoundState.CANCELLED
        assert len(store.metrics_for(run_id)) < 1000
        kinds = [e["type"] for e in ray_cluster.get(coordinator.events.remote(0))]
        assert kinds[-2:] == ["run_cancelled", "run_finished"] and "run_failed" not in kinds
        steps = [m.metrics for m in store.metrics_for(run_id)]
        assert all(m["rollout/weight_version"] == m["train/version"] for m in steps if m["train/version"])
        assert steps[-1]["rollout/replicas"] == 2 and steps[-1]["weight_sync/collective"] == 1.0
        assert steps[-1]["weight_sync/bytes"] > 0 and steps[-1]["weight_sync/groups"] == 2


def test_a_killed_coordinator_resumes_at_the_last_committed_step(ray_cluster, control_config, tmp_path):
    """Checkpoints go to `learner.checkpoint_uri` (a filesystem URI, as object storage is named); the restarted
    coordinator's learners and replicas form new weight sync groups."""
    config = control_config("round.rounds=1", "round.steps=6", "round.checkpoint_every=1",
                            f"learner.checkpoint_uri=file://{tmp_path}/bucket", "rollout.weight_sync=collective")
    run_id, coordinator, done = start_run(config)
    wait_for(coordinator, ray_cluster, "step", step=2)
    ray_cluster.kill(coordinator, no_restart=False)  # the process dies; Ray restarts it and retries `run`
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 6
    with RunStore.open(config.output_dir) as store:
        steps = [m.step for m in store.metrics_for(run_id)]
        assert steps == list(range(6))  # every step committed exactly once
        kinds = [e.kind for e in store.events_after(run_id, 0, limit=10_000)]
        assert kinds.count("run_resumed") == 1 and store.get_round(run_id, 0).state is RoundState.DONE
    resumed = next(e for e in ray_cluster.get(coordinator.events.remote(0)) if e["type"] == "run_resumed")
    assert 2 <= resumed["steps_done"] <= 6
    assert resumed["checkpoint"].startswith(f"{tmp_path}/bucket/{run_id}/step-")
    assert not (Path(config.output_dir) / run_id / "checkpoints").exists()


def test_a_report_that_cannot_be_written_fails_the_run_and_ends_the_demos_wait(ray_cluster, control_config, tmp_path):
    """The fault is in the report's output: a file stands where its directory goes, so writing the report (after
    the last checkpoint, with the summary) raises. The run must end `run_failed`, and `visiong1 demo`'s wait with it."""
    config = absolute_paths(control_config("round.rounds=1", "round.steps=1"))
    run_dir = tmp_path / "report-fails"
    run_dir.mkdir()
    (run_dir / "report").write_text("not a directory")
    coordinator = Coordinator.remote("report-fails", config, str(run_dir))
    done = coordinator.run.remote()
    with ThreadPoolExecutor(1) as pool:
        ended = pool.submit(follow, coordinator, 1, Console(file=io.StringIO()), 0.2).result(timeout=300)
    assert ended["type"] == "run_failed" and "FileExistsError" in ended["error"]
    with pytest.raises(ray_cluster.exceptions.RayTaskError, match="FileExistsError"):
        ray_cluster.get(done, timeout=60)
    assert (run_dir / "summary.json").exists() and (run_dir / "checkpoint").is_dir()
    kinds = [event["type"] for event in ray_cluster.get(coordinator.events.remote(0))]
    assert kinds.count("run_failed") == 1 and "run_finished" not in kinds


def test_asynchronous_rollout_stays_within_max_staleness_and_loses_no_sample(ray_cluster, control_config):
    """`rollout.max_staleness=1`: each step's samples come from the weights the learner trained at most one step
    before it trains them; the next step is generated while the learner trains; the ledger accounts for every
    generated sample, and a checkpoint in the middle of the round is taken while generation is ahead."""
    config = control_config("round.rounds=1", "round.steps=5", "round.checkpoint_every=2", "learner.lr=1e-3",
                            "rollout.max_staleness=1")
    run_id, coordinator, done = start_run(config)
    summary = ray_cluster.get(done, timeout=600)
    assert summary["steps"] == 5
    with RunStore.open(config.output_dir) as store:
        steps = [m.metrics for m in store.metrics_for(run_id)]
        ledger = store.ledger_summary(run_id, 0)
    learner_version = 0
    for step in steps:
        assert 0 <= learner_version - step["rollout/sample_version"] <= 1
        assert step["async/staleness_max"] == learner_version - step["rollout/sample_version"] <= 1
        learner_version = step["train/version"]
    assert learner_version >= 2, "too few steps changed the weights to put generation behind"
    assert max(step["async/staleness_max"] for step in steps) == 1  # generation ran ahead of the learner
    assert sum(step["async/overlap_s"] for step in steps) > 0
    assert (ledger["lost"], ledger["in_flight"], ledger["superseded"]) == (0, 0, 0)
    assert ledger["samples"] == ledger["trained"] + sum(ledger["dropped"].values()) == 5 * 4 * 4
