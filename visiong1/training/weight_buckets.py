"""Policy weights in buckets, for the collective weight sync: the learner gathers its FSDP2 shards one bucket at a
time into a flat buffer and hands it to a transport (a broadcast over a process group); the receiver splits each
buffer back into named tensors as the engine's loader consumes them. A tensor larger than a bucket (a 152k-vocabulary
embedding) travels in pieces of rows, each a bucket of its own, which the sending rank collects from the shards'
owners point to point; so the sender holds at most a bucket being filled and one gathered tensor or piece, two
buckets (and, when the plan's dtype is not the shards', a shard cast before its gather). A receiver has two buckets
in use, plus the whole tensor whose pieces it is assembling, and on CPU keeps up to three buffers across syncs
(`ReceiveBuffers`).
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
    """A tensor of the full `shape`, or with `rows` (start, stop) the piece of its first dimension's rows
    [start, stop) (a tensor larger than a bucket); a piece is always alone in its bucket."""

    name: str
    shape: tuple[int, ...]
    rows: tuple[int, int] | None = None

    @property
    def numel(self) -> int:
        if self.rows is None:
            return math.prod(self.shape)
        return (self.rows[1] - self.rows[0]) * math.prod(self.shape[1:])

    @property
    def completes(self) -> bool:
        """Whether the tensor is whole once this slot has arrived (a whole tensor, or its last piece)."""
        return self.rows is None or self.rows[1] == self.shape[0]


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
        return sum(slot.numel for slot in self.buckets[index])

    @property
    def tensor_count(self) -> int:
        return sum(slot.completes for bucket in self.buckets for slot in bucket)

    @property
    def nbytes(self) -> int:
        return sum(self.bucket_numel(i) for i in range(len(self.buckets))) * self.torch_dtype.itemsize


def plan_buckets(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, bucket_bytes: int) -> BucketPlan:
    """Group `shapes` (name -> full shape, in the order they will be gathered) into buckets of at most
    `bucket_bytes` in `dtype`; a larger tensor is split into pieces of whole rows, a bucket each (one row per
    piece at least)."""
    buckets, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > bucket_bytes and len(shape) > 0:
            buckets += [tuple(current)] if current else []
            current, size = [], 0
            step = max(1, bucket_bytes // (nbytes // shape[0]))
            buckets += [(TensorSlot(name, tuple(shape), (start, min(start + step, shape[0]))),)
                        for start in range(0, shape[0], step)]
            continue
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
    rank that only takes part in the gathers). A piece of a tensor is collected as is, not copied again. Notes the
    most gathered bytes alive in `counters`."""
    bucket = plan.buckets[index]
    if bucket[0].rows is not None:
        piece = _gathered_rows(model.get_parameter(bucket[0].name), bucket[0].rows, plan.torch_dtype, device, keep)
        counters.peak_alive_bytes = max(counters.peak_alive_bytes, _nbytes(piece) if keep else 0)
        return piece.reshape(-1) if keep else None
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


def _gathered_rows(parameter: torch.Tensor, rows: tuple[int, int], dtype: torch.dtype, device: torch.device,
                   keep: bool) -> torch.Tensor | None:
    """Rows [start, stop) of `parameter` in `dtype` on the keeping rank (rank 0 of the FSDP2 mesh; None elsewhere).
    Each rank whose dim-0 shard overlaps the rows sends its overlap, cast, point to point, so no rank holds more
    than the piece and its own shard; rows all in the keeping rank's shard, already in `dtype`, are a view of it."""
    import torch.distributed as dist
    from torch.distributed.tensor import Shard

    start, stop = rows
    if not isinstance(parameter, DTensor):
        return parameter.detach()[start:stop].to(dtype) if keep else None
    if tuple(parameter.placements) != (Shard(0),):
        raise ValueError(f"pieces of rows need a 1-D mesh sharded on dim 0, not {parameter.placements}")
    group = parameter.device_mesh.get_group()
    world, me, shard = group.size(), group.rank(), parameter.to_local().detach()
    per_rank = -(-parameter.shape[0] // world)  # FSDP2's torch.chunk layout: ceil(rows / ranks) on each rank
    overlap = [(max(start, r * per_rank), min(stop, (r + 1) * per_rank)) for r in range(world)]
    if not keep:
        low, high = overlap[me]
        if low < high:
            dist.send(shard[low - me * per_rank:high - me * per_rank].to(dtype).contiguous(), group_dst=0,
                      group=group)
        return None
    if me != 0:
        raise ValueError("the rank that keeps the pieces must be rank 0 of the FSDP2 mesh")
    if overlap[0] == (start, stop) and shard.dtype == dtype:  # all in its own shard, in the plan's dtype: no copy
        return shard[start:stop]
    piece = torch.empty((stop - start, *parameter.shape[1:]), dtype=dtype, device=device)
    for owner, (low, high) in enumerate(overlap):
        if low >= high:
            continue
        if owner == 0:
            piece[low - start:high - start].copy_(shard[low:high])
        else:
            dist.recv(piece[low - start:high - start], group_src=owner, group=group)
    return piece


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def receive_buckets(plan: BucketPlan, post_receive: Callable[[torch.Tensor], Any], device: torch.device,
                    on_bucket: Callable[[int], None] = lambda index: None,
                    times: ReceiveTimes | None = None,
                    buffers: ReceiveBuffers | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of `plan` as they are consumed. `post_receive(buffer)` starts filling a flat buffer on
    `device` and returns something to `.wait()` on; the next bucket's receive is posted before this bucket's tensors
    are handed out, so its transfer overlaps the engine loading this one (two buckets in use, a third while the
    consumer still holds tensors of the one before). A tensor sent in pieces is received straight into its rows of
    one whole-tensor buffer and handed out with its last piece. `on_bucket(index)` hears of each bucket received;
    `times`, when given, is filled in; `buffers`, when given, lends the flat buffers (a receiver's own, kept across
    syncs)."""
    times = times if times is not None else ReceiveTimes()
    buffers = buffers if buffers is not None else ReceiveBuffers(device)
    times.received_at = [0.0] * len(plan.buckets)
    assembling: dict[str, torch.Tensor] = {}  # name -> the whole tensor its pieces are received into

    def post(index: int):
        buffer = _receive_buffer(plan, index, buffers, assembling)
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
            if slot.rows is not None:
                if slot.completes:
                    yield slot.name, assembling.pop(slot.name)
                continue
            yield slot.name, buffer[offset:offset + slot.numel].view(slot.shape)
            offset += slot.numel
        times.load_s.append(time.perf_counter() - started)


def _receive_buffer(plan: BucketPlan, index: int, buffers: ReceiveBuffers,
                    assembling: dict[str, torch.Tensor]) -> torch.Tensor:
    """The flat tensor bucket `index` is received into: a buffer of its own, or for a piece its rows of the whole
    tensor (taken when the first piece is posted)."""
    slot = plan.buckets[index][0]
    if slot.rows is None:
        return buffers.take(plan.bucket_numel(index), plan.torch_dtype)
    if slot.name not in assembling:
        assembling[slot.name] = buffers.take(math.prod(slot.shape), plan.torch_dtype).view(slot.shape)
    return assembling[slot.name][slot.rows[0]:slot.rows[1]].reshape(-1)
