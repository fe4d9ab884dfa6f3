"""The collective weight sync: two FSDP2 learner ranks gather their trained weights bucket by bucket and rank 0
broadcasts each bucket over a process group per replica; the replica then samples with logprobs within 1e-4 of the
learner's own recomputation, the sender never holds more than two buckets of gathered weights, and later syncs
reuse the group with the learners' processes unchanged.

The learner ranks and the replicas run on two nodes of their own (`ray.cluster_utils.Cluster` nodes joined to the
session's cluster, offering `learner_node` and `rollout_node`), so every group spans nodes."""

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
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.types import items_to_table

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not vllm_importable(), reason="vLLM is not installed (pip install -e .[cpu-vllm])")]


@pytest.fixture(scope="module")
def role_nodes(ray_cluster):
    """Two more nodes of the session's cluster, one per role, removed (their processes killed) at the end. The
    `Cluster` is given the session's head node instead of starting its own: ray.init already started it."""
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    cluster.head_node = ray_cluster._private.worker.global_worker.node
    cluster.redis_address = cluster.head_node.redis_address
    nodes = [cluster.add_node(num_cpus=2, resources={"learner_node": 2}, object_store_memory=256 * 2**20),
             cluster.add_node(num_cpus=4, resources={"rollout_node": 4}, object_store_memory=256 * 2**20)]
    yield {"head": cluster.head_node.node_id, "learner": nodes[0].node_id, "rollout": nodes[1].node_id}
    for node in nodes:
        cluster.remove_node(node)


@pytest.fixture(scope="module")
def learner(role_nodes, tiny_model):
    """Two FSDP2 learner ranks on the learner node, shared by the module's tests (each trains them a step more):
    like a run's learners, they outlive every replica and group."""
    group = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2, node_resource="learner_node"), temperature=1.0)
    yield group
    group.shutdown()


@contextmanager
def replicas_of(tiny_model: str, tmp_path, engine: str = "hf", replicas: int = 1):
    """A rollout group on the rollout node, synced collectively; shut down on exit."""
    settings = rollout_config(**{"rollout.engine": engine, "rollout.replicas": replicas,
                                 "rollout.weight_sync": "collective", "rollout.node_resource": "rollout_node"})
    rollout = RolloutGroup(tiny_model, settings, SYSTEM, seed=0, cache_root=str(tmp_path))
    try:
        yield rollout
    finally:
        rollout.shutdown()


def current_node(worker) -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def nodes_of(ray_cluster, handles: list) -> set[str]:
    """The node ids the actors behind `handles` run on."""
    return set(ray_cluster.get([handle.__ray_call__.remote(current_node) for handle in handles]))


def learner_pids(ray_cluster, learner: LearnerGroup) -> list[int]:
    return ray_cluster.get([rank.__ray_call__.remote(lambda worker: os.getpid()) for rank in learner.ranks])


def test_a_collective_sync_puts_the_learners_weights_into_the_replica(ray_cluster, role_nodes, learner, tiny_model,
                                                                      batches, tmp_path):  # noqa: F811
    """After each sync the replica (on another node than the learners) answers greedily token for token as the
    learners' weights do, and its sampled logprobs are within 1e-4 of the learner's recomputation. The embedding
    (725 rows, 363 KiB) travels in 2 pieces of up to 409 rows; the first spans both ranks' shards (363 + 362 rows)."""
    with replicas_of(tiny_model, tmp_path, "vllm") as rollout:
        assert nodes_of(ray_cluster, learner.ranks) == {role_nodes["learner"]}
        assert nodes_of(ray_cluster, rollout.actors()) == {role_nodes["rollout"]}
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.2, timeout_s=60)
        pieces = [slot.rows for bucket in sync.plan.buckets for slot in bucket if slot.rows]
        assert pieces == [(0, 409), (409, 725)]
        items = generate_pool(["counting"], 3, seed=4)
        for version in (1, 2):
            train(ray_cluster, learner, batches[version - 1:version])
            assert sync.push(version, timeout_s=120) == [version]
            reference = HFEngine(tiny_model, SYSTEM)
            reference.load_weights(ray_cluster.get(ray_cluster.get(learner.async_export_weights()).tensors), version)
            groups = fetch(ray_cluster, rollout.generate(items_to_table(items), 120))
            assert {sample.weight_version for group in groups for sample in group.samples} == {version}
            assert learner_gap(reference, groups) <= 1e-4
            greedy = fetch(ray_cluster, rollout.generate(items_to_table(items), 120, greedy=True))
            expected = reference.generate(items, SamplingParams(max_new_tokens=8, greedy=True))
            assert [g.samples[0].token_ids for g in greedy] == [g.samples[0].token_ids for g in expected]
        plan, sent = sync.plan, sync.last
        assert sent["buckets"] == len(plan.buckets) > 2 and sent["bytes"] == plan.nbytes
        assert sent["peak_alive_bytes"] <= 2 * int(0.2 * 2**20)  # a bucket being filled and one tensor or piece
        assert list(sync.connected) == [rollout.actors()[0]._actor_id.hex()]  # the second sync reused the group
        assert learner_pids(ray_cluster, learner) == learner.pids  # their processes and own group are untouched


