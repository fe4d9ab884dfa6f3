"""Weight sync from the learners into the rollout replicas, by one of two transports (`rollout.weight_sync`):

- `object_store`: rank 0 gathers the trained tensors and `ray.put`s them once; every replica reads that copy.
- `collective`: per replica, a stateless process group {learner rank 0, the replica's engine workers} (gloo on CPU,
  NCCL on GPU, the same code; vLLM's `stateless_init_torch_distributed_process_group`, since the in-process vLLM
  worker owns the default group). The learner ranks gather their FSDP2 shards one bucket at a time
  (`rollout.weight_sync_bucket_mb`, the rollout dtype) and rank 0 broadcasts each bucket into every replica's group;
  nothing goes through the object store. A replica gets its group when it first syncs, so replicas that join later
  are connected without touching the learners' own process group.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Callable

import ray

from actors.common import get_within
from actors.telemetry import metric
from visiong1.config import RolloutConfig


def open_group(host: str, port: int, rank: int, world: int, timeout_s: float):
    """A torch ProcessGroup of `world` processes outside torch.distributed's global state; rank 0 hosts its store at
    `host:port`. Tensors broadcast over it must live on the backend's device (CUDA for NCCL). Receivers (rank > 0)
    wait twice `timeout_s`: the sender may spend one timeout on another replica that stopped answering."""
    import torch
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s if rank == 0 else 2 * timeout_s)
    return stateless_init_torch_distributed_process_group(host, port, rank, world, backend, timeout=timeout)


def broadcast_from_first(group):
    """The sender's callback for `send_buckets`: a broadcast from the group's rank 0, waited for."""
    return lambda buffer: group.broadcast(buffer, 0).wait()


def post_broadcast_receive(group):
    """The receiver's callback for `receive_buckets`: the broadcast from rank 0 posted, not waited for."""
    return lambda buffer: group.broadcast(buffer, 0)


def fault_after_bucket(fault: tuple[int, int] | None) -> Callable[[int], None]:
    """Fault-test hook for a receiver: with `fault = (bucket, signal)` this process sends itself `signal` (SIGKILL,
    SIGSTOP) once it has received that bucket of a sync; None does nothing."""
    def on_bucket(index: int) -> None:
        if fault is not None and fault[0] == index:
            os.kill(os.getpid(), fault[1])
    return on_bucket


def receive_state_dict(group, plan, on_bucket: Callable[[int], None] = lambda index: None) -> dict:
    """The whole plan received over `group` as a CPU state dict (for actors that load a state dict at once: the
    transformers engine, the influence workers)."""
    import torch

    from visiong1.training.weight_buckets import receive_buckets

    received = receive_buckets(plan, post_broadcast_receive(group), torch.device("cpu"), on_bucket)
    return {name: tensor.clone() for name, tensor in received}


def _ok(ref) -> bool:
    """Whether a finished receipt holds a version rather than an error (a replica that died mid-sync)."""
    try:
        ray.get(ref)
    except ray.exceptions.RayError:
        return False
    return True


def weight_sync_for(config: RolloutConfig, learner, rollout, on_drop: Callable[[int], None]):
    """The configured transport between `learner` (a LearnerGroup) and `rollout` (a RolloutGroup); `on_drop(pid)`
    hears of each replica a sync dropped and replaced."""
    if config.weight_sync == "collective":
        return CollectiveWeightSync(learner, rollout, config.weight_sync_bucket_mb, config.weight_sync_timeout_s,
                                    on_drop)
    return ObjectStoreWeightSync(learner, rollout, config.weight_sync_timeout_s, on_drop)


class ObjectStoreWeightSync:
    """Rank 0's gathered tensors, put once in the object store; every replica (and every later one) reads them."""

    def __init__(self, learner, rollout, timeout_s: float, on_drop: Callable[[int], None] = lambda pid: None):
        self.learner, self.rollout, self.timeout_s, self.on_drop = learner, rollout, timeout_s, on_drop

    def push(self, version: int, timeout_s: float) -> list[int]:
        """Every replica loads the learners' current weights (one that dies loading them is replaced, and
        `on_drop(pid)` hears of it); returns the versions they report."""
        started = time.perf_counter()
        versions, replaced = self.rollout.update_weights(self.learner.async_export_weights(), timeout_s)
        metric("visiong1_weight_sync_seconds").observe(time.perf_counter() - started,
                                                        tags={"transport": "object_store"})
        for pid in replaced:
            self.on_drop(pid)
        return versions

    def load_into(self, handles: list) -> list[int]:
        """Load the learners' current weights into other actors with `update_weights` (the influence workers)."""
        update = self.learner.async_export_weights()
        return get_within([handle.update_weights.remote(update) for handle in handles], self.timeout_s,
                          f"weights into {len(handles)} actors")

    def metrics(self) -> dict[str, float]:
        return {"weight_sync/collective": 0.0}


