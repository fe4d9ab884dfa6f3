"""The vision-language model families visiong1 trains, in one table: how a checkpoint loads, where its vision tower
and decoder layers live, and what vLLM serves. Nothing outside this module names a model class. Image tokens and
M-RoPE position ids need no entry: every family's processor expands `<|image_pad|>` per merged patch and its model
assigns the (time, height, width) positions from the image grid.

Checkpoints load through transformers' auto classes, strictly: an unknown `model_type`, or weights with missing,
unexpected or mis-shaped tensors, fail at load with the model type and the supported families named (transformers
itself would warn and leave the missing weights randomly initialised).

>>> FAMILIES["qwen3_vl"].architecture, family_for_type("qwen2_5_vl").decoder_layers
('Qwen3VLForConditionalGeneration', 'model.language_model.layers')
>>> family_for_type("llava")
Traceback (most recent call last):
...
visiong1.models.families.UnsupportedModel: model type 'llava' is not a supported family; supported: qwen2_vl, qwen2_5_vl, qwen3_vl
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFamily:
    model_type: str
    """`model_type` in the checkpoint's config.json."""
    architecture: str
    """The transformers class, and the architecture vLLM serves for it."""
    vision_tower: str = "model.visual"
    """Attribute path of the vision encoder (frozen with `learner.freeze_vision`)."""
    vision_blocks: str = "model.visual.blocks"
    """Attribute path of the vision encoder's blocks (one FSDP unit each)."""
    decoder_layers: str = "model.language_model.layers"
    """Attribute path of the decoder layers (one FSDP unit each; influence features use the last ones)."""
    embeddings: str = "model.language_model.embed_tokens"
    output_head: str = "lm_head"

    def submodule(self, model, path: str):
        return operator.attrgetter(path)(model)

    def shard_units(self, model) -> list:
        """The modules that become FSDP units under the root: every decoder layer and vision block, and the input
        embedding and output head when they are not tied (a 152k vocabulary makes them the largest tensors;
        tied, they must stay in one unit, the root)."""
        units = [*self.submodule(model, self.decoder_layers), *self.submodule(model, self.vision_blocks)]
        if not tied_embeddings(model.config):
            units += [self.submodule(model, self.embeddings), self.submodule(model, self.output_head)]
        return units


FAMILIES = {family.model_type: family for family in (
    ModelFamily("qwen2_vl", "Qwen2VLForConditionalGeneration"),
    ModelFamily("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
    ModelFamily("qwen3_vl", "Qwen3VLForConditionalGeneration"),
)}


class UnsupportedModel(ValueError):
    """A checkpoint of a family this table does not hold, or whose weights do not match its declared family."""


def family_for_type(model_type: str) -> ModelFamily:
    if model_type not in FAMILIES:
        raise UnsupportedModel(f"model type {model_type!r} is not a supported family; supported: "
                               f"{', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def family_of(model_path: str | Path) -> ModelFamily:
    """The family of the checkpoint at `model_path`, from its config.json."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    return family_for_type(config.get("model_type", "<none>"))


def load_model(model_path: str | Path, dtype=None):
    """The checkpoint's model (transformers' auto class), all weights from the checkpoint or an UnsupportedModel
    error. `dtype` defaults to torch.float32."""
    import torch
    from transformers import AutoModelForImageTextToText

    family = family_of(model_path)
    # Mis-shaped tensors are reported in `info` (and refused below) rather than raised by transformers itself.
    model, info = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype or torch.float32,
                                                              output_loading_info=True, ignore_mismatched_sizes=True)
    problems = {kind: sorted(map(str, info.get(kind) or ())) for kind in
                ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems or type(model).__name__ != family.architecture:
        raise _mismatch(model_path, family, problems or {"class": [type(model).__name__]})
    return model


def _mismatch(model_path, family: ModelFamily, problems: dict[str, list[str]]) -> UnsupportedModel:
    found = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                      for kind, keys in problems.items())
    return UnsupportedModel(f"{model_path}: the weights do not match model type {family.model_type!r} ({found}); "
                            f"supported: {', '.join(FAMILIES)}")


def load_processor(model_path: str | Path):
    from transformers import AutoProcessor

    family_of(model_path)
    return AutoProcessor.from_pretrained(model_path)


def load_sharded_model(model_path: str | Path, shard: Callable, device):
    """The checkpoint's model with parameters that exist only as this rank's shards: built on the meta device,
    `shard(model, family)` (the caller's `fully_shard` calls) splits it, then each rank allocates its shards on
    `device` and reads just those slices from the safetensors files (torch.distributed.checkpoint's Hugging Face
    reader). No rank ever holds the whole model. Parameters are fp32 (the master copy; compute may be bf16).
    A collective call under torch.distributed."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoConfig

    family = family_of(model_path)
    model = parameters_on_meta(AutoConfig.from_pretrained(model_path))
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    stored_as = checkpoint_names(model)
    shard(model, family)
    model.to_empty(device=device)
    for name, value in buffers.items():  # non-persistent buffers (rotary frequencies) are not in the checkpoint
        model.get_buffer(name).copy_(value)
    state = get_model_state_dict(model, options=StateDictOptions(ignore_frozen_params=False))
    tied = {"lm_head.weight"} if tied_embeddings(model.config) else set()
    wanted = {stored_as[name]: tensor for name, tensor in state.items() if name not in tied}
    stored = _stored_names(model_path)
    problems = {"missing_keys": sorted(set(wanted) - stored),
                "unexpected_keys": sorted(stored - set(wanted) - set(map(stored_as.get, tied)))}
    if any(problems.values()):
        raise _mismatch(model_path, family, {kind: keys for kind, keys in problems.items() if keys})
    dcp.load(wanted, storage_reader=HuggingFaceStorageReader(str(model_path)))
    return model


def parameters_on_meta(config):
    """A model of `config` whose parameters are on the meta device (never allocated) and whose buffers (rotary
    frequencies, computed in the constructors and not stored in checkpoints) are real."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module, name, parameter):
        if parameter is not None and parameter.device.type != "meta":  # a meta one is re-registered (tied weights)
            parameter = torch.nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)
        register(module, name, parameter)

    torch.nn.Module.register_parameter = on_meta
    try:
        return model_from_config(config)
    finally:
        torch.nn.Module.register_parameter = register


def checkpoint_names(model) -> dict[str, str]:
    """Each state-dict name of `model` -> the name its checkpoint stores the tensor under (transformers renames
    some families' keys on save, e.g. Qwen2-VL's `model.language_model.layers` as `model.layers`)."""
    import torch
    from transformers.core_model_loading import revert_weight_conversion

    names = list(model.state_dict())
    reverted = revert_weight_conversion(model, {name: torch.tensor(i) for i, name in enumerate(names)})
    if len(reverted) != len(names):
        raise UnsupportedModel(f"{model.config.model_type}: its checkpoint layout merges or splits tensors; sharded "
                               f"loading reads renamed tensors only")
    return {names[int(index)]: stored for stored, index in reverted.items()}


def _stored_names(model_path) -> set[str]:
    from safetensors import safe_open

    names = set()
    for file in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            names.update(handle.keys())
    return names


def tied_embeddings(config) -> bool:
    """Whether the output head shares the input embedding's weight (stored once, under the embedding's name)."""
    return bool(config.tie_word_embeddings or config.get_text_config().tie_word_embeddings)


def model_from_config(config):
    """A randomly initialised model of `config` (a transformers config of a supported family)."""
    from transformers import AutoModelForImageTextToText

    family_for_type(config.model_type)
    return AutoModelForImageTextToText.from_config(config)
