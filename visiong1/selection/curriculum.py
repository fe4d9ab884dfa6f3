"""The curriculum: which items carry between rounds, and how a round's steps draw prompts from its pool.

>>> pool = {"a1": "gui", "a2": "gui", "a3": "gui", "b1": "science"}
>>> sorted(CurriculumSampler(pool, {}, seed=0).next_batch(4))  # mix by items: uniform over the pool
['a1', 'a2', 'a3', 'b1']
>>> sorted(CurriculumSampler(pool, {}, seed=0, mix="equal").next_batch(4))  # b1 twice: its domain has one item
['a1', 'a3', 'b1', 'b1']
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from visiong1.config import CurriculumConfig
from visiong1.selection.verdicts import Difficulty
from visiong1.types import PromptItem


def carry_over(lineage: list[dict], pool: list[str],
               config: CurriculumConfig) -> tuple[list[str], list[str], dict[str, int]]:
    """The next round's pool from this round's lineage: too-easy items retire (`retire_easy`), too-hard ones wait
    for a later round unless `drop_hard`; influence targets stay targets. Returns (pool, the items retired as too
    easy, counts by outcome)."""
    fate = {row["id"]: row["difficulty"] for row in lineage}
    leaving = {Difficulty.TOO_EASY} if config.retire_easy else set()
    leaving |= {Difficulty.TOO_HARD} if config.drop_hard else set()
    kept = [item_id for item_id in pool if fate.get(item_id) not in leaving]
    retired_easy = [item_id for item_id in pool
                    if Difficulty.TOO_EASY in leaving and fate.get(item_id) == Difficulty.TOO_EASY]
    counts = Counter(fate[item_id] for item_id in pool if fate.get(item_id) in leaving)
    return kept, retired_easy, {f"curriculum/retired_{reason}": n for reason, n in sorted(counts.items())}


def answer_strata(items: Iterable[PromptItem]) -> dict[str, tuple[str, str]]:
    """(family, answer) per item id for `CurriculumSampler(strata=...)`: the family is the synthetic template where
    the item has one, else its answer type."""
    return {item.id: (item.metadata.get("template", item.answer_type), item.answer) for item in items}


def _key(*parts: str) -> str:
    return "\x1f".join(parts)  # the unit separator: not part of domain, template or answer strings


class CurriculumSampler:
    """Draws a step's prompts: domains in proportion to their weights (default 1), times their item counts with
    `mix="items"`; items uniformly within a domain without replacement until the domain is exhausted, then
    reshuffled. With `replay` items (retired in earlier rounds) and a `replay_share`, that share of each batch's
    prompts (rounded stochastically) comes from them, uniformly. With `strata` (item id -> (family, answer), the
    family being the template or answer type), a draw keeps the family of the domain's next item and takes that
    family's answers in turn, so each answer is drawn as often as any other. Follows the `next_batch / observe /
    state_dict / load_state_dict / metrics` shape, so a resumed round continues exactly."""

    def __init__(self, domains_by_id: dict[str, str], weights: dict[str, float], seed: int,
                 mix: Literal["items", "equal"] = "items", replay: dict[str, str] | None = None,
                 replay_share: float = 0.0, strata: dict[str, tuple[str, str]] | None = None):
        self.domain_of = {**(replay or {}), **domains_by_id}
        # Queue keys: domain -> items; domain+family -> that family's answers; domain+family+answer -> items.
        self.stratum_members: dict[str, list[str]] = {}
        for item_id, (family, answer) in sorted((strata or {}).items()):
            stratum = self.stratum_members.setdefault(_key(domains_by_id[item_id], family, answer), [])
            if not stratum:
                self.stratum_members.setdefault(_key(domains_by_id[item_id], family), []).append(answer)
            stratum.append(item_id)
        self.family_of = {item_id: family for item_id, (family, _) in (strata or {}).items()}
        self.members: dict[str, list[str]] = {}
        for item_id in sorted(domains_by_id):
            self.members.setdefault(domains_by_id[item_id], []).append(item_id)
        self.weights = {domain: weights.get(domain, 1.0) * (len(self.members[domain]) if mix == "items" else 1)
                        for domain in sorted(self.members)}
        self.replay_items = sorted(set(replay or {}) - set(domains_by_id))
        self.is_replay = frozenset(self.replay_items).__contains__
        self.replay_share = replay_share if self.replay_items else 0.0
        self.rng = random.Random(seed)
        self.queues: dict[str, list[str]] = {domain: [] for domain in self.members}
        self.replay_queue: list[str] = []
        self.drawn: Counter = Counter()
        self.observed: Counter = Counter()
        self.replayed: Counter = Counter({"drawn": 0, "trained": 0})

    def _domain_counts(self, size: int) -> Counter:
        """Largest-remainder split of `size` over the domains by weight."""
        total = sum(self.weights.values())
        exact = {domain: size * weight / total for domain, weight in self.weights.items()}
        counts = Counter({domain: int(value) for domain, value in exact.items()})
        for domain in sorted(exact, key=lambda d: (-(exact[d] - counts[d]), self.rng.random()))[:size - sum(counts.values())]:
            counts[domain] += 1
        return counts

    def _pop(self, key: str, members: list[str]) -> str:
        """The next of `members` from queue `key`, reshuffled when it runs out."""
        if not self.queues.get(key):
            self.queues[key] = self.rng.sample(members, len(members))
        return self.queues[key].pop()

    def _take(self, domain: str) -> str:
        item_id = self._pop(domain, self.members[domain])
        if not self.family_of:
            return item_id
        # Balanced answers: keep the drawn item's family (template), then take its answers in turn.
        family = self.family_of[item_id]
        answer = self._pop(_key(domain, family), self.stratum_members[_key(domain, family)])
        return self._pop(_key(domain, family, answer), self.stratum_members[_key(domain, family, answer)])

    def _take_replay(self) -> str:
        if not self.replay_queue:
            self.replay_queue = self.rng.sample(self.replay_items, len(self.replay_items))
        return self.replay_queue.pop()

    def _replay_count(self, size: int) -> int:
        """`size * replay_share` rounded up with probability equal to its fraction (never above `size`: share < 1)."""
        exact = size * self.replay_share
        return int(exact) + (self.rng.random() < exact - int(exact))

    def next_batch(self, size: int) -> list[str]:
        """`size` item ids for one generation batch."""
        if not self.members:
            raise ValueError("the round's pool is empty: nothing to sample")
        replays = self._replay_count(size) if self.replay_share else 0
        fresh = [self._take(domain) for domain, count in sorted(self._domain_counts(size - replays).items())
                 for _ in range(count)]
        batch = fresh + [self._take_replay() for _ in range(replays)]
        self.drawn.update(self.domain_of[item_id] for item_id in fresh)
        self.replayed["drawn"] += replays
        return batch

    def observe(self, trained_ids: list[str]) -> None:
        """Items that a step trained on (after dynamic sampling)."""
        self.observed.update(self.domain_of[item_id] for item_id in trained_ids)
        self.replayed["trained"] += sum(map(self.is_replay, trained_ids))

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "queues": {d: list(q) for d, q in self.queues.items()},
                "replay_queue": list(self.replay_queue), "drawn": dict(self.drawn), "observed": dict(self.observed),
                "replayed": dict(self.replayed)}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.queues = {domain: list(queue) for domain, queue in state["queues"].items()}
        self.replay_queue = list(state.get("replay_queue", []))
        self.drawn, self.observed = Counter(state["drawn"]), Counter(state["observed"])
        self.replayed = Counter(state.get("replayed", {"drawn": 0, "trained": 0}))

    def metrics(self) -> dict[str, float]:
        replay = ({f"curriculum/replay_{key}": n for key, n in sorted(self.replayed.items())}
                  if self.replay_share else {})
        return {**{f"curriculum/drawn_{d}": n for d, n in sorted(self.drawn.items())},
                **{f"curriculum/trained_{d}": n for d, n in sorted(self.observed.items())}, **replay}
