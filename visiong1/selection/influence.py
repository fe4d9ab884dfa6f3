"""Influence scoring: per-item gradient features, sketched and normalised, compared with a held-out target set.

The method (documented in docs/components.md; first-order influence as in TracIn, features as in LESS):

- For an item z, g(z) = d loss(z; theta) / d theta_S over the parameter subset S (the last N decoder layers of the
  language model). The loss is the negative log-likelihood of the item's answer `\\boxed{answer}` given its prompt
  (`nll`), or the GRPO policy-gradient loss of its difficulty-scoring samples (`policy_gradient`).
- Preconditioning (`precondition`): P g = g / sqrt(v + delta * mean(v)), v the mean over the target items of g(t)^2
  (elementwise; a diagonal empirical Fisher, the second moment Adam keeps), delta = PRECONDITIONER_DAMPING. Then
  <P g(z), P g(t)> = g(z)^T diag(v + delta mean(v))^-1 g(t): the influence-function form g(z)^T H^-1 g(t), H ~ the
  diagonal Fisher. Off: P = identity.
- phi(z) = C P g(z) / ||C P g(z)||, where C is a CountSketch (d x |S|: coordinate i of parameter b goes to bucket
  h(seed, b, i) with sign s(seed, b, i), both hashed on the fly); E[<Cx, Cy>] = <x, y>, so sketched inner products
  estimate exact ones in O(|S|) time and O(d) memory.
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
    """Parameters of the last `last_layers` decoder layers of the language model (where the model's family keeps
    them), in name order."""
    from visiong1.models.families import family_for_type

    family = family_for_type(model.config.model_type)
    layers = family.submodule(model, family.decoder_layers)
    chosen = {id(param) for layer in list(layers)[-last_layers:] for param in layer.parameters()}
    return [(name, param) for name, param in model.named_parameters() if id(param) in chosen]


_MASK32 = 0xFFFFFFFF
_SIGN_SALT = 0x9E3779B9
HASH_CHUNK = 1 << 22  # coordinates hashed at a time: bounds the int64 temporaries to a few tens of MB


def hash32(values: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix of an int64 tensor of values in [0, 2^32) (two multiply-xorshift rounds; products stay
    below 2^59, so int64 never overflows). Same input, same output, on any device."""
    values = (((values >> 16) ^ values) * 0x45D9F3B) & _MASK32
    values = (((values >> 16) ^ values) * 0x45D9F3B) & _MASK32
    return (values >> 16) ^ values


