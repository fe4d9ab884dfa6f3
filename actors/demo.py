"""`visiong1 demo`: one real round of GRPO on the tiny Qwen2.5-VL, every role a Ray actor, on this machine.

Deviations from the paper, on purpose: a ~0.6M-parameter random-init model (warm-started by supervised steps on
synthetic data so RL has mixed-reward groups), one synthetic domain (counting patch-aligned squares), 16-token
answers, lr 1e-4 instead of 1e-6, a transformers engine in place of vLLM. Launch: `visiong1 demo`.
"""

from __future__ import annotations

import time
from pathlib import Path
import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visiong1.cluster import connect
from actors.coordinator import TERMINAL_EVENTS, start_run
from visiong1.config import RunConfig
from visiong1.eval.plots import plot_metrics

STEP_COLUMNS = {"reward/mean": "reward", "reward/accuracy": "acc", "reward/mixed_group_fraction": "mixed",
                "train/loss": "loss", "time/generate_s": "gen_s", "time/reward_s": "rew_s", "time/train_s": "train_s",
                "time/weight_sync_s": "sync_s"}


def follow(coordinator, steps: int, console: Console, poll_s: float = 0.5) -> dict:
    """Show the run's events as a progress bar and per-step lines until it ends; returns the terminal event."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    seen = 0
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("preparing", total=steps)
        while True:
            for event in ray.get(coordinator.events.remote(seen)):
                seen = event["seq"] + 1
                _show(event, progress, task, console)
                if event["type"] in TERMINAL_EVENTS:
                    return event
            time.sleep(poll_s)


def _show(event: dict, progress: Progress, task, console: Console) -> None:
    kind = event["type"]
    if kind == "phase":
        progress.update(task, description=event["phase"].replace("_", " "))
    elif kind == "evaluation":
        console.print(f"held-out accuracy ({event['label']}): mean {event['accuracy_mean']:.3f}  " +
                      "  ".join(f"{domain} {value:.2f}" for domain, value in event["accuracy"].items()))
    elif kind == "selection":
        console.print(f"selection: {event['kept']} of {event['pool']} items kept ({event['targets']} held out as "
                      f"influence targets, {event['in_band']} in the pass-rate band)")
    elif kind == "step":
        progress.update(task, advance=1, description="training")
        console.print(f"step {event['step']:>3}  " + "  ".join(
            f"{label}={event[name]:.3f}" for name, label in STEP_COLUMNS.items() if name in event))
    elif kind == "run_failed":
        console.print(f"[red]run failed: {event['error']}[/red]\n{event['traceback']}")


def evaluation_table(evaluations: list[dict]) -> Table:
    """Held-out greedy accuracy per domain (rows) before round 0 and after each round (columns)."""
    table = Table(title="Held-out greedy accuracy")
    table.add_column("domain")
    for result in evaluations:
        table.add_column(result["label"], justify="right")
    for domain in evaluations[0]["accuracy"]:
        table.add_row(domain, *(f"{result['accuracy'][domain]:.3f}" for result in evaluations))
    table.add_row("mean", *(f"{result['accuracy_mean']:.3f}" for result in evaluations))
    return table


def main(config: RunConfig) -> int:
    console = Console()
    started = time.perf_counter()
    connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    run_id, coordinator, done = start_run(config)
    console.print(f"run [bold]{run_id}[/bold]")
    final = follow(coordinator, config.round.steps * config.round.rounds, console)
    if final["type"] == "run_failed":
        return 1
    ray.get(done)
    run_dir = Path(final["checkpoint"]).parent
    plot = plot_metrics(run_dir / "metrics.jsonl")
    console.print(f"sampled accuracy, mean of the first {final['window']} steps {final['accuracy_first']:.3f} -> "
                  f"last {final['window']} steps {final['accuracy_last']:.3f}")
    if final["evaluations"]:
        console.print(evaluation_table(final["evaluations"]))
    console.print(f"done in {time.perf_counter() - started:.1f}s; run directory {run_dir} (plot: {plot.name}, "
                  f"report: {final['report']})")
    return 0
