"""Token logprobs and entropy without a `[tokens x vocab]` tensor: the output head computes them chunk by chunk.

With a 152k vocabulary a 16k-token micro-batch has 10 GB of fp32 logits per copy, and the plain path keeps several
(logits, log-softmax, its gradient). `LogprobHead` replaces a model's output head (holding the same weight, so
FSDP units, ties and checkpoints are unchanged); while `targets` is set its forward returns `[batch, length, 2]`
(logprob of each target, entropy) at the response positions only (as TRL's `logits_to_keep`: prompt and padding
rows, most of a sequence with an image, never reach the head), `chunk_tokens` rows at a time, and its backward
recomputes each chunk's softmax instead of storing it. Without targets it is the plain linear head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ChunkedLogprobs(torch.autograd.Function):
    """`[batch, length, 2]` (logprob of `targets[b, t]`, entropy) of softmax(hidden @ weight.T / temperature) for
    `hidden` `[batch, length, width]`, computed only at `rows` (`[n]` flat indices into batch x length; every other
    position holds 0 and gets no gradient), chunk by chunk; logits in the weight's dtype, softmax in fp32 (as the
    plain path does). The output is a tensor of its own, not a view (FSDP2 hooks a unit's output for its backward)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, rows, temperature: float, chunk: int):
        batch, length, width = hidden.shape
        picked = hidden.reshape(-1, width).index_select(0, rows)
        picked_targets = targets.reshape(-1).index_select(0, rows)
        values = torch.empty(len(rows), 2, dtype=torch.float32, device=hidden.device)
        for start in range(0, len(rows), chunk):
            logp = _chunk_log_softmax(picked[start:start + chunk], weight, temperature)
            values[start:start + chunk, 0] = logp.gather(-1, picked_targets[start:start + chunk, None]).squeeze(-1)
            values[start:start + chunk, 1] = -(logp.exp().mul_(logp)).sum(-1)
        result = torch.zeros(batch * length, 2, dtype=torch.float32, device=hidden.device).index_copy_(0, rows, values)
        ctx.save_for_backward(picked, weight, picked_targets, rows)
        ctx.temperature, ctx.chunk, ctx.shape = temperature, chunk, (batch, length, width)
        return result.view(batch, length, 2)

    @staticmethod
    def backward(ctx, grad):
        picked, weight, targets, rows = ctx.saved_tensors
        grad = grad.reshape(-1, 2).index_select(0, rows)
        grad_picked = torch.empty_like(picked)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if ctx.needs_input_grad[1] else None
        for start in range(0, len(rows), ctx.chunk):
            span = slice(start, start + ctx.chunk)
            logp = _chunk_log_softmax(picked[span], weight, ctx.temperature)
            p = logp.exp()
            entropy = -(p * logp).sum(-1, keepdim=True)
            # d logp[target] / d logits = onehot - p ;  d entropy / d logits = -p * (logp + entropy); in place, so
            # a chunk holds two [rows x vocab] fp32 tensors at a time
            dlogits = logp.add_(entropy).mul_(grad[span, 1:2]).add_(grad[span, 0:1]).mul_(p).neg_()
            del p
            dlogits.scatter_add_(-1, targets[span, None], grad[span, 0:1])
            dlogits.div_(ctx.temperature)
            grad_picked[span] = (dlogits.to(weight.dtype) @ weight).to(picked.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(dlogits.T, picked[span].float())  # no [vocab x width] temporary
        batch, length, width = ctx.shape
        grad_hidden = torch.zeros(batch * length, width, dtype=picked.dtype, device=picked.device)
        grad_hidden.index_copy_(0, rows, grad_picked)
        return (grad_hidden.view(ctx.shape), grad_weight.to(weight.dtype) if grad_weight is not None else None, None,
                None, None, None)


def _chunk_log_softmax(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """`[rows, vocab]` fp32 log-softmax of the rows' logits (computed in the weight's dtype, as the plain head)."""
    logits = F.linear(hidden, weight).float().div_(temperature)
    return logits.log_softmax(-1)


class LogprobHead(torch.nn.Module):
    """An output head that, while `targets` (`[batch, length]`) and `rows` (`[n]` flat positions) are set, returns
    `[batch, length, 2]` computed at `rows` only."""

    def __init__(self, head: torch.nn.Linear, chunk_tokens: int):
        super().__init__()
        if head.bias is not None:
            raise ValueError("LogprobHead replaces bias-free output heads only")
        self.weight = head.weight
        self.chunk_tokens = chunk_tokens
        self.targets: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self.temperature = 1.0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.targets is None:
            return F.linear(hidden, self.weight)
        return ChunkedLogprobs.apply(hidden, self.weight, self.targets, self.rows, self.temperature,
                                     self.chunk_tokens)


def install_logprob_head(model, chunk_tokens: int) -> None:
    """Replace the model's output head by a LogprobHead on the same weight (before FSDP wraps it)."""
    model.set_output_embeddings(LogprobHead(model.get_output_embeddings(), chunk_tokens))


def head_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False):
    """What `batching.token_logprobs` returns at the response positions (`batch["response_mask"]`, `[batch, length
    - 1]`), for a model with a LogprobHead: `[batch, length - 1]` logprobs of each next token (and the entropy of
    each position's distribution). Other positions hold 0: the head skips prompt and padding rows, most of a
    sequence with an image."""
    from visiong1.training.batching import model_inputs

    head = model.get_output_embeddings()
    ids = batch["input_ids"]
    head.targets = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], dim=1)  # the last position has none
    scored = torch.cat([batch["response_mask"], torch.zeros_like(batch["response_mask"][:, :1])], dim=1)
    head.rows = scored.reshape(-1).nonzero().squeeze(1)
    head.temperature = temperature
    try:
        out = model(**model_inputs(model, batch)).logits[:, :-1]
    finally:
        head.targets = head.rows = None
    return (out[..., 0], out[..., 1]) if with_entropy else out[..., 0]
