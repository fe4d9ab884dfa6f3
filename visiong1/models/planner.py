"""Capacity planning: the memory each role of a run needs, from the model's shape, before anything launches.

The model is built on the meta device (no weights are read): from `model.path`'s config.json when that directory is
on this machine, else from the shape presets below (copied from the published config.json files). Per role:

- learner rank (FSDP2 or DeepSpeed ZeRO-3 over `learner.ranks`; `torch` is one unsharded rank): fp32 parameters,
  fp32 gradients of the trainable ones and AdamW's two fp32 moments, each divided by the ranks; the gathered
  units FSDP2 unshards (the largest unit and the one prefetched, in the compute dtype: bf16 on GPU); activations
  of one micro-batch of `learner.micro_batch_tokens` (layer inputs kept for backward, or with gradient
  checkpointing only one layer's intermediates); the output head's fp32 logits over `logprob_chunk_tokens` rows
  (visiong1.training.logprobs) and the fp32 gradient it accumulates for the head's weight;
  the KL reference (an fp32 copy sharded like the policy when `learner.kl_coef > 0`); rank 0's CPU copy of the full
  fp32 state dict that weight export gathers.
- rollout replica (vLLM): it takes `gpu_memory_utilization` of each of its GPUs; inside that the bf16 weights
  (split over `tensor_parallel_size`) and the KV cache in what is left, which must hold one `max_model_len`
  sequence.
- influence worker: a copy of the model (bf16 on a GPU, fp32 on CPU), the preconditioner (fp32, one value per scored
  parameter), one parameter's fp32 gradient at a time (gradients are sketched as backward produces them), the scored
  layers' activations and the head's logits for one item of up to `rollout.max_model_len` tokens. An influence
  worker that shares a learner's GPU (`learner.num_gpus + selection.influence.num_gpus <= 1`) is checked together
  with the learner rank, whose memory stays resident while it idles during selection.

`resources.gpu_memory_gib` is what one GPU holds; a GPU role whose need exceeds it is refused, naming the role and
the shortfall. CPU roles are reported, not checked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from visiong1.config import RunConfig

GIB = 2**30
QWEN_TOKENS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
               "vision_end_token_id": 151653, "eos_token_id": 151645}
QWEN25_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
                 "spatial_merge_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}
"""The vision tower every Qwen2.5-VL size shares (it differs only in the width it projects to)."""
PRESETS: dict[str, dict] = {
    # Published config.json of Qwen/Qwen2.5-VL-7B-Instruct (the fields that set its shape).
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "model_type": "qwen2_5_vl", "tie_word_embeddings": False, **QWEN_TOKENS,
        "text_config": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "max_window_layers": 28, "tie_word_embeddings": False,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                            "mrope_section": [16, 24, 24]}},
        "vision_config": QWEN25_VISION | {"out_hidden_size": 3584},
    },
    # Published config.json of Qwen/Qwen2.5-VL-3B-Instruct.
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "model_type": "qwen2_5_vl", "tie_word_embeddings": True, **QWEN_TOKENS,
        "text_config": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
                        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                        "max_window_layers": 70, "tie_word_embeddings": True,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                            "mrope_section": [16, 24, 24]}},
        "vision_config": QWEN25_VISION | {"out_hidden_size": 2048},
    },
    # Published config.json of Qwen/Qwen3-VL-8B-Instruct.
    "Qwen/Qwen3-VL-8B-Instruct": {
        "model_type": "qwen3_vl", "tie_word_embeddings": False, **QWEN_TOKENS,
        "text_config": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
                        "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                        "head_dim": 128, "tie_word_embeddings": False,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                            "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
        "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                          "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2,
                          "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24]},
    },
}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model, counted on the meta device."""

    parameters: int
    trainable: int
    """Parameters the learner updates (all but the vision tower with `learner.freeze_vision`)."""
    largest_unit: int
    """Parameters of the largest FSDP unit: a decoder layer, a vision block, the embedding or head, or the root's
    own parameters."""
    largest_module: int
    """Parameters held directly by the largest single module (DeepSpeed's `largest_layer_params`)."""
    decoder_layer: int
    """Parameters of one decoder layer."""
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_bytes_per_token: int
    """K and V of every decoder layer for one token, in bf16."""


