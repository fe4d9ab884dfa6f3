"""`visiong1 export CHECKPOINT OUT_DIR`: a sharded checkpoint to a Hugging Face model directory, written as sharded
safetensors with an index, one output shard at a time, so no process ever holds the whole model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pyarrow import fs as pafs

from visiong1.training.checkpoint import CheckpointStore

MAX_SHARD_BYTES = 4 << 30


def export_checkpoint(checkpoint: str, output_dir: str | Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """Write the policy's weights, config, generation config and processor to `output_dir`, loadable by
    transformers and vLLM the way the published checkpoints of its family are. `checkpoint` is a checkpoint
    directory (local or a URI) or a store whose newest complete checkpoint is taken; its files are verified first."""
    location, _, query = checkpoint.partition("?")  # a URI's query holds filesystem options
    parent, _, name = location.rstrip("/").rpartition("/")
    one = name.startswith("step-")
    store = CheckpointStore(f"{parent}?{query}" if one and query else parent if one else checkpoint)
    path = f"{store.root}/{name}" if one else store.latest()
    if path is None:
        raise FileNotFoundError(f"no complete checkpoint under {checkpoint}")
    store.verify(path, [file for file in store.manifest(path)["sha256"] if file.startswith(("state/", "hf/"))])
    return export_model(store, path, output_dir, max_shard_bytes)


def export_model(store: CheckpointStore, directory: str, output_dir: str | Path,
                 max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """The model under `directory` (`state/`: DCP shards with a `model` entry, `hf/`: config and processor) as a
    Hugging Face directory. Tensors keep their stored dtype and take their family's checkpoint names; shards hold
    at most `max_shard_bytes` (a larger tensor gets a shard of its own)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as hf:
        for info in store.fs.get_file_info(pafs.FileSelector(f"{directory}/hf")):
            store.download(info.path, f"{hf}/{info.base_name}")
        config = AutoConfig.from_pretrained(hf)
        config.save_pretrained(output_dir)
        GenerationConfig.from_pretrained(hf).save_pretrained(output_dir)
        AutoProcessor.from_pretrained(hf).save_pretrained(output_dir)
    from visiong1.training.dcp_storage import state_reader

    names = _exported_names(config)
    entries = state_reader(store, f"{directory}/state").read_metadata().state_dict_metadata
    shards = _shard_plan(entries, names, max_shard_bytes)
    weight_map = {}
    for index, shard in enumerate(shards, 1):
        file = "model.safetensors" if len(shards) == 1 else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        tensors = _load_tensors(store, f"{directory}/state", {name: entries[f"model.{name}"] for name in shard})
        save_file({names[key]: tensor for key, tensor in tensors.items()}, str(output_dir / file),
                  metadata={"format": "pt"})
        weight_map.update(dict.fromkeys((names[key] for key in shard), file))
    if len(shards) > 1:
        total = sum((output_dir / file).stat().st_size for file in set(weight_map.values()))
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (output_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return output_dir


def _exported_names(config) -> dict[str, str]:
    """State-dict name -> the name its family's checkpoints store it under; a tied head is stored once, as the
    embedding."""
    from visiong1.models.families import checkpoint_names, parameters_on_meta, tied_embeddings

    names = checkpoint_names(parameters_on_meta(config))
    if tied_embeddings(config):
        names.pop("lm_head.weight", None)
    return names


def _shard_plan(entries: dict, names: dict[str, str], max_shard_bytes: int) -> list[list[str]]:
    """The saved model tensors to export (names of DCP metadata `entries`), grouped in order into shards of bounded
    bytes."""
    shards, size = [[]], 0
    for key, entry in entries.items():
        name = key.removeprefix("model.")
        if not key.startswith("model.") or name not in names:
            continue
        nbytes = entry.size.numel() * entry.properties.dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return [shard for shard in shards if shard]


def _load_tensors(store: CheckpointStore, state_dir: str, entries: dict) -> dict:
    """Whole tensors of the saved model (name -> its DCP metadata entry), read in one pass over just their byte
    ranges."""
    import torch
    import torch.distributed.checkpoint as dcp

    from visiong1.training.dcp_storage import state_reader

    tensors = {name: torch.empty(tuple(entry.size), dtype=entry.properties.dtype) for name, entry in entries.items()}
    dcp.load({"model": tensors}, storage_reader=state_reader(store, state_dir), no_dist=True)
    return tensors
