"""One coordinator round on a local Ray cluster with every role a real actor."""

import json
from pathlib import Path

import pytest
from transformers import Qwen2_5_VLForConditionalGeneration

from actors.coordinator import start_run
from actors.influence import STUB_NOTICE
from visiong1.config import RunConfig, load_config
from visiong1.data.pool import build_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(ray_cluster, small_run_overrides_module):
    config = load_config(None, small_run_overrides_module)
    run_id, coordinator, done = start_run(config)
    summary = ray_cluster.get(done, timeout=600)
    events = ray_cluster.get(coordinator.events.remote(0))
    run_dir = Path(config.output_dir).resolve() / run_id
    yield config, summary, events, run_dir


def test_the_round_samples_from_the_built_pool(finished_run):
    config, _, events, _ = finished_run
    pool_event = next(event for event in events if event["type"] == "pool")
    assert pool_event["path"] == config.data.pool and 0 < pool_event["items"] <= 48


@pytest.fixture(scope="module")
def small_run_overrides_module(model_cache, tmp_path_factory):
    """A small round that trains on a pool built by the data pipeline (so the coordinator's pool path runs)."""
    runs, pool = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("pool") / "counting"
    build_pool(load_config(None, ["data.num_items=48"]).data, pool, engine="local", progress=False)
    return [f"model.cache_dir={model_cache}", "model.warm_start_steps=60", f"output_dir={runs}",
            f"data.pool={pool}", "round.steps=3", "round.prompts_per_step=4", "rollout.samples_per_prompt=4",
            "rollout.max_new_tokens=8", "learner.lr=1e-3", "reward.num_cpus=0.1"]


def test_run_directory_holds_config_metrics_and_checkpoint(finished_run):
    config, summary, _, run_dir = finished_run
    resolved = RunConfig.model_validate(json.loads((run_dir / "config.json").read_text()))
    assert resolved.round.steps == 3 and resolved.model.warm_start_steps == 60
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert summary["checkpoint"] == str(run_dir / "checkpoint")
    Qwen2_5_VLForConditionalGeneration.from_pretrained(summary["checkpoint"])


def test_each_step_samples_trains_and_syncs_on_policy(finished_run):
    _, _, events, run_dir = finished_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    version = 0
    for row in rows:
        assert row["rollout/samples"] == 16  # 4 prompts x 4 samples
        assert row["rollout/sample_version"] == version  # sampled by the weights of the previous step
        trained = row["train/version"] != version
        version = row["train/version"]
        assert row["rollout/weight_version"] == version  # every replica got this step's weights
        assert 0.0 <= row["reward/mean"] <= 1.0
        assert all(row[f"time/{phase}_s"] > 0 for phase in ("generate", "reward", "train"))
        assert ("time/weight_sync_s" in row) == trained  # weights move only when a step changed them
    assert version >= 1, "no step had a group with mixed rewards"


def test_events_cover_the_round_and_mark_the_influence_stub(finished_run):
    _, _, events, _ = finished_run
    kinds = [event["type"] for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step") == 3
    selection = next(event for event in events if event["type"] == "selection")
    assert selection["notice"] == STUB_NOTICE and selection["influence/stub"] == 1.0
    assert [event["seq"] for event in events] == list(range(len(events)))


def test_failed_run_reports_the_cause(ray_cluster, small_run_overrides_module):
    config = load_config(None, small_run_overrides_module + ["data.pool=/nonexistent"])
    _, coordinator, done = start_run(config)
    with pytest.raises(Exception, match="no manifest.json"):
        ray_cluster.get(done, timeout=300)
    last = ray_cluster.get(coordinator.events.remote(0))[-1]
    assert last["type"] == "run_failed" and "data.pool" in last["error"]
