"""Rollout throughput on this machine: our Ray layer against raw vLLM, vLLM against transformers, weight-sync cost,
and 1 -> 2 replicas.

- raw: `vllm.LLM.generate` on the same requests, timed inside one replica actor (no dispatch layer);
- group: `RolloutGroup.generate` timed from the caller (units, Arrow slices, object store, receipts included);
- weight sync: `RolloutGroup.update_weights` of the language-model tensors against a plain `clone` of them.
Tiny Qwen2.5-VL, 32 prompts x 8 samples x up to 16 tokens per call, medians of repeated calls.

Run: python -m benchmarks.rollout [--repeats 5]. Writes benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray
import torch
from rich.console import Console

from actors.rollout import RolloutGroup
from benchmarks.common import start_local, write_result
from visiong1.config import load_config
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine
from visiong1.types import WeightUpdate, items_to_table

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


def config(engine: str, replicas: int):
    overrides = [f"rollout.engine={engine}", f"rollout.replicas={replicas}", "rollout.samples_per_prompt=8",
                 "rollout.max_new_tokens=16", "rollout.prompts_per_request=8", "rollout.num_cpus=1"]
    return load_config(None, overrides).rollout


def group_rate(group: RolloutGroup, prompts, repeats: int) -> float:
    rates = []
    for _ in range(repeats + 1):  # the first call warms the engine up
        started = time.perf_counter()
        groups = [g for part in ray.get(group.generate(prompts, 300)) for g in part]
        elapsed = time.perf_counter() - started
        rates.append(sum(len(s.token_ids) for g in groups for s in g.samples) / elapsed)
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    model = start_local()
    prompts = items_to_table(generate_pool(["counting"], 32, seed=1))
    figures = {}

    vllm_group = RolloutGroup(model, config("vllm", 1), SYSTEM, seed=0)
    figures["group_vllm_tokens_per_s"] = group_rate(vllm_group, prompts, args.repeats)
    worker = vllm_group.replicas[0].handle
    figures["raw_vllm_tokens_per_s"] = ray.get(worker.raw_generate_rate.remote(prompts, args.repeats))
    figures["group_over_raw"] = figures["group_vllm_tokens_per_s"] / figures["raw_vllm_tokens_per_s"]
    console.print(f"vLLM: group {figures['group_vllm_tokens_per_s']:.0f} tok/s, raw "
                  f"{figures['raw_vllm_tokens_per_s']:.0f} tok/s, ratio {figures['group_over_raw']:.2f}")

    tensors = {name: p.detach().clone() for name, p in HFEngine(model, SYSTEM).model.named_parameters()
               if "language_model" in name}
    syncs, copies = [], []
    for version in range(1, args.repeats + 2):
        update = ray.put(WeightUpdate(version=version, tensors=ray.put(tensors), names=tuple(sorted(tensors))))
        started = time.perf_counter()
        vllm_group.update_weights(update, 60)
        syncs.append(time.perf_counter() - started)
        started = time.perf_counter()
        {name: tensor.clone() for name, tensor in tensors.items()}
        copies.append(time.perf_counter() - started)
    figures.update({"weight_sync_s_median": statistics.median(syncs[1:]),
                    "state_dict_copy_s_median": statistics.median(copies[1:]),
                    "state_dict_bytes": sum(t.numel() * t.element_size() for t in tensors.values())})
    figures["weight_sync_over_copy"] = figures["weight_sync_s_median"] / figures["state_dict_copy_s_median"]

    vllm_group.scale(2)
    figures["group_vllm_2_replicas_tokens_per_s"] = group_rate(vllm_group, prompts, args.repeats)
    figures["two_over_one_replica"] = figures["group_vllm_2_replicas_tokens_per_s"] / figures["group_vllm_tokens_per_s"]
    vllm_group.shutdown()

    hf_group = RolloutGroup(model, config("hf", 1), SYSTEM, seed=0)
    figures["group_hf_tokens_per_s"] = group_rate(hf_group, prompts, args.repeats)
    figures["vllm_over_hf"] = figures["group_vllm_tokens_per_s"] / figures["group_hf_tokens_per_s"]
    hf_group.shutdown()
    for name, value in figures.items():
        console.print(f"{name:>36}: {value:.4g}")
    console.print(f"results in {write_result('rollout', figures, {'repeats': args.repeats, 'prompts': 32, 'n': 8})}")
    ray.shutdown()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
