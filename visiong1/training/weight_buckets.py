"""Policy weights in buckets, for the collective weight sync: the learner gathers its FSDP2 shards one bucket at a
time into a flat buffer and hands it to a transport (a broadcast over a process group); the receiver splits each
buffer back into named tensors as the engine's loader consumes them. The sender holds at most a bucket being filled
and one gathered tensor (a tensor larger than a bucket travels alone, as gathered); a receiver has two buckets in
use, and on CPU keeps up to three buffers across syncs (`ReceiveBuffers`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch.distributed.tensor import DTensor


@dataclass(frozen=True)
class TensorSlot:
    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BucketPlan:
    """What travels, in order: `buckets[i]` is the tensors of the i-th flat buffer, all of `dtype` (a torch dtype
    name such as "bfloat16")."""

    dtype: str
    buckets: tuple[tuple[TensorSlot, ...], ...]

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def bucket_numel(self, index: int) -> int:
        return sum(math.prod(slot.shape) for slot in self.buckets[index])

    @property
    def nbytes(self) -> int:
        return sum(self.bucket_numel(i) for i in range(len(self.buckets))) * self.torch_dtype.itemsize


def plan_buckets(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, bucket_bytes: int) -> BucketPlan:
    """Group `shapes` (name -> full shape, in the order they will be gathered) into buckets of at most
    `bucket_bytes` in `dtype`; a larger tensor gets a bucket of its own."""
    buckets, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * dtype.itemsize
        if current and size + nbytes > bucket_bytes:
            buckets.append(tuple(current))
            current, size = [], 0
        current.append(TensorSlot(name, tuple(shape)))
        size += nbytes
    if current:
        buckets.append(tuple(current))
    return BucketPlan(str(dtype).removeprefix("torch."), tuple(buckets))


class ReceiveBuffers:
    """Flat receive buffers a receiver keeps across syncs, handed out once nothing else references them. On CPU
    every large allocation is fresh pages, and faulting them in while gloo writes them made a transfer two to three
    times slower than into a buffer used before (the weight sync benchmark); a GPU's caching allocator already
    reuses memory, so there every bucket gets a fresh allocation and nothing is held. At most `keep` buffers are
    held."""

    def __init__(self, device: torch.device, keep: int = 3):
        self.device, self.keep, self.held = device, keep, []

    def take(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat tensor of `numel` elements of `dtype`: a prefix of a free held buffer that is large enough,
        else a new buffer (held, on CPU, in place of the smallest free ones beyond `keep`)."""
        nbytes = numel * dtype.itemsize
        if self.device.type != "cpu":
            return torch.empty(numel, dtype=dtype, device=self.device)
        free = [base for base in self.held if _unreferenced(base)]
        fitting = [base for base in free if base.numel() >= nbytes]
        if fitting:
            return min(fitting, key=torch.Tensor.numel)[:nbytes].view(dtype)
        base = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        # the free buffers are all too small: the smallest go until `keep` are held with the new one
        dropped = sorted(free, key=torch.Tensor.numel)[:max(0, len(self.held) + 1 - self.keep)]
        self.held = [held for held in self.held if all(held is not gone for gone in dropped)] + [base]
        return base.view(dtype)


def _unreferenced(base: torch.Tensor) -> bool:
    """Whether only `base` uses its storage: no view of it (handed to a loader that may still hold it, as vLLM's
    layerwise reload does until a layer's weights are complete) is alive. The count includes the temporary storage
    object made to ask."""
    return torch._C._storage_Use_Count(base.untyped_storage()._cdata) <= 2


@dataclass
class SendCounters:
    """What one send moved: buckets, bytes (per destination), the most gathered tensor bytes alive at once on this
    process, seconds spent gathering (shards into the flat buffer) and sending, and the wall-clock time
    (`time.time()`) each bucket's send began."""

    buckets: int = 0
    bytes: int = 0
    peak_alive_bytes: int = 0
    gather_s: float = 0.0
    send_s: float = 0.0
    sent_at: list[float] = field(default_factory=list)


@dataclass
class ReceiveTimes:
    """Per bucket on a receiver: the wall-clock times (`time.time()`) its receive was posted and completed, and the
    seconds the consumer (the engine's loader) spent on its tensors. With the sender's `sent_at` they split a sync
    into bytes in flight, waiting and loading."""

    posted_at: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    load_s: list[float] = field(default_factory=list)


