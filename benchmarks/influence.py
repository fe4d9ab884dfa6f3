"""Influence selection on data where the truth is known, and influence-scoring throughput.

Usefulness, per gradient loss (`--losses`: `nll`, the answer's negative log-likelihood, and `policy_gradient`, the
GRPO loss of 4 samples per candidate drawn from the policy at temperature 1, 12 new tokens, rewarded by
`visiong1.rewards.score`, as the difficulty scorer records them; targets' features are always their answer NLL), per
seed (3 seeds) and per policy strength (REGIMES: the tiny model warm-started on counting for 300 steps, ~88% held-out
accuracy, and for 100 steps, before it has learnt to count): a pool of counting items of which 20% are corrupted by
the generators' switch (wrong answer or swapped image) and a clean held-out target set of 32. Influence scores (the
default InfluenceConfig but for the loss: gradients of the last decoder layer, preconditioned by the targets' mean
squared gradient, hashed CountSketch to 8192 dims, max cosine over the targets) are compared with baselines at
finding the corrupted items (AUROC, corrupted = positive, lower influence = more suspect): per-item answer NLL
(higher = more suspect), random scores and, for `policy_gradient`, the mean sampled reward (lower = more suspect,
`auroc_reward`); `auroc_<plain|precond>_<mean|max>` are the four (precondition, aggregate) settings. An item whose
samples all earned the same reward has a zero policy-gradient feature (`uniform_reward_items` counts them). Then, for
`nll` and the 300-step policy only, the same supervised training (answer-only AdamW, 60 steps, lr 3e-4) runs on the
influence-selected items (the default keep rule: best 75%) and on a random subset of the same size, and both are
evaluated greedily on 200 clean held-out items.

Throughput: one InfluencePool pass (200 candidates, 32 targets, nll) with 1 and 2 actors on a local Ray cluster,
with the peak of RSS of all processes plus object store bytes.

Run: python -m benchmarks.influence [--seeds 0 1 2] [--pool 300] [--losses nll policy_gradient] [--no-throughput]
Writes benchmarks/results/influence.json (`runs` and `mean_and_spread` by loss, then regime) and influence.png.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.common import RESULTS, PeakMemory, write_result  # noqa: E402
from visiong1.config import InfluenceConfig  # noqa: E402
from visiong1.data.pool_index import PoolIndex, write_items  # noqa: E402
from visiong1.data.synthetic import SYSTEM_PROMPT, generate_pool  # noqa: E402
from visiong1.engines.hf import HFEngine, SamplingParams  # noqa: E402
from visiong1.models.tiny import tiny_model_path  # noqa: E402
from visiong1.rewards import score  # noqa: E402
from visiong1.selection.influence import GradientFeaturizer, nll_loss  # noqa: E402
from visiong1.selection.scoring import keep_decisions  # noqa: E402
from visiong1.training.warm_start import WARM_START_VERSION, warm_start  # noqa: E402

CACHE = Path(".cache/visiong1/models")
REGIMES = {"strong": 300, "weak": 100}  # warm-start steps of each policy
TRAINED = "strong"  # the regime whose policy the training comparison starts from


def auroc(suspicion: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (Mann-Whitney U, no ties expected)."""
    ranks = np.argsort(np.argsort(suspicion)) + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def warm_policy(steps: int) -> str:
    """The tiny model after `steps` answer-only steps on counting, built once and cached. 300 steps leave it at
    about 88% held-out accuracy (200 steps: ~47%, 450: 100%): room for the training comparison to show a
    difference."""
    base = tiny_model_path(CACHE, seed=0)
    target = Path(f"{base}-warm{steps}v{WARM_START_VERSION}-counting-d1")
    if not (target / "config.json").exists():
        staging = target.with_name(target.name + ".partial")
        warm_start(base, staging, generate_pool(["counting"], 512, seed=10_000), SYSTEM_PROMPT, steps)
        staging.rename(target)
    return str(target)


def accuracy(model_path: str, items) -> float:
    engine = HFEngine(model_path, SYSTEM_PROMPT)
    groups = engine.generate(items, SamplingParams(n=1, max_new_tokens=12, greedy=True))
    return float(np.mean([score(g.samples[0].text, g.prompt.answer, g.prompt.answer_type).accuracy for g in groups]))


def sampled(policy: str, items: list, seed: int) -> dict[str, dict]:
    """Per item id, what the difficulty scorer records: 4 responses at temperature 1 (token ids) and their rewards."""
    engine = HFEngine(policy, SYSTEM_PROMPT, seed=seed)
    groups = engine.generate(items, SamplingParams(n=4, max_new_tokens=12, temperature=1.0))
    return {group.prompt.id: {"responses": [sample.token_ids for sample in group.samples],
                              "rewards": [score(sample.text, group.prompt.answer, group.prompt.answer_type).score
                                          for sample in group.samples]}
            for group in groups}


