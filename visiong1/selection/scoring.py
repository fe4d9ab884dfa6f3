"""Influence scores from features, and keep/drop decisions: numpy only, so the coordinator imports no torch.

>>> import numpy as np
>>> targets = domain_targets(np.array([[1.0, 0.0], [0.0, 1.0]]), ["gui", "gui"])
>>> influence_scores(np.array([[1.0, 0.0], [-1.0, 0.0]]), ["gui", "gui"], targets, "mean").tolist()
[0.5, -0.5]
>>> influence_scores(np.array([[1.0, 0.0], [-1.0, 0.0]]), ["gui", "gui"], targets, "max").tolist()
[1.0, 0.0]
>>> keep_decisions(np.array([0.5, -0.5]), ["gui", "gui"], "threshold", 0.0, 0.5)
[(True, <Influence.KEPT: 'kept'>), (False, <Influence.BELOW_THRESHOLD: 'below_threshold'>)]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from visiong1.selection.difficulty import ChunkStore
from visiong1.selection.verdicts import Influence


def domain_targets(target_features: np.ndarray, target_domains: list[str]) -> dict[str, np.ndarray]:
    """The `[targets of the domain, dim]` rows of `target_features` (`[targets, dim]`, unit norm) per domain."""
    domains = sorted(set(target_domains))
    return {d: target_features[[i for i, td in enumerate(target_domains) if td == d]] for d in domains}


def aggregate_similarities(features: np.ndarray, targets: np.ndarray, aggregate: str) -> np.ndarray:
    """`[items]`: the `max` or `mean` over the rows of `targets` (`[targets, dim]`) of the cosine with each row of
    `features` (`[items, dim]`); both unit norm."""
    similarities = features @ targets.T  # [items, targets]
    return similarities.max(axis=1) if aggregate == "max" else similarities.mean(axis=1)


def influence_scores(features: np.ndarray, domains: list[str], targets: dict[str, np.ndarray],
                     aggregate: str) -> np.ndarray:
    """`[items]` scores of `features` (`[items, dim]`): the aggregated similarity with its own domain's targets, or
    the best domain's when its domain has none."""
    names = sorted(targets)
    per_domain = np.stack([aggregate_similarities(features, targets[name], aggregate) for name in names], axis=1)
    own = [names.index(domain) if domain in targets else -1 for domain in domains]
    return np.array([row[i] if i >= 0 else row.max() for row, i in zip(per_domain, own)])


def keep_decisions(scores: np.ndarray, domains: list[str], keep: str, threshold: float,
                   top_fraction: float) -> list[tuple[bool, Influence]]:
    """(kept, reason) per item: `below_threshold`, or `below_top_fraction` of its domain; kept ones `kept`."""
    if keep == "threshold":
        return [(True, Influence.KEPT) if score >= threshold else (False, Influence.BELOW_THRESHOLD)
                for score in scores]
    decisions: list[tuple[bool, Influence]] = [(False, Influence.BELOW_TOP_FRACTION)] * len(scores)
    for domain in set(domains):
        members = [i for i, d in enumerate(domains) if d == domain]
        quota = max(1, round(top_fraction * len(members)))
        for i in sorted(members, key=lambda i: -scores[i])[:quota]:
            decisions[i] = (True, Influence.KEPT)
    return decisions


INFLUENCE_SCHEMA = pa.schema([("round", pa.int32()), ("id", pa.string()), ("score", pa.float32()),
                              ("version", pa.int64())])


class InfluenceStore(ChunkStore):
    """Per-round influence scores, each with the policy weight version it was computed on (INFLUENCE_SCHEMA)."""

    schema = INFLUENCE_SCHEMA

    def scores(self, version: int) -> dict[str, float]:
        """Item id -> score of the chunks computed on `version` (chunks of another version are stale)."""
        table = self.read()
        return {row["id"]: row["score"] for row in table.to_pylist() if row["version"] == version}
