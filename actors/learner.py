"""Learner role: policy ranks (one in the skeleton), the GRPO step, weight export, checkpoints; and the task that
prepares the starting model (build + warm start) off the control plane."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.common import get_within, node_resources, quiet_transformers, size_torch_threads
from actors.telemetry import metric
from visiong1.config import LearnerConfig, RunConfig
from visiong1.faults import crash_once
from visiong1.training.checkpoint import CheckpointCorruptError, CheckpointStore
from visiong1.types import SampleGroup, TrainBatch, WeightUpdate


@ray.remote
class LearnerWorker:
    """One rank. `setup` forms the torch.distributed group (gloo on CPU, NCCL on GPU) and builds the policy."""

    def __init__(self, rank: int, world_size: int, config: LearnerConfig):
        size_torch_threads(config.num_cpus)
        quiet_transformers()
        self.rank, self.world_size, self.config = rank, world_size, config
        self.sync_groups = {}  # weight sync groups with rollout replicas, by replica actor id (rank 0)

    def rendezvous(self) -> tuple[str, int]:
        """Address and a free port on this node for the group's TCP store (called on rank 0)."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            return ray.util.get_node_ip_address(), probe.getsockname()[1]

    def setup(self, model_path: str, temperature: float, address: str, port: int) -> int:
        import torch
        import torch.distributed as dist

        from visiong1.training.trainer import PolicyTrainer

        if self.config.backend != "torch":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=self.rank,
                                    world_size=self.world_size)
            # DeepSpeed reads the group from the environment as torchrun would set it.
            os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK="0",
                              MASTER_ADDR=address, MASTER_PORT=str(port))
        factory = deepspeed_engine if self.config.backend == "deepspeed" else None
        self.trainer = PolicyTrainer(model_path, self.config, temperature, self.rank, self.world_size, factory)
        return os.getpid()

    def train_step(self, step: int, advantages: list[list[float | None]], *shards: list[SampleGroup]) -> dict:
        crash_once("train")
        groups = [group for shard in shards for group in shard]
        metrics = self.trainer.train_step(TrainBatch(groups=groups, advantages=advantages, step=step))
        if metrics["train/sequences"]:
            tags = {"rank": str(self.rank)}
            metric("visiong1_learner_step_seconds").observe(metrics["train/step_s"], tags=tags)
            metric("visiong1_learner_tokens").inc(metrics["train/tokens"], tags=tags)
            metric("visiong1_learner_peak_memory_bytes").set(metrics["train/peak_memory_mb"] * 2**20, tags=tags)
        return metrics

    def export_weights(self) -> WeightUpdate | None:
        """Collective; rank 0 returns the trained tensors by reference (one object-store copy every replica
        reads), the other ranks None."""
        tensors = self.trainer.export_weights()
        if self.rank != 0:
            return None
        names = None if set(tensors) == set(self.trainer.full_state_dict_names) else tuple(sorted(tensors))
        return WeightUpdate(version=self.trainer.version, tensors=ray.put(tensors), names=names)

    def reset_reference(self) -> None:
        self.trainer.reset_reference()

    def weight_plan(self, bucket_bytes: int):
        return self.trainer.weight_plan(bucket_bytes)

    def join_sync_group(self, key: str, host: str, port: int, world: int, timeout_s: float) -> None:
        """Rank 0: form the weight sync group `key` with one replica's workers (ranks 1..world-1)."""
        from actors.weight_sync import open_group

        self.sync_groups[key] = open_group(host, port, 0, world, timeout_s)

    def leave_sync_groups(self, keys: list[str]) -> None:
        """Rank 0: discard the weight sync groups `keys` (their replicas are gone; a gloo group closes its
        connections when dropped)."""
        for key in keys:
            self.sync_groups.pop(key, None)

    def send_weights(self, keys: list[str], plan) -> dict:
        """Collective over the learner ranks: gather bucket by bucket; rank 0 broadcasts each bucket into the
        groups `keys`. A group whose broadcast fails (its replica died, or stopped answering for the group's
        timeout) is discarded, since a broken gloo group cannot be reused, and the others go on. Returns rank 0's
        counters (buckets, bytes per group, peak gathered bytes alive) and the `failed` keys with their errors."""
        import dataclasses

        from actors.weight_sync import broadcast_from_first

        senders = {key: broadcast_from_first(self.sync_groups[key]) for key in keys} if self.rank == 0 else {}
        failed: dict[str, str] = {}

        def send_to(key: str, buffer) -> None:
            try:
                senders[key](buffer)
            except RuntimeError as error:  # gloo/NCCL report a lost or timed-out peer this way
                failed[key] = str(error)
                self.sync_groups.pop(key, None)

        def send(buffer) -> None:  # to every group at once, so a stuck replica delays the others by one timeout
            list(pool.map(lambda key: send_to(key, buffer), [key for key in senders if key not in failed]))
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, len(keys))) as pool:
            counters = self.trainer.send_weights(plan, send if self.rank == 0 else None)
        return dataclasses.asdict(counters) | {"seconds": time.perf_counter() - started, "groups": len(keys),
                                               "failed": failed}

    def save_checkpoint(self, location: str, staging: str, extra: dict) -> dict[str, str]:
        """Collective; this rank writes its own files into `staging` and returns their sha256 by relative path."""
        return self.trainer.save_checkpoint(CheckpointStore(location), staging, extra)

    def verify_checkpoint(self, location: str, path: str) -> str | None:
        """Check this rank's share of the checkpoint's files (every world-th, so each file is hashed once); returns
        what does not match (the caller raises it), None when all do."""
        store = CheckpointStore(location)
        try:
            store.verify(path, sorted(store.manifest(path)["sha256"])[self.rank::self.world_size])
        except CheckpointCorruptError as error:
            return str(error)
        return None

    def restore(self, location: str, path: str) -> dict:
        return self.trainer.load_checkpoint(CheckpointStore(location), path)

    def save_model(self, location: str, directory: str) -> dict[str, str]:
        return self.trainer.save_model(CheckpointStore(location), directory)

    def save_gathered(self, path: str) -> None:
        self.trainer.save_gathered(path)

    def export_model(self, location: str, directory: str, output_dir: str) -> str:
        from visiong1.training.export import export_model

        return str(export_model(CheckpointStore(location), directory, output_dir))

    def parameter_count(self) -> tuple[int, int]:
        """(elements this rank stores, elements of the full model): shards under FSDP2."""
        from torch.distributed.tensor import DTensor

        local = full = 0
        for parameter in self.trainer.model.parameters():
            if self.config.backend == "deepspeed" and self.config.zero_stage == 3:
                full, local = full + parameter.ds_numel, local + parameter.ds_tensor.numel()
            else:
                full += parameter.numel()
                local += parameter.to_local().numel() if isinstance(parameter, DTensor) else parameter.numel()
        return local, full


