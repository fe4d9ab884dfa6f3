"""Build a tiny random-init vision-language model of a supported family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) with a
locally trained tokenizer, saved as a normal HF model directory.

No hub download: the tokenizer is a byte-level BPE trained on a small corpus, with the chat and vision special
tokens the Qwen processors and vLLM expect, so demos and tests run the code path that serves the 7B models. Every
family uses 14-px patches merged 2x2, so the synthetic tasks stay patch-aligned (Qwen3-VL itself uses 16-px ones).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's template reduced to what RL prompts use: text and image parts, one generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_SHAPE = {
    "vocab_size": 1024, "text_hidden": 128, "text_layers": 2, "text_heads": 4, "text_kv_heads": 2,
    "text_intermediate": 256, "vision_depth": 2, "vision_hidden": 64, "vision_heads": 2, "vision_intermediate": 128,
}
MID_SHAPE = {
    "model_vocab_size": 151_936, "text_hidden": 768, "text_layers": 12, "text_heads": 12, "text_kv_heads": 2,
    "text_intermediate": 2048, "vision_depth": 8, "vision_hidden": 384, "vision_heads": 6, "vision_intermediate": 1024,
    "tie_word_embeddings": False,
}
"""The mid-size model benchmarks measure on (about 325M parameters, 233M of them the untied embedding and head of
Qwen2.5-VL-7B's vocabulary):
big enough that per-rank memory, bytes moved and save/load times show the ratios a 7B model will have."""
IMAGE_PIXELS = (56 * 56, 112 * 112)  # processor min/max pixels: 56-112 px images keep their size
BUILDER_VERSION = 3  # bump when the builder changes what it writes, so caches rebuild
DEFAULT_FAMILY = "qwen2_5_vl"
PATCH = 14


@functools.cache
def corpus_digest() -> str:
    """Hash of the tokenizer's training text: the synthetic generators' questions and answers feed it, so a
    generator change that alters them must not reuse a model whose vocabulary was learnt on the old text."""
    from visiong1.data.synthetic import tokenizer_corpus

    return hashlib.sha256("\n".join(tokenizer_corpus()).encode()).hexdigest()[:12]


def cache_key(seed: int, family: str = DEFAULT_FAMILY) -> str:
    """Directory name of the tiny model of `family` for `seed`; changes whenever the shape, template or tokenizer
    text changes."""
    spec = {"seed": seed, "shape": TINY_SHAPE, "template": CHAT_TEMPLATE, "pixels": IMAGE_PIXELS,
            "builder": BUILDER_VERSION, "corpus": corpus_digest()}
    if family != DEFAULT_FAMILY:
        spec["family"] = family
    return f"tiny-{family}-{hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]}"


def build_tokenizer(corpus: list[str]):
    """Byte-level BPE of `TINY_SHAPE['vocab_size']` tokens; special tokens get the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_SHAPE["vocab_size"], special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE)


