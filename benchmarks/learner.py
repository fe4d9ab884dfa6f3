"""Learner throughput and weight-export cost on this machine.

1. Tokens/s and peak memory of GRPO steps on the tiny model, at 1 and 2 ranks, for FSDP2 and DeepSpeed ZeRO-3
   (each rank: 1 Ray CPU, 1 torch thread; fixed batches of 8 prompts x 4 samples; median of the timed steps).
2. Export of >= 100 MB of trained tensors (a wider random-init model) from a learner rank to a consumer actor,
   as a ratio of a bare `ray.put` + `ray.get` of the same tensors between two actors, and of a plain memory copy.

Run: python -m benchmarks.learner [--steps 6]. Writes benchmarks/results/learner.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray
import torch
from rich.console import Console

from actors.learner import LearnerGroup
from benchmarks.common import start_local, write_result
from visiong1.algorithms.advantages import grpo_advantages
from visiong1.config import LearnerConfig
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.models.tiny import build_tiny_model
from visiong1.types import TrainBatch

WIDE_SHAPE = {"text_hidden": 512, "text_layers": 8, "text_heads": 8, "text_kv_heads": 8, "text_intermediate": 1408}


@ray.remote(num_cpus=0)
class Consumer:
    def fetch(self, update) -> int:
        """Resolve a WeightUpdate's tensors as a rollout replica would; returns the bytes received."""
        tensors = ray.get(update.tensors)
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def fetch_ref(self, refs: list) -> int:
        tensors = ray.get(refs[0])
        return sum(t.numel() * t.element_size() for t in tensors.values())


@ray.remote(num_cpus=0)
class Producer:
    def __init__(self, nbytes_like: dict):
        self.tensors = {name: torch.randn(shape) for name, shape in nbytes_like.items()}

    def put(self) -> list:
        return [ray.put(self.tensors)]


def step_batches(model_path: str, steps: int) -> list[TrainBatch]:
    engine = HFEngine(model_path, "Answer the question. Put the final answer in \\boxed{}.", seed=0)
    items = generate_pool(["counting"], 8 * steps, seed=5)
    batches = []
    for step in range(steps):
        groups = engine.generate(items[8 * step:8 * step + 8], SamplingParams(n=4, max_new_tokens=16))
        rewards = [[float((s + g) % 2) for s in range(4)] for g in range(len(groups))]
        batches.append(TrainBatch(groups, grpo_advantages(rewards), step))
    return batches


def throughput(model_path: str, batches: list[TrainBatch], backend: str, ranks: int) -> dict:
    config = LearnerConfig(backend=backend, ranks=ranks, num_cpus=1, lr=1e-4, zero_stage=3)
    group = LearnerGroup(model_path, config, temperature=1.0)
    try:
        rates, memory = [], 0.0
        for batch in batches:
            metrics = ray.get(group.async_train_step(batch.step, batch.advantages, [ray.put(batch.groups)]))
            rates.append(metrics[0]["train/tokens_per_s"])
            memory = max(memory, *(m["train/peak_memory_mb"] for m in metrics))
        return {"tokens_per_s_median": statistics.median(rates[1:]), "peak_memory_mb_per_rank": memory}
    finally:
        group.shutdown()


def export_cost(model_path: str, repeats: int = 9) -> dict:
    group = LearnerGroup(model_path, LearnerConfig(backend="fsdp2", ranks=1, num_cpus=1), temperature=1.0)
    consumer = Consumer.remote()
    try:
        exports = []
        for _ in range(repeats):
            started = time.perf_counter()
            nbytes = ray.get(consumer.fetch.remote(group.async_export_weights()))
            exports.append(time.perf_counter() - started)
        shapes = {n: t.shape for n, t in ray.get(ray.get(group.async_export_weights()).tensors).items()}
    finally:
        group.shutdown()
    producer = Producer.remote(shapes)
    bare = []
    for _ in range(repeats):
        started = time.perf_counter()
        ray.get(consumer.fetch_ref.remote(ray.get(producer.put.remote())))
        bare.append(time.perf_counter() - started)
    tensors = {name: torch.randn(shape) for name, shape in shapes.items()}
    copies = []
    for _ in range(repeats):
        started = time.perf_counter()
        {name: tensor.clone() for name, tensor in tensors.items()}
        copies.append(time.perf_counter() - started)
    export_s, bare_s, copy_s = (statistics.median(x) for x in (exports, bare, copies))
    return {"bytes": nbytes, "export_s_median": export_s, "ray_put_get_s_median": bare_s,
            "memory_copy_s_median": copy_s, "export_over_put_get": export_s / bare_s,
            "export_over_memory_copy": export_s / copy_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    console = Console()
    model = start_local()
    torch.set_num_threads(1)
    batches = step_batches(model, args.steps)
    figures = {}
    for backend in ("fsdp2", "deepspeed"):
        for ranks in (1, 2):
            figures[f"{backend}_{ranks}rank"] = throughput(model, batches, backend, ranks)
            console.print(f"{backend} x{ranks}: {figures[f'{backend}_{ranks}rank']}")
    with tempfile.TemporaryDirectory() as wide_dir:
        figures["export"] = export_cost(str(build_tiny_model(f"{wide_dir}/wide", seed=0, shape=WIDE_SHAPE)))
    console.print(f"export: {figures['export']}")
    console.print(f"results in {write_result('learner', figures, {'steps': args.steps, 'wide_shape': WIDE_SHAPE})}")
    ray.shutdown()


if __name__ == "__main__":
    main()
