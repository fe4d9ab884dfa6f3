"""Weight sync from the learners into vLLM replicas, both transports side by side, on CPU.

For the tiny model (the fixed cost per sync) and the mid-size model (325M parameters, 1.3 GB of fp32 tensors): one
FSDP2 learner rank and 1, then 2, vLLM replicas. Per transport, the median over `--repeats` syncs of the whole sync;
for the collective one also its stages as learner rank 0 counts them (gather: shards into the flat bucket buffer;
transfer: the broadcasts), the rest (the replicas loading what they received, and the calls) as `engine_and_calls_s`,
and the most gathered bytes alive on the sender. The baseline is a bare broadcast of the same buckets between two
processes over the same kind of stateless gloo group.
Targets: transfer <= 1.5x the bare broadcast of the same bytes; gathered bytes alive <= 2 buckets.

Run: python -m benchmarks.weight_sync [--repeats 3] [--bucket-mb 64]
Writes benchmarks/results/weight_sync.json.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import socket
import statistics
import tempfile
import time

from rich.console import Console
from rich.table import Table

from benchmarks.common import start_local, write_result

TRANSFER_RATIO = 1.5
SYSTEM = "Answer the question."


def bare_broadcast_s(bucket_bytes: list[int], repeats: int) -> float:
    """Median seconds for rank 0 of a 2-process stateless gloo group to broadcast buffers of these sizes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_bare_rank, args=(rank, port, bucket_bytes, repeats, results))
                 for rank in (0, 1)]
    for process in processes:
        process.start()
    seconds = results.get(timeout=600)
    for process in processes:
        process.join()
    return seconds


def _bare_rank(rank: int, port: int, bucket_bytes: list[int], repeats: int, results) -> None:
    import torch

    from actors.weight_sync import open_group

    torch.set_num_threads(1)
    group = open_group("127.0.0.1", port, rank, 2, 300)
    buffers = [torch.ones(size // 4, dtype=torch.float32) for size in bucket_bytes]
    times = []
    for _ in range(repeats):
        group.barrier().wait()
        started = time.perf_counter()
        for buffer in buffers:
            group.broadcast(buffer, 0).wait()
        times.append(time.perf_counter() - started)
    if rank == 0:
        results.put(statistics.median(times))


def measure(replicas: int, syncs: dict, repeats: int, version: int) -> tuple[dict, int]:
    """Median whole-sync seconds per transport with `replicas` replicas (and the collective stages)."""
    figures = {}
    for name, sync in syncs.items():
        walls, sent = [], []
        for _ in range(repeats):
            version += 1
            started = time.perf_counter()
            assert len(sync.push(version, timeout_s=600)) == replicas
            walls.append(time.perf_counter() - started)
            sent.append(getattr(sync, "last", {}))
        figures[name] = {"sync_s": statistics.median(walls)}
        if name == "collective":
            stage = {key: statistics.median(s[key] for s in sent) for key in ("gather_s", "send_s")}
            figures[name] |= stage | {"engine_and_calls_s": figures[name]["sync_s"] - sum(stage.values()),
                                      "bytes_per_replica": sent[-1]["bytes"], "buckets": sent[-1]["buckets"],
                                      "peak_alive_bytes": max(s["peak_alive_bytes"] for s in sent),
                                      "object_store_bytes": 0}  # this path never puts weights in the object store
    return figures, version


def run_model(label: str, model_path: str, bucket_mb: float, repeats: int) -> dict:
    from actors.learner import LearnerGroup
    from actors.rollout import RolloutGroup
    from actors.weight_sync import CollectiveWeightSync, ObjectStoreWeightSync
    from visiong1.config import load_config

    config = load_config(None, [f"model.path={model_path}", "learner.backend=fsdp2", "learner.ranks=1",
                                "learner.num_cpus=1", "rollout.engine=vllm", "rollout.num_cpus=0.5",
                                "rollout.max_model_len=512", "rollout.request_timeout_s=600"])
    learner = LearnerGroup(model_path, config.learner, temperature=1.0)
    with tempfile.TemporaryDirectory() as cache:
        rollout = RolloutGroup(model_path, config.rollout, SYSTEM, seed=0, cache_root=cache)
        try:
            collective = CollectiveWeightSync(learner, rollout, bucket_mb, timeout_s=600)
            syncs = {"object_store": ObjectStoreWeightSync(learner, rollout, timeout_s=600), "collective": collective}
            one, version = measure(1, syncs, repeats, 0)
            rollout.scale(2)
            two, _ = measure(2, syncs, repeats, version)
            plan = collective.plan
        finally:
            rollout.shutdown()
            learner.shutdown()
    itemsize = 4  # fp32 on CPU
    bare = bare_broadcast_s([plan.bucket_numel(i) * itemsize for i in range(len(plan.buckets))], repeats)
    for replicas, figures in ((1, one), (2, two)):
        figures["bare_broadcast_s"] = replicas * bare  # the same bytes: one broadcast of the plan per replica
        figures["transfer_over_bare"] = figures["collective"]["send_s"] / figures["bare_broadcast_s"]
        figures["collective_over_object_store"] = figures["collective"]["sync_s"] / figures["object_store"]["sync_s"]
    bucket_bytes = int(bucket_mb * 2**20)
    return {"model": label, "bytes": plan.nbytes, "buckets": len(plan.buckets), "bucket_bytes": bucket_bytes,
            "largest_tensor_bytes": max(math.prod(slot.shape) * itemsize for bucket in plan.buckets for slot in bucket),
            "one_replica": one, "two_replicas": two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bucket-mb", type=float, default=64.0)
    args = parser.parse_args()
    from visiong1.models.tiny import mid_model_path

    tiny = start_local()
    models = {"tiny": tiny, "mid": str(mid_model_path(".cache/visiong1/models"))}
    results = [run_model(label, path, args.bucket_mb, args.repeats) for label, path in models.items()]
    met = {result["model"]: {
        "transfer": all(result[key]["transfer_over_bare"] <= TRANSFER_RATIO for key in ("one_replica", "two_replicas")),
        "alive": all(result[key]["collective"]["peak_alive_bytes"]
                     <= 2 * max(result["bucket_bytes"], result["largest_tensor_bytes"])
                     for key in ("one_replica", "two_replicas"))} for result in results}
    path = write_result("weight_sync", {"models": results, "met": met,
                                        "targets": {"transfer_over_bare_max": TRANSFER_RATIO}},
                        {"repeats": args.repeats, "bucket_mb": args.bucket_mb, "learner_ranks": 1})
    table = Table(title=f"Weight sync, median seconds -> {path}")
    for column in ("model", "replicas", "object store", "collective", "gather", "transfer", "bare broadcast",
                   "engine + calls", "peak alive MiB"):
        table.add_column(column, justify="right")
    for result in results:
        for replicas, key in ((1, "one_replica"), (2, "two_replicas")):
            figures, collective = result[key], result[key]["collective"]
            table.add_row(result["model"], str(replicas), f"{figures['object_store']['sync_s']:.3f}",
                          f"{collective['sync_s']:.3f}", f"{collective['gather_s']:.3f}", f"{collective['send_s']:.3f}",
                          f"{figures['bare_broadcast_s']:.3f}", f"{collective['engine_and_calls_s']:.3f}",
                          f"{collective['peak_alive_bytes'] / 2**20:.1f}")
    Console().print(table)
    print(met)


if __name__ == "__main__":
    main()
