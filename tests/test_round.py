"""One coordinator round on a local Ray cluster with every role a real actor."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import Qwen2_5_VLForConditionalGeneration

from actors.launch import start_run
from tests.test_benchmark_eval import write_benchmarks
from visiong1.config import RunConfig, load_config
from visiong1.data.pool import build_pool
from visiong1.data.synthetic import generate_pool
from visiong1.eval.heldout import (TARGET_SEED_OFFSET, distinct_synthetic, held_out_hashes, item_hash,
                                   synthetic_held_out)
from visiong1.store import RoundState, RunStore
from visiong1.store.events import missing_keys

pytestmark = pytest.mark.slow
# Every selection stage on: offline difficulty, influence (top 75% per domain), dynamic sampling. The band is
# (0, 1) so that any mixed group qualifies on the barely warm-started model.
SELECTION = ["selection.offline_difficulty=true", "selection.difficulty_samples=6", "selection.pass_rate_low=0.0",
             "selection.pass_rate_high=1.0", "selection.dynamic_sampling=true", "selection.influence.enabled=true",
             "selection.influence.keep=top_fraction", "selection.influence.top_fraction=0.75",
             "selection.influence.projection_dim=1024", "selection.influence.num_cpus=0.5",
             "selection.influence.target_per_domain=8"]


@pytest.fixture(scope="module")
def finished_run(ray_cluster, small_run_overrides_module, tmp_path_factory):
    """The small two-round run, also evaluating two public benchmarks (copies in their official formats)."""
    root = write_benchmarks(tmp_path_factory.mktemp("benchmarks"))
    config = load_config(None, small_run_overrides_module + [
        "eval.benchmarks=[mathvista,mmstar]", f"eval.benchmark_root={root}", "eval.benchmark_items=3"])
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
    """Two small rounds that train on a pool built by the data pipeline (so the coordinator's pool path runs)."""
    runs, pool = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("pool") / "counting"
    build_pool(load_config(None, ["data.num_items=48"]).data, pool, engine="local", progress=False)
    return [f"model.cache_dir={model_cache}", "model.warm_start_steps=60", f"output_dir={runs}",
            f"data.pool={pool}", "round.rounds=2", "round.steps=2", "eval.items_per_domain=8", "eval.pass_k=2",
            *SELECTION, "round.prompts_per_step=4", "rollout.samples_per_prompt=4",
            "rollout.max_new_tokens=8", "learner.lr=1e-3", "learner.kl_coef=0.1", "learner.kl_reference=round",
            "reward.num_cpus=0.1"]


def test_run_directory_holds_config_metrics_and_checkpoint(finished_run):
    config, summary, _, run_dir = finished_run
    resolved = RunConfig.model_validate(json.loads((run_dir / "config.json").read_text()))
    assert resolved.round.rounds == 2 and resolved.model.warm_start_steps == 60
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(row["round"], row["step"]) for row in rows] == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert all(0 <= row["reward/accuracy_counting"] <= 1 for row in rows)  # sampled accuracy per domain
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


def test_each_round_anchors_the_kl_to_the_policy_it_starts_from(finished_run):
    _, _, _, run_dir = finished_run
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    kl = {row["step"]: row["train/kl_ref"] for row in rows}
    assert kl[1] > 0 and kl[3] > 0  # the update before moved the policy off its reference
    # A round's first step samples and trains the very weights its reference was reset to: KL exactly zero.
    assert kl[0] == pytest.approx(0.0, abs=1e-7) and kl[2] == pytest.approx(0.0, abs=1e-7)


