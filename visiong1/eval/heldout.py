"""Held-out evaluation statistics: greedy accuracy and pass@k per domain.

>>> pass_at_k(n=4, correct=1, k=1), pass_at_k(n=4, correct=1, k=4), pass_at_k(n=4, correct=0, k=2)
(0.25, 1.0, 0.0)
>>> per_domain([("gui", 1.0), ("gui", 0.0), ("science", 1.0)])
{'gui': 0.5, 'science': 1.0}
"""

from __future__ import annotations

import dataclasses
import io
import random
from collections import defaultdict
from math import comb

from PIL import Image

from visiong1.data.schema import content_hash
from visiong1.data.synthetic import generate_pool
from visiong1.types import PromptItem

HELD_OUT_SEED_OFFSET = 1_000_003  # synthetic held-out items come from a seed no training pool uses
TARGET_SEED_OFFSET = 2_000_003  # synthetic influence targets: neither a training pool's nor the held-out seed


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples of which `correct` are right (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples, got n={n}")
    if n - correct < k:
        return 1.0
    return 1.0 - comb(n - correct, k) / comb(n, k)


def per_domain(values: list[tuple[str, float]]) -> dict[str, float]:
    """Mean value per domain, domains sorted."""
    sums: dict[str, list[float]] = defaultdict(list)
    for domain, value in values:
        sums[domain].append(value)
    return {domain: sum(v) / len(v) for domain, v in sorted(sums.items())}


def split_held_out(items: list[PromptItem], per_domain_count: int, seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """(training items, held-out items): up to `per_domain_count` items of each domain held out (never more than
    half a domain), chosen by `seed`; order within each list is the input order."""
    rng, held = random.Random(seed), set()
    by_domain: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_domain[item.domain].append(item.id)
    for domain in sorted(by_domain):
        members = by_domain[domain]
        held.update(rng.sample(members, min(per_domain_count, len(members) // 2)))
    return [i for i in items if i.id not in held], [i for i in items if i.id in held]


def synthetic_held_out(domains: list[str], per_domain_count: int, image_size: int, seed: int,
                       difficulty: int | list[int]) -> list[PromptItem]:
    """Up to `per_domain_count` held-out items per domain, all of distinct content, from the data seed plus
    HELD_OUT_SEED_OFFSET. Training pools and warm starts drop items with the same content (`held_out_hashes`)."""
    return distinct_synthetic(domains, per_domain_count, image_size, seed + HELD_OUT_SEED_OFFSET, difficulty)


def distinct_synthetic(domains: list[str], per_domain_count: int, image_size: int, seed: int,
                       difficulty: int | list[int], exclude: frozenset[str] = frozenset()) -> list[PromptItem]:
    """Up to `per_domain_count` uncorrupted synthetic items per domain from `seed`, all of distinct content and none
    whose content hash is in `exclude`."""
    candidates = generate_pool(domains, 2 * per_domain_count * len(domains), image_size, seed, difficulty)
    seen, taken, chosen = set(exclude), defaultdict(int), []
    for item in candidates:
        key = item_hash(item)
        if key not in seen and taken[item.domain] < per_domain_count:
            seen.add(key)
            taken[item.domain] += 1
            chosen.append(item)
    return chosen


def sample_per_domain(items: list[PromptItem], per_domain_count: int, seed: int) -> list[PromptItem]:
    """Up to `per_domain_count` items of each domain of `items`, chosen by `seed`, in input order."""
    rng, by_domain = random.Random(seed), defaultdict(list)
    for item in items:
        by_domain[item.domain].append(item.id)
    chosen = {i for domain in sorted(by_domain)
              for i in rng.sample(by_domain[domain], min(per_domain_count, len(by_domain[domain])))}
    return [item for item in items if item.id in chosen]


def item_hash(item: PromptItem) -> str:
    """The item's content hash (question, answer, images): equal for items a model cannot tell apart."""
    return content_hash(item.question, item.answer, item.images)


def held_out_hashes(items: list[PromptItem]) -> set[str]:
    return {item_hash(item) for item in items}


def blank_images(items: list[PromptItem]) -> list[PromptItem]:
    """The items with every image replaced by a black one of the same size (the text-only control)."""
    blanked = []
    for item in items:
        images = []
        for data in item.images:
            buffer = io.BytesIO()
            Image.new("RGB", Image.open(io.BytesIO(data)).size).save(buffer, format="PNG")
            images.append(buffer.getvalue())
        blanked.append(dataclasses.replace(item, images=images))
    return blanked
