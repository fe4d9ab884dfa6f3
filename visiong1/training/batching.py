"""Prompt + response sequences to padded model inputs, and per-token logprobs of a forward pass."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from visiong1.models.prompting import chat_messages, decode_images
from visiong1.types import PromptItem


@dataclass
class ImageInputs:
    """Processor output for one prompt's images: `pixel_values [patches, C*T*P*P]`, `grid_thw [images, 3]`."""

    pixel_values: torch.Tensor | None
    grid_thw: torch.Tensor | None


@dataclass
class Sequence:
    """One training sequence: `old_logprobs[i]` belongs to `response_ids[i]`."""

    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]
    advantage: float
    images: ImageInputs


def image_inputs(processor, item: PromptItem) -> ImageInputs:
    if not item.images:
        return ImageInputs(None, None)
    encoded = processor.image_processor(images=decode_images(item), return_tensors="pt")
    return ImageInputs(encoded["pixel_values"], encoded["image_grid_thw"])


def encode_prompt(processor, item: PromptItem, system_prompt: str) -> tuple[list[int], ImageInputs]:
    """Prompt token ids with image pads expanded, exactly as the rollout engines tokenize them."""
    text = processor.apply_chat_template(chat_messages(item, system_prompt), tokenize=False, add_generation_prompt=True)
    images = decode_images(item) or None
    encoded = processor(text=[text], images=images, return_tensors="pt")  # one image pass serves ids and pixels
    pixels = ImageInputs(encoded["pixel_values"], encoded["image_grid_thw"]) if images else ImageInputs(None, None)
    return encoded["input_ids"][0].tolist(), pixels


def collate(sequences: list[Sequence], pad_id: int) -> dict[str, torch.Tensor | None]:
    """Right-padded batch. Logprob-space tensors are `[batch, length - 1]`: position t scores token t + 1."""
    length = max(_tokens(s) for s in sequences)
    batch = len(sequences)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    response_mask = torch.zeros((batch, length - 1))
    old_logprobs = torch.zeros((batch, length - 1))
    for row, seq in enumerate(sequences):
        ids = seq.prompt_ids + seq.response_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        first = len(seq.prompt_ids) - 1
        response_mask[row, first : first + len(seq.response_ids)] = 1
        old_logprobs[row, first : first + len(seq.response_ids)] = torch.tensor(seq.old_logprobs)
    pixels = [s.images.pixel_values for s in sequences if s.images.pixel_values is not None]
    grids = [s.images.grid_thw for s in sequences if s.images.grid_thw is not None]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": torch.cat(pixels) if pixels else None,
        "image_grid_thw": torch.cat(grids) if grids else None,
        "response_mask": response_mask,
        "old_logprobs": old_logprobs,
        "advantages": torch.tensor([[s.advantage] for s in sequences]),
    }


def modality_types(model, input_ids: torch.Tensor) -> torch.Tensor:
    """`[batch, length]` 1 at image tokens, 0 elsewhere. Transformers 5 places image tokens by M-RoPE (3D
    positions) only when given these types; without them it silently falls back to 1D positions, unlike vLLM."""
    config = getattr(model, "module", model).config  # a DeepSpeed engine wraps the model as `.module`
    return (input_ids == config.image_token_id).int()


def model_inputs(model, batch: dict) -> dict:
    """The forward's keyword arguments for a collated batch."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"],
            "mm_token_type_ids": modality_types(model, batch["input_ids"])}


def token_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False):
    """`[batch, length - 1]` logprobs of each next token under `model` at `temperature`; with `with_entropy`,
    also the `[batch, length - 1]` entropy of each position's distribution. The head computes logits only from the
    batch's first response position on (`logits_to_keep`): earlier positions hold 0, so a long image prompt adds no
    `[tokens x vocab]` logits."""
    ids = batch["input_ids"]
    start = first_response_position(batch["response_mask"])
    logits = model(**model_inputs(model, batch), logits_to_keep=ids.shape[1] - start).logits[:, :-1]
    all_logprobs = (logits.float() / temperature).log_softmax(-1)
    chosen = all_logprobs.gather(-1, ids[:, start + 1:].unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return F.pad(chosen, (start, 0))
    entropy = -(all_logprobs.exp() * all_logprobs).sum(-1)
    return F.pad(chosen, (start, 0)), F.pad(entropy, (start, 0))


def first_response_position(response_mask: torch.Tensor) -> int:
    """The first logprob-space position (column of `[batch, length - 1]`) any row scores; the last one if none does."""
    scored = response_mask.any(0).nonzero()
    return int(scored[0]) if len(scored) else response_mask.shape[1]


def pack_by_tokens(sequences: list[Sequence], budget: int) -> list[list[Sequence]]:
    """Consecutive micro-batches of at most `budget` tokens (prompt + response); a longer sequence goes alone."""
    batches, current, used = [], [], 0
    for seq in sequences:
        length = _tokens(seq)
        if current and used + length > budget:
            batches.append(current)
            current, used = [], 0
        current.append(seq)
        used += length
    return batches + ([current] if current else [])


def _tokens(sequence: Sequence) -> int:
    return len(sequence.prompt_ids) + len(sequence.response_ids)


def stretch_to(micros: list[list[Sequence]], count: int) -> list[list[Sequence]]:
    """`micros` as exactly `count` micro-batches (`count` >= their number), in order: the one with the most tokens is
    split in two while one holds two sequences or more, then empty ones are added. Ranks of one FSDP2 or ZeRO-3
    group must run as many forward and backward passes (each is a collective); an empty micro-batch is a pass that
    adds nothing (see `PolicyTrainer`)."""
    micros = [list(micro) for micro in micros]
    while len(micros) < count:
        splittable = [index for index, micro in enumerate(micros) if len(micro) > 1]
        if not splittable:
            return micros + [[] for _ in range(count - len(micros))]
        index = max(splittable, key=lambda i: sum(_tokens(s) for s in micros[i]))
        half = len(micros[index]) // 2
        micros[index:index + 1] = [micros[index][:half], micros[index][half:]]
    return micros


def idle_sequence(processor, with_image: bool) -> Sequence:
    """A sequence without response tokens, so it adds nothing to a loss or a statistic: a rank runs it so that its
    forward and backward (with an image: through the vision tower as well) pair with another rank's."""
    images = []
    if with_image:
        blank = io.BytesIO()
        Image.new("RGB", (56, 56)).save(blank, format="PNG")
        images = [blank.getvalue()]
    item = PromptItem("idle", "idle", "idle", "", images, "", "free_text")
    prompt_ids, pixels = encode_prompt(processor, item, "")
    return Sequence(prompt_ids, [], [], 0.0, pixels)
