"""The policy a learner rank trains: model, optimizer, GRPO step, weight export, checkpoint."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from visiong1.algorithms.losses import ClipSettings, ppo_clip_loss
from visiong1.config import LearnerConfig
from visiong1.training.batching import Sequence, collate, image_inputs, token_logprobs
from visiong1.types import TrainBatch


class PolicyTrainer:
    """One rank's policy. `version` counts optimizer steps; weights exported at version v produced step v's
    rollouts' successors."""

    def __init__(self, model_path: str, config: LearnerConfig, temperature: float = 1.0):
        self.config = config
        self.temperature = temperature
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32)
        self.model.train()
        if config.freeze_vision:
            self.model.model.visual.requires_grad_(False)
        self.trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(self.trainable.values(), lr=config.lr, weight_decay=config.weight_decay)
        warmup = max(1, config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / warmup))
        self.clip = ClipSettings(config.clip_low, config.clip_high, config.dual_clip)
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.version = 0

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
        """One optimizer step on the batch (token-mean over all its response tokens); bumps `version`."""
        started = time.perf_counter()
        sequences = self.sequences(batch)
        if not sequences:
            return {"train/sequences": 0, "train/skipped_no_signal": 1.0, "train/version": self.version}
        token_count = sum(len(s.response_ids) for s in sequences)
        totals = {"loss": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0, "ratio_mean": 0.0}
        for start in range(0, len(sequences), self.config.micro_batch_size):
            micro = sequences[start : start + self.config.micro_batch_size]
            tensors = collate(micro, self.pad_id)
            logprobs = token_logprobs(self.model, tensors, self.temperature)
            loss, stats = ppo_clip_loss(logprobs, tensors["old_logprobs"], tensors["advantages"],
                                        tensors["response_mask"], self.clip, token_count)
            loss.backward()
            share = float(tensors["response_mask"].sum()) / token_count
            totals["loss"] += float(loss)
            for key in stats:
                totals[key] += stats[key] * share
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.config.grad_clip))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"non-finite gradient norm {grad_norm} at version {self.version}; step not applied")
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        metrics = {f"train/{key}": value for key, value in totals.items()}
        metrics.update({"train/excluded_samples": sum(a is None for row in batch.advantages for a in row),
                        "train/grad_norm": grad_norm, "train/lr": lr, "train/sequences": len(sequences),
                        "train/tokens": token_count, "train/version": self.version, "train/skipped_no_signal": 0.0,
                        "train/step_s": time.perf_counter() - started})
        return metrics

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Detached copies of the trained tensors (the language model when the vision tower is frozen)."""
        return {name: p.detach().clone() for name, p in self.trainable.items()}

    def save(self, path: str | Path) -> Path:
        """A Hugging Face model directory (weights, config, processor) loadable by every engine."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return path
