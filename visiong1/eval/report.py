"""A run's HTML report: held-out accuracy per domain per round, reward and accuracy per step, group-accuracy
histograms, the selection funnel per domain, and step time by phase, as PNGs beside `report.html`.

Reads only the run directory (metrics.jsonl, summary.json, rounds/NNN/funnel.json), so `visiong1 report RUN_DIR`
regenerates it at any time, also for a run still in progress.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from visiong1.eval.plots import plot_metrics  # noqa: E402

PHASES = ("generate", "reward", "train", "weight_sync")


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _evaluations(run_dir: Path) -> list[dict]:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()).get("evaluations", []) if path.exists() else []


def _funnels(run_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(run_dir.glob("rounds/*/funnel.json"))}


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_accuracy_by_round(evaluations: list[dict], path: Path) -> Path:
    """One line per domain: held-out greedy accuracy at each evaluation (before round 0, after each round)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    labels = [e["label"] for e in evaluations]
    for domain in evaluations[0]["accuracy"]:
        axis.plot(labels, [e["accuracy"][domain] for e in evaluations], marker="o", label=domain)
    axis.plot(labels, [e["accuracy_mean"] for e in evaluations], color="black", linewidth=2.5, label="mean")
    axis.set(ylim=(0, 1), ylabel="held-out greedy accuracy", title="Accuracy per domain per round")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_group_histograms(rows: list[dict], path: Path) -> Path:
    """Stacked share of groups per mean-accuracy bin at each step (all 0, in between, all 1)."""
    bins = sorted({key for row in rows for key in row if key.startswith("dynamic/groups_acc_")})
    figure, axis = plt.subplots(figsize=(7, 4))
    steps = [row["step"] for row in rows]
    if bins:
        bottom = [0.0] * len(rows)
        for name in bins:
            totals = [sum(row.get(b, 0) for b in bins) or 1 for row in rows]
            shares = [row.get(name, 0) / total for row, total in zip(rows, totals)]
            axis.bar(steps, shares, bottom=bottom, label=name.removeprefix("dynamic/groups_acc_"))
            bottom = [b + s for b, s in zip(bottom, shares)]
        axis.legend(fontsize=7, title="group mean accuracy")
    else:  # without dynamic sampling the metrics hold only the share of mixed groups
        axis.plot(steps, [row.get("reward/mixed_group_fraction", 0) for row in rows], label="mixed groups")
        axis.legend(fontsize=7)
    axis.set(xlabel="step", ylabel="share of groups", title="Group accuracy per step")
    return _save(figure, path)


def plot_funnels(funnels: dict[str, dict], path: Path) -> Path:
    """One panel per round: items per domain at each selection stage, the known-corrupted ones hatched, and the
    retired items that trained again when the curriculum replays them."""
    figure, axes = plt.subplots(1, len(funnels), figsize=(5 * len(funnels), 4), squeeze=False)
    for axis, (name, stages_by_domain) in zip(axes[0], funnels.items()):
        domains = list(stages_by_domain)
        replayed = any(counts.get("replayed") for counts in stages_by_domain.values())
        stages = ("pool", "band", "influence", "trained", *(("replayed",) if replayed else ()))
        width = 0.8 / len(stages)
        for offset, stage in enumerate(stages):
            positions = [i + offset * width for i in range(len(domains))]
            axis.bar(positions, [stages_by_domain[d][stage] for d in domains], width=width, label=stage)
            corrupted = [stages_by_domain[d].get(f"corrupted_{stage}", 0) for d in domains]
            if any(corrupted):
                axis.bar(positions, corrupted, width=width, fill=False, hatch="///", edgecolor="black",
                         label="corrupted" if offset == 0 else None)
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(domains))], domains, rotation=30, fontsize=7)
        axis.set(title=f"Selection funnel, round {name}", ylabel="items")
        axis.legend(fontsize=7)
    return _save(figure, path)


def plot_step_time(rows: list[dict], path: Path) -> Path:
    """Stacked seconds per step by phase."""
    figure, axis = plt.subplots(figsize=(7, 4))
    steps, bottom = [row["step"] for row in rows], [0.0] * len(rows)
    for phase in PHASES:
        seconds = [row.get(f"time/{phase}_s", 0.0) for row in rows]
        axis.bar(steps, seconds, bottom=bottom, label=phase)
        bottom = [b + s for b, s in zip(bottom, seconds)]
    axis.set(xlabel="step", ylabel="seconds", title="Step time by phase")
    axis.legend(fontsize=7)
    return _save(figure, path)


