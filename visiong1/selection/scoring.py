"""Influence scores from features, and keep/drop decisions: numpy only, so the coordinator imports no torch.

>>> import numpy as np
>>> targets = domain_targets(np.array([[1.0, 0.0], [0.0, 1.0]]), ["gui", "gui"])
>>> influence_scores(np.array([[1.0, 0.0], [-1.0, 0.0]]), ["gui", "gui"], targets).tolist()
[0.5, -0.5]
>>> keep_decisions(np.array([0.5, -0.5]), ["gui", "gui"], "threshold", 0.0, 0.5)
[(True, 'kept'), (False, 'below_threshold')]
"""

from __future__ import annotations

import numpy as np


def domain_targets(target_features: np.ndarray, target_domains: list[str]) -> dict[str, np.ndarray]:
    """Mean normalised target feature per domain: `<phi(z), mean_t phi(t)>` = mean_t `<phi(z), phi(t)>`."""
    domains = sorted(set(target_domains))
    return {d: target_features[[i for i, td in enumerate(target_domains) if td == d]].mean(axis=0) for d in domains}


def influence_scores(features: np.ndarray, domains: list[str], targets: dict[str, np.ndarray]) -> np.ndarray:
    """Score per item: similarity with its own domain's targets, or the best domain's when it has none."""
    names = sorted(targets)
    matrix = np.stack([targets[name] for name in names])  # [domains, dim]
    similarities = features @ matrix.T  # [items, domains]
    own = [names.index(domain) if domain in targets else -1 for domain in domains]
    return np.array([row[i] if i >= 0 else row.max() for row, i in zip(similarities, own)])


def keep_decisions(scores: np.ndarray, domains: list[str], keep: str, threshold: float,
                   top_fraction: float) -> list[tuple[bool, str]]:
    """(kept, reason) per item: `below_threshold`, or `below_top_fraction` of its domain; kept ones `kept`."""
    if keep == "threshold":
        return [(True, "kept") if score >= threshold else (False, "below_threshold") for score in scores]
    decisions: list[tuple[bool, str]] = [(False, "below_top_fraction")] * len(scores)
    for domain in set(domains):
        members = [i for i, d in enumerate(domains) if d == domain]
        quota = max(1, round(top_fraction * len(members)))
        for i in sorted(members, key=lambda i: -scores[i])[:quota]:
            decisions[i] = (True, "kept")
    return decisions
