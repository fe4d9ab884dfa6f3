"""Influence scoring: per-item gradient features, sketched and normalised, compared with a held-out target set.

The method (documented in docs/components.md; first-order influence as in TracIn, features as in LESS):

- For an item z, g(z) = d loss(z; theta) / d theta_S over the parameter subset S (the last N decoder layers of the
  language model). The loss is the negative log-likelihood of the item's answer `\\boxed{answer}` given its prompt
  (`nll`), or the GRPO policy-gradient loss of its difficulty-scoring samples (`policy_gradient`).
- Preconditioning (`precondition`): P g = g / sqrt(v + delta * mean(v)), v the mean over the target items of g(t)^2
  (elementwise; a diagonal empirical Fisher, the second moment Adam keeps), delta = PRECONDITIONER_DAMPING. Then
  <P g(z), P g(t)> = g(z)^T diag(v + delta mean(v))^-1 g(t): the influence-function form g(z)^T H^-1 g(t), H ~ the
  diagonal Fisher. Off: P = identity.
- phi(z) = C P g(z) / ||C P g(z)||, where C is a seeded CountSketch (d x |S|: coordinate i goes to bucket h(i) with
  sign s(i)); E[<Cx, Cy>] = <x, y>, so sketched inner products estimate exact ones in O(|S|) time and memory.
- For each domain D with target items T_D: score_D(z) = max (`aggregate: max`) or mean over t in T_D of
  <phi(z), phi(t)>, cosine similarities. One SGD step on z changes the loss of t by about -lr * <g(z), g(t)> (TracIn
  with one checkpoint): a high score means training on z is expected to lower the loss of some target (max) or of the
  targets on average (mean).
- An item's score is score_D for its own domain when D has targets, else the maximum over domains (LESS takes the
  maximum over target subtasks).
"""

from __future__ import annotations

import numpy as np
import torch

from visiong1.algorithms.advantages import grpo_advantages
from visiong1.selection.scoring import domain_targets, influence_scores
from visiong1.training.batching import Sequence, collate, encode_prompt, token_logprobs
from visiong1.training.warm_start import answer_sequences
from visiong1.types import PromptItem

PRECONDITIONER_DAMPING = 1e-3
"""delta: v + delta * mean(v) keeps coordinates that no target's gradient moves from dominating every feature."""


def subset_parameters(model, last_layers: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters of the last `last_layers` decoder layers of the language model, in name order."""
    named = dict(model.named_parameters())
    indices = sorted({int(name.split("language_model.layers.")[1].split(".")[0])
                      for name in named if "language_model.layers." in name})
    if not indices:
        raise ValueError("no `language_model.layers.N` parameters: not a Qwen2.5-VL-style model")
    chosen = {f"language_model.layers.{i}." for i in indices[-last_layers:]}
    return [(name, param) for name, param in named.items() if any(prefix in name for prefix in chosen)]


class CountSketch:
    """A seeded sparse JL projection from `size` to `dim` coordinates: `project(x)[j] = sum over i with
    bucket(i) = j of sign(i) * x[i]`. Shapes: x `[batch, size]` -> `[batch, dim]`."""

    def __init__(self, size: int, dim: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.buckets = torch.randint(0, dim, (size,), generator=generator)
        self.signs = torch.randint(0, 2, (size,), generator=generator).float() * 2 - 1

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(vectors.shape[0], self.dim, dtype=vectors.dtype)
        return out.index_add_(1, self.buckets, vectors * self.signs)


def flat_gradient(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """`[sum of param sizes]` gradient of `loss` over `params` (no .grad is written)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def nll_loss(model, processor, item: PromptItem, system_prompt: str) -> torch.Tensor:
    """Mean negative log-likelihood of `\\boxed{reference answer}<|im_end|>` given the item's prompt."""
    batch = collate(answer_sequences(processor, [item], system_prompt), processor.tokenizer.pad_token_id)
    logprobs = token_logprobs(model, batch)
    return -(logprobs * batch["response_mask"]).sum() / batch["response_mask"].sum()


def policy_gradient_loss(model, processor, item: PromptItem, system_prompt: str, responses: list[list[int]],
                         rewards: list[float], temperature: float) -> torch.Tensor:
    """GRPO loss of the item's sampled responses at the current policy: -mean over response tokens of A * logp
    (the on-policy gradient of the clipped objective). Zero when every sample earned the same reward."""
    advantages = grpo_advantages([rewards])[0]
    prompt_ids, images = encode_prompt(processor, item, system_prompt)
    sequences = [Sequence(prompt_ids, ids, [0.0] * len(ids), advantage, images)
                 for ids, advantage in zip(responses, advantages) if ids]
    batch = collate(sequences, processor.tokenizer.pad_token_id)
    logprobs = token_logprobs(model, batch, temperature)
    return -(batch["advantages"] * logprobs * batch["response_mask"]).sum() / batch["response_mask"].sum()


def normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero: an item with no gradient has no influence)."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


