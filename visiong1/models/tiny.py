"""Build a tiny random-init Qwen2.5-VL with a locally trained tokenizer, saved as a normal HF model directory.

No hub download: the tokenizer is a byte-level BPE trained on a small corpus, with the chat and vision special
tokens the Qwen2.5-VL processor and vLLM expect, so demos and tests run the code path that serves Qwen2.5-VL-7B.
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
IMAGE_PIXELS = (56 * 56, 112 * 112)  # processor min/max pixels: 56-112 px images keep their size
BUILDER_VERSION = 3  # bump when the builder changes what it writes, so caches rebuild


@functools.cache
def corpus_digest() -> str:
    """Hash of the tokenizer's training text: the synthetic generators' questions and answers feed it, so a
    generator change that alters them must not reuse a model whose vocabulary was learnt on the old text."""
    from visiong1.data.synthetic import tokenizer_corpus

    return hashlib.sha256("\n".join(tokenizer_corpus()).encode()).hexdigest()[:12]


def cache_key(seed: int) -> str:
    """Directory name of the tiny model for `seed`; changes whenever the shape, template or tokenizer text changes."""
    spec = json.dumps({"seed": seed, "shape": TINY_SHAPE, "template": CHAT_TEMPLATE, "pixels": IMAGE_PIXELS,
                       "builder": BUILDER_VERSION, "corpus": corpus_digest()})
    return f"tiny-qwen2_5_vl-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


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


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=IMAGE_PIXELS[0], max_pixels=IMAGE_PIXELS[1])
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int, shape: dict | None = None):
    """Random-init Qwen2_5_VLForConditionalGeneration (~0.6M parameters, fp32, with the default `TINY_SHAPE`)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           [("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("start", "<|vision_start|>"),
            ("end", "<|vision_end|>"), ("eos", "<|im_end|>"), ("pad", "<|endoftext|>")]}
    shape = {**TINY_SHAPE, **(shape or {})}
    head_dim = shape["text_hidden"] // shape["text_heads"]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=shape["text_hidden"], num_hidden_layers=shape["text_layers"],
            num_attention_heads=shape["text_heads"], num_key_value_heads=shape["text_kv_heads"],
            intermediate_size=shape["text_intermediate"], max_position_embeddings=2048, max_window_layers=shape["text_layers"],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": _mrope_section(head_dim)},
            bos_token_id=ids["eos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=True,
            rms_norm_eps=1e-6,  # Qwen2.5-VL's value; vLLM also reads it for the vision tower's norms
        ),
        vision_config=dict(
            depth=shape["vision_depth"], hidden_size=shape["vision_hidden"], num_heads=shape["vision_heads"],
            intermediate_size=shape["vision_intermediate"], out_hidden_size=shape["text_hidden"],
            fullatt_block_indexes=[shape["vision_depth"] - 1], window_size=112,
        ),
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["start"],
        vision_end_token_id=ids["end"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["eos"]
    model.generation_config.pad_token_id = ids["pad"]
    return model


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) in Qwen's 2:3:3 proportion."""
    half = head_dim // 2
    time = half // 4
    height = (half - time) // 2
    return [time, height, half - time - height]


def build_tiny_model(output_dir: str | Path, seed: int = 0, shape: dict | None = None) -> Path:
    """Build tokenizer, processor and model into `output_dir` atomically (a temp dir renamed into place);
    `shape` overrides entries of TINY_SHAPE (benchmarks build wider models)."""
    from visiong1.data.synthetic import tokenizer_corpus

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=output_dir.parent))
    try:
        tokenizer = build_tokenizer(tokenizer_corpus())
        build_processor(tokenizer).save_pretrained(staging)
        build_model(tokenizer, seed, shape).save_pretrained(staging)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def tiny_model_path(cache_dir: str | Path, seed: int = 0) -> Path:
    """Path of the cached tiny model for `seed`, building it on first use (about 2 s)."""
    path = Path(cache_dir) / cache_key(seed)
    if not (path / "config.json").exists():
        build_tiny_model(path, seed)
    return path
