"""Influence scoring at scale: memory, cost per item and fidelity of the streamed gradient sketch on the mid-size
model (~325M parameters), on CPU in fp32, gradient features of the last 2 decoder layers sketched to 8192 dims.

1. Memory: in a fresh (spawned) process per measurement, the peak of anonymous resident memory (RssAnon, sampled
   every 5 ms) above its baseline after imports, while the featurizer loads the model, preconditions from 8 targets
   and featurizes N candidates, for two N (4 and 16): streaming must keep the peak flat in N. Budget: 1.5 * model
   bytes (4 * parameters) + sketch state (the preconditioner, 4 * subset size, and the features, 4 * dim * N).
   The weights are memory-mapped from safetensors (file-backed pages, shared with the page cache, not anonymous),
   so the peak of all resident memory (VmRSS) is reported beside it against the same budget.
2. Cost per item: median over items of the seconds of `features([item])` (streamed sketch, preconditioned) divided
   by those of `gradient(item)` (one forward and backward over the same subset, dense). Target: <= 2.
3. Fidelity: Spearman of `scores(candidates, targets)` against the exact scores (cosines of the full preconditioned
   gradients, aggregated by `influence_scores`, as tests/test_influence.py computes them) on 40 candidates and 8
   targets. Target: >= 0.9.

Run: python -m benchmarks.influence_scale [--batch-sizes 4 16] [--timed 10] [--candidates 40] [--threads 1]
Writes benchmarks/results/influence_scale.json. Smoke run on the tiny model (seconds):
python -m benchmarks.influence_scale --model tiny --batch-sizes 1 2 --timed 2 --candidates 6 --projection-dim 512
(writes influence_scale_tiny.json).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from benchmarks.common import PeakResident, resident, write_result
from visiong1.config import InfluenceConfig
from visiong1.data.synthetic import SYSTEM_PROMPT, generate_pool
from visiong1.selection.influence import PRECONDITIONER_DAMPING, GradientFeaturizer, normalise
from visiong1.selection.scoring import domain_targets, influence_scores

CACHE = Path(".cache/visiong1/models")
DOMAINS = ["counting", "spatial"]
TARGETS = 8
COST_TARGET, FIDELITY_TARGET = 2.0, 0.9
FLAT_TOLERANCE = 0.05  # the peak at the largest N may exceed the smallest N's by this fraction and still be flat


def model_path(name: str) -> str:
    """The cached `mid` (~325M parameters; built on first use, which takes a while) or `tiny` model."""
    from visiong1.models.tiny import mid_model_path, tiny_model_path

    return str(mid_model_path(CACHE) if name == "mid" else tiny_model_path(CACHE))


def targets() -> list:
    """The TARGETS clean target items (both domains)."""
    return generate_pool(DOMAINS, TARGETS, seed=99)


def candidates(n: int) -> list:
    """`n` candidate items, 30% corrupted (so the scores spread)."""
    return generate_pool(DOMAINS, n, seed=3, corrupt_fraction=0.3)


def import_model_code(path: str) -> None:
    """Import the transformers modules that loading the model at `path` imports, so that the baseline holds the code
    and the peak above it only data."""
    model_type = json.loads((Path(path) / "config.json").read_text())["model_type"]
    for module in ("modeling", "processing"):
        importlib.import_module(f"transformers.models.{model_type}.{module}_{model_type}")
    importlib.import_module("transformers.models.qwen2_vl.image_processing_qwen2_vl")


def memory_child(path: str, config: dict, n: int, threads: int) -> dict:
    """Run in a fresh process: RssAnon peak above the after-imports baseline while a GradientFeaturizer of `config`
    loads `path`, preconditions from the targets and featurizes `n` candidates. Items are generated before the
    baseline (they are input, not featurizer state)."""
    torch.set_num_threads(threads)
    import_model_code(path)
    target_items, candidate_items = targets(), candidates(n)
    gc.collect()
    baseline, baseline_total = resident(), resident("VmRSS")
    with PeakResident() as peak:
        featurizer = GradientFeaturizer(path, InfluenceConfig(**config), SYSTEM_PROMPT)
        featurizer.precondition_with(featurizer.squared_gradient_sum(target_items) / len(target_items))
        features = featurizer.features(candidate_items)
    return {"n": n, "baseline_bytes": baseline, "peak_bytes": peak.peak - baseline, "samples": peak.samples,
            "peak_total_bytes": peak.peak_total - baseline_total,
            "parameters": sum(p.numel() for p in featurizer.model.parameters()), "subset": featurizer.size,
            "features_shape": list(features.shape)}


def budget_bytes(run: dict, projection_dim: int) -> int:
    """1.5 * model bytes (fp32) + the preconditioner (fp32 over the subset) + `n` fp32 features."""
    return int(1.5 * 4 * run["parameters"] + 4 * run["subset"] + 4 * projection_dim * run["n"])


def measure_memory(path: str, config: InfluenceConfig, n: int, threads: int) -> dict:
    """`memory_child` in a fresh spawned process, with its budget, ratio peak/budget and whether it holds."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = pool.submit(memory_child, path, config.model_dump(), n, threads).result()
    budget = budget_bytes(run, config.projection_dim)
    return run | {"budget_bytes": budget, "ratio": round(run["peak_bytes"] / budget, 4),
                  "holds": run["peak_bytes"] <= budget}