class CollectiveWeightSync:
    """Pushes the learners' current weights into every replica of a RolloutGroup over per-replica groups; a replica
    the group starts later is brought to the current version before it serves."""

    def __init__(self, learner, rollout, bucket_mb: float, timeout_s: float,
                 on_drop: Callable[[int], None] = lambda pid: None):
        self.learner, self.rollout, self.timeout_s, self.on_drop = learner, rollout, timeout_s, on_drop
        plan = learner.ranks[0].weight_plan.remote(int(bucket_mb * 2**20))
        self.plan = get_within(plan, timeout_s, "weight sync plan")
        self.connected: dict[str, str] = {}  # actor id (its group's name on learner rank 0) -> "rollout"|"influence"
        self.last = {}  # learner rank 0's SendCounters of the newest push
        self.version = 0  # the replicas start from the learners' version 0 (the same checkpoint)
        self.dropped: list[int] = []  # PIDs of the replicas the newest push dropped and replaced
        rollout.catch_up = self._catch_up

    def push(self, version: int, timeout_s: float) -> list[int]:
        """Send the learners' weights (`version`) to every current replica; returns the versions they report."""
        with self.rollout.weights_lock:  # a replica being admitted joins before or after this push
            self.version, started = version, time.perf_counter()
            handles = self.rollout.actors()
            self._release_missing("rollout", handles)
            versions = self._send(handles, version, timeout_s)
        tags = {"transport": "collective"}
        metric("visiong1_weight_sync_seconds").observe(time.perf_counter() - started, tags=tags)
        if self.last.get("bytes"):
            metric("visiong1_weight_sync_bytes").inc(self.last["bytes"], tags=tags)
        return versions

    def metrics(self) -> dict[str, float]:
        """The newest push, as learner rank 0 saw it: seconds gathering and broadcasting, bytes per replica,
        buckets, and the most gathered bytes alive at once."""
        sent = self.last
        return {"weight_sync/collective": 1.0, "weight_sync/dropped": float(len(self.dropped)),
                **{f"weight_sync/{key}": float(sent[key]) for key in
                   ("gather_s", "send_s", "bytes", "buckets", "peak_alive_bytes", "groups") if key in sent}}

    def load_into(self, handles: list) -> list[int]:
        """Send the newest pushed version to other actors over their own groups (the influence workers); raises
        if one of them does not receive it."""
        self._release_missing("influence", handles)
        return self._send(handles, self.version, self.timeout_s, audience="influence")

    def _catch_up(self, handle) -> None:
        if self.version:
            self._send([handle], self.version, self.timeout_s)

    def _release_missing(self, audience: str, handles: list) -> None:
        """Discard the groups of `audience` actors no longer among `handles` (replaced outside a sync, e.g. by a
        health probe, or scaled away), so learner rank 0 does not keep their sockets for the rest of the run."""
        current = {handle._actor_id.hex() for handle in handles}
        self._release([key for key, who in self.connected.items() if who == audience and key not in current])

    def _release(self, keys: list[str]) -> None:
        if keys:
            get_within(self.learner.ranks[0].leave_sync_groups.remote(keys), self.timeout_s, "weight sync groups")
            for key in keys:
                self.connected.pop(key, None)

    def _send(self, handles: list, version: int, timeout_s: float, audience: str = "rollout") -> list[int]:
        """Broadcast `version` to `handles`; a replica whose group broke or that did not confirm within the sync
        timeout is dropped from this sync, quarantined and replaced (its successor catches up before serving); for
        other audiences (influence workers) the sync fails naming them. Returns the versions the actors now hold."""
        keys = [self._connect(handle, audience) for handle in handles]
        receipts = [handle.receive_weights.remote(self.plan, version) for handle in handles]
        self.rollout.abort_for_update(handles, version)  # no-op for actors outside the group (influence workers)
        sends = [rank.send_weights.remote(keys, self.plan) for rank in self.learner.ranks]
        self.last = get_within(sends, timeout_s, f"learners sending weights to {len(handles)} replicas")[0]
        live = [ref for ref, key in zip(receipts, keys) if key not in self.last["failed"]]
        confirmed, _ = ray.wait(live, num_returns=len(live), timeout=self.timeout_s)
        dropped = [handle for handle, ref in zip(handles, receipts) if ref not in confirmed or not _ok(ref)]
        self._release([handle._actor_id.hex() for handle in dropped])
        if dropped and audience != "rollout":
            raise RuntimeError(f"{len(dropped)} of {len(handles)} actors did not receive weight version {version}: "
                               f"{self.last['failed'] or 'no confirmation within the sync timeout'}")
        self.dropped = self.rollout.replace(dropped) if dropped else []
        for pid in self.dropped:
            self.on_drop(pid)
        return [version] * len(handles)  # the survivors confirmed it, the successors caught up to it

    def _connect(self, handle, audience: str) -> str:
        """The key of `handle`'s group on learner rank 0, forming the group on first use."""
        actor = handle._actor_id.hex()
        if actor not in self.connected:
            host, port = get_within(self.learner.ranks[0].rendezvous.remote(), self.timeout_s, "sync endpoint")
            world = 1 + get_within(handle.sync_world.remote(), self.timeout_s, "replica sync world")
            joins = [self.learner.ranks[0].join_sync_group.remote(actor, host, port, world, self.timeout_s),
                     handle.join_sync_group.remote(host, port, world, self.timeout_s)]
            get_within(joins, self.timeout_s, f"weight sync group with replica {actor[:8]}")
            self.connected[actor] = audience
        return actor
