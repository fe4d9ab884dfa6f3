"""Plots of a run's step metrics, written next to metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = (("reward/accuracy", "reward/mixed_group_fraction"), ("train/loss",),
          ("time/generate_s", "time/reward_s", "time/train_s", "time/weight_sync_s"))


def plot_metrics(metrics_path: str | Path, output_path: str | Path | None = None) -> Path:
    """Accuracy, loss and phase times per step as a PNG (default: `metrics.png` beside the JSONL)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{metrics_path} holds no step metrics")
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.5))
    for axis, names in zip(axes, PANELS):
        for name in names:
            points = [(row["step"], row[name]) for row in rows if name in row]
            if points:
                axis.plot(*zip(*points), label=name.split("/")[1])
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle(metrics_path.parent.name, fontsize=9)
    figure.tight_layout()
    output_path = Path(output_path) if output_path else metrics_path.with_name("metrics.png")
    figure.savefig(output_path, dpi=100)
    plt.close(figure)
    return output_path