class HashedSketch:
    """A CountSketch whose bucket and sign of coordinate i of parameter block b are hashed from (seed, b, i) when
    needed: no per-coordinate index is ever stored, and every worker projects alike. `add(out, b, values)` adds
    block b's contribution to a `[dim]` feature; E[<Cx, Cy>] = <x, y> as for any CountSketch."""

    def __init__(self, dim: int, seed: int):
        self.dim, self.seed = dim, seed

    def _block_key(self, block: int) -> int:
        return int(hash32(torch.tensor((self.seed * 1_000_003 + block) & _MASK32)))

    def add(self, out: torch.Tensor, block: int, values: torch.Tensor) -> None:
        """`out[bucket(i)] += sign(i) * values[i]` over the flattened `values` of `block` (fewer than 2^32)."""
        flat, key = values.reshape(-1), self._block_key(block)
        for start in range(0, flat.numel(), HASH_CHUNK):
            part = flat[start:start + HASH_CHUNK]
            hashed = hash32(torch.arange(start, start + part.numel(), device=part.device) ^ key)
            signs = (hash32(hashed ^ _SIGN_SALT) & 1).to(out.dtype) * 2 - 1
            out.index_add_(0, hashed % self.dim, part.to(out.dtype) * signs)

    def project(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """`[dim]` sketch of a vector given as its blocks, in block order (the dense reference of `add`)."""
        out = torch.zeros(self.dim, dtype=torch.float32, device=blocks[0].device)
        for block, values in enumerate(blocks):
            self.add(out, block, values)
        return out


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
    gradients of the configured loss over the configured parameter subset. Only the subset requires grad.

    Streamed: each subset parameter's gradient is sketched (and squared, and preconditioned) by a hook as backward
    produces it, then freed, so no `[items x subset]` tensor and no whole-subset gradient is held. On a GPU
    (`num_gpus > 0`) the model runs in bf16 and sketches accumulate in fp32."""

    def __init__(self, model_path: str, config, system_prompt: str, temperature: float = 1.0):
        from visiong1.models.families import load_model, load_processor

        self.config, self.system_prompt, self.temperature = config, system_prompt, temperature
        self.device = torch.device("cuda" if config.num_gpus > 0 and torch.cuda.is_available() else "cpu")
        self.processor = load_processor(model_path)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = load_model(model_path, dtype=dtype).to(self.device).eval()
        subset = subset_parameters(self.model, config.last_layers)
        chosen = {id(param) for _, param in subset}
        for param in self.model.parameters():
            param.requires_grad_(id(param) in chosen)
        self.params = [param for _, param in subset]
        self.size = sum(param.numel() for param in self.params)
        self.sketch = HashedSketch(config.projection_dim, config.seed)
        self.scale: list[torch.Tensor] | None = None  # per parameter: 1 / sqrt(damped v) once preconditioned
        self._sink: dict = {}  # where the hooks put what backward produces (set per item)
        for block, param in enumerate(self.params):
            param.register_post_accumulate_grad_hook(lambda p, b=block: self._consume(b, p))

    def _consume(self, block: int, param: torch.nn.Parameter) -> None:
        """Backward hook: fold one parameter's fresh gradient into the current item's sketch (and squares)."""
        gradient = param.grad.float()
        param.grad = None
        if "squares" in self._sink:
            self._sink["squares"][block] += gradient.square()
        if self.scale is not None:
            gradient = gradient * self.scale[block]
        self.sketch.add(self._sink["feature"], block, gradient)

    def load_state_dict(self, state: dict) -> None:
        """Current policy weights (a full or partial state dict, as the learner exports them)."""
        missing = set(state) - set(self.model.state_dict())
        if missing:
            raise KeyError(f"weights for parameters this model lacks: {sorted(missing)[:5]}")
        self.model.load_state_dict(state, strict=False)

    def loss(self, item: PromptItem, samples: dict | None = None, target: bool = False) -> torch.Tensor:
        """A candidate's configured loss (`samples` = {"responses", "rewards"} for policy_gradient); a target's is
        always the NLL of its reference answer: the loss training should lower, whatever the training loss is."""
        if target or self.config.loss == "nll":
            return nll_loss(self.model, self.processor, item, self.system_prompt)
        if not samples:
            raise ValueError(f"{item.id}: the policy_gradient loss needs the item's difficulty samples")
        return policy_gradient_loss(self.model, self.processor, item, self.system_prompt, samples["responses"],
                                    samples["rewards"], self.temperature)

    def gradient(self, item: PromptItem, samples: dict | None = None, target: bool = False) -> torch.Tensor:
        """Exact `[size]` gradient of the item's loss (see `loss`; the dense reference, scoring never builds it)."""
        return flat_gradient(self.loss(item, samples, target), self.params)

    def _backward(self, item: PromptItem, samples: dict | None, squares: list | None = None,
                  target: bool = False) -> torch.Tensor:
        """`[projection_dim]` sketch of the item's (preconditioned) gradient, streamed through the hooks."""
        self._sink = {"feature": torch.zeros(self.config.projection_dim, device=self.device)}
        if squares is not None:
            self._sink["squares"] = squares
        self.loss(item, samples, target).backward()
        return self._sink.pop("feature")

    def squared_gradient_sum(self, targets: list[PromptItem]) -> np.ndarray:
        """`[size]` float32 sum over the targets of their squared exact gradients (elementwise), parameter by
        parameter in subset order."""
        squares = [torch.zeros(param.shape, device=self.device) for param in self.params]
        for item in targets:
            self._backward(item, None, squares, target=True)
        return torch.cat([square.reshape(-1) for square in squares]).cpu().numpy()

    def precondition_with(self, second_moment: np.ndarray | None) -> None:
        """Divide later gradients by sqrt(v + delta * mean(v)) for `second_moment` v (`[size]`); None: plain."""
        if second_moment is None:
            self.scale = None
            return
        v = torch.as_tensor(second_moment, dtype=torch.float32, device=self.device)
        flat = (v + PRECONDITIONER_DAMPING * v.mean()).clamp_min(1e-30).rsqrt()
        self.scale = [part.view(param.shape) for part, param in
                      zip(flat.split([param.numel() for param in self.params]), self.params)]

    def features(self, items: list[PromptItem], samples: dict[str, dict] | None = None,
                 target: bool = False) -> np.ndarray:
        """`[len(items), projection_dim]` float32 unit-norm sketched (preconditioned, if set) gradients of the
        candidates' loss, or with `target` of the targets' (see `loss`)."""
        if not items:
            return np.zeros((0, self.config.projection_dim), dtype=np.float32)
        rows = [self._backward(item, (samples or {}).get(item.id), target=target) for item in items]
        return normalise(torch.stack(rows)).cpu().numpy()

    def scores(self, candidates: list[PromptItem], targets: list[PromptItem],
               samples: dict[str, dict] | None = None) -> np.ndarray:
        """`[len(candidates)]` influence scores in this process, as the InfluencePool computes them across actors:
        preconditioner from the targets (if configured), target features per domain, aggregated cosines."""
        second_moment = self.squared_gradient_sum(targets) / len(targets) if self.config.precondition else None
        self.precondition_with(second_moment)
        per_domain = domain_targets(self.features(targets, target=True), [t.domain for t in targets])
        return influence_scores(self.features(candidates, samples), [c.domain for c in candidates], per_domain,
                                self.config.aggregate)
