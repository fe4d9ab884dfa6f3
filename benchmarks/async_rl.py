"""Synchronous against asynchronous rollout on the 8-domain demo: train-phase steps per second and held-out accuracy.

Each seed runs the demo with `rollout.max_staleness=0` and then `=1` (paired: same data, model and seeds), and the
first seed also with `=2`. The demo is shortened (SHORTER, stated in the result): one round of 20 steps (dynamic
sampling on, offline difficulty and influence selection off: the step is what is compared), 50 held-out items per
domain, greedy only, no blank-image control. Reported per run: steps per second of the train phase, the
held-out mean after the round, the mean seconds per step of each phase (generate, reward, train, weight sync, the
learner's and the rollout's idle time), staleness (mean, max) and the share of training overlapped by generation;
then per seed the ratio of steps per second (k=1 over k=0) and the accuracy difference (k=1 minus k=0).

Run: python -m benchmarks.async_rl [--seeds 0 1 2] [override ...]
Writes its figures and their plot (name `async_rl`, .json and .png) into benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import RESULTS, grouped_bars, write_result
from benchmarks.demo import run_demo

SHORTER = ["round.rounds=1", "round.steps=20", "eval.items_per_domain=50", "eval.pass_k=1",
           "eval.blank_image_control=false", "selection.offline_difficulty=false", "selection.influence.enabled=false"]
PHASES = ("generate", "reward", "train", "weight_sync", "learner_idle", "rollout_idle")


def run_figures(run: dict) -> dict:
    """Steps per second of the train phase, final held-out mean, and per-step means from the run's metrics."""
    rows = [json.loads(line) for line in (Path(run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    mean = lambda key: statistics.fmean(row.get(key, 0.0) for row in rows)  # noqa: E731
    return {"seed": run["seed"], "steps": len(rows), "steps_per_s": len(rows) / run["phase_seconds"]["train"],
            "final_mean": run["final_mean"], "start_mean": run["start_mean"], "wall_s": run["wall_s"],
            "phase_s_per_step": {phase: round(mean(f"time/{phase}_s"), 3) for phase in PHASES},
            "step_s": round(mean("time/step_s"), 3), "staleness_mean": round(mean("async/staleness_mean"), 3),
            "staleness_max": max(row["async/staleness_max"] for row in rows),
            "overlap_share": round(mean("async/overlap_share"), 3)}


def paired(runs: dict[int, list[dict]]) -> dict:
    """Per seed run at both k=0 and k=1: the steps-per-second ratio and the accuracy difference, with medians."""
    by_seed = {k: {run["seed"]: run for run in runs[k]} for k in runs}
    pairs = [{"seed": seed, "speedup": by_seed[1][seed]["steps_per_s"] / by_seed[0][seed]["steps_per_s"],
              "accuracy_diff": by_seed[1][seed]["final_mean"] - by_seed[0][seed]["final_mean"]}
             for seed in sorted(by_seed[0]) if seed in by_seed[1]]
    return {"pairs": pairs, "speedup_median": statistics.median(p["speedup"] for p in pairs),
            "accuracy_diff_mean": statistics.fmean(p["accuracy_diff"] for p in pairs)}


def show(runs: dict[int, list[dict]], summary: dict) -> None:
    table = Table(title="8-domain demo (shortened): synchronous (k=0) against asynchronous rollout")
    for column in ("k", "seed", "steps/s", "held-out", *PHASES, "staleness", "overlap"):
        table.add_column(column, justify="right")
    for k, k_runs in sorted(runs.items()):
        for run in k_runs:
            table.add_row(str(k), str(run["seed"]), f"{run['steps_per_s']:.4f}", f"{run['final_mean']:.3f}",
                          *(f"{run['phase_s_per_step'][phase]:.2f}" for phase in PHASES),
                          f"{run['staleness_mean']:.2f}/{run['staleness_max']}", f"{run['overlap_share']:.2f}")
    console = Console(width=160)
    console.print(table)
    console.print(f"k=1 over k=0: median steps/s ratio {summary['speedup_median']:.2f}, mean held-out difference "
                  f"{summary['accuracy_diff_mean']:+.3f} over {len(summary['pairs'])} seeds")


def plot(runs: dict[int, list[dict]], target: Path) -> Path:
    """Train-phase steps per second per seed, a bar per max_staleness (k=2 ran on the first seed only: 0 elsewhere)."""
    seeds = sorted({run["seed"] for k_runs in runs.values() for run in k_runs})
    rates = {f"max_staleness={k}": {run["seed"]: run["steps_per_s"] for run in k_runs}
             for k, k_runs in sorted(runs.items())}
    return grouped_bars([f"seed {seed}" for seed in seeds],
                        {name: [by_seed.get(seed, 0.0) for seed in seeds] for name, by_seed in rates.items()},
                        "train-phase steps per second", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-c", "--config", default="configs/demo_8domains.yaml")
    parser.add_argument("overrides", nargs="*", help="config overrides passed to every run")
    args = parser.parse_args()
    plan = [(seed, k) for seed in args.seeds for k in (0, 1)] + [(args.seeds[0], 2)]
    runs: dict[int, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="visiong1-async-bench-") as scratch:
        for seed, k in plan:
            overrides = [*SHORTER, f"rollout.max_staleness={k}", *args.overrides]
            run = run_demo(seed, args.config, overrides, Path(scratch) / f"seed{seed}-k{k}", cache_dir=None)
            runs.setdefault(k, []).append(run_figures(run))
    summary = paired(runs)
    show(runs, summary)
    summary["plot"] = str(plot(runs, RESULTS / "async_rl.png"))
    print(write_result("async_rl", {"runs": runs, **summary},
                       {"seeds": args.seeds, "config": args.config, "shorter": SHORTER, "overrides": args.overrides}))


if __name__ == "__main__":
    main()
