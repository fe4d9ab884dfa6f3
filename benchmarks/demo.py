"""The demo over several seeds: held-out accuracy before and after the RL rounds, the blank-image control, wall time.

Each seed runs `visiong1 demo` (the user's command, in its own process and Ray cluster) with `data.seed`,
`round.seed` and `learner.seed` set to the seed (the tiny model's random init stays seed 0, so the warm starts
differ only by their data), then reads the run's summary.json. Reported per seed and as mean and spread (population
standard deviation) over the seeds: held-out greedy accuracy per domain at the warm start and after the last round,
the gain, the blank-image control, the demo's wall time (by default from an empty model cache: tiny model, warm
start and engine compile included), the gain of every domain whose warm-start accuracy is inside the default
pass-rate band, and per round the share of known-corrupted items at each selection stage (with
`data.corrupt_fraction` set).

Run: python -m benchmarks.demo [--seeds 0 1 2] [-c CONFIG] [--warm-cache] [--name demo] [--add] [override ...]
(config and overrides as for `visiong1 demo`: without -c, configs/demo_8domains.yaml).
Writes benchmarks/results/<name>.json and <name>.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.common import RESULTS, write_result  # noqa: E402
from visiong1.selection.lineage import corrupted_shares, funnel, read_round_manifest  # noqa: E402


BAND = (0.2, 0.8)  # the default pass-rate band; a domain whose warm-start accuracy is inside it must improve


def run_demo(seed: int, config: str | None, overrides: list[str], output_dir: Path, cache_dir: Path | None) -> dict:
    """One `visiong1 demo` process; returns its summary.json plus the wall time the user would see. With a
    `cache_dir`, the tiny model, its warm start and the engine's compile cache are built there from nothing."""
    cache = [f"model.cache_dir={cache_dir}"] if cache_dir else []
    command = [sys.executable, "-m", "visiong1.cli", "demo", *(["-c", config] if config else []), f"data.seed={seed}",
               f"round.seed={seed}", f"learner.seed={seed}", f"output_dir={output_dir}", *cache, *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall_s = time.perf_counter() - started
    (run_dir,) = output_dir.glob("*/summary.json")
    run_dir = run_dir.parent
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"seed": seed, "wall_s": round(wall_s, 1), "run_dir": str(run_dir), **seed_figures(summary),
            "corrupted_shares": round_corrupted_shares(run_dir)}


def round_corrupted_shares(run_dir: Path) -> list[dict[str, float]]:
    """Per round, the share of known-corrupted items at each selection stage (pool, band, influence, trained), from
    the rounds' manifests; all zero on a clean pool."""
    return [{stage: round(share, 4) for stage, share in corrupted_shares(funnel(read_round_manifest(path))).items()}
            for path in sorted(run_dir.glob("rounds/*/manifest.parquet"))]


def seed_figures(summary: dict) -> dict:
    """Warm-start and final held-out accuracy per domain and their means, from one run's summary.json."""
    first, last = summary["evaluations"][0], summary["evaluations"][-1]
    control = summary["controls"][0] if summary["controls"] else None
    in_band = sorted(domain for domain, accuracy in first["accuracy"].items() if BAND[0] < accuracy < BAND[1])
    return {"start": first["accuracy"], "final": last["accuracy"], "start_mean": first["accuracy_mean"],
            "in_band_gain": {domain: round(last["accuracy"][domain] - first["accuracy"][domain], 4) for domain in in_band},
            "final_mean": last["accuracy_mean"], "gain": last["accuracy_mean"] - first["accuracy_mean"],
            "blank_control_mean": control["accuracy_mean"] if control else None,
            "rounds": [e["accuracy_mean"] for e in summary["evaluations"]], "phase_seconds": summary["phase_seconds"]}


def mean_and_spread(values: list[float]) -> list[float]:
    return [round(statistics.fmean(values), 4), round(statistics.pstdev(values), 4)]


def aggregate(runs: list[dict]) -> dict:
    domains = list(runs[0]["start"])
    per_domain = {domain: {"start": mean_and_spread([r["start"][domain] for r in runs]),
                           "final": mean_and_spread([r["final"][domain] for r in runs])} for domain in domains}
    overall = {key: mean_and_spread([r[key] for r in runs if r[key] is not None])
               for key in ("start_mean", "final_mean", "gain", "blank_control_mean", "wall_s")}
    return {"per_domain": per_domain, **overall}