@dataclass
class RoleMemory:
    role: str
    device: str
    """`gpu` or `cpu`: what the role's figure is checked against."""
    count: int
    """How many of this role the config starts."""
    parts: dict[str, int] = field(default_factory=dict)
    """Bytes per instance, by what holds them."""
    share: float = 1.0
    """Share of a GPU the role may fill (a vLLM replica: `gpu_memory_utilization`)."""

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def transformers_config(config: RunConfig):
    """The model's transformers config: from `model.path` when it is a local directory, else a preset."""
    from transformers import AutoConfig

    path = config.model.path
    if path is None:
        raise ValueError("model.path is not set: the tiny model needs no plan")
    if (Path(path) / "config.json").exists():
        return AutoConfig.from_pretrained(path)
    if path not in PRESETS:
        raise ValueError(f"model.path={path!r} is neither a local model directory nor a preset "
                         f"({', '.join(PRESETS)})")
    preset = copy.deepcopy(PRESETS[path])
    return AutoConfig.for_model(preset.pop("model_type"), **preset)


def model_shape(config: RunConfig) -> ModelShape:
    """Count the configured model's parameters on the meta device."""
    import torch

    from visiong1.models.families import family_for_type, model_from_config

    model_config = transformers_config(config)
    family = family_for_type(model_config.model_type)
    with torch.device("meta"):
        model = model_from_config(model_config)
    frozen = family.submodule(model, family.vision_tower) if config.learner.freeze_vision else None
    frozen_count = sum(p.numel() for p in frozen.parameters()) if frozen is not None else 0
    units = family.shard_units(model)
    in_units = {id(p) for unit in units for p in unit.parameters()}
    root = sum(p.numel() for p in model.parameters() if id(p) not in in_units)
    text = model_config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters()) - frozen_count,
        largest_unit=max([root, *(sum(p.numel() for p in unit.parameters()) for unit in units)]),
        largest_module=max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()),
        decoder_layer=sum(p.numel() for p in family.submodule(model, family.decoder_layers)[-1].parameters()),
        hidden=text.hidden_size, intermediate=text.intermediate_size, layers=text.num_hidden_layers,
        vocab=text.vocab_size, kv_bytes_per_token=2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2)


def learner_rank(config: RunConfig, shape: ModelShape) -> RoleMemory:
    """One learner rank's memory (see the module docstring for what each part counts)."""
    learner = config.learner
    ranks = 1 if learner.backend == "torch" else learner.ranks
    gpu = learner.num_gpus > 0
    compute_bytes = 2 if gpu else 4
    tokens = learner.micro_batch_tokens
    per_layer = tokens * shape.hidden * compute_bytes  # one layer's input, kept for backward
    intermediates = tokens * (4 * shape.hidden + 3 * shape.intermediate) * compute_bytes  # one layer's working set
    parts = {
        "parameters": 4 * shape.parameters // ranks,
        "gradients": 4 * shape.trainable // ranks,
        "optimizer": 8 * shape.trainable // ranks,
        "gathered units": 2 * compute_bytes * shape.largest_unit if ranks > 1 else 0,
        "activations": per_layer * shape.layers + intermediates if learner.gradient_checkpointing
        else (per_layer + intermediates) * shape.layers,
        "logits": _logits_bytes(learner, tokens, shape.vocab),
        "head gradient": 4 * shape.vocab * shape.hidden if learner.backend != "deepspeed" else 0,
        "kl reference": 4 * shape.parameters // ranks if learner.kl_coef > 0 else 0,  # sharded like the policy
        "weight sync buckets": _sync_buckets_bytes(config, shape, compute_bytes, ranks),
    }
    return RoleMemory("learner rank", "gpu" if gpu else "cpu", ranks, parts)


