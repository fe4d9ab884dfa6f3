"""Rollout role: engine replicas (vLLM or transformers) behind one group that spreads work by least outstanding
units, scales at run time, loads weights into new replicas before they serve, drains removed ones, and replaces
dead or hung replicas, re-dispatching their work."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import ray
from ray.exceptions import RayActorError

from actors.autoscale import ReplicaPolicy
from actors.telemetry import metric
from actors.common import get_within, node_resources, quiet_transformers, shard_bounds, size_torch_threads
from visiong1.config import RolloutConfig
from visiong1.faults import crash_once
from visiong1.store.events import EventKind
from visiong1.types import WeightUpdate, table_to_items


KV_SAMPLE_S = 1.0


def resolve_engine(config: RolloutConfig) -> str:
    """`auto` means vLLM wherever it imports."""
    from actors.vllm_engine import vllm_importable

    if config.engine == "auto":
        return "vllm" if vllm_importable() else "hf"
    return config.engine


@ray.remote(concurrency_groups={"probe": 1})
class RolloutWorker:
    """One engine replica. Calls run one at a time, so a weight load never overlaps a generate; only the health
    probe has its own concurrency group, so it answers during a long weight sync instead of queueing behind it."""

    def __init__(self, model_path: str, config: RolloutConfig, engine: str, system_prompt: str, seed: int):
        size_torch_threads(config.num_cpus)
        quiet_transformers()
        from visiong1.engines.hf import HFEngine, SamplingParams

        self.config, self.engine_kind = config, engine
        self.sync_group, self.sync_fault = None, None
        self.abort_below = 0  # units started on an older weight version than this are cut short
        self.generating = False
        if engine == "vllm":
            from actors.vllm_engine import VLLMEngine

            self.engine = VLLMEngine(model_path, system_prompt, seed, config.max_model_len,
                                     tensor_parallel_size=config.tensor_parallel_size,
                                     gpu_memory_utilization=config.gpu_memory_utilization,
                                     temperature=config.temperature)
            threading.Thread(target=self._sample_kv_cache, daemon=True, name="kv-cache-usage").start()
        else:
            self.engine = HFEngine(model_path, system_prompt, seed)
        self.params = SamplingParams(n=config.samples_per_prompt, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, top_p=config.top_p)
        self._serving(self.engine.weight_version)

    def _sample_kv_cache(self) -> None:
        """The vLLM engine's KV-cache use as a live gauge, every KV_SAMPLE_S (generate blocks the actor's thread)."""
        while True:
            metric("visiong1_rollout_kv_cache_usage").set(self.engine.kv_cache_usage(),
                                                          tags={"replica": str(os.getpid())})
            time.sleep(KV_SAMPLE_S)

    def generate(self, prompts: pa.Table, greedy: bool = False, samples: int | None = None):
        """Streams each prompt's group as it finishes: two objects per group, `[SampleGroup]` then its row in
        `prompts` (the row comes second, so a row that arrives vouches for the group before it), and at the end
        `None` then the receipt, small enough to read without fetching samples: groups, tokens, seconds, version,
        pid and `aborted`, the rows not generated because a weight update asked to abort (`abort_generation`).
        `greedy` samples one answer per prompt (evaluation); `samples` overrides the group size."""
        crash_once("generate")
        if self.engine.weight_version is None:
            raise RuntimeError("this replica holds a partly received weight version (a sync failed part-way); "
                               "it must be replaced, not served")
        started = time.perf_counter()
        params = dataclasses.replace(self.params, n=samples) if samples else self.params
        params = dataclasses.replace(params, n=1, greedy=True) if greedy else params
        items, version, tokens, rows = table_to_items(prompts), self.engine.weight_version, 0, set()
        self.generating = True
        try:
            for row, group in self._groups(items, params, stop=lambda: self.abort_below > version):
                tokens += sum(len(sample.token_ids) for sample in group.samples)
                rows.add(row)
                yield [group]
                yield row
        finally:
            self.generating = False
        seconds = time.perf_counter() - started
        metric("visiong1_rollout_unit_seconds").observe(seconds, tags={"engine": self.engine_kind})
        for first_token_s in getattr(self.engine, "first_token_s", []):  # the transformers engine has no such stat
            metric("visiong1_rollout_time_to_first_token_seconds").observe(first_token_s, tags={"engine": "vllm"})
        if tokens:
            metric("visiong1_rollout_tokens").inc(tokens, tags={"engine": self.engine_kind})
        yield None
        yield {"groups": len(rows), "tokens": tokens, "seconds": seconds, "version": version, "pid": os.getpid(),
               "aborted": sorted(set(range(len(items))) - rows)}

    def _groups(self, items: list, params, stop: Callable[[], bool]) -> Iterator[tuple[int, object]]:
        if self.engine_kind == "vllm":
            return self.engine.stream(items, params, stop)
        return enumerate(self.engine.generate(items, params))  # one batched call: it cannot be cut short

    @ray.method(concurrency_group="probe")
    def abort_generation(self, version: int) -> None:
        """Cut short the units running on weights older than `version`, the update queued behind them (vLLM
        engine; the transformers engine finishes them): their unfinished prompts end the stream as `aborted`.
        By version, so an abort that arrives after the update has loaded cuts nothing."""
        self.abort_below = max(self.abort_below, version)

    def update_weights(self, update: WeightUpdate) -> int:
        crash_once("weight_load")
        self.engine.load_weights(ray.get(update.tensors), update.version)
        return self._serving(update.version)

    def _serving(self, version: int) -> int:
        metric("visiong1_rollout_weight_version").set(version, tags={"replica": str(os.getpid())})
        return version

    def sync_world(self) -> int:
        """Processes of this replica in a weight sync group: its engine's workers (tensor parallel ranks)."""
        return self.config.tensor_parallel_size if self.engine_kind == "vllm" else 1

    def join_sync_group(self, host: str, port: int, world: int, timeout_s: float) -> None:
        """Join a collective weight sync group whose rank 0 (a learner) hosts it at host:port."""
        if self.engine_kind == "vllm":
            self.engine.join_sync_group(host, port, world, timeout_s)
        else:
            from actors.weight_sync import open_group

            self.sync_group = open_group(host, port, 1, world, timeout_s)

    def receive_weights(self, plan, version: int) -> int:
        """Receive `version` bucket by bucket over the sync group (collective transport); returns the version now
        served. vLLM's workers stream the buckets into the model; the transformers engine loads them at the end."""
        if self.engine_kind == "vllm":
            self.engine.receive_weights(plan, version, self.sync_fault)
        else:
            from actors.weight_sync import fault_after_bucket, receive_state_dict

            received = receive_state_dict(self.sync_group, plan, fault_after_bucket(self.sync_fault))
            self.engine.load_weights(received, version)
        return self._serving(version)

    def inject_sync_fault(self, after_bucket: int, signal_number: int) -> None:
        """Fault-test hook: this replica sends itself `signal_number` (SIGKILL, SIGSTOP) once it has received
        bucket `after_bucket` of its next collective sync (on vLLM, from inside the engine's worker)."""
        self.sync_fault = (after_bucket, signal_number)

    def raw_generate_rate(self, prompts: pa.Table, repeats: int) -> float:
        """Benchmark baseline (vLLM engine): tokens/s of the bare `LLM.generate` on these prompts (median of
        `repeats`)."""
        items = table_to_items(prompts)
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            tokens = self.engine.raw_generate(items, self.params)
            rates.append(tokens / (time.perf_counter() - started))
        return sorted(rates)[len(rates) // 2]

    @ray.method(concurrency_group="probe")
    def probe(self) -> dict:
        return {"pid": os.getpid(), "version": self.engine.weight_version, "generating": self.generating}


def _answers(probe_ref) -> bool:
    """Whether a finished probe returned a whole weight version (a dead replica's probe finishes with an actor
    error; one whose sync failed part-way reports version None)."""
    try:
        return ray.get(probe_ref)["version"] is not None
    except RayActorError:
        return False


@dataclass
class Replica:
    handle: object
    pid: int
    draining: bool = False
    outstanding: set = field(default_factory=set)  # completion refs of its units in flight


@dataclass
class Unit:
    """Prompts sent to one replica in one call: `rows` of the caller's table. While it streams, `held` is the
    newest group not yet vouched for by its row, `landed` the positions in `rows` whose group arrived."""

    rows: list[int]
    replica: Replica | None = None
    stream: ray.ObjectRefGenerator | None = None
    done: ray.ObjectRef | None = None  # ready when the stream ended
    sent: float = 0.0
    held: ray.ObjectRef | None = None
    landed: set = field(default_factory=set)

    def unfinished(self) -> Unit:
        """A new unit of the rows whose group has not landed."""
        return Unit([row for position, row in enumerate(self.rows) if position not in self.landed])


@dataclass
class PendingReplica:
    """A replica started in the background: it joins the group once its probe answers (on a full cluster it waits
    for Ray's autoscaler to place it)."""

    handle: object
    probe: ray.ObjectRef


class RolloutGroup:
    """The replicas of one run. `generate` may run while another thread calls `scale` or `update_weights`."""

    def __init__(self, model_path: str, config: RolloutConfig, system_prompt: str, seed: int,
                 cache_root: str = "/tmp/visiong1-cache", emit: Callable[..., None] | None = None):
        """`emit(kind, **payload)` records the group's scaling and replacement events (the run's event log)."""
        self.model_path, self.config, self.system_prompt, self.seed = model_path, config, system_prompt, seed
        self.emit = emit or (lambda kind, **payload: None)
        self.policy = ReplicaPolicy(config.autoscale) if config.autoscale else None
        self.override: int | None = None  # a REST-set replica count: the policy waits until it is cleared
        self.scaling = threading.Lock()  # one resize at a time (the policy's, a REST count's)
        self.engine = resolve_engine(config)
        self.cache_root = cache_root
        self.replicas: list[Replica] = []
        self.pending: list[PendingReplica] = []
        self.update_ref = None  # newest WeightUpdate pushed; a new replica loads it before serving
        self.catch_up = None  # or a collective sync's: brings a new replica to the current version before serving
        self.version = 0
        self.lock = threading.RLock()
        # a push and a new replica's catch-up never interleave: a push that began during the catch-up would miss it
        self.weights_lock = threading.RLock()
        self.counters = {"redispatched": 0, "restarts": 0, "quarantined": 0, "started": 0, "probe_failures": 0,
                         "failed_starts": 0, "aborted": 0}
        self.last_units = 0  # units the newest generate call was cut into
        self.last_unit_s = 0.0  # the newest call's longest unit, timed inside its replica
        self.last_tokens_per_s = 0.0
        self.served: dict[int, int] = {}  # units answered, by replica pid
        self.scale(config.replicas)

    # --- membership ----------------------------------------------------------------------------------------------
    def _start_replicas(self, count: int) -> None:
        """Start `count` replicas at once, so their model loads overlap, and admit each in turn; if one fails to
        start, those not yet admitted are killed and the error propagates."""
        launched = [self._launch() for _ in range(count)]
        probes = [handle.probe.remote() for handle in launched]
        for index, (handle, probe) in enumerate(zip(launched, probes)):
            try:
                self._admit(handle, probe)
            except BaseException:
                for waiting in launched[index:]:
                    ray.kill(waiting)
                raise

    def _launch(self):
        """A new replica's actor handle; it starts loading the model at once."""
        options = {"num_cpus": self.config.num_cpus, "num_gpus": self.config.num_gpus,
                   "resources": node_resources(self.config.node_resource)}
        if self.engine == "vllm":
            from actors.vllm_engine import engine_environment

            options["runtime_env"] = {"env_vars": engine_environment(self.cache_root)}
        handle = RolloutWorker.options(**options).remote(self.model_path, self.config, self.engine,
                                                         self.system_prompt, self.seed + self.counters["started"])
        self.counters["started"] += 1
        return handle

    def _admit(self, handle, probe) -> Replica:
        """The replica behind `handle`, serving once `probe` answers and it holds the current weights."""
        pid = get_within(probe, self.config.start_timeout_s, "new rollout replica start "
                         "(rollout.start_timeout_s)")["pid"]
        with self.weights_lock:
            if self.catch_up is not None:  # serve only with the current weights
                self.catch_up(handle)
            elif self.update_ref is not None:
                get_within(handle.update_weights.remote(self.update_ref), self.config.request_timeout_s,
                           f"weight load into replica {pid}")
            replica = Replica(handle, pid)
            with self.lock:
                self.replicas.append(replica)
        return replica

    def scale(self, replicas: int) -> int:
        """Grow or shrink to `replicas` serving, waiting for starts (background starts are cancelled). New ones
        load the current weights first; removed ones stop taking work and finish what they hold before they are
        killed. Learners are not touched."""
        if replicas < 1:
            raise ValueError(f"a rollout group needs at least one replica, got {replicas}")
        with self.lock:
            cancelled, self.pending = self.pending, []
        for pending in cancelled:
            ray.kill(pending.handle)
        self._start_replicas(replicas - self.size())
        while self.size() > replicas:
            with self.lock:
                victim = min((r for r in self.replicas if not r.draining), key=lambda r: len(r.outstanding))
                victim.draining = True
            self._drain(victim)
        metric("visiong1_rollout_replicas").set(self.size())
        return self.size()

    def resize(self, replicas: int) -> None:
        """Toward `replicas` without blocking on starts: shrinks at once (background starts cancelled first, then
        replicas drained); grows by starting replicas in the background, each serving once started and loaded."""
        while self.asked() > replicas:
            with self.lock:
                cancelled = self.pending.pop() if self.pending else None
            if cancelled is None:
                self.scale(self.size() - 1)
            else:
                ray.kill(cancelled.handle)
        for _ in range(replicas - self.asked()):
            handle = self._launch()
            with self.lock:
                self.pending.append(PendingReplica(handle, handle.probe.remote()))

    def admit_started(self) -> None:
        """Let the background starts whose probe has answered join the group; a start that failed is dropped (the
        count it was for is asked again by the next decision)."""
        with self.lock:
            if not self.pending:
                return
            probes = [pending.probe for pending in self.pending]
            ready, _ = ray.wait(probes, num_returns=len(probes), timeout=0, fetch_local=False)
            started = [pending for pending in self.pending if pending.probe in ready]
            self.pending = [pending for pending in self.pending if pending.probe not in ready]
        for pending in started:  # each loads the current weights before it joins
            try:
                self._admit(pending.handle, pending.probe)
            except RayActorError:
                self.counters["failed_starts"] += 1
        if started:
            metric("visiong1_rollout_replicas").set(self.size())

    def asked(self) -> int:
        """Replicas serving plus those starting in the background."""
        with self.lock:
            return self.size() + len(self.pending)

    def _drain(self, replica: Replica) -> None:
        deadline = time.monotonic() + self.config.request_timeout_s
        while True:
            with self.lock:
                pending = list(replica.outstanding)
            if not pending or time.monotonic() > deadline:
                break
            ray.wait(pending, num_returns=len(pending), timeout=1.0, fetch_local=False)
        with self.lock:
            self.replicas.remove(replica)
        ray.kill(replica.handle)

    def size(self) -> int:
        with self.lock:
            return sum(not r.draining for r in self.replicas)

    def actors(self) -> list:
        with self.lock:
            return [r.handle for r in self.replicas]

    def shutdown(self) -> None:
        with self.lock:
            starting = [pending.handle for pending in self.pending]
        for handle in self.actors() + starting:
            ray.kill(handle)

    # --- work ----------------------------------------------------------------------------------------------------
    def generate(self, prompts: pa.Table, timeout_s: float, greedy: bool = False, samples: int | None = None,
                 on_group: Callable[[int, ray.ObjectRef], None] | None = None) -> list[ray.ObjectRef]:
        """Sample every prompt (`samples` per prompt, default rollout.samples_per_prompt); returns one ObjectRef
        of list[SampleGroup] (that prompt's group) per prompt, in prompt order. `on_group(row, ref)` hears of each
        group as it lands, in the order they finish, so it can be scored while the others generate. With
        `rollout.autoscale` the group is first sized for the call. The prompts of a replica that dies or hangs, and
        those a weight update aborted, are sent again (only those whose group had not landed); the call fails only
        when `timeout_s` passes or the restart budget is spent."""
        self._autoscale(prompts.num_rows)
        # One unit per replica asked for keeps vLLM's batches large (units past the serving replicas wait for the
        # first idle one, a replica joining from the background included); prompts_per_request bounds how small a
        # unit gets, which bounds the work a dead replica takes with it.
        queue = deque(Unit(list(range(start, stop))) for start, stop in
                      shard_bounds(prompts.num_rows, self.asked(), self.config.prompts_per_request))
        self.last_units = len(queue)
        results: list = [None] * prompts.num_rows
        in_flight: dict = {}  # stream -> Unit
        started = time.monotonic()
        deadline, tokens, longest = started + timeout_s, 0, 0.0
        while queue or in_flight:
            self.admit_started()
            while queue and (replica := self._next_replica()) is not None:
                self._send(queue.popleft(), replica, prompts, greedy, samples, in_flight)
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout: {len(in_flight)} units unanswered after {timeout_s:.0f}s")
            metric("visiong1_rollout_units_in_flight").set(len(in_flight))
            if not in_flight:  # every serving replica holds another call's unit
                time.sleep(1.0)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for stream in ready:
                unit = in_flight[stream]
                try:
                    receipt = self._read(unit, results, on_group)
                except RayActorError:
                    queue.extend(self._replace([unit.replica], in_flight))
                    if stream in in_flight:  # its replica was replaced already (a weight sync or probe dropped it)
                        queue.append(in_flight.pop(stream).unfinished())
                        self.counters["redispatched"] += 1
                    continue
                if receipt is not None:
                    tokens, longest = tokens + receipt["tokens"], max(longest, receipt["seconds"])
                    queue.extend(self._finished(in_flight.pop(stream), receipt))
            queue.extend(self._reap_hung(in_flight))
        self.last_tokens_per_s = tokens / (time.monotonic() - started)
        self.last_unit_s = longest
        metric("visiong1_rollout_units_in_flight").set(0)
        return results

    def _send(self, unit: Unit, replica: Replica, prompts: pa.Table, greedy: bool, samples: int | None,
              in_flight: dict) -> None:
        unit.replica, unit.sent = replica, time.monotonic()
        unit.stream = replica.handle.generate.remote(ray.put(prompts.take(unit.rows)), greedy, samples)
        unit.done = unit.stream.completed()
        with self.lock:
            replica.outstanding.add(unit.done)
        in_flight[unit.stream] = unit

    @staticmethod
    def _read(unit: Unit, results: list, on_group) -> dict | None:
        """Take what `unit`'s stream delivered: each vouched-for group into `results`; the receipt once the stream
        ended (None before). Raises RayActorError if the replica died (its stream ends with the error)."""
        while unit.stream.next_ready():
            ref = next(unit.stream)
            if unit.held is None:
                unit.held = ref
                continue
            header, (payload, unit.held) = ray.get(ref), (unit.held, None)
            if isinstance(header, dict):
                return header
            unit.landed.add(header)
            results[unit.rows[header]] = payload
            if on_group is not None:
                on_group(unit.rows[header], payload)
        if unit.stream.is_finished():  # ended without a receipt: its last item was the error
            ray.get(unit.done)
            raise RuntimeError("rollout replica stream ended without a receipt")
        return None

    def _finished(self, unit: Unit, receipt: dict) -> list[Unit]:
        """Account a unit whose stream ended; returns the prompts it must send again (those a weight update
        aborted)."""
        with self.lock:
            unit.replica.outstanding.discard(unit.done)
        self.served[receipt["pid"]] = self.served.get(receipt["pid"], 0) + 1
        if not receipt["aborted"]:
            return []
        self.counters["aborted"] += len(receipt["aborted"])
        return [unit.unfinished()]

    def abort_for_update(self, handles: list, version: int) -> None:
        """With `rollout.on_update: abort`, ask the replicas behind `handles` that hold units to cut short those
        running on weights older than `version`: that update was just queued behind them, and their unfinished
        prompts go again on the new weights. Call only after queuing the update, so that the re-sent prompts
        queue behind it."""
        if self.config.on_update != "abort":
            return
        ids = {handle._actor_id for handle in handles}
        with self.lock:
            busy = [r.handle for r in self.replicas if r.outstanding and r.handle._actor_id in ids]
        for handle in busy:
            handle.abort_generation.remote(version)

    def _next_replica(self) -> Replica | None:
        """The least busy serving replica; while replicas start in the background, only an idle one (None if none
        is idle), so that queued units can go to a replica that joins. None while there is none: another thread
        is replacing the only one (the call's deadline bounds the wait)."""
        with self.lock:
            serving = [r for r in self.replicas if not r.draining]
            if not serving:
                return None
            best = min(serving, key=lambda r: len(r.outstanding))
            return None if self.pending and best.outstanding else best

    def _reap_hung(self, in_flight: dict) -> list[Unit]:
        """Units older than the request timeout: their replica is treated as hung and replaced."""
        now = time.monotonic()
        hung = {unit.replica.pid: unit.replica for unit in in_flight.values()
                if now - unit.sent > self.config.request_timeout_s}
        return self._replace(list(hung.values()), in_flight)

    def _replace(self, replicas: list[Replica], in_flight: dict) -> list[Unit]:
        """Quarantine dead or hung replicas: kill them, hand back the unfinished prompts of their units, start
        their successors within budget (together, so their model loads overlap)."""
        with self.lock:
            failed = [replica for replica in replicas if replica in self.replicas]
            for replica in failed:
                self.replicas.remove(replica)
            self.counters["quarantined"] += len(failed)
        units = []
        for replica in failed:
            ray.kill(replica.handle)
            orphans = [stream for stream, unit in in_flight.items() if unit.replica is replica]
            units += [in_flight.pop(stream).unfinished() for stream in orphans]
            self.counters["redispatched"] += len(orphans)
            if self.counters["restarts"] >= self.config.restart_budget:  # fail loudly rather than shrink
                raise RuntimeError(f"rollout replica {replica.pid} failed and the restart budget "
                                   f"(rollout.restart_budget={self.config.restart_budget}) is spent")
            self.counters["restarts"] += 1
        self._start_replicas(len(failed))
        return units

    def replace(self, handles: list) -> list[int]:
        """Quarantine the replicas behind `handles` (e.g. dropped from a weight sync) and start successors within
        the restart budget; returns the PIDs replaced."""
        ids = {handle._actor_id for handle in handles}
        with self.lock:
            failed = [replica for replica in self.replicas if replica.handle._actor_id in ids]
        self._replace(failed, {})
        return [replica.pid for replica in failed]

    def check_health(self) -> list[int]:
        """Probe every replica while no work is in flight; those that do not answer within
        `rollout.probe_timeout_s` (dead or hung) are quarantined and replaced. Returns the PIDs replaced."""
        with self.lock:
            replicas = list(self.replicas)
        probes = {replica.handle.probe.remote(): replica for replica in replicas}
        answered, _ = ray.wait(list(probes), num_returns=len(probes), timeout=self.config.probe_timeout_s)
        failed = [replica for ref, replica in probes.items() if ref not in answered or not _answers(ref)]
        self.counters["probe_failures"] += len(failed)
        self._replace(failed, {})
        return [replica.pid for replica in failed]

    def reconcile(self, override: int | None) -> None:
        """Between steps: replace the replicas that fail their health probe, then apply the REST replica count
        `override` (None: none set, or cleared; the autoscale policy, if configured, sizes the group again)."""
        for pid in self.check_health():
            self.emit(EventKind.ROLLOUT_REPLICA_REPLACED, pid=pid, reason="health probe unanswered")
        with self.scaling:
            self.override = override
            self.admit_started()
            if override is not None and override != (before := self.asked()):
                self.resize(override)
                self.emit(EventKind.ROLLOUT_SCALED, replicas=override, previous=before, source="api",
                          reason="replica count set over REST", serving=self.size())

    def _autoscale(self, prompts: int) -> None:
        """Size the group for a call of `prompts` prompts by the policy (no policy, or a REST count set: as is)."""
        with self.scaling:
            if self.policy is None or self.override is not None:
                return
            self.admit_started()
            if (decision := self.policy.decide(self.asked(), prompts)) is not None:
                self.resize(decision.replicas)
                self.emit(EventKind.ROLLOUT_SCALED, replicas=decision.replicas, previous=decision.previous,
                          source="autoscale", reason=decision.reason, prompts=prompts, serving=self.size())

    def update_weights(self, update_ref, timeout_s: float) -> tuple[list[int], list[int]]:
        """Push one WeightUpdate (ObjectRef) to every replica and wait; later units run on the new version. A
        replica that dies loading it is replaced (its successor loads it before serving). Returns the versions the
        replicas now hold and the PIDs replaced."""
        with self.weights_lock:  # a replica being admitted joins before or after this push
            with self.lock:
                self.update_ref = update_ref
                loads = {replica.handle.update_weights.remote(update_ref): replica for replica in self.replicas}
            if self.config.on_update == "abort":  # the version comes from the small update record, not its tensors
                self.abort_for_update([replica.handle for replica in loads.values()], ray.get(update_ref).version)
            deadline, failed = time.monotonic() + timeout_s, []
            for ref, replica in loads.items():
                try:
                    get_within(ref, max(0.0, deadline - time.monotonic()), f"weight load into replica {replica.pid}")
                except RayActorError:
                    failed.append(replica)
            self._replace(failed, {})
            replaced = [replica.pid for replica in failed]
            with self.lock:
                probes = [replica.handle.probe.remote() for replica in self.replicas]
            versions = [probe["version"] for probe in get_within(probes, timeout_s, "rollout replica versions")]
            self.version = min(versions)
            return versions, replaced

    def metrics(self) -> dict[str, float]:
        with self.lock:
            depth = sum(len(r.outstanding) for r in self.replicas)
        return {"rollout/replicas": self.size(), "rollout/pending_replicas": len(self.pending),
                "rollout/queue_depth": depth, "rollout/tokens_per_s": self.last_tokens_per_s,
                "rollout/unit_s": self.last_unit_s, "rollout/engine_vllm": float(self.engine == "vllm"),
                **{f"rollout/{name}": value for name, value in self.counters.items()}}
