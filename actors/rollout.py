"""Rollout role: engine replicas that sample groups and take versioned weight updates."""

from __future__ import annotations

import ray

from actors.common import get_within, quiet_transformers, size_torch_threads
from visiong1.config import RolloutConfig
from visiong1.types import WeightUpdate, table_to_items


@ray.remote
class RolloutWorker:
    """One engine replica (transformers engine; the vLLM engine comes with the rollout issue)."""

    def __init__(self, model_path: str, config: RolloutConfig, system_prompt: str, seed: int):
        size_torch_threads(config.num_cpus)
        quiet_transformers()
        from visiong1.engines.hf import HFEngine, SamplingParams

        self.engine = HFEngine(model_path, system_prompt, seed)
        self.params = SamplingParams(n=config.samples_per_prompt, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, top_p=config.top_p)

    def generate(self, prompts):
        """`prompts`: Arrow table of prompt items -> list[SampleGroup], one per row."""
        return self.engine.generate(table_to_items(prompts), self.params)

    def update_weights(self, update: WeightUpdate) -> int:
        self.engine.load_weights(ray.get(update.tensors), update.version)
        return update.version

    def weight_version(self) -> int:
        return self.engine.weight_version


class RolloutGroup:
    """The replicas of one run; prompts are split evenly across them."""

    def __init__(self, model_path: str, config: RolloutConfig, system_prompt: str, seed: int):
        self.config = config
        worker = RolloutWorker.options(num_cpus=config.num_cpus, num_gpus=config.num_gpus)
        self.workers = [worker.remote(model_path, config, system_prompt, seed + i) for i in range(config.replicas)]

    def actors(self) -> list:
        return list(self.workers)

    def shutdown(self) -> None:
        for actor in self.workers:
            ray.kill(actor)

    def async_generate(self, prompts) -> list[ray.ObjectRef]:
        """`prompts`: Arrow table -> one ObjectRef of list[SampleGroup] per replica (its contiguous share)."""
        share = -(-prompts.num_rows // len(self.workers))
        return [worker.generate.remote(ray.put(prompts.slice(i * share, share)))
                for i, worker in enumerate(self.workers) if i * share < prompts.num_rows]

    def update_weights(self, update_ref, timeout_s: float) -> list[int]:
        """Push one weight update (an ObjectRef of WeightUpdate) to every replica and wait for all."""
        refs = [worker.update_weights.remote(update_ref) for worker in self.workers]
        return get_within(refs, timeout_s, f"weight sync to {len(refs)} rollout replicas")
