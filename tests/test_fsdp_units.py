"""FSDP2 units on CPU: gloo's reduce-scatter replaced by an in-place one, and an untied embedding that is not
gathered for its backward; both must leave the training exactly what one rank computes."""

import gc
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from visiong1.config import LearnerConfig
from visiong1.training.gloo_reduce import InPlaceReduceScatter
from visiong1.training.trainer import PolicyTrainer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn(target, world: int, *args) -> None:
    """Run `target(rank, world, *args)` in `world` fresh processes joined by a gloo group."""
    mp.spawn(_rank_main, args=(target, world, free_port(), *args), nprocs=world, join=True)


def _rank_main(rank: int, target, world: int, port: int, *args) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    target(rank, world, *args)
    # FSDP2 meshes hold the group through reference cycles; free them and let every rank finish before teardown,
    # or a gloo group can be torn down at interpreter exit and abort the process (SIGABRT, about 1 run in 30).
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _reduce_scatters(rank: int, world: int, out_dir: str) -> None:
    generator = torch.Generator().manual_seed(rank)
    data = torch.randn(world * 1001, generator=generator)  # an odd chunk length
    results = {}
    for name, op in (("sum", dist.ReduceOp.SUM), ("avg", dist.ReduceOp.AVG)):
        expected, got = torch.empty(1001), torch.empty(1001)
        dist.reduce_scatter_tensor(expected, data.clone(), op=op)
        InPlaceReduceScatter()(got, data.clone(), dist.group.WORLD, op)
        results[name] = (expected, got)
    torch.save(results, f"{out_dir}/rank{rank}.pt")


def test_in_place_reduce_scatter_equals_gloos_for_sum_and_avg(tmp_path):
    spawn(_reduce_scatters, 2, str(tmp_path))
    for rank in range(2):
        for name, (expected, got) in torch.load(tmp_path / f"rank{rank}.pt").items():
            assert torch.allclose(got, expected, atol=1e-6), (rank, name)
            assert got.abs().sum() > 0


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory) -> str:
    from visiong1.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("untied") / "model", seed=1,
                                shape={"tie_word_embeddings": False}))


def step_batches(model_path: str):
    """Three hand-made steps: two prompts of a counting item, two responses each, opposite advantages."""
    from benchmarks.scale import batch

    first = batch(model_path, 64)
    return [type(first)(first.groups, first.advantages, step=step) for step in range(3)]


def _train(rank: int, world: int, model_path: str, out_dir: str) -> None:
    config = LearnerConfig(backend="fsdp2", ranks=world, micro_batch_tokens=64, lr=1e-3, old_logprobs="rollout")
    trainer = PolicyTrainer(model_path, config, rank=rank, world_size=world)
    losses = [trainer.train_step(batch)["train/loss"] for batch in step_batches(model_path)]
    weights = trainer.full_state_dict()
    if rank == 0:
        torch.save({"losses": losses, "weights": weights}, f"{out_dir}/world{world}.pt")


def test_two_ranks_with_an_untied_embedding_train_as_one_rank(untied_model, tmp_path):
    """The embedding's gradient comes from the token ids alone (its unit is not gathered for backward), and every
    unit's gradient is reduced in place: after three steps 2 ranks hold the weights 1 rank does."""
    for world in (1, 2):
        spawn(_train, world, untied_model, str(tmp_path))
    one, two = (torch.load(tmp_path / f"world{world}.pt") for world in (1, 2))
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-5)
    embedding = "model.language_model.embed_tokens.weight"
    assert embedding in one["weights"] and "lm_head.weight" in one["weights"]
    start = PolicyTrainer(untied_model, LearnerConfig()).full_state_dict()
    assert (one["weights"][embedding] - start[embedding]).abs().max() > 1e-4  # the embedding did train
    worst = max((two["weights"][name] - tensor).abs().max().item() for name, tensor in one["weights"].items())
    assert worst < 1e-5, worst


def _send_pieces(rank: int, world: int, out_dir: str) -> None:
    from torch.distributed.fsdp import fully_shard

    from visiong1.training.weight_buckets import plan_buckets, send_buckets

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(9, 4), torch.nn.Linear(4, 2))  # 9 rows: shards of 5 and 4
    full = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    fully_shard(model[0])
    fully_shard(model)
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    sent = {"full": full}
    for dtype in (torch.float32, torch.bfloat16):
        plan = plan_buckets(shapes, dtype, bucket_bytes=2 * 4 * dtype.itemsize)  # pieces of 2 rows: [4, 6) straddles
        wire = []
        counters = send_buckets(model, plan, (lambda flat: wire.append(flat.clone())) if rank == 0 else None,
                                torch.device("cpu"))
        sent[dtype] = {"wire": wire, "plan": plan, "peak": counters.peak_alive_bytes}
    if rank == 0:
        torch.save(sent, f"{out_dir}/pieces.pt")


def test_pieces_of_a_sharded_tensor_reach_the_sending_rank_whole_in_the_plans_dtype(tmp_path):
    """Rows of an embedding sharded over 2 ranks (5 and 4 rows) in pieces of 2: each piece is assembled on rank 0
    from the owners of its rows (rows 4 and 5 from both), in fp32 and cast to bf16; the sending rank's gathered bytes
    stay within two buckets (and the cast shard)."""
    spawn(_send_pieces, 2, str(tmp_path))
    sent = torch.load(tmp_path / "pieces.pt", weights_only=False)
    for dtype in (torch.float32, torch.bfloat16):
        plan, wire, embedding = sent[dtype]["plan"], sent[dtype]["wire"], sent["full"]["0.weight"].to(dtype)
        assert [slot.rows for bucket in plan.buckets for slot in bucket][:5] == [(0, 2), (2, 4), (4, 6), (6, 8),
                                                                                   (8, 9)]
        assert all(flat.dtype == dtype for flat in wire)
        assert torch.equal(torch.cat(wire[:5]).view(9, 4), embedding)
        assert torch.equal(torch.cat(wire[5:])[:8], sent["full"]["1.weight"].to(dtype).reshape(-1))
        bucket = 2 * 4 * dtype.itemsize  # two buckets, and a shard cast before its gather when the dtype changes
        assert 0 < sent[dtype]["peak"] <= 2 * bucket + (bucket // 2 if dtype != torch.float32 else 0)