def deepspeed_engine(trainer):
    """ZeRO engine around the trainer's model, AdamW and scheduler. The trainer marks accumulation boundaries
    itself, since the number of token-budget micro-batches varies per step."""
    import deepspeed
    import torch

    config = trainer.config
    ds_config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                 "gradient_clipping": config.grad_clip, "zero_allow_untested_optimizer": True,
                 "zero_optimization": {"stage": config.zero_stage}, "steps_per_print": 1 << 30,
                 "bf16": {"enabled": torch.cuda.is_available()}}
    engine, trainer.optimizer, _, trainer.scheduler = deepspeed.initialize(
        model=trainer.model, optimizer=trainer.optimizer, lr_scheduler=trainer.scheduler, config=ds_config)
    trainer.model = engine.module
    return engine


class LearnerGroup:
    """The ranks of one torch.distributed group, in one placement group (one bundle per rank). Every method
    that trains, exports or saves is a collective: it calls all ranks."""

    def __init__(self, model_path: str, config: LearnerConfig, temperature: float, timeout_s: float = 600.0):
        if config.backend == "torch" and config.ranks != 1:
            raise ValueError(f"backend 'torch' trains one rank, got learner.ranks={config.ranks}; use fsdp2")
        self.config = config
        bundle = {"CPU": config.num_cpus, **({"GPU": config.num_gpus} if config.num_gpus else {}),
                  **node_resources(config.node_resource)}
        self.placement = placement_group([bundle] * config.ranks, strategy="PACK")
        get_within(self.placement.ready(), timeout_s, f"placement group of {config.ranks} learner ranks")
        self.ranks = [
            LearnerWorker.options(num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                                  resources=node_resources(config.node_resource),
                                  scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, i))
            .remote(i, config.ranks, config)
            for i in range(config.ranks)
        ]
        address, port = get_within(self.ranks[0].rendezvous.remote(), timeout_s, "learner rank 0 rendezvous")
        self.pids = get_within([rank.setup.remote(model_path, temperature, address, port) for rank in self.ranks],
                               timeout_s, f"{config.ranks} learner ranks starting")

    def async_train_step(self, step: int, advantages, shard_refs) -> list[ray.ObjectRef]:
        return [rank.train_step.remote(step, advantages, *shard_refs) for rank in self.ranks]

    def async_export_weights(self) -> ray.ObjectRef:
        """ObjectRef of rank 0's WeightUpdate (the other ranks take part in the gather)."""
        return [rank.export_weights.remote() for rank in self.ranks][0]

    def save_checkpoint(self, location: str, step: int, extra: dict, timeout_s: float,
                        metric: float | None = None) -> str:
        """Every rank writes its part in parallel; then the manifest commits the checkpoint. Returns its path."""
        store = CheckpointStore(location, self.config.checkpoint_keep_last)
        staging = store.begin(step)
        parts = get_within([rank.save_checkpoint.remote(location, staging, extra) for rank in self.ranks],
                           timeout_s, f"learner checkpoint at step {step}")
        digests = {name: digest for part in parts for name, digest in part.items()}
        return store.commit(staging, step, digests, metric, world_size=self.config.ranks, backend=self.config.backend)

    def reset_reference(self, timeout_s: float) -> None:
        """Make the KL reference the current policy on every rank."""
        get_within([rank.reset_reference.remote() for rank in self.ranks], timeout_s, "learner reference reset")

    def restore(self, location: str, path: str, timeout_s: float) -> dict:
        """Verify the checkpoint at `path` (each rank hashes a share of its files; CheckpointCorruptError names a
        bad one), then load it on every rank, resharded to this group's size. Returns the checkpoint's `extra`."""
        problems = get_within([rank.verify_checkpoint.remote(location, path) for rank in self.ranks], timeout_s,
                              f"verifying {path}")
        if any(problems):
            raise CheckpointCorruptError("; ".join(problem for problem in problems if problem))
        refs = [rank.restore.remote(location, path) for rank in self.ranks]
        return get_within(refs, timeout_s, f"learner restore from {path}")[0]

    def restore_newest(self, location: str, timeout_s: float, on_fallback) -> tuple[str, dict]:
        """Restore the newest complete checkpoint that verifies; `on_fallback(path, error)` hears of each newer one
        that did not. Returns (path, extra)."""
        complete = CheckpointStore(location).complete()
        for _, path in reversed(complete):
            try:
                return path, self.restore(location, path, timeout_s)
            except CheckpointCorruptError as error:
                on_fallback(path, error)
        raise CheckpointCorruptError(f"none of the {len(complete)} checkpoints under {location} verifies")

    def save(self, path: str, timeout_s: float) -> str:
        """The policy as a Hugging Face directory at `path`: every rank writes its shards of the weights next to it,
        then rank 0 converts them one output shard at a time (no process gathers the model). DeepSpeed gathers
        its 16-bit copy on rank 0 instead."""
        if self.config.backend == "deepspeed":
            get_within([rank.save_gathered.remote(path) for rank in self.ranks], timeout_s, "learner model export")
            return path
        store, directory = CheckpointStore(f"{path}.shards"), f"{path}.shards"
        get_within([rank.save_model.remote(directory, directory) for rank in self.ranks], timeout_s,
                   "learner model export")
        exported = get_within(self.ranks[0].export_model.remote(directory, directory, path), timeout_s,
                              "learner model export")
        store.fs.delete_dir(store.root)
        return exported

    def shutdown(self) -> None:
        for rank in self.ranks:
            ray.kill(rank)
        remove_placement_group(self.placement)


