"""Influence at the 8-domain demo's scale: targets carved out of a noisy pool vs clean synthetic targets.

Per seed: the demo's pool (configs/demo_8domains.yaml, `data.seed` = seed) with 20% of its items corrupted (wrong
answer or swapped image), the demo's warm-started policy (built or taken from `model.cache_dir`), round 0's
offline difficulty pass (`difficulty_samples` samples per item at the rollout temperature, the demo's pass-rate
band), then default influence scores of the in-band items against two target sets of 32 per domain: carved out
of the pool (`selection.influence.targets: pool`, so about 20% of them corrupted too) and fresh clean synthetic
items (`targets: synthetic`). Reported: AUROC at finding the corrupted in-band items (lower score = more suspect),
per-item answer loss as the baseline, and the corrupted share the default keep rule (best 75% per domain) leaves.

Run: python -m benchmarks.influence_targets [--seeds 0 1 2]
Writes benchmarks/results/influence_targets.json.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import ray
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from actors.learner import prepare_model
from benchmarks.common import write_result
from benchmarks.influence import auroc
from visiong1.config import load_config
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.eval.heldout import (TARGET_SEED_OFFSET, distinct_synthetic, held_out_hashes, item_hash,
                                   split_held_out, synthetic_held_out)
from visiong1.rewards import score
from visiong1.selection.difficulty import in_band
from visiong1.selection.influence import GradientFeaturizer, nll_loss
from visiong1.selection.scoring import keep_decisions

CORRUPT_FRACTION = 0.2


def band_items(policy: str, items: list, config) -> list:
    """The items whose pass rate over `difficulty_samples` samples lies inside their band (`selection.band`)."""
    engine = HFEngine(policy, config.round.system_prompt, seed=config.round.seed)
    params = SamplingParams(n=config.selection.difficulty_samples, max_new_tokens=config.rollout.max_new_tokens,
                            temperature=config.rollout.temperature)
    kept = []
    for start in track(range(0, len(items), 64), description="difficulty"):
        for group in engine.generate(items[start:start + 64], params):
            item = group.prompt
            accuracies = [score(s.text, item.answer, item.answer_type).accuracy for s in group.samples]
            if in_band(accuracies, config.selection.band(item.source, item.domain)):
                kept.append(item)
    return kept


def one_seed(seed: int) -> dict:
    config = load_config("configs/demo_8domains.yaml", [f"data.seed={seed}", f"round.seed={seed}"])
    data, per_domain = config.data, config.selection.influence.target_per_domain
    policy = ray.get(prepare_model.options(num_cpus=config.model.warm_start_cpus).remote(config))
    held_out = held_out_hashes(synthetic_held_out(data.domains, config.eval.items_per_domain, data.image_size,
                                                  data.seed, data.difficulty))
    pool = [item for item in generate_pool(data.domains, data.num_items, data.image_size, data.seed, data.difficulty,
                                           CORRUPT_FRACTION) if item_hash(item) not in held_out]
    candidates, pool_targets = split_held_out(pool, per_domain, config.round.seed + 1)
    clean_targets = distinct_synthetic(data.domains, per_domain, data.image_size, data.seed + TARGET_SEED_OFFSET,
                                       data.difficulty, frozenset(held_out))
    band = band_items(policy, candidates, config)
    corrupted = np.array([bool(item.metadata.get("corrupted")) for item in band])
    featurizer = GradientFeaturizer(policy, config.selection.influence, config.round.system_prompt)
    with torch.no_grad():
        losses = np.array([float(nll_loss(featurizer.model, featurizer.processor, item, config.round.system_prompt))
                           for item in band])
    run = {"seed": seed, "in_band": len(band), "in_band_corrupted": int(corrupted.sum()),
           "pool_targets_corrupted": sum(bool(t.metadata.get("corrupted")) for t in pool_targets),
           "auroc_loss": auroc(losses, corrupted)}
    for name, targets in (("pool", pool_targets), ("synthetic", clean_targets)):
        scores = featurizer.scores(band, targets)
        decisions = keep_decisions(scores, [item.domain for item in band], "top_fraction", 0.0,
                                   config.selection.influence.top_fraction)
        kept = np.array([keep for keep, _ in decisions])
        run[f"auroc_{name}_targets"] = auroc(-scores, corrupted)
        run[f"kept_corrupted_share_{name}_targets"] = float(corrupted[kept].mean())
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False)
    runs = [one_seed(seed) for seed in args.seeds]
    ray.shutdown()
    keys = [k for k in runs[0] if k.startswith(("auroc", "kept", "in_band"))]
    figures = {key: {"mean": statistics.mean(r[key] for r in runs),
                     "spread": statistics.pstdev(r[key] for r in runs)} for key in keys}
    table = Table("figure", *[f"seed {r['seed']}" for r in runs], "mean +- spread")
    for key in keys:
        table.add_row(key, *[f"{r[key]:.3f}" if isinstance(r[key], float) else str(r[key]) for r in runs],
                      f"{figures[key]['mean']:.3f} +- {figures[key]['spread']:.3f}")
    Console().print(table)
    write_result("influence_targets", {"summary": figures, "runs": runs},
                 {"seeds": args.seeds, "corrupt_fraction": CORRUPT_FRACTION, "config": "configs/demo_8domains.yaml"})


if __name__ == "__main__":
    main()
