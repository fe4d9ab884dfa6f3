"""The policy one learner rank trains: model (plain, or FSDP2-sharded across the group), optimizer, the RL step,
weight export and resumable state.

Every rank receives the whole step batch and trains on its strided share (`sequences[rank::world]`); the loss is
normalised by the step's global token (or sequence) count and scaled by the world size, so FSDP2's mean-reduced
gradients equal those of one rank training on the whole batch.
"""

from __future__ import annotations

import io
import json
import math
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch.distributed.tensor import DTensor

from visiong1.algorithms.losses import LossSettings, StepTotals, policy_loss
from visiong1.config import LearnerConfig
from visiong1.models.families import family_of, load_model, load_processor, load_sharded_model
from visiong1.training.batching import Sequence, collate, image_inputs, pack_by_tokens, token_logprobs
from visiong1.training.logprobs import head_logprobs, install_logprob_head
from visiong1.types import TrainBatch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PolicyTrainer:
    """`version` counts optimizer steps. With world_size > 1 the caller has initialised torch.distributed."""

    def __init__(self, model_path: str, config: LearnerConfig, temperature: float = 1.0, rank: int = 0,
                 world_size: int = 1, engine_factory: Callable[["PolicyTrainer"], Any] | None = None):
        """`engine_factory` wraps model, optimizer and scheduler in a DeepSpeed engine (backend `deepspeed`); it
        lives with the actors, so this library imports without DeepSpeed."""
        if config.backend == "torch" and world_size != 1:
            raise ValueError("backend 'torch' trains one rank; use fsdp2 or deepspeed for several")
        if (config.backend == "deepspeed") != (engine_factory is not None):
            raise ValueError("backend 'deepspeed' needs an engine_factory, and only it takes one")
        self.config, self.temperature, self.rank, self.world_size = config, temperature, rank, world_size
        seed_everything(config.seed)
        self.family = family_of(model_path)
        self.processor = load_processor(model_path)
        self.device = torch.device("cuda", torch.cuda.current_device()) if config.num_gpus else torch.device("cpu")
        self.model = self._load(model_path)
        if config.freeze_vision:
            self.family.submodule(self.model, self.family.vision_tower).requires_grad_(False)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.trainable_names = tuple(name for name, p in self.model.named_parameters() if p.requires_grad)
        self.full_state_dict_names = tuple(self.model.state_dict())
        self.reference = self._load(model_path).eval().requires_grad_(False) if config.kl_coef else None
        self.model.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        warmup = max(1, config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
        self.engine = engine_factory(self) if engine_factory is not None else None
        self.settings = LossSettings(config.clip_low, config.clip_high, config.dual_clip, config.aggregation,
                                     config.kl_coef, config.entropy_coef)
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.version = 0

    def _load(self, model_path: str):
        """The model on this rank's device: under FSDP2 only this rank's shards, read from the checkpoint's files
        (no rank holds the whole model); otherwise the whole model. fp32 parameters either way."""
        if self.config.backend == "fsdp2":
            return load_sharded_model(model_path, self._shard, self.device)
        model = load_model(model_path)
        if self.config.backend == "torch":
            install_logprob_head(model, self.config.logprob_chunk_tokens)
        return model.to(self.device)

    def reset_reference(self) -> None:
        """Copy the current policy into the KL reference, shard by shard (the reference is sharded like the
        policy, so no rank gathers anything)."""
        if self.reference is None:
            raise ValueError("reset_reference needs a reference model (learner.kl_coef > 0)")
        with torch.no_grad():
            for target, source in zip(self.reference.parameters(), self.model.parameters(), strict=True):
                target.copy_(source)

    def _shard(self, model, family) -> None:
        """FSDP2, given a model on the meta device: the chunked output head goes in first (FSDP must wrap the module
        that runs), then the family's units (decoder layers, vision blocks, untied embedding and head), then the root.
        On GPU, bf16 compute with fp32 gradient reduction (not exercised on the CPU machines tests run on)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.device.type == "cuda" else MixedPrecisionPolicy()
        install_logprob_head(model, self.config.logprob_chunk_tokens)
        for unit in family.shard_units(model):
            fully_shard(unit, mp_policy=policy)
        fully_shard(model, mp_policy=policy)

    # --- the RL step ---------------------------------------------------------------------------------------------
    def sequences(self, batch: TrainBatch) -> list[Sequence]:
        """Samples of groups with a reward spread; all-equal groups have zero advantage and no gradient, and
        excluded samples (advantage None) are left out."""
        sequences = []
        for group, advantages in zip(batch.groups, batch.advantages):
            if not any(advantages):  # None and 0.0 alike: nothing to learn from this group
                continue
            images = image_inputs(self.processor, group.prompt)
            for sample, advantage in zip(group.samples, advantages):
                if advantage is not None:
                    sequences.append(Sequence(sample.prompt_token_ids, sample.token_ids, sample.logprobs, advantage,
                                              images))
        return sequences

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """One optimizer step on the batch (gradients accumulated over token-budget micro-batches); bumps
        `version`. Every rank must call it with the same batch."""
        started = time.perf_counter()
        sequences = self.sequences(batch)
        if not sequences:
            return {"train/sequences": 0, "train/skipped_no_signal": 1.0, "train/version": self.version}
        totals = StepTotals(tokens=sum(len(s.response_ids) for s in sequences), sequences=len(sequences))
        mine = sequences[self.rank::self.world_size]
        sums = {"loss": 0.0}
        micro_batches = pack_by_tokens(mine, self.config.micro_batch_tokens)
        for index, micro in enumerate(micro_batches):
            if self.engine is not None:
                self.engine.set_gradient_accumulation_boundary(index == len(micro_batches) - 1)
            stats = self._accumulate(micro, totals)
            share = sum(len(s.response_ids) for s in micro) / totals.tokens
            sums["loss"] += stats.pop("loss")
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * share
        metrics = {f"train/{key}": value for key, value in self._all_reduce(sums).items()}
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = self._optimizer_step()
        self.version += 1
        elapsed = time.perf_counter() - started
        metrics.update({"train/grad_norm": grad_norm, "train/lr": lr, "train/sequences": len(sequences),
                        "train/tokens": totals.tokens, "train/tokens_per_s": totals.tokens / elapsed,
                        "train/excluded_samples": sum(a is None for row in batch.advantages for a in row),
                        "train/version": self.version, "train/skipped_no_signal": 0.0, "train/step_s": elapsed,
                        "train/peak_memory_mb": peak_memory_mb()})
        return metrics

    def _optimizer_step(self) -> float:
        """Clip, step, schedule, zero; returns the global gradient norm before clipping."""
        if self.engine is not None:
            self.engine.step()  # DeepSpeed clips, steps the optimizer and the scheduler, and zeroes
            grad_norm = float(self.engine.get_global_grad_norm())
        else:
            norm = torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.config.grad_clip)
            grad_norm = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)  # sharded: global norm
            if math.isfinite(grad_norm):
                self.optimizer.step()
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(grad_norm):
            raise FloatingPointError(f"non-finite gradient norm {grad_norm} at version {self.version}")
        return grad_norm

    def _accumulate(self, micro: list[Sequence], totals: StepTotals) -> dict[str, float]:
        """Forward/backward of one micro-batch; returns its loss contribution and statistics."""
        tensors = {key: value.to(self.device) if value is not None else None
                   for key, value in collate(micro, self.pad_id).items()}
        mask = tensors["response_mask"]
        old = tensors["old_logprobs"]
        mismatch = None
        if self.config.old_logprobs == "recompute":
            with torch.no_grad():
                old = self._logprobs(self._forward_model(), tensors)
            # how far the rollout engine's logprobs are from the learner's: engine drift shows here first
            mismatch = float(((old - tensors["old_logprobs"]).abs() * mask).sum() / mask.sum().clamp(min=1))
        reference = None
        if self.reference is not None:
            with torch.no_grad():
                reference = self._logprobs(self.reference, tensors)
        logprobs, entropy = self._logprobs(self._forward_model(), tensors, with_entropy=True)
        loss, stats = policy_loss(logprobs, old, tensors["advantages"], mask, self.settings, totals,
                                  ref_logprobs=reference, entropy=entropy)
        scaled = loss * self.world_size  # FSDP2 and ZeRO average gradients over ranks; the step wants their sum
        if self.engine is not None:
            self.engine.backward(scaled, scale_wrt_gas=False)
        else:
            scaled.backward()
        if mismatch is not None:
            stats["rollout_logprob_abs_diff"] = mismatch
        return {"loss": float(loss.detach()), **stats}

    def _logprobs(self, model, tensors: dict, with_entropy: bool = False):
        """`[batch, length - 1]` next-token logprobs (and entropy): through the chunked output head, or under
        DeepSpeed (whose ZeRO-3 hooks own the head) through the plain one."""
        if self.engine is not None:
            return token_logprobs(model, tensors, self.temperature, with_entropy)
        return head_logprobs(model, tensors, self.temperature, with_entropy)

    def _forward_model(self):
        return self.engine if self.engine is not None else self.model

    def _all_reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Step statistics over all ranks: the loss adds up, token-weighted means add up too."""
        if self.world_size == 1:
            return sums
        keys = sorted(sums)
        values = torch.tensor([sums[key] for key in keys], dtype=torch.float64)
        dist.all_reduce(values)
        return dict(zip(keys, values.tolist()))

    # --- weights and state ---------------------------------------------------------------------------------------
    def full_state_dict(self, trainable_only: bool = False) -> dict[str, torch.Tensor]:
        """Unsharded CPU tensors on rank 0 (an empty dict elsewhere); a collective call under FSDP2."""
        if self.engine is not None and self.config.zero_stage == 3:
            state = self.engine._zero3_consolidated_16bit_state_dict()  # gathers to rank 0 (the HF/Accelerate way)
            state = {name: tensor.detach().cpu().clone() for name, tensor in (state or {}).items()}
        else:
            state = self._full_state(self.model)
        if trainable_only:
            state = {name: state[name] for name in self.trainable_names if name in state}
        if self.config.backend == "torch":  # live parameters: copy them, callers keep the result across steps
            state = {name: tensor.detach().clone() for name, tensor in state.items()}
        return state

    def _full_state(self, module) -> dict[str, torch.Tensor]:
        """`module`'s whole state dict: gathered to rank 0's CPU under FSDP2 (empty elsewhere), else as it is."""
        if self.config.backend != "fsdp2":
            return module.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def _load_full_state(self, module, state: dict[str, torch.Tensor]) -> None:
        """Load a whole state dict into `module` (under FSDP2 rank 0's is broadcast and each rank keeps its shard)."""
        if self.config.backend != "fsdp2":
            module.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def export_weights(self) -> dict[str, torch.Tensor]:
        """What rollout replicas load: the trained tensors (the language model when the vision tower is frozen)."""
        return self.full_state_dict(trainable_only=True)

    def optimizer_state(self) -> dict:
        """Full optimizer state (rank 0 holds it under FSDP2); a collective call under FSDP2."""
        if self.config.backend == "fsdp2":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(self.model, self.optimizer,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.optimizer.state_dict()

    def training_state(self) -> dict:
        """Everything besides tensors that a resume needs (this rank's RNG states included)."""
        return {"version": self.version, "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}

    def load_state(self, model_state: dict, optimizer_state: dict, training_state: dict) -> None:
        """Restore what `full_state_dict`, `optimizer_state` and `training_state` produced (all ranks call it;
        under FSDP2 only rank 0's dicts are read and broadcast)."""
        if self.config.backend == "fsdp2":
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)

            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_model_state_dict(self.model, model_state, options=options)
            set_optimizer_state_dict(self.model, self.optimizer, optimizer_state, options=options)
        else:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(training_state["scheduler"])
        self.version = training_state["version"]
        _set_rng_states(training_state["rng"])

    def checkpoint_files(self, extra: dict) -> dict[str, bytes] | None:
        """The files of a resumable checkpoint, on rank 0 (None elsewhere); a collective call. `extra` (JSON) holds
        what the caller needs to resume too, e.g. the coordinator's data cursor."""
        model = self.full_state_dict()
        # Each rank's own part: RNG states, and under DeepSpeed its ZeRO partition files; rank 0 writes them all.
        own = {f"training_state/rank{self.rank}.pt": _torch_bytes(self.training_state())}
        if self.engine is not None:
            own.update(self._deepspeed_files())
        optimizer = self.optimizer_state() if self.engine is None else None
        parts = [own]
        if self.world_size > 1:
            parts = [None] * self.world_size if self.rank == 0 else None
            dist.gather_object(own, parts, dst=0)
        if self.rank != 0:
            return None
        files = {"model.safetensors": save_safetensors(model), "extra.json": json.dumps(extra).encode()}
        if self.config.kl_reference == "round" and self.reference is not None:  # not rebuilt from model_path
            reference = {name: tensor.clone() for name, tensor in self._full_state(self.reference).items()}  # untie
            if self.rank == 0:
                files["reference.safetensors"] = save_safetensors(reference)
        if optimizer is not None:
            files["optimizer.pt"] = _torch_bytes(optimizer)
        for part in parts:
            files.update(part)
        with tempfile.TemporaryDirectory() as staging:  # config and processor, so the checkpoint exports alone
            self.model.config.save_pretrained(staging)
            self.model.generation_config.save_pretrained(staging)
            self.processor.save_pretrained(staging)
            files.update({f"hf/{p.name}": p.read_bytes() for p in Path(staging).iterdir() if p.is_file()})
        return files

    def restore(self, files: dict[str, bytes]) -> dict:
        """Load a checkpoint written by `checkpoint_files` (all ranks call it with the same files); returns `extra`."""
        training = torch.load(io.BytesIO(files[f"training_state/rank{self.rank}.pt"]), weights_only=False)
        if self.engine is not None:
            self._load_deepspeed_files(files)
            self.version = training["version"]
            _set_rng_states(training["rng"])
        else:
            optimizer = torch.load(io.BytesIO(files["optimizer.pt"]), weights_only=False)
            self.load_state(load_safetensors(files["model.safetensors"]), optimizer, training)
        if "reference.safetensors" in files and self.reference is not None:
            self._load_full_state(self.reference, load_safetensors(files["reference.safetensors"]))
        return json.loads(files["extra.json"])

    def _deepspeed_files(self) -> dict[str, bytes]:
        """This rank's files of DeepSpeed's own checkpoint (model states on rank 0, one ZeRO partition per rank)."""
        with tempfile.TemporaryDirectory() as staging:
            self.engine.save_checkpoint(staging, tag="state")
            return {f"deepspeed/{p.relative_to(staging)}": p.read_bytes()
                    for p in Path(staging).rglob("*") if p.is_file()}

    def _load_deepspeed_files(self, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as staging:
            for name, payload in files.items():
                if name.startswith("deepspeed/"):
                    target = Path(staging) / name.removeprefix("deepspeed/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(payload)
            self.engine.load_checkpoint(staging, tag="state", load_optimizer_states=True,
                                        load_lr_scheduler_states=True)

    def save_pretrained(self, path: str | Path) -> Path:
        """A Hugging Face model directory (weights, config, processor); rank 0 writes, a collective under FSDP2."""
        state = self.full_state_dict()
        path = Path(path)
        if self.rank == 0:
            self.model.save_pretrained(path, state_dict=state)
            self.processor.save_pretrained(path)
        return path


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, max RSS on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
