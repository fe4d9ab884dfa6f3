"""Turning prompt items into chat text and images: shared by every engine and the learner, so the token ids a
rollout samples from are exactly the ones the learner scores."""

from __future__ import annotations

import io

from PIL import Image

from visiong1.types import PromptItem


def chat_messages(item: PromptItem, system_prompt: str) -> list[dict]:
    """System message, then one user turn with one image part per image followed by the question."""
    user = [{"type": "image"} for _ in item.images] + [{"type": "text", "text": item.question}]
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def decode_images(item: PromptItem) -> list[Image.Image]:
    """Encoded image bytes to RGB PIL images; a corrupt image raises with the item id."""
    try:
        return [Image.open(io.BytesIO(data)).convert("RGB") for data in item.images]
    except OSError as error:
        raise ValueError(f"item {item.id}: undecodable image: {error}") from error


def special_token_ids(tokenizer) -> list[int]:
    """Ids of every special token except end-of-turn: banned in sampling, since a sampled `<|image_pad|>` breaks
    the training forward ("Image features and image tokens do not match")."""
    return sorted(set(tokenizer.all_special_ids) - {tokenizer.convert_tokens_to_ids("<|im_end|>")})