class GradientFeaturizer:
    """A policy loaded for influence scoring: `features(items)` -> `[items, projection_dim]` unit-norm sketched
    gradients of the configured loss over the configured parameter subset. Only the subset requires grad."""

    def __init__(self, model_path: str, config, system_prompt: str, temperature: float = 1.0):
        from visiong1.models.families import load_model, load_processor

        self.config, self.system_prompt, self.temperature = config, system_prompt, temperature
        self.processor = load_processor(model_path)
        self.model = load_model(model_path).eval()
        subset = subset_parameters(self.model, config.last_layers)
        chosen = {id(param) for _, param in subset}
        for param in self.model.parameters():
            param.requires_grad_(id(param) in chosen)
        self.params = [param for _, param in subset]
        self.size = sum(param.numel() for param in self.params)
        self.sketch = CountSketch(self.size, config.projection_dim, config.seed)
        self.scale: torch.Tensor | None = None  # [size] 1 / sqrt(damped v) once preconditioned, else None

    def load_state_dict(self, state: dict) -> None:
        """Current policy weights (a full or partial state dict, as the learner exports them)."""
        missing = set(state) - set(self.model.state_dict())
        if missing:
            raise KeyError(f"weights for parameters this model lacks: {sorted(missing)[:5]}")
        self.model.load_state_dict(state, strict=False)

    def gradient(self, item: PromptItem, samples: dict | None = None) -> torch.Tensor:
        """Exact `[size]` gradient of the item's loss; `samples` = {"responses", "rewards"} for policy_gradient."""
        if self.config.loss == "nll":
            loss = nll_loss(self.model, self.processor, item, self.system_prompt)
        else:
            if not samples:
                raise ValueError(f"{item.id}: the policy_gradient loss needs the item's difficulty samples")
            loss = policy_gradient_loss(self.model, self.processor, item, self.system_prompt, samples["responses"],
                                        samples["rewards"], self.temperature)
        return flat_gradient(loss, self.params)

    def squared_gradient_sum(self, items: list[PromptItem], samples: dict[str, dict] | None = None) -> np.ndarray:
        """`[size]` float32 sum over `items` of their squared exact gradients (elementwise)."""
        total = torch.zeros(self.size)
        for item in items:
            total += self.gradient(item, (samples or {}).get(item.id)) ** 2
        return total.numpy()

    def precondition_with(self, second_moment: np.ndarray | None) -> None:
        """Divide later gradients by sqrt(v + delta * mean(v)) for `second_moment` v (`[size]`); None: plain."""
        if second_moment is None:
            self.scale = None
            return
        v = torch.as_tensor(second_moment, dtype=torch.float32)
        self.scale = (v + PRECONDITIONER_DAMPING * v.mean()).clamp_min(1e-30).rsqrt()

    def features(self, items: list[PromptItem], samples: dict[str, dict] | None = None,
                 batch: int = 16) -> np.ndarray:
        """`[len(items), projection_dim]` float32 unit-norm sketched (preconditioned, if set) gradients."""
        rows = []
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            gradients = torch.stack([self.gradient(item, (samples or {}).get(item.id)) for item in chunk])
            if self.scale is not None:
                gradients = gradients * self.scale
            rows.append(normalise(self.sketch.project(gradients)))
        return torch.cat(rows).numpy() if rows else np.zeros((0, self.config.projection_dim), dtype=np.float32)

    def scores(self, candidates: list[PromptItem], targets: list[PromptItem],
               samples: dict[str, dict] | None = None) -> np.ndarray:
        """`[len(candidates)]` influence scores in this process, as the InfluencePool computes them across actors:
        preconditioner from the targets (if configured), target features per domain, aggregated cosines."""
        second_moment = self.squared_gradient_sum(targets, samples) / len(targets) if self.config.precondition else None
        self.precondition_with(second_moment)
        per_domain = domain_targets(self.features(targets, samples), [t.domain for t in targets])
        return influence_scores(self.features(candidates, samples), [c.domain for c in candidates], per_domain,
                                self.config.aggregate)
