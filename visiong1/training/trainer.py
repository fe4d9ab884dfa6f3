"""The policy one learner rank trains: model (plain, or FSDP2-sharded across the group), optimizer, the RL step,
weight export and resumable state.

Every rank receives the whole step batch and trains on its strided share of each mini-batch
(`part[rank::world]`); the loss is normalised by the mini-batch's global token (or sequence) count and scaled by the
world size, so FSDP2's mean-reduced gradients equal those of one rank training on the whole mini-batch.
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
from torch.distributed.tensor import DTensor

from visiong1.algorithms.losses import LossSettings, StepTotals, policy_loss
from visiong1.config import LearnerConfig
from visiong1.models.families import family_of, load_model, load_processor, load_sharded_model
from visiong1.training.checkpoint import CheckpointFormatError, CheckpointStore
from visiong1.training.dcp_storage import save_state, state_reader
from visiong1.training.gloo_reduce import InPlaceReduceScatter
from visiong1.training.batching import (Sequence, collate, idle_sequence, image_inputs, pack_by_tokens, stretch_to,
                                       token_logprobs)
from visiong1.training.logprobs import head_logprobs, install_logprob_head
from visiong1.types import TrainBatch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PolicyTrainer:
    """`version` counts RL steps (`learner.mini_batches` optimizer steps each). With world_size > 1 the caller has
    initialised torch.distributed."""

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
        # what a rank runs to pair its passes with another rank's (see `_paired`), by whether it carries an image
        self.idle = {with_image: idle_sequence(self.processor, with_image) for with_image in (False, True)}
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
                                     config.kl_coef, config.entropy_coef, config.importance_cap)
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
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.device.type == "cuda" else MixedPrecisionPolicy()
        install_logprob_head(model, self.config.logprob_chunk_tokens)
        embeddings = model.get_input_embeddings()
        for unit in family.shard_units(model):
            fully_shard(unit, mp_policy=policy)
            if unit is embeddings:  # its weight gradient needs the token ids, not the weight: no gather for it
                unit.set_unshard_in_backward(False)
        fully_shard(model, mp_policy=policy)
        if dist.is_initialized() and dist.get_backend() == "gloo":
            for unit in model.modules():
                if isinstance(unit, FSDPModule):
                    unit.set_custom_reduce_scatter(InPlaceReduceScatter())

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
        """One RL step on the batch: `mini_batches` optimizer steps, each over its share of the sequences
        (gradients accumulated over token-budget micro-batches), all against the behaviour logprobs of the policy
        as the step began; bumps `version` once. Every rank must call it with the same batch."""
        started = time.perf_counter()
        sequences = self.sequences(batch)
        if not sequences:
            return {"train/sequences": 0, "train/skipped_no_signal": 1.0, "train/version": self.version}
        parts = self._mini_batches(sequences)
        behaviour = [self._behaviour_logprobs(micros) for micros, _ in parts]  # before any update
        tokens = sum(len(s.response_ids) for s in sequences)
        lr = self.scheduler.get_last_lr()[0]
        sums, grad_norms = {}, []
        for index, ((micros, totals), old) in enumerate(zip(parts, behaviour)):
            part = self._all_reduce(self._accumulate_part(micros, totals, old))
            grad_norms.append(self._optimizer_step())
            for key, value in part.items():  # the step's figures: token-weighted over its mini-batches
                sums[key] = sums.get(key, 0.0) + value * totals.tokens / tokens
            if len(parts) > 1:
                sums |= {f"mini_batch_{index}/{key}": part[key] for key in ("ratio_mean", "clip_fraction_high",
                                                                            "clip_fraction_low")}
        self.version += 1
        elapsed = time.perf_counter() - started
        metrics = {f"train/{key}": value for key, value in sums.items()}
        metrics.update({"train/grad_norm": grad_norms[-1], "train/grad_norm_max": max(grad_norms), "train/lr": lr,
                        "train/sequences": len(sequences),
                        "train/tokens": tokens, "train/tokens_per_s": tokens / elapsed,
                        "train/mini_batches": len(parts),
                        "train/excluded_samples": sum(a is None for row in batch.advantages for a in row),
                        "train/version": self.version, "train/skipped_no_signal": 0.0, "train/step_s": elapsed,
                        "train/peak_memory_mb": peak_memory_mb()})
        return metrics

    def _mini_batches(self, sequences: list[Sequence]) -> list[tuple[list[list[Sequence]], StepTotals]]:
        """`learner.mini_batches` consecutive parts (fewer when there are not `world_size` sequences for each):
        per part, this rank's micro-batches, paired with every other rank's (`_paired`), and the part's
        normalisers (its optimizer step's mean)."""
        count = max(1, min(self.config.mini_batches, len(sequences) // self.world_size))
        bounds = np.linspace(0, len(sequences), count + 1).astype(int)
        parts = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            part = sequences[start:stop]
            totals = StepTotals(tokens=sum(len(s.response_ids) for s in part), sequences=len(part))
            parts.append((pack_by_tokens(part[self.rank::self.world_size], self.config.micro_batch_tokens), totals))
        return [(self._paired(micros), totals) for micros, totals in parts]

    def _paired(self, micros: list[list[Sequence]]) -> list[list[Sequence]]:
        """This rank's micro-batches made to pair with every other rank's, since each forward and backward is a
        collective under FSDP2 and ZeRO-3: as many (`stretch_to`), and pass i runs the vision tower on every rank
        when it does on one. An idle sequence (no response tokens: it adds nothing) fills an empty micro-batch
        and brings an image where one is needed."""
        if self.world_size == 1:
            return micros
        micros = stretch_to(micros, self._most_over_ranks([len(micros)])[0])
        own = [any(s.images.pixel_values is not None for s in micro) for micro in micros]
        vision = self._most_over_ranks([int(has) for has in own])
        paired = []
        for micro, has, needed in zip(micros, own, vision):
            if needed and not has:
                micro = micro + [self.idle[True]]
            paired.append(micro or [self.idle[False]])
        return paired

    def _most_over_ranks(self, values: list[int]) -> list[int]:
        """The element-wise maximum of `values` over the ranks."""
        if self.world_size == 1:
            return values
        most = torch.tensor(values, dtype=torch.int64, device=self.device)  # NCCL reduces only device tensors
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        return most.tolist()

    def _behaviour_logprobs(self, micros: list[list[Sequence]]) -> list[tuple[torch.Tensor | None, float | None]]:
        """Per micro-batch, the importance ratio's denominator and its mean absolute distance from the rollout
        engine's logprobs: with `old_logprobs: recompute` this policy's, computed before the step's first update so
        that later mini-batches see the ratio move; with `rollout` (None, None): the engine's own, in the batch."""
        if self.config.old_logprobs != "recompute":
            return [(None, None)] * len(micros)
        out = []
        for micro in micros:
            tensors = self._tensors(micro)
            old, mask = tensors["old_logprobs"], tensors["response_mask"]
            with torch.no_grad():
                learner = self._logprobs(self._forward_model(), tensors)
            # how far the rollout engine's logprobs are from the learner's: engine drift shows here first
            out.append((learner, float(((learner - old).abs() * mask).sum() / mask.sum().clamp(min=1))))
        return out

    def _accumulate_part(self, micros: list[list[Sequence]], totals: StepTotals,
                         behaviour: list[tuple[torch.Tensor | None, float | None]]) -> dict[str, float]:
        """Forward/backward of one mini-batch's micro-batches: its loss and token-weighted statistics (this rank's
        share; `_all_reduce` adds the ranks up)."""
        sums = {"loss": 0.0}
        for index, (micro, (old, mismatch)) in enumerate(zip(micros, behaviour)):
            if self.engine is not None:
                self.engine.set_gradient_accumulation_boundary(index == len(micros) - 1)
            stats = self._accumulate(micro, totals, old)
            if mismatch is not None:
                stats["rollout_logprob_abs_diff"] = mismatch
            share = sum(len(s.response_ids) for s in micro) / totals.tokens
            sums["loss"] += stats.pop("loss")
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * share
        return sums

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

    def _tensors(self, micro: list[Sequence]) -> dict:
        return {key: value.to(self.device) if value is not None else None
                for key, value in collate(micro, self.pad_id).items()}

    def _accumulate(self, micro: list[Sequence], totals: StepTotals, old: torch.Tensor | None) -> dict[str, float]:
        """Forward/backward of one micro-batch against behaviour logprobs `old` (`[batch, length - 1]`; None: the
        rollout engine's); returns its loss contribution and statistics."""
        tensors = self._tensors(micro)
        mask = tensors["response_mask"]
        old = tensors["old_logprobs"] if old is None else old
        reference = None
        if self.reference is not None:
            with torch.no_grad():
                reference = self._logprobs(self.reference, tensors)
        logprobs, entropy = self._logprobs(self._forward_model(), tensors, with_entropy=True)
        loss, stats = policy_loss(logprobs, old, tensors["advantages"], mask, self.settings, totals,
                                  ref_logprobs=reference, entropy=entropy, rollout_logprobs=tensors["old_logprobs"])
        scaled = loss * self.world_size  # FSDP2 and ZeRO average gradients over ranks; the step wants their sum
        if self.engine is not None:
            self.engine.backward(scaled, scale_wrt_gas=False)
        else:
            scaled.backward()
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
        values = torch.tensor([sums[key] for key in keys], dtype=torch.float64, device=self.device)
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

    def weight_plan(self, bucket_bytes: int):
        """The collective weight sync's BucketPlan of the trained tensors, in the rollout dtype (bf16 on GPU)."""
        from visiong1.training.weight_buckets import plan_buckets

        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        return plan_buckets({name: tuple(self.model.get_parameter(name).shape) for name in self.trainable_names},
                            dtype, bucket_bytes)

    def send_weights(self, plan, send: Callable[[torch.Tensor], None] | None):
        """Gather the plan's tensors bucket by bucket (a collective under FSDP2) and `send` each bucket (rank 0
        passes `send`); returns the SendCounters."""
        from visiong1.training.weight_buckets import send_buckets

        if self.engine is not None:
            raise ValueError("the collective weight sync gathers FSDP2 shards; learner.backend 'deepspeed' uses "
                             "rollout.weight_sync: object_store")
        return send_buckets(self.model, plan, send, self.device)

    def export_weights(self) -> dict[str, torch.Tensor]:
        """What rollout replicas load: the trained tensors (the language model when the vision tower is frozen)."""
        return self.full_state_dict(trainable_only=True)

    def training_state(self) -> dict:
        """Everything besides tensors that a resume needs (this rank's RNG states included)."""
        return {"version": self.version, "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}

    # --- checkpoints -----------------------------------------------------------------------------------------------
    def save_checkpoint(self, store: CheckpointStore, staging: str, extra: dict) -> dict[str, str]:
        """Write this rank's part of a resumable checkpoint into `staging`, in parallel with the other ranks (a
        collective): its shards of the model, optimizer and (`kl_reference: round`) KL reference, or DeepSpeed's own
        files; its training state; on rank 0 also `extra` (JSON, e.g. the data cursor) and the config and
        processor, so the checkpoint exports alone. Returns {path relative to the checkpoint: sha256} of what this
        rank wrote, for the manifest."""
        if self.engine is not None:
            digests = self._save_deepspeed(store, staging)
        else:
            digests = save_state(self.checkpoint_state(), store, f"{staging}/state")
        own = f"training_state/rank{self.rank}.pt"
        digests[own] = store.write_file(f"{staging}/{own}", _torch_bytes(self.training_state()))
        if self.rank == 0:
            digests["extra.json"] = store.write_file(f"{staging}/extra.json", json.dumps(extra).encode())
            digests.update(self._save_hf_files(store, staging))
        return digests

    def load_checkpoint(self, store: CheckpointStore, path: str) -> dict:
        """Restore this rank from the (verified) checkpoint at `path`, a collective: DCP reshards the model,
        optimizer and reference from the world size that wrote them to this one; a rank the writer did not have
        takes rank 0's RNG states. DeepSpeed's format resumes only at its own world size. Returns `extra`."""
        manifest = store.manifest(path)
        if (manifest["backend"] == "deepspeed") != (self.engine is not None):
            raise CheckpointFormatError(f"{path} was written by learner.backend {manifest['backend']!r}; this run's "
                                        f"is {self.config.backend!r}")
        if self.engine is not None:
            self._load_deepspeed(store, path, manifest)
        else:
            self._load_sharded(store, path)
        own = f"training_state/rank{self.rank}.pt"
        training = torch.load(io.BytesIO(store.read(path, own if own in manifest["sha256"] else
                                                     "training_state/rank0.pt")), weights_only=False)
        self.scheduler.load_state_dict(training["scheduler"])
        self.version = training["version"]
        _set_rng_states(training["rng"])
        return json.loads(store.read(path, "extra.json"))

    def checkpoint_state(self) -> dict:
        """The state DCP saves and loads: this rank's shards (whole tensors off FSDP2), keyed by parameter name."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

        model, optimizer = get_state_dict(self.model, self.optimizer)
        state = {"model": model, "optimizer": optimizer}
        if self.config.kl_reference == "round" and self.reference is not None:  # not rebuilt from model_path
            state["reference"] = get_model_state_dict(self.reference)
        return state

    def _load_sharded(self, store: CheckpointStore, path: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

        state = self.checkpoint_state()
        dcp.load(state, storage_reader=state_reader(store, f"{path}/state"), no_dist=not dist.is_initialized())
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
        if "reference" in state:
            set_model_state_dict(self.reference, state["reference"])

    def _save_hf_files(self, store: CheckpointStore, staging: str) -> dict[str, str]:
        """Config, generation config and processor under `hf/`."""
        with tempfile.TemporaryDirectory() as local:
            self.model.config.save_pretrained(local)
            self.model.generation_config.save_pretrained(local)
            self.processor.save_pretrained(local)
            return {f"hf/{p.name}": store.write_file(f"{staging}/hf/{p.name}", p.read_bytes())
                    for p in Path(local).iterdir() if p.is_file()}

    def _save_deepspeed(self, store: CheckpointStore, staging: str) -> dict[str, str]:
        """DeepSpeed's own checkpoint (model states on rank 0, this rank's ZeRO partition), written to a local
        directory and copied into the store file by file."""
        with tempfile.TemporaryDirectory() as local:
            self.engine.save_checkpoint(local, tag="state")
            names = [str(p.relative_to(local)) for p in Path(local).rglob("*") if p.is_file()]
            return {f"deepspeed/{name}": store.upload(f"{local}/{name}", f"{staging}/deepspeed/{name}")
                    for name in names}

    def _load_deepspeed(self, store: CheckpointStore, path: str, manifest: dict) -> None:
        """DeepSpeed reads its checkpoint from a directory: the store's own when local, else a downloaded copy."""
        if manifest["world_size"] != self.world_size:
            raise CheckpointFormatError(
                f"{path} holds DeepSpeed ZeRO-{self.config.zero_stage} partitions of {manifest['world_size']} ranks "
                f"and this group has {self.world_size}: DeepSpeed checkpoints resume at the world size that wrote "
                f"them (convert with DeepSpeed's ds_to_universal.py, or resume with learner.ranks="
                f"{manifest['world_size']}); fsdp2 checkpoints reshard")
        if store.local:
            self._load_deepspeed_from(f"{path}/deepspeed")
            return
        with tempfile.TemporaryDirectory() as local:
            for name in manifest["sha256"]:
                if name.startswith("deepspeed/"):
                    target = Path(local) / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    store.download(f"{path}/{name}", str(target))
            self._load_deepspeed_from(f"{local}/deepspeed")

    def _load_deepspeed_from(self, directory: str) -> None:
        self.engine.load_checkpoint(directory, tag="state", load_optimizer_states=True, load_lr_scheduler_states=True)

    def save_model(self, store: CheckpointStore, directory: str) -> dict[str, str]:
        """The policy's weights alone, sharded as in a checkpoint (`state/` and `hf/` under `directory`), for
        `export_checkpoint`; a collective call, every rank writing its own shards."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        if self.engine is not None:
            raise ValueError("learner.backend 'deepspeed' exports through save_gathered")
        digests = save_state({"model": get_model_state_dict(self.model)}, store, f"{directory}/state")
        if self.rank == 0:
            digests.update(self._save_hf_files(store, directory))
        return digests

    def save_gathered(self, path: str | Path) -> None:
        """DeepSpeed's export: ZeRO-3 consolidates a 16-bit copy of the weights on rank 0 (its own mechanism, as
        Accelerate uses it), which writes the Hugging Face directory; a collective call."""
        state = self.full_state_dict()
        if self.rank == 0:
            self.model.save_pretrained(path, state_dict=state)
            self.processor.save_pretrained(path)


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
