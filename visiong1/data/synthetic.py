"""Synthetic RL-ready items that a ~1M-parameter VLM can learn on 2 CPU cores.

Counting: coloured squares on a grid whose cells are exactly one 14-px vision patch ("patch-aligned"), so the
answer is visible at patch resolution (FIELD_NOTES: free-placed objects stay at chance for tiny models).
"""

from __future__ import annotations

import io
import random

from PIL import Image

from visiong1.types import PromptItem

PATCH = 14
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40),
           "white": (240, 240, 240)}
COUNT_QUESTION = "How many squares are in the image?"


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def counting_item(rng: random.Random, index: int, image_size: int = 56, max_count: int = 6) -> PromptItem:
    """One image with 1..max_count squares, each filling one distinct patch cell; the answer is the count."""
    cells_per_side = image_size // PATCH
    count = rng.randint(1, min(max_count, cells_per_side**2))
    image = Image.new("RGB", (image_size, image_size), (0, 0, 0))
    for cell in rng.sample(range(cells_per_side**2), count):
        row, col = divmod(cell, cells_per_side)
        colour = COLOURS[rng.choice(sorted(COLOURS))]
        image.paste(colour, (col * PATCH, row * PATCH, (col + 1) * PATCH, (row + 1) * PATCH))
    return PromptItem(id=f"counting-{index:06d}", source="synthetic/counting", domain="counting",
                      question=COUNT_QUESTION, images=[encode_png(image)], answer=str(count), answer_type="count")


GENERATORS = {"counting": counting_item}


def generate_pool(domains: list[str], num_items: int, image_size: int = 56, seed: int = 0) -> list[PromptItem]:
    """`num_items` items spread round-robin over `domains`, reproducible from `seed`."""
    unknown = sorted(set(domains) - set(GENERATORS))
    if unknown:
        raise ValueError(f"unknown synthetic domains {unknown}; known: {sorted(GENERATORS)}")
    rng = random.Random(seed)
    return [GENERATORS[domains[i % len(domains)]](rng, i, image_size) for i in range(num_items)]


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: prompts, answers and the answer format."""
    lines = [COUNT_QUESTION, "Answer the question. Put the final answer in \\boxed{}.", "The answer is"]
    lines += [f"\\boxed{{{n}}}" for n in range(100)] + list(COLOURS) + ["left", "right", "yes", "no"]
    lines += ["What colour is the square?", "Is the red square left or right of the blue square?"]
    return lines * 20
