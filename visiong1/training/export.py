"""`visiong1 export CHECKPOINT OUT_DIR`: a resumable checkpoint to a Hugging Face model directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from visiong1.training.checkpoint import CheckpointStore


def export_checkpoint(checkpoint: str, output_dir: str | Path) -> Path:
    """Write weights, config, generation config and processor to `output_dir`, loadable by transformers and vLLM
    the way the published checkpoints of its family are. `checkpoint` is a checkpoint directory or a store whose newest is taken."""
    import torch
    from safetensors.torch import load as load_safetensors
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    from visiong1.models.families import model_from_config

    parent, _, name = checkpoint.rstrip("/").rpartition("/")
    store = CheckpointStore(parent if name.startswith("step-") else checkpoint)
    path = checkpoint.rstrip("/") if name.startswith("step-") else store.latest()
    if path is None:
        raise FileNotFoundError(f"no complete checkpoint under {checkpoint}")
    files = store.read(path)
    with tempfile.TemporaryDirectory() as staging:
        for file_name, payload in files.items():
            if file_name.startswith("hf/"):
                (Path(staging) / file_name[3:]).write_bytes(payload)
        with torch.device("meta"):
            model = model_from_config(AutoConfig.from_pretrained(staging))
        model.load_state_dict(load_safetensors(files["model.safetensors"]), assign=True, strict=True)
        model.tie_weights()
        model.generation_config = GenerationConfig.from_pretrained(staging)
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        AutoProcessor.from_pretrained(staging).save_pretrained(output_dir)
    return output_dir
