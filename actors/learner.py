"""Learner role: policy ranks (one in the skeleton), the GRPO step, weight export, checkpoints; and the task that
prepares the starting model (build + warm start) off the control plane."""

from __future__ import annotations

from pathlib import Path

import ray

from actors.common import get_within, quiet_transformers, size_torch_threads
from visiong1.config import LearnerConfig, RunConfig
from visiong1.types import SampleGroup, TrainBatch, WeightUpdate


@ray.remote
class LearnerWorker:
    def __init__(self, model_path: str, config: LearnerConfig, temperature: float):
        size_torch_threads(config.num_cpus)
        quiet_transformers()
        from visiong1.training.trainer import PolicyTrainer

        self.trainer = PolicyTrainer(model_path, config, temperature)

    def train_step(self, step: int, advantages: list[list[float]], *shards: list[SampleGroup]) -> dict:
        groups = [group for shard in shards for group in shard]
        return self.trainer.train_step(TrainBatch(groups=groups, advantages=advantages, step=step))

    def export_weights(self) -> WeightUpdate:
        """Trained tensors by reference: one object-store copy that every replica reads."""
        tensors = self.trainer.export_weights()
        names = None if len(tensors) == len(self.trainer.model.state_dict()) else tuple(sorted(tensors))
        return WeightUpdate(version=self.trainer.version, tensors=ray.put(tensors), names=names)

    def save(self, path: str) -> str:
        return str(self.trainer.save(path))


class LearnerGroup:
    """Ranks of one torch.distributed group; a single rank until the learner issue adds FSDP2/DeepSpeed."""

    def __init__(self, model_path: str, config: LearnerConfig, temperature: float):
        if config.ranks != 1 or config.backend != "torch":
            raise NotImplementedError(f"learner backend {config.backend!r} with {config.ranks} ranks arrives with the "
                                      "learner issue; the skeleton runs backend=torch, ranks=1")
        self.ranks = [LearnerWorker.options(num_cpus=config.num_cpus, num_gpus=config.num_gpus)
                      .remote(model_path, config, temperature)]

    def actors(self) -> list:
        return list(self.ranks)

    def async_train_step(self, step: int, advantages, shard_refs) -> list[ray.ObjectRef]:
        return [rank.train_step.remote(step, advantages, *shard_refs) for rank in self.ranks]

    def async_export_weights(self) -> ray.ObjectRef:
        return self.ranks[0].export_weights.remote()

    def save(self, path: str, timeout_s: float) -> str:
        return get_within(self.ranks[0].save.remote(path), timeout_s, "learner checkpoint")


@ray.remote(num_cpus=1)
def prepare_model(config: RunConfig) -> str:
    """Path of the starting policy: `model.path`, or the cached tiny model, warm-started when configured."""
    if config.model.path is not None:
        return config.model.path
    size_torch_threads(1)
    quiet_transformers()
    from visiong1.data.synthetic import generate_pool
    from visiong1.models.tiny import tiny_model_path
    from visiong1.training.warm_start import warm_start

    base = tiny_model_path(config.model.cache_dir, config.model.tiny_seed)
    steps = config.model.warm_start_steps
    if steps == 0:
        return str(base)
    target = Path(f"{base}-warm{steps}-{'+'.join(config.data.domains)}")
    if not (target / "config.json").exists():
        items = generate_pool(config.data.domains, 512, config.data.image_size, seed=config.data.seed + 10_000)
        staging = target.with_name(target.name + ".partial")
        warm_start(base, staging, items, config.round.system_prompt, steps)
        staging.rename(target)
    return str(target)