def _sync_buckets_bytes(config: RunConfig, shape: ModelShape, rollout_bytes: int, ranks: int) -> int:
    """The collective weight sync's gathered bytes on a learner rank, in the rollout dtype: a bucket being filled and
    one gathered tensor or piece of rows of a larger one (the embedding), two buckets at most; where that dtype is
    not the fp32 of the shards (bf16 on GPU), the shard cast before its gather too (a bucket's share at most). The
    object-store transport gathers to the host instead (see `weight_export`)."""
    if config.rollout.weight_sync != "collective":
        return 0
    bucket = int(config.rollout.weight_sync_bucket_mb * 2**20)
    return 2 * bucket + (bucket // ranks if rollout_bytes != 4 else 0)


def _logits_bytes(learner, tokens: int, vocab: int) -> int:
    """fp32 `[rows x vocab]` tensors alive at once: the chunked head's logits and log-softmax (or softmax and the
    gradient) over `logprob_chunk_tokens` rows, and its output before the cast; DeepSpeed's plain head: logits,
    log-softmax and its gradient over the whole micro-batch."""
    if learner.backend == "deepspeed":
        return 3 * 4 * tokens * vocab
    return 3 * 4 * min(tokens, learner.logprob_chunk_tokens) * vocab


def rollout_replica(config: RunConfig, shape: ModelShape, gpu_memory: int | None) -> RoleMemory:
    """One rollout replica per GPU of its tensor-parallel group: weights and KV cache within vLLM's share, and the
    collective weight sync's receive buffers, allocated beside that share."""
    rollout = config.rollout
    gpu = rollout.num_gpus > 0
    weights = (2 if gpu else 4) * shape.parameters // rollout.tensor_parallel_size
    buffers = _receive_buffers_bytes(config, shape, gpu)
    share = rollout.gpu_memory_utilization if gpu else 1.0
    if gpu and gpu_memory is not None:
        reserved = int(rollout.gpu_memory_utilization * gpu_memory)
        kv = max(reserved - weights, shape.kv_bytes_per_token * rollout.max_model_len // rollout.tensor_parallel_size)
        share = min(1.0, share + buffers / gpu_memory)
    else:
        kv = shape.kv_bytes_per_token * rollout.max_model_len
    return RoleMemory("rollout replica (per GPU)", "gpu" if gpu else "cpu", most_replicas(rollout),
                      {"weights": weights, "kv cache": kv, "weight sync buffers": buffers}, share=share)


def _receive_buffers_bytes(config: RunConfig, shape: ModelShape, gpu: bool) -> int:
    """A replica's receive buffers in the collective weight sync: on a GPU the bucket being loaded and the next one
    arriving, one of them the whole embedding when it is larger than a bucket (its pieces are received into it
    whole); on CPU the receiver keeps its buffers across syncs (`ReceiveBuffers`): three, each as large as the
    largest of a bucket and the embedding."""
    if config.rollout.weight_sync != "collective":
        return 0
    bucket = int(config.rollout.weight_sync_bucket_mb * 2**20)
    embedding = shape.vocab * shape.hidden * (2 if gpu else 4)
    return max(2 * bucket, embedding + bucket) if gpu else 3 * max(bucket, embedding)


def most_replicas(rollout) -> int:
    """The rollout replicas a run may hold at once: autoscale's upper bound, else the configured count."""
    return rollout.autoscale.max_replicas if rollout.autoscale else rollout.replicas


def gpus_needed(config: RunConfig) -> float:
    """GPUs of the run's roles at their largest; an influence worker sharing a learner's GPU adds none."""
    learner, rollout, influence = config.learner, config.rollout, config.selection.influence
    shared = learner.num_gpus + influence.num_gpus <= 1 and learner.num_gpus > 0
    own_influence = influence.workers * influence.num_gpus if influence.enabled and not shared else 0
    return learner.ranks * learner.num_gpus + most_replicas(rollout) * rollout.num_gpus + own_influence


def run_shortfalls(config: RunConfig, roles: list[RoleMemory]) -> list[str]:
    """Every reason the run does not fit: GPU roles over a GPU's memory, roles over `resources.gpus`."""
    problems = shortfalls(roles, config.resources.gpu_memory_gib)
    if config.resources.gpus is not None and (needed := gpus_needed(config)) > config.resources.gpus:
        problems.append(f"roles at their largest need {needed:g} GPUs (learner ranks, "
                        f"{most_replicas(config.rollout)} rollout replicas, influence workers), "
                        f"resources.gpus is {config.resources.gpus}")
    return problems


def influence_worker(config: RunConfig, shape: ModelShape) -> RoleMemory:
    """One influence worker's memory (see the module docstring)."""
    influence, learner = config.selection.influence, config.learner
    gpu = influence.num_gpus > 0
    compute_bytes = 2 if gpu else 4
    tokens = config.rollout.max_model_len
    per_layer = tokens * (5 * shape.hidden + 3 * shape.intermediate) * compute_bytes
    parts = {"weights": compute_bytes * shape.parameters,
             "preconditioner": 4 * influence.last_layers * shape.decoder_layer if influence.precondition else 0,
             "gradient block": 4 * shape.hidden * shape.intermediate,  # the largest scored parameter, in fp32
             "activations": per_layer * influence.last_layers,
             "logits": _logits_bytes(learner, tokens, shape.vocab)}
    return RoleMemory("influence worker", "gpu" if gpu else "cpu", influence.workers if influence.enabled else 0,
                      parts, share=influence.num_gpus if gpu else 1.0)


def colocated_influence(learner: RoleMemory, influence: RoleMemory, config: RunConfig) -> list[RoleMemory]:
    """The learner rank and influence worker on one GPU, when the config shares it between them (checked as one)."""
    shared = config.learner.num_gpus + config.selection.influence.num_gpus <= 1
    if not (learner.device == influence.device == "gpu" and influence.count and shared):
        return []
    parts = {f"learner {name}": value for name, value in learner.parts.items()} | {
        f"influence {name}": value for name, value in influence.parts.items()}
    return [RoleMemory("learner rank + influence worker (one GPU)", "gpu", min(learner.count, influence.count),
                       parts)]


def weight_export(config: RunConfig, shape: ModelShape) -> RoleMemory:
    """Rank 0's CPU copy of the full fp32 state dict, gathered for every weight sync by the object-store transport
    (none with `collective`; checkpoints are written shard by shard and gather nothing)."""
    gathered = 4 * shape.parameters if config.rollout.weight_sync == "object_store" else 0
    return RoleMemory("learner rank 0 (host)", "cpu", 1, {"full state dict": gathered})


def plan(config: RunConfig) -> tuple[ModelShape, list[RoleMemory]]:
    """The model's counts and every role's memory for `config`."""
    shape = model_shape(config)
    gpu_memory = int(config.resources.gpu_memory_gib * GIB) if config.resources.gpu_memory_gib else None
    learner, influence = learner_rank(config, shape), influence_worker(config, shape)
    return shape, [learner, rollout_replica(config, shape, gpu_memory), influence, weight_export(config, shape),
                   *colocated_influence(learner, influence, config)]


def shortfalls(roles: list[RoleMemory], gpu_memory_gib: float | None) -> list[str]:
    """One line per GPU role that does not fit a GPU of `gpu_memory_gib` (none when that is not set)."""
    if gpu_memory_gib is None:
        return []
    problems = []
    for role in roles:
        budget = role.share * gpu_memory_gib * GIB
        if role.device == "gpu" and role.count and role.total > budget:
            of = f"{role.share:g} of " if role.share < 1 else ""
            problems.append(f"{role.role}: needs {role.total / GIB:.1f} GiB, {of}a GPU of {gpu_memory_gib:g} GiB "
                            f"gives it {budget / GIB:.1f} GiB (short by {(role.total - budget) / GIB:.1f} GiB)")
    return problems


def plan_table(shape: ModelShape, roles: list[RoleMemory]) -> dict:
    """The plan as JSON: the model's counts and each role's parts in GiB."""
    return {"model": {"parameters": shape.parameters, "trainable": shape.trainable,
                      "largest_unit": shape.largest_unit},
            "roles": [{"role": role.role, "device": role.device, "count": role.count,
                       "gib": {name: round(value / GIB, 2) for name, value in role.parts.items()},
                       "total_gib": round(role.total / GIB, 2)} for role in roles]}