def _evaluation_table(evaluations: list[dict], key: str = "accuracy", with_mean: bool = True,
                      name_header: str | None = None) -> str:
    """HTML table of `evaluation[key]` (name -> accuracy) with one column per evaluation."""
    head = "".join(f"<th>{html.escape(e['label'])}</th>" for e in evaluations)
    body = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{e[key][name]:.3f}</td>" for e in evaluations)
                   + "</tr>" for name in evaluations[0][key])
    mean_row = ""
    if with_mean:
        mean = "".join(f"<td><b>{e['accuracy_mean']:.3f}</b></td>" for e in evaluations)
        mean_row = f"<tr><td><b>mean</b></td>{mean}</tr>"
    name_header = name_header or ("domain" if with_mean else "domain/template")
    return f"<table><tr><th>{name_header}</th>{head}</tr>{body}{mean_row}</table>"


def benchmark_accuracy(evaluations: list[dict]) -> list[dict]:
    """The evaluations that scored benchmarks, as `{label, accuracy: {benchmark: accuracy}}`."""
    return [{"label": e["label"], "accuracy": {name: figures["accuracy"] for name, figures in e["benchmarks"].items()}}
            for e in evaluations if e.get("benchmarks")]


def plot_benchmarks_by_round(evaluations: list[dict], path: Path) -> Path:
    """One line per benchmark: accuracy by its official scorer at each evaluation."""
    figure, axis = plt.subplots(figsize=(7, 4))
    labels = [e["label"] for e in evaluations]
    for name in evaluations[0]["accuracy"]:
        axis.plot(labels, [e["accuracy"][name] for e in evaluations], marker="s", label=name)
    axis.set(ylim=(0, 1), ylabel="accuracy (official scorer)", title="Benchmarks per round")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def _benchmark_section(evaluations: list[dict], out: Path) -> tuple[str, list[tuple[str, Path]]]:
    """HTML table and figure of the benchmarks per round (nothing when the run evaluated none)."""
    scored = benchmark_accuracy(evaluations)
    if not scored:
        return "", []
    table = "<h2>Benchmarks per round (official scorers, the run's fixed sample)</h2>" + _evaluation_table(
        scored, with_mean=False, name_header="benchmark")
    return table, [("Benchmarks per round", plot_benchmarks_by_round(scored, out / "benchmarks.png"))]


def write_report(run_dir: str | Path) -> Path:
    """Write `report.html` and its PNGs into `<run_dir>/report/`; returns the HTML path."""
    run_dir = Path(run_dir)
    rows, evaluations, funnels = _rows(run_dir), _evaluations(run_dir), _funnels(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl with steps, so nothing to report yet")
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    figures = [("Reward, accuracy, loss and phase time per step", plot_metrics(run_dir / "metrics.jsonl", out / "steps.png")),
               ("Group accuracy per step", plot_group_histograms(rows, out / "groups.png")),
               ("Step time by phase", plot_step_time(rows, out / "step_time.png"))]
    if evaluations:
        figures.insert(0, ("Held-out accuracy per domain per round", plot_accuracy_by_round(evaluations, out / "accuracy.png")))
    if funnels:
        figures.append(("Selection funnel per domain", plot_funnels(funnels, out / "funnel.png")))
    benchmark_table, benchmark_figures = _benchmark_section(evaluations, out)
    figures[1:1] = benchmark_figures
    sections = "".join(f"<h2>{html.escape(title)}</h2><img src='{path.name}' alt='{html.escape(title)}'>"
                       for title, path in figures)
    table = _evaluation_table(evaluations) if evaluations else "<p>No held-out evaluation in this run.</p>"
    if evaluations and all(e.get("accuracy_by_template") for e in evaluations):
        table += "<h2>Held-out accuracy per template</h2>" + _evaluation_table(evaluations, "accuracy_by_template",
                                                                              with_mean=False)
    table += benchmark_table
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>visiong1 run {html.escape(run_dir.name)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
            "td,th{padding:2px 10px;text-align:right}</style></head>"
            f"<body><h1>Run {html.escape(run_dir.name)}</h1><p>{len(rows)} steps.</p>{table}{sections}</body></html>")
    target = out / "report.html"
    target.write_text(page)
    return target
