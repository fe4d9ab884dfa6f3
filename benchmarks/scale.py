"""Learner memory at scale, on the mid-size model (about 325M parameters, Qwen2.5-VL-7B's 152k vocabulary): FSDP2
with 1 and with 2 CPU ranks (gloo), each rank its own process.

Memory is the peak of anonymous RSS above the rank's own baseline after imports (sampled every 10 ms), so the
interpreter and shared libraries do not hide the ratio. Per rank: while loading (the sharded load from the
checkpoint's safetensors files) and while training (two RL steps: parameters, gradients, AdamW state, activations).
Then a resumable checkpoint (model, AdamW state; sha256 of every file, manifest commit) is saved and loaded back,
next to a plain `torch.save` / `torch.load` of the same rank-local tensors in the same directory (medians of 3).
Targets: training per rank with 2 ranks <= 0.65x one rank's; loading <= the rank's shard + the largest single
tensor + 20%; `visiong1 plan`'s learner figures within 25% of each measured one; checkpoint bytes written per rank
within 10% of total / ranks; save and load, hashing included, <= 1.5x the plain torch.save / torch.load.

Run: python -m benchmarks.scale [--tokens 512]   (builds the mid-size model under .cache/visiong1/models first)
Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table

from benchmarks.common import PeakResident, resident, write_result

TARGET_SHARDED_RATIO = 0.65
CHECKPOINT_BALANCE = 0.10
CHECKPOINT_TIME_RATIO = 1.5
LOAD_SLACK = 1.2
PLAN_TOLERANCE = 0.25


def batch(model_path: str, tokens: int):
    """One step's batch: 2 groups of 2 samples whose prompt + response fill about `tokens` tokens."""
    from visiong1.data.synthetic import generate_pool
    from visiong1.models.families import load_processor
    from visiong1.training.batching import encode_prompt
    from visiong1.types import RolloutSample, SampleGroup, TrainBatch

    processor, length = load_processor(model_path), tokens // 4
    groups = []
    for item in generate_pool(["counting"], 2, seed=5):
        prompt, _ = encode_prompt(processor, item, "Answer.")
        groups.append(SampleGroup(item, [RolloutSample(item.id, prompt, [(7 * s + j) % 500 + 10 for j in range(length)],
                                                       [-1.0] * length, "", 0, "length") for s in range(2)]))
    return TrainBatch(groups, [[1.0, -1.0], [-1.0, 1.0]], step=0)