def ablations(featurizer: GradientFeaturizer, pool: list, targets: list, corrupted: np.ndarray,
              samples: dict | None) -> dict:
    """AUROC of the other (precondition, aggregate) settings: `auroc_<plain|precond>_<mean|max>`."""
    default, out = featurizer.config, {}
    for precondition in (False, True):
        for aggregate in ("mean", "max"):
            featurizer.config = default.model_copy(update={"precondition": precondition, "aggregate": aggregate})
            name = f"auroc_{'precond' if precondition else 'plain'}_{aggregate}"
            out[name] = auroc(-featurizer.scores(pool, targets, samples), corrupted)
    featurizer.config = default
    return out


def reward_baseline(samples: dict, pool: list, corrupted: np.ndarray) -> dict:
    """AUROC of ranking by mean sampled reward (lower = more suspect) and the items with uniform rewards."""
    rewards = [samples[item.id]["rewards"] for item in pool]
    return {"auroc_reward": auroc(-np.array([np.mean(r) for r in rewards]), corrupted),
            "uniform_reward_items": sum(len(set(r)) == 1 for r in rewards)}


def one_seed(policy: str, seed: int, pool_size: int, work: Path, train: bool, loss: str = "nll") -> dict:
    pool = generate_pool(["counting"], pool_size, seed=100 + seed, corrupt_fraction=0.2)
    targets = generate_pool(["counting"], 32, seed=200 + seed)
    held_out = generate_pool(["counting"], 200, seed=300 + seed)
    corrupted = np.array([bool(item.metadata.get("corrupted")) for item in pool])
    samples = sampled(policy, pool, seed) if loss == "policy_gradient" else None
    config = InfluenceConfig(projection_dim=8192, last_layers=1, seed=seed, loss=loss)
    featurizer = GradientFeaturizer(policy, config, SYSTEM_PROMPT)
    started = time.perf_counter()
    scores = featurizer.scores(pool, targets, samples)
    scoring_s = time.perf_counter() - started
    with torch.no_grad():
        losses = np.array([float(nll_loss(featurizer.model, featurizer.processor, i, SYSTEM_PROMPT)) for i in pool])
    random_scores = np.random.default_rng(seed).random(len(pool))
    run = {"seed": seed, "pool": len(pool), "corrupted": int(corrupted.sum()),
           "auroc_influence": auroc(-scores, corrupted), "auroc_loss": auroc(losses, corrupted),
           "auroc_random": auroc(random_scores, corrupted), "accuracy_start": accuracy(policy, held_out),
           "scoring_items_per_s": (len(pool) + len(targets)) / scoring_s,
           **ablations(featurizer, pool, targets, corrupted, samples),
           **(reward_baseline(samples, pool, corrupted) if samples else {})}
    if not train:
        return run
    decisions = keep_decisions(scores, [i.domain for i in pool], config.keep, config.threshold, config.top_fraction)
    selected = [item for item, (kept, _) in zip(pool, decisions) if kept]
    random_subset = random.Random(seed).sample(pool, len(selected))
    for name, items in (("influence", selected), ("random", random_subset)):
        out = warm_start(policy, work / f"{name}-{seed}", items, SYSTEM_PROMPT, steps=60, lr=3e-4, seed=seed)
        run[f"accuracy_{name}"] = accuracy(str(out), held_out)
    return run | {"selected": len(selected),
                  "selected_corrupted": int(sum(bool(i.metadata.get("corrupted")) for i in selected)),
                  "random_subset_corrupted": int(sum(bool(i.metadata.get("corrupted")) for i in random_subset))}


def throughput(policy: str, workers: int) -> dict:
    from actors.influence import InfluencePool

    work = Path(tempfile.mkdtemp(prefix="vg1-influence-"))  # roles read items from storage by their index rows
    write_items(generate_pool(["counting", "spatial"], 200, seed=7), work / "candidates.parquet")
    write_items(generate_pool(["counting", "spatial"], 32, seed=8), work / "targets.parquet")
    candidates = PoolIndex.open([work / "candidates.parquet"]).values()
    targets = PoolIndex.open([work / "targets.parquet"]).values()
    pool = InfluencePool(policy, InfluenceConfig(workers=workers, num_cpus=1), SYSTEM_PROMPT, 1.0)
    pool.score(candidates[:4], targets[:4], timeout_s=600)  # warm-up: model load, first backward
    with PeakMemory(with_ray=True) as memory:
        _, metrics = pool.score(candidates, targets, timeout_s=600)
    pool.shutdown()
    return {"workers": workers, "items_per_s": round(metrics["influence/items_per_s"], 1),
            "seconds": round(metrics["time/influence_pass_s"], 2), "peak_memory_mb": round(memory.peak / 2**20, 1)}


