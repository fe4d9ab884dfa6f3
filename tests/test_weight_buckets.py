"""Bucketed weights without a process group: what `send_buckets` sends, `receive_buckets` hands out unchanged,
even when the consumer keeps every tensor it was handed (as vLLM's layerwise reload does until a layer is complete)
while the receive buffers are reused."""

import torch

from visiong1.training.weight_buckets import FlatBuffers, plan_buckets, receive_buckets, send_buckets


class Done:
    def wait(self) -> None:
        return None


def test_a_free_buffer_is_reused_and_one_with_a_live_view_is_not():
    buffers = FlatBuffers(torch.float32, torch.device("cpu"))
    first = buffers.take(100)
    pointer = first.data_ptr()
    del first
    assert buffers.take(60).data_ptr() == pointer  # free: its prefix is handed out again
    held = buffers.take(80)  # the first buffer's prefix is alive (the line above dropped it, this one holds it)
    assert held.data_ptr() == pointer
    assert buffers.take(80).data_ptr() != pointer  # a view of it is alive: a new buffer
    assert len(buffers.held) == 2  # the busy one stays held, for reuse once its holder lets it go


def test_buckets_arrive_unchanged_while_the_consumer_holds_every_tensor_it_was_handed():
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(5)))
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    plan = plan_buckets(shapes, torch.float32, bucket_bytes=(16 * 16 + 16) * 4)  # a layer per bucket
    assert len(plan.buckets) == 5
    wire = []
    counters = send_buckets(model, plan, lambda buffer: wire.append(buffer.clone()), torch.device("cpu"))
    assert counters.buckets == len(plan.buckets) and counters.bytes == plan.nbytes

    def post_receive(buffer: torch.Tensor) -> Done:
        buffer.copy_(wire.pop(0))
        return Done()

    received = list(receive_buckets(plan, post_receive, torch.device("cpu")))  # every tensor kept until the end
    assert [name for name, _ in received] == list(shapes)
    assert all(torch.equal(tensor, model.get_parameter(name)) for name, tensor in received)

    send_buckets(model, plan, lambda buffer: wire.append(buffer.clone()), torch.device("cpu"))
    posted = []

    def post_and_note(buffer: torch.Tensor) -> Done:
        posted.append(buffer.data_ptr())
        return post_receive(buffer)

    for name, tensor in receive_buckets(plan, post_and_note, torch.device("cpu")):  # each dropped once loaded
        assert torch.equal(tensor, model.get_parameter(name))
    assert len(posted) == len(plan.buckets) and len(set(posted)) == 3  # three buffers, taken in turn