def show(runs: list[dict], summary: dict) -> None:
    table = Table(title=f"Demo over {len(runs)} seeds: held-out greedy accuracy (mean +- spread)")
    for column in ("domain", "warm start", "after RL", "gain"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, figures in summary["per_domain"].items():
        (start, start_sd), (final, final_sd) = figures["start"], figures["final"]
        table.add_row(domain, f"{start:.3f} +- {start_sd:.3f}", f"{final:.3f} +- {final_sd:.3f}", f"{final - start:+.3f}")
    (start, start_sd), (final, final_sd) = summary["start_mean"], summary["final_mean"]
    table.add_row("mean", f"{start:.3f} +- {start_sd:.3f}", f"{final:.3f} +- {final_sd:.3f}", f"{final - start:+.3f}")
    console = Console()
    console.print(table)
    console.print(f"blank-image control {summary['blank_control_mean'][0]:.3f} +- {summary['blank_control_mean'][1]:.3f};"
                  f" wall time {summary['wall_s'][0]:.0f} +- {summary['wall_s'][1]:.0f} s per demo")
    for run in runs:
        gains = ", ".join(f"{domain} {gain:+.3f}" for domain, gain in run["in_band_gain"].items())
        console.print(f"seed {run['seed']}: domains with warm-start accuracy in {BAND}: {gains}")


def plot(runs: list[dict], target: Path) -> Path:
    """Held-out mean accuracy at the warm start and after each round, one line per seed."""
    figure, axes = plt.subplots(figsize=(5, 3.2))
    for run in runs:
        axes.plot(range(len(run["rounds"])), run["rounds"], marker="o", label=f"seed {run['seed']}")
    axes.set_xticks(range(len(runs[0]["rounds"])), ["warm start"] + [f"round {i}" for i in range(len(runs[0]["rounds"]) - 1)])
    axes.set_ylabel("held-out accuracy (mean of domains)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def stored_runs(args: argparse.Namespace) -> list[dict]:
    """The runs in benchmarks/results/<name>.json of seeds not being rerun; refuses a file written with another
    config, overrides or cache mode, whose runs would not be comparable."""
    stored = json.loads((RESULTS / f"{args.name}.json").read_text())
    setup = {key: stored["config"][key] for key in ("config", "overrides", "warm_cache")}
    if setup != {"config": args.config, "overrides": args.overrides, "warm_cache": args.warm_cache}:
        raise SystemExit(f"--add: {args.name}.json was written with {setup}; rerun all seeds instead")
    return [run for run in stored["figures"]["runs"] if run["seed"] not in args.seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-c", "--config", default="configs/demo_8domains.yaml", help="run config of every demo")
    parser.add_argument("--warm-cache", action="store_true",
                        help="reuse the tiny model, warm starts and engine cache in model.cache_dir (default: build "
                             "them per seed in a scratch directory, so the wall time is a first run's)")
    parser.add_argument("--name", default="demo", help="results name: benchmarks/results/<name>.json and .png")
    parser.add_argument("--add", action="store_true",
                        help="keep the other seeds' runs in <name>.json (same config and overrides) and add these")
    parser.add_argument("overrides", nargs="*", help="config overrides passed to every demo")
    args = parser.parse_args()
    kept = stored_runs(args) if args.add else []
    with tempfile.TemporaryDirectory(prefix="visiong1-demo-bench-") as scratch:
        runs = [run_demo(seed, args.config, args.overrides, Path(scratch) / f"seed{seed}",
                         None if args.warm_cache else Path(scratch) / f"cache{seed}" / "models") for seed in args.seeds]
    for run in runs:
        run.pop("run_dir")
    runs = sorted(kept + runs, key=lambda run: run["seed"])
    summary = aggregate(runs)
    show(runs, summary)
    summary["plot"] = str(plot(runs, RESULTS / f"{args.name}.png"))
    seeds = [run["seed"] for run in runs]
    print(write_result(args.name, {"runs": runs, **summary}, {"seeds": seeds, "config": args.config,
                                                          "overrides": args.overrides, "warm_cache": args.warm_cache}))


if __name__ == "__main__":
    main()