def test_events_cover_the_round_and_its_selection(finished_run):
    _, _, events, _ = finished_run
    kinds = [event["type"] for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step") == 4 and kinds.count("round_started") == 2
    for round_index in (0, 1):
        selection = next(e for e in events if e["type"] == "selection" and e["round"] == round_index)
        influence = next(e for e in events if e["type"] == "influence" and e["round"] == round_index)
        assert selection["targets"] == 8 and 0 < selection["kept"] <= selection["in_band"] <= selection["pool"]
        assert influence["influence/scored"] == selection["in_band"]
    curriculum = [e for e in events if e["type"] == "curriculum"]
    assert [e["round"] for e in curriculum] == [0, 1]
    second = next(e for e in events if e["type"] == "round_started" and e["round"] == 1)
    assert second["pool"] == curriculum[0]["next_pool"]
    assert [event["seq"] for event in events] == list(range(len(events)))


def test_round_lineage_records_every_item_and_the_funnel(finished_run):
    config, _, events, run_dir = finished_run
    rows = pq.read_table(run_dir / "rounds" / "000" / "manifest.parquet").to_pylist()
    pool_event = next(event for event in events if event["type"] == "pool")
    assert len(rows) == pool_event["items"] - 8 and len({row["id"] for row in rows}) == len(rows)  # 8 held out
    targets = [row for row in rows if row["influence"] == "target"]
    assert len(targets) == 8 and not any(row["selected"] or row["trained"] for row in targets)
    scored = [row for row in rows if row["difficulty"] != "not_scored"]
    assert len(scored) == len(rows) - 8 and all(0.0 <= row["pass_rate"] <= 1.0 for row in scored)
    assert all(row["selected"] for row in rows if row["trained"])
    assert all(row["difficulty"] == "in_band" and row["influence"] == "kept" for row in rows if row["selected"])
    funnel = json.loads((run_dir / "rounds" / "000" / "funnel.json").read_text())
    counts = funnel["counting"]
    assert counts["targets"] == 8 and counts["pool"] == len(rows) - 8  # targets are not training candidates
    assert counts["pool"] >= counts["band"] >= counts["influence"] >= counts["trained"] > 0
    assert counts["band"] == sum(row["difficulty"] == "in_band" for row in rows)
    assert next(event for event in events if event["type"] == "round_manifest")["funnel"] == funnel
    assert (run_dir / "rounds" / "001" / "manifest.parquet").exists()


def test_held_out_evaluation_before_and_after_every_round(finished_run):
    _, summary, events, run_dir = finished_run
    evaluations = json.loads((run_dir / "summary.json").read_text())["evaluations"]
    assert [e["label"] for e in evaluations] == ["initial", "round_0", "round_1"] == \
        [e["label"] for e in events if e["type"] == "evaluation" and not e.get("control")]
    control = json.loads((run_dir / "summary.json").read_text())["controls"]
    assert [c["label"] for c in control] == ["blank_images"] and control[0]["items"] == 8
    for result in evaluations:
        assert result["items"] == 8 and set(result["accuracy"]) == {"counting"}
        assert 0.0 <= result["accuracy"]["counting"] <= result["pass_at_k"]["counting"] + 0.5 and result["pass_k"] == 2
    assert summary["evaluations"] == evaluations
    assert {"prepare_model", "start_actors", "evaluate", "select", "train", "curriculum",
            "checkpoint"} <= set(summary["phase_seconds"])


def test_dynamic_sampling_fills_every_step(finished_run):
    _, _, _, run_dir = finished_run
    for row in [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]:
        assert row["dynamic/groups_kept"] == 4 and row["dynamic/generation_batches"] >= 1
        assert row["dynamic/groups_generated"] >= 4


@pytest.mark.parametrize("setting", ["data.pool", "selection.influence.targets"])
def test_failed_run_reports_the_cause(ray_cluster, small_run_overrides_module, setting):
    config = load_config(None, small_run_overrides_module + [f"{setting}=/nonexistent"])
    _, coordinator, done = start_run(config)
    with pytest.raises(Exception, match="no manifest.json"):
        ray_cluster.get(done, timeout=300)
    last = ray_cluster.get(coordinator.events.remote(0))[-1]
    assert last["type"] == "run_failed" and f"{setting}='/nonexistent'" in last["error"]


def test_rounds_steps_and_events_are_committed_to_the_run_store(finished_run):
    config, _, events, run_dir = finished_run
    run_id = run_dir.name
    with RunStore.open(config.output_dir) as store:
        rounds = store.list_rounds(run_id)
        assert [(r.index, r.state) for r in rounds] == [(0, RoundState.DONE), (1, RoundState.DONE)]
        assert [(m.round_index, m.step) for m in store.metrics_for(run_id)] == [(0, 0), (0, 1), (1, 2), (1, 3)]
        stored = store.events_after(run_id, 0, limit=1000)
    states = [e.payload["state"] for e in stored if e.kind == "round_state" and e.round_index == 1]
    assert states == ["pending", "scoring", "training", "evaluating", "checkpointing", "done"]
    assert [e.id for e in stored] == sorted(e.id for e in stored)
    published = [e["type"] for e in events]
    assert [e.kind for e in stored if e.kind != "round_state"] == published
    assert {e.kind: missing for e in stored if (missing := missing_keys(e.kind, e.payload))} == {}
    checkpoints = [e.payload["round"] for e in stored if e.kind == "phase" and e.payload["phase"] == "checkpoint"]
    assert checkpoints == [0, 1, 1]  # each round's, then the final export: one event each


def test_the_ledger_accounts_for_every_generated_sample(finished_run):
    """Kept groups' samples train (or are excluded by the reward pool); dynamic sampling's other groups are
    dropped; nothing is lost."""
    config, _, _, run_dir = finished_run
    with RunStore.open(config.output_dir) as store:
        for index in (0, 1):
            steps = [row.metrics for row in store.metrics_for(run_dir.name, index)]
            ledger = store.ledger_summary(run_dir.name, index)
            dropped = ledger["dropped"]
            generated = sum(step["dynamic/groups_generated"] for step in steps) * config.rollout.samples_per_prompt
            kept = sum(step["rollout/samples"] for step in steps)
            assert (ledger["lost"], ledger["in_flight"], ledger["superseded"]) == (0, 0, 0)
            assert ledger["samples"] == generated and ledger["trained"] + dropped.get("excluded", 0) == kept
            assert dropped.get("out_of_band", 0) + dropped.get("surplus", 0) == generated - kept


def test_the_run_writes_an_html_report_with_its_plots(finished_run):
    _, summary, _, run_dir = finished_run
    report = Path(summary["report"])
    assert report == run_dir / "report" / "report.html"
    page = report.read_text()
    for image in ("accuracy.png", "steps.png", "groups.png", "step_time.png", "funnel.png"):
        assert f"src='{image}'" in page and (report.parent / image).stat().st_size > 5000
    assert "round_1" in page and "counting" in page
    again = subprocess.run([sys.executable, "-m", "visiong1.cli", "report", str(run_dir)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == str(report)


def test_evaluations_break_accuracy_down_by_template(finished_run):
    _, summary, _, run_dir = finished_run
    assert len(summary["evaluations"]) == 3  # before round 0 and after each of the 2 rounds
    for evaluation in summary["evaluations"]:
        assert evaluation["accuracy_by_template"] == {"counting/count": evaluation["accuracy"]["counting"]}
    assert "<td>counting/count</td>" in (run_dir / "report" / "report.html").read_text()


def test_step_and_evaluation_scalars_reach_tensorboard(finished_run):
    _, _, _, run_dir = finished_run
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):  # TFRecord framing: u64 length, u32 crc, payload, u32 crc
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            tags.update(value.tag for value in event.summary.value)
            offset += 12 + length + 4
    assert {"reward/accuracy", "train/loss", "eval/accuracy_mean", "eval/accuracy_counting",
            "eval/benchmark_mathvista", "eval/benchmark_mmstar"} <= tags


def test_benchmarks_are_evaluated_every_round_on_a_fixed_sample_and_reported(finished_run):
    """`eval.benchmarks`: each evaluation (not the blank-image control) scores `eval.benchmark_items` items per
    benchmark by the official rules, and the report tabulates and plots them per round."""
    _, summary, _, run_dir = finished_run
    assert [sorted(e["benchmarks"]) for e in summary["evaluations"]] == [["mathvista", "mmstar"]] * 3
    for evaluation in summary["evaluations"]:
        for figures in evaluation["benchmarks"].values():
            assert (figures["items"], figures["scored"]) == (3, 3) and 0.0 <= figures["accuracy"] <= 1.0
    assert "benchmarks" not in summary["controls"][0]
    page = (run_dir / "report" / "report.html").read_text()
    assert "Benchmarks per round" in page and "<td>mmstar</td>" in page
    assert (run_dir / "report" / "benchmarks.png").stat().st_size > 5000


def test_synthetic_influence_targets_come_clean_from_outside_a_noisy_pool(ray_cluster, small_run_overrides_module,
                                                                          tmp_path):
    """`selection.influence.targets=synthetic` on a half-corrupted synthetic pool: the targets are fresh clean items
    (none of the pool, none with held-out content), and the whole pool stays a training candidate."""
    overrides = [o for o in small_run_overrides_module if not o.startswith(("data.pool=", "output_dir="))]
    config = load_config(None, overrides + [
        "data.num_items=48", "data.corrupt_fraction=0.5", "selection.influence.targets=synthetic",
        "round.rounds=1", "round.steps=1", f"output_dir={tmp_path}"])
    run_id, coordinator, done = start_run(config)
    ray_cluster.get(done, timeout=600)
    data = config.data
    held_out = held_out_hashes(synthetic_held_out(data.domains, 8, data.image_size, data.seed, data.difficulty))
    expected = distinct_synthetic(data.domains, 8, data.image_size, data.seed + TARGET_SEED_OFFSET, data.difficulty,
                                  frozenset(held_out))
    pool = [item for item in generate_pool(data.domains, 48, data.image_size, data.seed, data.difficulty, 0.5)
            if item_hash(item) not in held_out]
    rows = pq.read_table(tmp_path / run_id / "rounds" / "000" / "manifest.parquet").to_pylist()
    assert sorted(row["id"] for row in rows if row["influence"] == "target") == sorted(i.id for i in expected)
    assert sorted(row["id"] for row in rows if row["influence"] != "target") == sorted(i.id for i in pool)
    assert not any(item.metadata.get("corrupted") for item in expected)
    corrupted = {item.id for item in pool if item.metadata.get("corrupted")}
    assert {row["id"] for row in rows if row["corrupted"]} == corrupted
    funnel = json.loads((tmp_path / run_id / "rounds" / "000" / "funnel.json").read_text())["counting"]
    assert funnel["corrupted_pool"] == len(corrupted) > 0 and funnel["corrupted_trained"] <= funnel["trained"]
    events = ray_cluster.get(coordinator.events.remote(0))
    assert next(e for e in events if e["type"] == "influence")["influence/targets"] == 8


def test_items_retired_as_too_easy_are_replayed_in_the_next_round(ray_cluster, small_run_overrides_module, tmp_path):
    """`curriculum.replay_share`: items retired in round 0 come back as a share of round 1's generation batches and
    are recorded in its lineage (band top 0.3: the barely warm-started model passes at most 2 of 6 samples)."""
    overrides = [o for o in small_run_overrides_module if not o.startswith("output_dir=")]
    config = load_config(None, overrides + ["selection.pass_rate_high=0.3", "curriculum.replay_share=0.5",
                                            "eval.enabled=false", f"output_dir={tmp_path}"])
    run_id, coordinator, done = start_run(config)
    ray_cluster.get(done, timeout=600)
    events = ray_cluster.get(coordinator.events.remote(0))
    first, second = [event for event in events if event["type"] == "curriculum"]
    assert "curriculum/replay_drawn" not in first  # round 0 has nothing retired to replay
    rows = pq.read_table(tmp_path / run_id / "rounds" / "001" / "manifest.parquet").to_pylist()
    replayable = [row for row in rows if row["difficulty"] == "retired"]
    assert len(replayable) == first["curriculum/retired_too_easy"] > 0
    assert second["curriculum/replay_drawn"] >= 4  # 2 of every 4-prompt generation batch, 2 steps
    funnel = json.loads((tmp_path / run_id / "rounds" / "001" / "funnel.json").read_text())["counting"]
    assert funnel["replayed"] == sum(row["trained"] for row in replayable) <= second["curriculum/replay_trained"]
    assert funnel["pool"] == second["next_pool"] + second.get("curriculum/retired_too_easy", 0)  # retired rows apart
