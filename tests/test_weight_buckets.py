"""Bucketed weights without a process group: what `send_buckets` sends, `receive_buckets` hands out unchanged, in
plan order, whether the consumer keeps every tensor it was handed (as vLLM's layerwise reload does until a layer
is complete) or drops each once loaded."""

import torch

from visiong1.training.weight_buckets import (ReceiveBuffers, ReceiveTimes, plan_buckets, receive_buckets,
                                              send_buckets)


class Done:
    def wait(self) -> None:
        return None


def test_buckets_arrive_unchanged_while_the_consumer_holds_every_tensor_it_was_handed():
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(5)))
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    plan = plan_buckets(shapes, torch.float32, bucket_bytes=(16 * 16 + 16) * 4)  # a layer per bucket
    assert len(plan.buckets) == 5
    wire = []
    counters = send_buckets(model, plan, lambda buffer: wire.append(buffer.clone()), torch.device("cpu"))
    assert counters.buckets == len(counters.sent_at) == len(plan.buckets) and counters.bytes == plan.nbytes

    def post_receive(buffer: torch.Tensor) -> Done:
        buffer.copy_(wire.pop(0))
        return Done()

    received = list(receive_buckets(plan, post_receive, torch.device("cpu")))  # every tensor kept until the end
    assert [name for name, _ in received] == list(shapes)
    assert all(torch.equal(tensor, model.get_parameter(name)) for name, tensor in received)

    send_buckets(model, plan, lambda buffer: wire.append(buffer.clone()), torch.device("cpu"))
    loaded, times = 0, ReceiveTimes()
    for name, tensor in receive_buckets(plan, post_receive, torch.device("cpu"), times=times):  # each dropped
        assert torch.equal(tensor, model.get_parameter(name))
        loaded += 1
    assert loaded == len(shapes) and not wire
    assert len(times.posted_at) == len(times.received_at) == len(times.load_s) == len(plan.buckets)
    assert all(posted <= received for posted, received in zip(times.posted_at, times.received_at))


def test_a_receivers_buffers_are_reused_across_syncs_but_never_while_a_consumer_holds_a_view():
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(5)))
    plan = plan_buckets({name: tuple(p.shape) for name, p in model.named_parameters()}, torch.float32,
                        bucket_bytes=(16 * 16 + 16) * 4)
    buffers, written = ReceiveBuffers(torch.device("cpu"), keep=3), []

    def post_receive(buffer: torch.Tensor) -> Done:
        bucket = plan.buckets[len(written) % len(plan.buckets)]
        written.append(buffer.data_ptr())
        buffer.copy_(torch.cat([model.get_parameter(slot.name).detach().reshape(-1) for slot in bucket]))
        return Done()

    for _ in range(2):  # each tensor dropped once checked
        assert all(torch.equal(tensor, model.get_parameter(name))
                   for name, tensor in receive_buckets(plan, post_receive, torch.device("cpu"), buffers=buffers))
    assert len(buffers.held) == 3 and set(written[len(plan.buckets):]) <= set(written[:len(plan.buckets)])
    written.clear()
    kept = list(receive_buckets(plan, post_receive, torch.device("cpu"), buffers=buffers))  # every view held
    assert len(set(written)) == len(plan.buckets)  # no held buffer was written while a view of it was alive
    assert all(torch.equal(tensor, model.get_parameter(name)) for name, tensor in kept)


def test_a_tensor_larger_than_a_bucket_travels_in_pieces_of_rows_and_buckets_carry_the_plans_dtype():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(60, 16), torch.nn.Linear(16, 4), torch.nn.Linear(4, 4))
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    for dtype in (torch.float32, torch.bfloat16):
        plan = plan_buckets(shapes, dtype, bucket_bytes=128 * dtype.itemsize)  # 8 rows of the embedding a piece
        assert [slot.rows for bucket in plan.buckets[:8] for slot in bucket] == \
            [(start, min(start + 8, 60)) for start in range(0, 60, 8)]
        assert [len(bucket) for bucket in plan.buckets] == [1] * 8 + [4] and plan.tensor_count == 5
        wire = []
        counters = send_buckets(model, plan, wire.append, torch.device("cpu"))
        assert [flat.dtype for flat in wire] == [dtype] * 9 and counters.bytes == plan.nbytes
        assert torch.equal(torch.cat(wire[:8]), model[0].weight.detach().to(dtype).reshape(-1))
        assert torch.equal(wire[8][:64], model[1].weight.detach().to(dtype).reshape(-1))
        assert counters.peak_alive_bytes <= 2 * 128 * dtype.itemsize  # never more than two buckets

        def post_receive(buffer: torch.Tensor) -> Done:
            buffer.copy_(wire.pop(0))
            return Done()

        received = list(receive_buckets(plan, post_receive, torch.device("cpu")))
        assert [name for name, _ in received] == list(shapes)  # the embedding once, whole, with its last piece
        assert all(torch.equal(tensor, model.get_parameter(name).detach().to(dtype)) for name, tensor in received)
