import json

import pytest

from visiong1.eval.plots import plot_metrics


def test_plot_is_a_png_beside_the_metrics(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "reward/accuracy": i / 4, "train/loss": 0.1, "time/train_s": 0.3} for i in range(4)]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    plot = plot_metrics(metrics)
    assert plot == tmp_path / "metrics.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_metrics_are_an_error(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("")
    with pytest.raises(ValueError, match="holds no step metrics"):
        plot_metrics(metrics)
