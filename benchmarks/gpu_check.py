"""The learner at real size on one GPU, without Ray: what `benchmarks/gpu_check.sh` runs on a lent GPU machine.

For the mid-size model and a random model of Qwen2.5-VL-3B-Instruct's published shape: the policy trainer on one
rank with FSDP2 (bf16 compute, fp32 master weights and AdamW state), loaded shard-wise from safetensors; a few RL
steps on a synthetic batch; one torch.distributed.checkpoint save and load of model and optimizer state. Prints, per
model: step time, tokens/s, peak CUDA memory next to `visiong1 plan`'s learner-rank estimate, save/load seconds,
and the largest gap between the bf16 learner's token logprobs and an fp32 copy's.

Run: python3 -m benchmarks.gpu_check [--device cuda|cpu] [--models mid,3b] [--steps 3] [--tokens 4096]
(`--device cpu --models tiny` is the smoke test of this script). Writes $OUT/gpu_check.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

SIZES = ("tiny", "mid", "3b")


SHAPE_3B = {"model_vocab_size": 151_936, "text_hidden": 2048, "text_layers": 36, "text_heads": 16, "text_kv_heads": 2,
            "text_intermediate": 11008, "vision_depth": 32, "vision_hidden": 1280, "vision_heads": 16,
            "vision_intermediate": 3420, "tie_word_embeddings": True}
"""Qwen2.5-VL-3B-Instruct's published widths and depths (visiong1.models.planner.PRESETS), built by the tiny
builder so its token ids match the local tokenizer."""


def model_dir(size: str, cache: Path) -> str:
    """A random model of `size` saved under `cache`: the tiny or mid-size model, or one of Qwen2.5-VL-3B's shape
    (initialised on the GPU when there is one: seconds instead of minutes)."""
    from visiong1.models.tiny import build_tiny_model, mid_model_path, tiny_model_path

    if size == "tiny":
        return str(tiny_model_path(cache))
    if size == "mid":
        return str(mid_model_path(cache))
    target = cache / "qwen2_5_vl-3b-shape"
    if not (target / "config.json").exists():
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            build_tiny_model(target, 0, SHAPE_3B)
    return str(target)


def step_batch(model_path: str, tokens: int):
    """One step's batch: 4 groups of 2 samples from synthetic counting items, responses filling about `tokens`."""
    from visiong1.data.synthetic import generate_pool
    from visiong1.models.families import load_processor
    from visiong1.training.batching import encode_prompt
    from visiong1.types import RolloutSample, SampleGroup, TrainBatch

    processor = load_processor(model_path)
    groups = []
    for item in generate_pool(["counting"], 4, seed=5):
        prompt, _ = encode_prompt(processor, item, "Answer.")
        length = max(1, tokens // 8 - len(prompt))
        samples = [RolloutSample(item.id, prompt, [(5 * s + j) % 400 + 10 for j in range(length)], [-1.0] * length,
                                 "", 0, "length") for s in range(2)]
        groups.append(SampleGroup(item, samples))
    return TrainBatch(groups, [[1.0, -1.0]] * 4, step=0)


def planned_gib(model_path: str, tokens: int, device: str) -> float:
    from visiong1.config import load_config
    from visiong1.models.planner import GIB, learner_rank, model_shape

    config = load_config(None, [f"model.path={model_path}", "learner.backend=fsdp2", "learner.ranks=1",
                                f"learner.micro_batch_tokens={tokens}", "learner.gradient_checkpointing=true",
                                f"learner.num_gpus={1 if device == 'cuda' else 0}"])
    return learner_rank(config, model_shape(config)).total / GIB


def logprob_gap(trainer, model_path: str, batch, device: str) -> float:
    """Largest |learner logprob (bf16 compute on GPU) - an fp32 copy's of the same weights| over the batch's
    response tokens."""
    from visiong1.models.families import load_model
    from visiong1.training.batching import collate, token_logprobs

    tensors = {key: value.to(device) if value is not None else None
               for key, value in collate(trainer.sequences(batch), trainer.pad_id).items()}
    copy = load_model(model_path)
    copy.load_state_dict(trainer.full_state_dict())  # the trained weights, in fp32
    with torch.no_grad():
        learner = trainer._logprobs(trainer.model, tensors)
        reference = token_logprobs(copy.to(device), tensors)
    mask = tensors["response_mask"].bool()
    return (learner[mask] - reference[mask]).abs().max().item()


def check(size: str, cache: Path, device: str, steps: int, tokens: int) -> dict:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    import torch.distributed.checkpoint as dcp
    from visiong1.config import LearnerConfig
    from visiong1.training.trainer import PolicyTrainer

    model_path = model_dir(size, cache)
    config = LearnerConfig(backend="fsdp2", ranks=1, num_gpus=1 if device == "cuda" else 0,
                           micro_batch_tokens=tokens, gradient_checkpointing=True, old_logprobs="rollout")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = PolicyTrainer(model_path, config)
    load_s = time.perf_counter() - started
    batch = step_batch(model_path, tokens)
    times, trained = [], 0
    for index in range(steps):
        started = time.perf_counter()
        metrics = trainer.train_step(type(batch)(batch.groups, batch.advantages, step=index))
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        trained = metrics["train/tokens"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    state = {"model": get_model_state_dict(trainer.model),
             "optimizer": get_optimizer_state_dict(trainer.model, trainer.optimizer)}
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        dcp.save(state, checkpoint_id=directory)
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        dcp.load(state, checkpoint_id=directory)
        load_ckpt_s = time.perf_counter() - started
    median = sorted(times[1:] or times)[len(times[1:] or times) // 2]  # the first step warms kernels up
    return {"model": size, "parameters": sum(p.numel() for p in trainer.model.parameters()), "load_s": load_s,
            "step_s": median, "tokens_per_s": trained / median, "peak_cuda_gib": peak,
            "plan_learner_rank_gib": planned_gib(model_path, tokens, device), "checkpoint_save_s": save_s,
            "checkpoint_load_s": load_ckpt_s, "bf16_vs_fp32_logprob_gap": logprob_gap(trainer, model_path, batch, device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--models", default="mid,3b")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--cache", default=os.environ.get("TMPDIR", "/tmp") + "/visiong1-gpu-check")
    args = parser.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29561")
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=0, world_size=1)
    if args.device == "cuda":
        torch.cuda.set_device(0)
    results = [check(size, Path(args.cache), args.device, args.steps, args.tokens) for size in args.models.split(",")]
    for result in results:
        print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in result.items()}))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