def test_replicas_killed_or_stopped_in_the_middle_of_a_sync_are_dropped_and_replaced(
        ray_cluster, role_nodes, learner, tiny_model, batches, tmp_path):  # noqa: F811
    """Of three vLLM replicas, one is SIGKILLed and one SIGSTOPped (each from inside its engine's worker) after
    receiving bucket 1 of 4: the learners drop their groups (at once for the dead peer, after the group's 5 s
    timeout for the stopped one) and finish the sync to the third; both are replaced by successors that catch up
    before serving; every sample after the sync is of the new version; learner rank 0 keeps no group of a victim."""
    with replicas_of(tiny_model, tmp_path, "vllm", replicas=3) as rollout:
        dropped = []
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=5, on_drop=dropped.append)
        assert len(sync.plan.buckets) == 4
        victims = rollout.replicas[:2]
        train(ray_cluster, learner, batches[:1])
        for victim, fault in zip(victims, (signal.SIGKILL, signal.SIGSTOP)):
            ray_cluster.get(victim.handle.inject_sync_fault.remote(1, fault))
        victim_keys = {victim.handle._actor_id.hex() for victim in victims}
        assert sync.push(1, timeout_s=120) == [1, 1, 1]
        assert sorted(dropped) == sorted(victim.pid for victim in victims) and rollout.size() == 3
        assert not {victim.pid for victim in victims} & {replica.pid for replica in rollout.replicas}
        groups = fetch(ray_cluster, rollout.generate(items_to_table(generate_pool(["counting"], 6, seed=6)), 120))
        assert {sample.weight_version for group in groups for sample in group.samples} == {1}
        assert learner_pids(ray_cluster, learner) == learner.pids
        serving = {handle._actor_id.hex() for handle in rollout.actors()}
        assert set(sync.connected) == serving and serving <= held_groups(ray_cluster, learner)
        assert not victim_keys & held_groups(ray_cluster, learner)


def held_groups(ray_cluster, learner: LearnerGroup) -> set[str]:
    """The weight sync groups learner rank 0 holds, by replica actor id."""
    return set(ray_cluster.get(learner.ranks[0].__ray_call__.remote(lambda worker: list(worker.sync_groups))))


def send_first_bucket_only(key: str, plan):
    """Run on learner rank 0: a sync into group `key` that stops after its first bucket (zeros), as a sender that
    died there would."""
    def send(worker) -> None:
        import torch

        worker.sync_groups[key].broadcast(torch.zeros(plan.bucket_numel(0), dtype=plan.torch_dtype), 0).wait()
    return send


def test_the_health_probe_answers_during_a_sync_and_a_part_received_version_is_never_served(
        ray_cluster, role_nodes, learner, tiny_model, batches, tmp_path):  # noqa: F811
    """A vLLM replica blocked receiving a sync still answers its health probe (its own concurrency group), so a
    probe at that moment neither waits behind the sync nor marks the replica dead; the sync then completes. A sync
    that stops after its first bucket leaves the streamed-into model a mix of versions: the replica then reports
    no version, refuses to generate, and the next health check replaces it."""
    with replicas_of(tiny_model, tmp_path, "vllm") as rollout:
        sync = CollectiveWeightSync(learner, rollout, bucket_mb=0.5, timeout_s=6)
        handle, pid = rollout.replicas[0].handle, rollout.replicas[0].pid
        key = sync._connect(handle, "rollout")
        receipt = handle.receive_weights.remote(sync.plan, 1)  # waits for buckets nobody sends yet
        time.sleep(1.0)
        assert ray_cluster.get(handle.probe.remote(), timeout=5)["version"] == 0
        assert rollout.check_health() == []
        ray_cluster.get([rank.send_weights.remote([key], sync.plan) for rank in learner.ranks], timeout=60)
        assert ray_cluster.get(receipt, timeout=60) == 1
        assert ray_cluster.get(handle.probe.remote(), timeout=5)["version"] == 1

        receipt = handle.receive_weights.remote(sync.plan, 2)
        ray_cluster.get(learner.ranks[0].__ray_call__.remote(send_first_bucket_only(key, sync.plan)), timeout=30)
        with pytest.raises(ray_cluster.exceptions.RayTaskError):
            ray_cluster.get(receipt, timeout=60)  # its group timed out waiting for bucket 1
        assert ray_cluster.get(handle.probe.remote(), timeout=5)["version"] is None
        with pytest.raises(ray_cluster.exceptions.RayTaskError, match="partly received"):
            ray_cluster.get(next(handle.generate.remote(items_to_table(generate_pool(["counting"], 1, seed=3)))))
        assert rollout.check_health() == [pid] and rollout.size() == 1


def test_scaling_during_a_stream_under_the_collective_sync_serves_no_stale_version(
        ray_cluster, role_nodes, learner, tiny_model, batches, tmp_path):  # noqa: F811
    """1 -> 2 -> 1 replicas while requests stream: the replica added after a sync joins with the current version
    (its own new group; the learners untouched), nothing is lost, and nothing after the sync is of an old version."""
    with replicas_of(tiny_model, tmp_path, "vllm") as rollout:
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


def test_the_influence_pool_receives_the_policy_through_the_same_transport(
        ray_cluster, role_nodes, learner, tiny_model, batches, tmp_path):  # noqa: F811
    import torch

    from actors.influence import InfluencePool
    from visiong1.config import load_config

    with replicas_of(tiny_model, tmp_path, "hf") as rollout:
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