def build_processor(tokenizer, family: str = DEFAULT_FAMILY):
    """The family's processor with 14-px patches and the tiny pixel budget."""
    import transformers

    processor_class, video_class = {"qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
                                    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
                                    "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor")}[family]
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=IMAGE_PIXELS[0], max_pixels=IMAGE_PIXELS[1],
                                                         patch_size=PATCH)
    video_processor = getattr(transformers, video_class)(patch_size=PATCH)
    return getattr(transformers, processor_class)(image_processor=image_processor, tokenizer=tokenizer,
                                                  video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int, shape: dict | None = None, family: str = DEFAULT_FAMILY):
    """A random-init model of `family` (~0.6M parameters, fp32, with the default `TINY_SHAPE`)."""
    import torch
    import transformers

    from visiong1.models.families import model_from_config

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           [("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("start", "<|vision_start|>"),
            ("end", "<|vision_end|>"), ("eos", "<|im_end|>"), ("pad", "<|endoftext|>")]}
    shape = {**TINY_SHAPE, **(shape or {})}
    config_class = {"qwen2_vl": "Qwen2VLConfig", "qwen2_5_vl": "Qwen2_5_VLConfig", "qwen3_vl": "Qwen3VLConfig"}[family]
    tied = shape.get("tie_word_embeddings", True)
    config = getattr(transformers, config_class)(
        text_config=_text_config(shape, family, shape.get("model_vocab_size", len(tokenizer)), ids, tied),
        vision_config=_vision_config(shape, family),
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["start"],
        vision_end_token_id=ids["end"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=tied,
    )
    torch.manual_seed(seed)
    model = model_from_config(config)
    model.generation_config.eos_token_id = ids["eos"]
    model.generation_config.pad_token_id = ids["pad"]
    return model


def _text_config(shape: dict, family: str, vocab_size: int, ids: dict, tied: bool) -> dict:
    head_dim = shape["text_hidden"] // shape["text_heads"]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(head_dim)}
    config = dict(vocab_size=vocab_size, hidden_size=shape["text_hidden"], num_hidden_layers=shape["text_layers"],
                  num_attention_heads=shape["text_heads"], num_key_value_heads=shape["text_kv_heads"],
                  intermediate_size=shape["text_intermediate"], max_position_embeddings=2048, rope_parameters=rope,
                  bos_token_id=ids["eos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=tied,
                  rms_norm_eps=1e-6)  # Qwen's value; vLLM also reads it for the vision tower's norms
    if family == "qwen3_vl":
        return config | {"head_dim": head_dim, "rope_parameters": rope | {"mrope_interleaved": True}}
    return config | {"max_window_layers": shape["text_layers"]}


def _vision_config(shape: dict, family: str) -> dict:
    """Each family's vision tower at the tiny shape, 14-px patches merged 2x2."""
    common = dict(depth=shape["vision_depth"], num_heads=shape["vision_heads"], patch_size=PATCH,
                  spatial_merge_size=2)
    if family == "qwen2_vl":
        return common | dict(embed_dim=shape["vision_hidden"], hidden_size=shape["text_hidden"],
                             mlp_ratio=shape["vision_intermediate"] // shape["vision_hidden"])
    tower = common | dict(hidden_size=shape["vision_hidden"], intermediate_size=shape["vision_intermediate"],
                          out_hidden_size=shape["text_hidden"])
    if family == "qwen3_vl":  # learnt position grid of 8x8 (112 px); deepstack from the first block
        return tower | dict(num_position_embeddings=64, deepstack_visual_indexes=[0])
    return tower | dict(fullatt_block_indexes=[shape["vision_depth"] - 1], window_size=112)


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) in Qwen's 2:3:3 proportion."""
    half = head_dim // 2
    time = half // 4
    height = (half - time) // 2
    return [time, height, half - time - height]


def build_tiny_model(output_dir: str | Path, seed: int = 0, shape: dict | None = None,
                     family: str = DEFAULT_FAMILY) -> Path:
    """Build tokenizer, processor and model of `family` into `output_dir` atomically (a temp dir renamed into
    place); `shape` overrides entries of TINY_SHAPE (benchmarks build wider models)."""
    from visiong1.data.synthetic import tokenizer_corpus

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=output_dir.parent))
    try:
        tokenizer = build_tokenizer(tokenizer_corpus())
        build_processor(tokenizer, family).save_pretrained(staging)
        build_model(tokenizer, seed, shape, family).save_pretrained(staging)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def tiny_model_path(cache_dir: str | Path, seed: int = 0, family: str = DEFAULT_FAMILY) -> Path:
    """Path of the cached tiny model of `family` for `seed`, building it on first use (about 2 s)."""
    path = Path(cache_dir) / cache_key(seed, family)
    if not (path / "config.json").exists():
        build_tiny_model(path, seed, family=family)
    return path


def mid_model_path(cache_dir: str | Path, seed: int = 0, family: str = DEFAULT_FAMILY) -> Path:
    """Path of the cached mid-size model (MID_SHAPE) of `family` for `seed`, building it on first use."""
    spec = json.dumps({"seed": seed, "shape": MID_SHAPE, "builder": BUILDER_VERSION, "corpus": corpus_digest()})
    path = Path(cache_dir) / f"mid-{family}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"
    if not (path / "config.json").exists():
        build_tiny_model(path, seed, MID_SHAPE, family)
    return path