def memory_summary(runs: list[dict]) -> dict:
    """Growth of the peak from the smallest to the largest N, and whether it is flat (within FLAT_TOLERANCE) and
    within budget at every N."""
    small, large = min(runs, key=lambda r: r["n"]), max(runs, key=lambda r: r["n"])
    growth = large["peak_bytes"] - small["peak_bytes"]
    return {"runs": runs, "peak_growth_bytes": growth, "flat": growth <= FLAT_TOLERANCE * small["peak_bytes"],
            "holds": all(r["holds"] for r in runs)}


def seconds(call) -> float:
    """Wall seconds of `call()`."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def precondition(featurizer: GradientFeaturizer, items: list) -> None:
    """Precondition `featurizer` by the mean squared gradient of `items` (as `scores` does with the targets)."""
    featurizer.precondition_with(featurizer.squared_gradient_sum(items) / len(items))


def cost_per_item(featurizer: GradientFeaturizer, items: list, target_items: list) -> dict:
    """Median seconds per item of the streamed, preconditioned sketch (`features([item])`) and of the dense gradient
    (`gradient(item)`), alternated item by item after one warm-up of each, and the median of their ratios."""
    precondition(featurizer, target_items)
    featurizer.features(items[:1])  # warm-up of both paths
    featurizer.gradient(items[0])
    sketched, dense = [], []
    for item in track(items, description="cost per item"):
        sketched.append(seconds(lambda: featurizer.features([item])))
        dense.append(seconds(lambda: featurizer.gradient(item)))
    ratio = statistics.median(s / d for s, d in zip(sketched, dense))
    return {"items": len(items), "sketched_s": round(statistics.median(sketched), 4),
            "dense_s": round(statistics.median(dense), 4), "ratio": round(ratio, 4), "target": COST_TARGET,
            "holds": ratio <= COST_TARGET}


def exact_scores(featurizer: GradientFeaturizer, items: list, target_items: list) -> np.ndarray:
    """`[items]` exact influence scores: full gradients, preconditioned (if configured) by the targets' damped mean
    square, normalised, aggregated per domain by `influence_scores`. Candidates are taken one at a time, so only the
    targets' gradients are held."""
    gradients = torch.stack([featurizer.gradient(t) for t in track(target_items, description="exact targets")])
    v = gradients.square().mean(dim=0)
    scale = (v + PRECONDITIONER_DAMPING * v.mean()).rsqrt() if featurizer.config.precondition else torch.ones_like(v)
    per_domain = domain_targets(normalise(gradients * scale).numpy(), [t.domain for t in target_items])
    del gradients
    rows = [normalise((featurizer.gradient(item) * scale)[None]).numpy()
            for item in track(items, description="exact candidates")]
    return influence_scores(np.concatenate(rows), [i.domain for i in items], per_domain, featurizer.config.aggregate)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two score vectors (no ties expected in continuous scores)."""
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def fidelity(featurizer: GradientFeaturizer, items: list, target_items: list) -> dict:
    """Spearman of the sketched scores (`featurizer.scores`) against `exact_scores` on the same items."""
    exact = exact_scores(featurizer, items, target_items)
    with Console().status("sketched scores"):
        sketched = featurizer.scores(items, target_items)
    rho = spearman(exact, sketched)
    return {"candidates": len(items), "targets": len(target_items), "spearman": round(rho, 4),
            "target": FIDELITY_TARGET, "holds": rho >= FIDELITY_TARGET}


def table(memory: dict, cost: dict, quality: dict) -> Table:
    """The three measurements, one row each (and one per N for memory)."""
    out = Table(title="Streamed influence features at scale (CPU, fp32)")
    for column in ("measurement", "value", "reference", "ratio", "holds"):
        out.add_column(column, justify="right")
    for run in memory["runs"]:
        out.add_row(f"peak RssAnon, N={run['n']}", f"{run['peak_bytes'] / 2**20:.0f} MB",
                    f"budget {run['budget_bytes'] / 2**20:.0f} MB", f"{run['ratio']:.2f}", str(run["holds"]))
        out.add_row(f"peak VmRSS, N={run['n']}", f"{run['peak_total_bytes'] / 2**20:.0f} MB",
                    f"budget {run['budget_bytes'] / 2**20:.0f} MB",
                    f"{run['peak_total_bytes'] / run['budget_bytes']:.2f}", "(file-backed weights included)")
    out.add_row("peak growth", f"{memory['peak_growth_bytes'] / 2**20:.0f} MB", f"<= {FLAT_TOLERANCE:.0%} of peak",
                "", str(memory["flat"]))
    out.add_row("seconds per item", f"sketch {cost['sketched_s']:.3f}", f"dense {cost['dense_s']:.3f}",
                f"{cost['ratio']:.2f}", f"{cost['holds']} (<= {COST_TARGET})")
    out.add_row("Spearman vs exact", f"{quality['spearman']:.3f}", f">= {FIDELITY_TARGET}", "", str(quality["holds"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mid", "tiny"], default="mid", help="tiny: a smoke run of the code path")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16], help="N of the memory measurements")
    parser.add_argument("--timed", type=int, default=10, help="items of the cost-per-item medians")
    parser.add_argument("--candidates", type=int, default=40, help="candidates of the fidelity measurement")
    parser.add_argument("--last-layers", type=int, default=2)
    parser.add_argument("--projection-dim", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one core stays free for sampling)")
    parser.add_argument("--output", default=None, help="result name (default influence_scale[_tiny])")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    config = InfluenceConfig(last_layers=args.last_layers, projection_dim=args.projection_dim, seed=0)
    with console.status(f"building or finding the {args.model} model"):
        path = model_path(args.model)
    memory_runs = []
    for n in args.batch_sizes:
        with console.status(f"memory, N={n} (fresh process)"):
            memory_runs.append(measure_memory(path, config, n, args.threads))
    memory = memory_summary(memory_runs)
    featurizer = GradientFeaturizer(path, config, SYSTEM_PROMPT)
    cost = cost_per_item(featurizer, candidates(args.timed), targets())
    quality = fidelity(featurizer, candidates(args.candidates), targets())
    console.print(table(memory, cost, quality))
    figures = {"model": path, "parameters": memory_runs[0]["parameters"], "subset": featurizer.size,
               "memory": memory, "cost_per_item": cost, "fidelity": quality}
    name = args.output or ("influence_scale" if args.model == "mid" else "influence_scale_tiny")
    console.print(f"wrote {write_result(name, figures, vars(args) | {'influence': config.model_dump()})}")


if __name__ == "__main__":
    main()
