"""Benchmark results: per-item records, the per-benchmark summary, and what is written for people (JSON per
benchmark, a table, a bar chart).

A record is `{id, benchmark, answer, prediction, extracted, score, reason}`, or `{id, benchmark, answer,
prediction, unscorable}` for an item whose ground truth its official scorer cannot use: such items count in the
benchmark's size (as wrong) and by reason, never silently skipped.

>>> records = [{"benchmark": "mmmu", "score": 1.0}, {"benchmark": "mmmu", "score": 0.0},
...            {"benchmark": "mmmu", "unscorable": "ground truth 'A or B' names no single option"}]
>>> summarise(records)["mmmu"]
{'items': 3, 'scored': 2, 'accuracy': 0.3333, 'unscorable': {"ground truth 'A or B' names no single option": 1}}
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from rich.table import Table

from visiong1.types import PromptItem


def sample_items(items: list[PromptItem], count: int, seed: int) -> list[PromptItem]:
    """Up to `count` of `items` chosen by `seed`, in their original order (the same sample every round)."""
    if len(items) <= count:
        return list(items)
    chosen = set(random.Random(seed).sample(range(len(items)), count))
    return [item for index, item in enumerate(items) if index in chosen]


def record(item: PromptItem, prediction: str, verdict: dict) -> dict:
    """One item's record from its greedy response and the reward pool's verdict (`score_texts` output)."""
    base = {"id": item.id, "benchmark": item.source, "answer": item.answer, "prediction": prediction}
    if "unscorable" in verdict:
        return base | {"unscorable": verdict["unscorable"]}
    return base | {"extracted": verdict["extracted"], "score": verdict["score"], "reason": verdict["reason"]}


def summarise(records: list[dict]) -> dict[str, dict]:
    """Per benchmark (sorted): items, scored items, accuracy (mean score over every item, 4 decimals) and
    unscorable items counted by reason."""
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for entry in records:
        by_benchmark[entry["benchmark"]].append(entry)
    summary = {}
    for name, entries in sorted(by_benchmark.items()):
        scored = [entry["score"] for entry in entries if "unscorable" not in entry]
        summary[name] = {"items": len(entries), "scored": len(scored),
                         "accuracy": round(sum(scored) / len(entries), 4),
                         "unscorable": dict(Counter(entry["unscorable"] for entry in entries if "unscorable" in entry))}
    return summary


def write_results(records: list[dict], summary: dict[str, dict], output_dir: Path, title: str) -> list[Path]:
    """`<benchmark>.json` per benchmark (summary and per-item records), `summary.json` and `benchmarks.png`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figures in summary.items():
        path = output_dir / f"{name}.json"
        items = [entry for entry in records if entry["benchmark"] == name]
        path.write_text(json.dumps({"benchmark": name, **figures, "records": items}, indent=1) + "\n")
        written.append(path)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return [*written, output_dir / "summary.json", plot_accuracy(summary, output_dir / "benchmarks.png", title)]


def summary_table(summary: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("benchmark", "accuracy", "items", "scored", "unscorable"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, figures in summary.items():
        table.add_row(name, f"{figures['accuracy']:.3f}", str(figures["items"]), str(figures["scored"]),
                      str(sum(figures["unscorable"].values())))
    return table


def plot_accuracy(summary: dict[str, dict], path: Path, title: str) -> Path:
    """Accuracy per benchmark as a bar chart (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    names = list(summary)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.5))
    bars = axis.bar(names, [summary[name]["accuracy"] for name in names], color="tab:blue")
    axis.bar_label(bars, fmt="%.3f", fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy (official scorer)")
    axis.set_title(title, fontsize=9)
    axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