def send_buckets(model: torch.nn.Module, plan: BucketPlan, send: Callable[[torch.Tensor], None] | None,
                 device: torch.device) -> SendCounters:
    """Gather `model`'s parameters in the plan's dtype bucket by bucket and `send` each bucket, flat, on `device`
    (only the sending rank passes `send`; every FSDP2 rank calls this, in the same order, since gathering a shard is
    a collective)."""
    counters = SendCounters()
    for index in range(len(plan.buckets)):
        started = time.perf_counter()
        flat = _gather_bucket(model, plan, index, device, send is not None, counters)
        counters.gather_s += time.perf_counter() - started
        if send:
            started = time.perf_counter()
            counters.sent_at.append(time.time())
            send(flat)
            counters.send_s += time.perf_counter() - started
            counters.buckets += 1
            counters.bytes += _nbytes(flat)
    return counters


def _gather_bucket(model: torch.nn.Module, plan: BucketPlan, index: int, device: torch.device, keep: bool,
                   counters: SendCounters) -> torch.Tensor | None:
    """Bucket `index` gathered into one flat tensor of `plan.bucket_numel(index)` elements (None unless `keep`: a
    rank that only takes part in the gathers). A bucket of one tensor (the embedding, larger than a bucket) is that
    tensor as gathered, not a copy. Notes the most gathered bytes alive in `counters`."""
    bucket = plan.buckets[index]
    if len(bucket) == 1:
        full, cast_bytes = _gathered(model.get_parameter(bucket[0].name), plan.torch_dtype)
        counters.peak_alive_bytes = max(counters.peak_alive_bytes, _nbytes(full) + cast_bytes)
        return full.reshape(-1) if keep else None
    buffer = torch.empty(plan.bucket_numel(index), dtype=plan.torch_dtype, device=device) if keep else None
    offset = 0
    for slot in bucket:
        full, cast_bytes = _gathered(model.get_parameter(slot.name), plan.torch_dtype)
        alive = _nbytes(full) + cast_bytes + (_nbytes(buffer) if keep else 0)
        counters.peak_alive_bytes = max(counters.peak_alive_bytes, alive)
        if keep:
            buffer[offset:offset + full.numel()].copy_(full.reshape(-1))
        offset += full.numel()
    return buffer


def _gathered(parameter: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """(the whole `parameter` in `dtype`, bytes of the cast shard alive during the gather). An FSDP2 shard is cast
    before it is gathered, so the gather moves and holds rollout-dtype bytes (bf16 from fp32 on GPU)."""
    local = parameter.detach().to(dtype)
    if not isinstance(local, DTensor):
        return local, 0
    return local.full_tensor(), 0 if parameter.dtype == dtype else _nbytes(local.to_local())


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def receive_buckets(plan: BucketPlan, post_receive: Callable[[torch.Tensor], Any], device: torch.device,
                    on_bucket: Callable[[int], None] = lambda index: None,
                    times: ReceiveTimes | None = None,
                    buffers: ReceiveBuffers | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of `plan` as they are consumed. `post_receive(buffer)` starts filling a flat buffer on
    `device` and returns something to `.wait()` on; the next bucket's receive is posted before this bucket's tensors
    are handed out, so its transfer overlaps the engine loading this one (two buckets in use, a third while the
    consumer still holds tensors of the one before). `on_bucket(index)` hears of each bucket received; `times`,
    when given, is filled in; `buffers`, when given, lends the flat buffers (a receiver's own, kept across syncs)."""
    times = times if times is not None else ReceiveTimes()
    buffers = buffers if buffers is not None else ReceiveBuffers(device)

    times.received_at = [0.0] * len(plan.buckets)

    def post(index: int):
        buffer = buffers.take(plan.bucket_numel(index), plan.torch_dtype)
        times.posted_at.append(time.time())
        work = post_receive(buffer)
        if hasattr(work, "get_future"):  # a process group's work: note when the bytes are in, not when looked at
            work.get_future().then(lambda _: times.received_at.__setitem__(index, time.time()))
        return buffer, work

    pending = post(0) if plan.buckets else None
    for index, bucket in enumerate(plan.buckets):
        buffer, work = pending
        work.wait()
        times.received_at[index] = times.received_at[index] or time.time()
        on_bucket(index)
        pending = post(index + 1) if index + 1 < len(plan.buckets) else None
        offset, started = 0, time.perf_counter()
        for slot in bucket:
            numel = math.prod(slot.shape)
            yield slot.name, buffer[offset:offset + numel].view(slot.shape)
            offset += numel
        times.load_s.append(time.perf_counter() - started)