def _log_warm_start(steps: int):
    """Progress of a warm start, a line every tenth of the run, in the task's Ray worker log (the driver does not
    forward worker output; its progress bar shows the `prepare_model` phase meanwhile)."""
    every = max(1, steps // 10)

    def report(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == steps:
            print(f"warm start step {step + 1}/{steps}  loss {loss:.3f}", flush=True)
    return report


@ray.remote(num_cpus=1)
def prepare_model(config: RunConfig) -> str:
    """Path of the starting policy: `model.path`, or the cached tiny model, warm-started when configured."""
    if config.model.path is not None:
        return config.model.path
    size_torch_threads(config.model.warm_start_cpus)
    quiet_transformers()
    from visiong1.models.tiny import tiny_model_path
    from visiong1.training.warm_start import WARM_START_VERSION, warm_start, warm_start_items, warm_start_pool

    base = tiny_model_path(config.model.cache_dir, config.model.tiny_seed, config.model.tiny_family)
    steps = config.model.warm_start_steps
    if steps == 0:
        return str(base)
    data, held_out_count = config.data, config.eval.items_per_domain if config.eval.enabled else 0
    count = warm_start_items(steps)
    difficulty = "-".join(map(str, data.difficulty)) if isinstance(data.difficulty, list) else data.difficulty
    target = Path(f"{base}-warm{steps}v{WARM_START_VERSION}-{'+'.join(data.domains)}-d{difficulty}"
                  f"-px{data.image_size}-s{data.seed}-n{count}-xh{held_out_count}")
    if not (target / "config.json").exists():
        items = warm_start_pool(data, count, held_out_count)
        staging = target.with_name(target.name + ".partial")
        warm_start(base, staging, items, config.round.system_prompt, steps, progress=_log_warm_start(steps))
        staging.rename(target)
    return str(target)


@ray.remote(num_cpus=0)
def plan_run(config: RunConfig) -> dict:
    """`config`'s capacity plan (visiong1.models.planner) as JSON with its `shortfalls`: a task, so the API process,
    which never imports torch, can refuse a run before launching it."""
    from visiong1.models.planner import plan, plan_table, run_shortfalls

    shape, roles = plan(config)
    return plan_table(shape, roles) | {"shortfalls": run_shortfalls(config, roles)}