def checkpoint_figures(trainer, directory: str, repeats: int = 3) -> dict:
    """Median seconds over `repeats` to save and to load (verification included) a resumable checkpoint, and to
    torch.save / torch.load this rank's local tensors of the same state; bytes this rank wrote. A collective."""
    runs = [checkpoint_round(trainer, directory, step) for step in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def checkpoint_round(trainer, directory: str, step: int) -> dict:
    from torch.distributed.tensor import DTensor

    from visiong1.training.checkpoint import CheckpointStore

    store, rank, world = CheckpointStore(f"{directory}/store"), trainer.rank, trainer.world_size
    dist.barrier()
    started = time.perf_counter()
    staging = broadcast(store.begin(step) if rank == 0 else None)
    digests = trainer.save_checkpoint(store, staging, {})
    parts = [None] * world
    dist.all_gather_object(parts, digests)
    path = broadcast(store.commit(staging, step, {k: v for part in parts for k, v in part.items()}, world_size=world,
                                  backend="fsdp2") if rank == 0 else None)
    save_s = time.perf_counter() - started
    written = sum(os.path.getsize(f"{path}/{name}") for name in digests)
    dist.barrier()
    started = time.perf_counter()
    store.verify(path, sorted(store.manifest(path)["sha256"])[rank::world])
    verify_s = time.perf_counter() - started
    trainer.load_checkpoint(store, path)
    load_s = time.perf_counter() - started
    local = {name: value.to_local() if isinstance(value, DTensor) else value
             for name, value in flatten(trainer.checkpoint_state()).items()}
    plain = f"{directory}/plain-{world}-{rank}.pt"
    dist.barrier()
    started = time.perf_counter()
    torch.save(local, plain)
    plain_save_s = time.perf_counter() - started
    dist.barrier()
    started = time.perf_counter()
    torch.load(plain, weights_only=False)
    plain_load_s = time.perf_counter() - started
    return {"checkpoint_save_s": save_s, "checkpoint_load_s": load_s, "checkpoint_verify_s": verify_s,
            "checkpoint_bytes": written, "plain_save_s": plain_save_s, "plain_load_s": plain_load_s,
            "plain_bytes": os.path.getsize(plain)}


def broadcast(value):
    """Rank 0's `value` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def flatten(state: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def rank_main(rank: int, world: int, port: int, model_path: str, tokens: int, results, directory: str) -> None:
    torch.set_num_threads(1)
    from visiong1.config import LearnerConfig
    from visiong1.training.trainer import PolicyTrainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    step = batch(model_path, tokens)
    config = LearnerConfig(backend="fsdp2", ranks=world, micro_batch_tokens=tokens, old_logprobs="rollout",
                           gradient_checkpointing=True)
    dist.barrier()
    baseline = resident()
    with PeakResident(interval_s=0.01) as loading:
        trainer = PolicyTrainer(model_path, config, rank=rank, world_size=world)
    shard = sum(p.to_local().numel() * p.element_size() for p in trainer.model.parameters())
    largest = max(p.numel() * p.element_size() for p in trainer.model.parameters())
    with PeakResident(interval_s=0.01) as training:
        for index in range(2):
            trainer.train_step(type(step)(step.groups, step.advantages, step=index))
    results[(world, rank)] = {"load_peak": loading.peak - baseline, "train_peak": training.peak - baseline,
                              "shard_bytes": shard, "largest_tensor_bytes": largest,
                              **checkpoint_figures(trainer, f"{directory}/world{world}")}
    dist.destroy_process_group()


def measure(world: int, model_path: str, tokens: int, directory: str) -> list[dict]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(rank_main, args=(world, port, model_path, tokens, results, directory), nprocs=world, join=True)
    return [results[(world, rank)] for rank in range(world)]


def planned(model_path: str, world: int, tokens: int) -> dict:
    from visiong1.config import load_config
    from visiong1.models.planner import learner_rank, model_shape

    config = load_config(None, [f"model.path={model_path}", "learner.backend=fsdp2", f"learner.ranks={world}",
                                f"learner.micro_batch_tokens={tokens}", "learner.gradient_checkpointing=true"])
    return learner_rank(config, model_shape(config)).parts


def checkpoint_summary(runs: list[dict]) -> dict:
    """The 2-rank checkpoint figures: each rank's share of the bytes against total / ranks, and the slowest
    rank's save and load time against the slowest rank's plain torch.save / torch.load."""
    total = sum(run["checkpoint_bytes"] for run in runs)
    imbalance = max(abs(run["checkpoint_bytes"] - total / len(runs)) / (total / len(runs)) for run in runs)
    slowest = {key: max(run[key] for run in runs) for key in
               ("checkpoint_save_s", "checkpoint_load_s", "checkpoint_verify_s", "plain_save_s", "plain_load_s")}
    return {"total_bytes": total, "worst_imbalance": round(imbalance, 3), **slowest,
            "save_ratio": round(slowest["checkpoint_save_s"] / slowest["plain_save_s"], 3),
            "load_ratio": round(slowest["checkpoint_load_s"] / slowest["plain_load_s"], 3),
            "verify_share_of_load": round(slowest["checkpoint_verify_s"] / slowest["checkpoint_load_s"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="micro-batch tokens of the training steps")
    args = parser.parse_args()
    from visiong1.models.tiny import mid_model_path

    model_path = str(mid_model_path(".cache/visiong1/models"))
    with tempfile.TemporaryDirectory(dir=".cache/visiong1") as directory:
        one, two = measure(1, model_path, args.tokens, directory), measure(2, model_path, args.tokens, directory)
    checkpoint = checkpoint_summary(two)
    train_ratio = max(r["train_peak"] for r in two) / one[0]["train_peak"]
    load_bound = [(r["shard_bytes"] + r["largest_tensor_bytes"]) * LOAD_SLACK for r in two]
    plan = {world: planned(model_path, world, args.tokens) for world in (1, 2)}
    plan_train = {world: sum(parts.values()) for world, parts in plan.items()}
    plan_errors = {world: abs(plan_train[world] - max(r["train_peak"] for r in runs)) / max(r["train_peak"] for r in runs)
                   for world, runs in ((1, one), (2, two))}
    figures = {"one_rank": one, "two_ranks": two, "train_ratio_two_vs_one": round(train_ratio, 3),
               "load_within_bound": [r["load_peak"] <= bound for r, bound in zip(two, load_bound)],
               "plan_train_bytes": plan_train, "plan_relative_error": {k: round(v, 3) for k, v in plan_errors.items()},
               "checkpoint_two_ranks": checkpoint,
               "targets": {"train_ratio_max": TARGET_SHARDED_RATIO, "load_slack": LOAD_SLACK,
                           "plan_tolerance": PLAN_TOLERANCE, "checkpoint_balance": CHECKPOINT_BALANCE,
                           "checkpoint_time_ratio_max": CHECKPOINT_TIME_RATIO},
               "met": {"train_ratio": train_ratio <= TARGET_SHARDED_RATIO,
                       "load": all(r["load_peak"] <= bound for r, bound in zip(two, load_bound)),
                       "plan": all(error <= PLAN_TOLERANCE for error in plan_errors.values()),
                       "checkpoint_balance": checkpoint["worst_imbalance"] <= CHECKPOINT_BALANCE,
                       "checkpoint_save": checkpoint["save_ratio"] <= CHECKPOINT_TIME_RATIO,
                       "checkpoint_load": checkpoint["load_ratio"] <= CHECKPOINT_TIME_RATIO}}
    path = write_result("scale", figures, {"model": model_path, "tokens": args.tokens, "threads_per_rank": 1})
    table = Table(title=f"Learner memory per rank, MiB (mid-size model) -> {path}")
    for column in ("ranks", "rank", "loading", "shard + largest", "training", "plan (training)"):
        table.add_column(column, justify="right")
    for world, runs in ((1, one), (2, two)):
        for rank, run in enumerate(runs):
            table.add_row(str(world), str(rank), f"{run['load_peak'] / 2**20:.0f}",
                          f"{(run['shard_bytes'] + run['largest_tensor_bytes']) / 2**20:.0f}",
                          f"{run['train_peak'] / 2**20:.0f}", f"{plan_train[world] / 2**20:.0f}")
    Console().print(table)
    print({key: figures[key] for key in ("train_ratio_two_vs_one", "plan_relative_error", "checkpoint_two_ranks",
                                         "met")})


if __name__ == "__main__":
    main()
