"""Supervised answer-only warm start of the random-init tiny model, so RL starts with groups of mixed rewards.

A random policy never writes `\\boxed{}`; GRPO then sees only zero-advantage groups and learns nothing
(on the tiny model the answer format is learnt in about 25 supervised steps; 250 steps reached about 60% on
three synthetic tasks: counting, colour, left/right).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from visiong1.config import DataConfig
from visiong1.data.synthetic import generate_pool
from visiong1.eval.heldout import held_out_hashes, item_hash, synthetic_held_out
from visiong1.models.families import load_model, load_processor
from visiong1.training.batching import Sequence, collate, encode_prompt, token_logprobs
from visiong1.types import PromptItem

# In cached warm starts' names; bump when training or its data changes (2: image tokens on M-RoPE; 3: textured
# spatial/common_sense/science images, held-out items excluded; 4: `point` items answer with the box centre).
WARM_START_VERSION = 4


def answer_sequences(processor, items: list[PromptItem], system_prompt: str) -> list[Sequence]:
    """Prompt + `\\boxed{reference answer}<|im_end|>` for each item; the loss covers the answer tokens only."""
    sequences = []
    for item in items:
        prompt_ids, images = encode_prompt(processor, item, system_prompt)
        answer = f"\\boxed{{{item.reference_answer()}}}<|im_end|>"
        target = processor.tokenizer.encode(answer, add_special_tokens=False)
        sequences.append(Sequence(prompt_ids, target, [0.0] * len(target), 1.0, images))
    return sequences


def warm_start_items(steps: int, batch_size: int = 32) -> int:
    """Items to generate for `steps` warm-start steps: each seen about 4 times (at least 512), so longer warm starts
    teach the skill rather than memorising a small set."""
    return max(512, steps * batch_size // 4)


def warm_start_pool(data: DataConfig, count: int, held_out_per_domain: int) -> list[PromptItem]:
    """`count` synthetic warm-start items (seed `data.seed + 10_000`) minus any with the same content as the run's
    held-out items (`held_out_per_domain` per domain, the coordinator's own set), which must stay unseen."""
    items = generate_pool(data.domains, count, data.image_size, seed=data.seed + 10_000, difficulty=data.difficulty)
    if not held_out_per_domain:
        return items
    unseen = held_out_hashes(synthetic_held_out(data.domains, held_out_per_domain, data.image_size, data.seed,
                                                data.difficulty))
    return [item for item in items if item_hash(item) not in unseen]


def warm_start(model_path: str | Path, output_path: str | Path, items: list[PromptItem], system_prompt: str,
               steps: int, batch_size: int = 32, lr: float = 1e-3, seed: int = 0, progress=None) -> Path:
    """Train `steps` AdamW steps of answer-only cross-entropy and save the result to `output_path`.

    `progress`, if given, is called as `progress(step, loss)` after every step.
    """
    torch.manual_seed(seed)
    processor = load_processor(model_path)
    model = load_model(model_path).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    sequences = answer_sequences(processor, items, system_prompt)
    rng = random.Random(seed)
    for step in range(steps):
        batch = collate(rng.sample(sequences, min(batch_size, len(sequences))), processor.tokenizer.pad_token_id)
        logprobs = token_logprobs(model, batch)
        loss = -(logprobs * batch["response_mask"]).sum() / batch["response_mask"].sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if progress is not None:
            progress(step, float(loss.detach()))
    model.save_pretrained(output_path)
    processor.save_pretrained(output_path)
    return Path(output_path)