def plot(runs: dict[str, dict[str, list[dict]]], path: Path) -> Path:
    """Left: AUROC per ranking (influence per loss, the loss and random baselines) and regime; right: training on
    the nll-selected subset against a random one."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = [(f"influence\n{loss}", loss, "auroc_influence") for loss in runs]
    bars += [("answer NLL", next(iter(runs)), "auroc_loss"), ("random", next(iter(runs)), "auroc_random")]
    regimes = list(next(iter(runs.values())))
    width = 0.8 / len(regimes)
    for k, regime in enumerate(regimes):
        values = [[r[key] for r in runs[loss][regime]] for _, loss, key in bars]
        left.bar(np.arange(len(bars)) + (k - (len(regimes) - 1) / 2) * width, [statistics.mean(v) for v in values],
                 yerr=[statistics.pstdev(v) for v in values], width=width, capsize=3,
                 label=f"{regime} ({REGIMES[regime]}-step policy)")
    left.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    left.set_xticks(range(len(bars)), [label for label, _, _ in bars], fontsize=8)
    left.legend(loc="lower left", fontsize=8)
    left.set(ylim=(0, 1), ylabel="AUROC", title="Finding corrupted items (mean, spread over seeds)")
    trained, names = runs["nll"][TRAINED], ["start", "random", "influence"]
    right.bar(names, [statistics.mean(r[f"accuracy_{n}"] for r in trained) for n in names],
              yerr=[statistics.pstdev(r[f"accuracy_{n}"] for r in trained) for n in names], capsize=4)
    right.set(ylim=(0, 1), ylabel="held-out accuracy",
              title=f"Training on the nll-selected vs a random subset ({TRAINED})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def results_table(runs: dict[str, dict[str, list[dict]]]) -> Table:
    """One row per (loss, regime, seed)."""
    table = Table(title="Influence selection, counting pool with 20% corrupted items")
    for column in ("loss", "policy", "seed", "acc start", "AUROC infl", "AUROC NLL", "AUROC reward", "AUROC rand",
                   "kept (corrupt)", "random (corrupt)", "acc infl", "acc rand"):
        table.add_column(column, justify="right")
    for loss, by_regime in runs.items():
        for regime, regime_runs in by_regime.items():
            for r in regime_runs:
                trained = ["-"] * 4 if "selected" not in r else [
                    f"{r['selected']} ({r['selected_corrupted']})", f"{r['selected']} ({r['random_subset_corrupted']})",
                    f"{r['accuracy_influence']:.3f}", f"{r['accuracy_random']:.3f}"]
                reward = f"{r['auroc_reward']:.3f}" if "auroc_reward" in r else "-"
                table.add_row(loss, f"{regime} ({REGIMES[regime]})", str(r["seed"]), f"{r['accuracy_start']:.3f}",
                              f"{r['auroc_influence']:.3f}", f"{r['auroc_loss']:.3f}", reward,
                              f"{r['auroc_random']:.3f}", *trained)
    return table


def mean_and_spread(regime_runs: list[dict]) -> dict:
    """(mean, population spread) over seeds of every AUROC and accuracy figure."""
    return {key: (round(statistics.mean(r[key] for r in regime_runs), 4),
                  round(statistics.pstdev(r[key] for r in regime_runs), 4))
            for key in regime_runs[0] if key.startswith(("auroc_", "accuracy_"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--losses", nargs="+", choices=["nll", "policy_gradient"], default=["nll", "policy_gradient"])
    parser.add_argument("--no-throughput", action="store_true", help="skip the InfluencePool throughput pass")
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console()
    policies = {regime: warm_policy(steps) for regime, steps in REGIMES.items()}
    with tempfile.TemporaryDirectory(prefix="vg1-influence-") as work:
        runs = {loss: {regime: [one_seed(policy, seed, args.pool, Path(work), loss == "nll" and regime == TRAINED,
                                         loss) for seed in args.seeds]
                       for regime, policy in policies.items()}
                for loss in args.losses}
    speed = [] if args.no_throughput else measure_throughput(policies[TRAINED])
    console.print(results_table(runs))
    summary = {loss: {regime: mean_and_spread(regime_runs) for regime, regime_runs in by_regime.items()}
               for loss, by_regime in runs.items()}
    console.print({"mean, spread": summary, "throughput": speed})
    figures = {"warm_steps": REGIMES, "trained": TRAINED, "runs": runs, "mean_and_spread": summary,
               "throughput": speed}
    if "nll" in runs:
        figures["plot"] = str(plot(runs, RESULTS / "influence.png"))
    console.print(f"wrote {write_result('influence', figures, vars(args))}")


def measure_throughput(policy: str) -> list[dict]:
    """`throughput` with 1 and 2 actors on a fresh local Ray cluster."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    speed = [throughput(policy, workers) for workers in (1, 2)]
    ray.shutdown()
    return speed


if __name__ == "__main__":
    main()
