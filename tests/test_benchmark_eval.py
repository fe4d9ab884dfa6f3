"""`visiong1 eval` end to end on the tiny model over copies of all nine benchmarks written here in their official
formats (Hugging Face Parquet; MMStar as VLMEvalKit's TSV), and its refusals of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_fixtures import write_all_benchmarks, write_mmstar_tsv
from tests.test_benchmarks_math import write_tsv
from visiong1.eval.benchmarks import BENCHMARKS

ITEMS_PER_BENCHMARK = 3  # every item kind of MathVista; test_round samples eval.benchmark_items=3 of two benchmarks
IMAGE_SIDE = 56


def write_benchmarks(root: Path) -> Path:
    """All nine benchmarks in their HF Parquet layouts, but MMStar as VLMEvalKit's MMStar.tsv (base64 images): the
    loader prefers Parquet, so the MMStar copy is replaced."""
    write_all_benchmarks(root, ITEMS_PER_BENCHMARK, IMAGE_SIDE)
    shutil.rmtree(root / "mmstar")
    write_mmstar_tsv(root, ITEMS_PER_BENCHMARK, IMAGE_SIDE)
    return root


def visiong1_eval(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visiong1.cli", "eval", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_eval_writes_records_table_and_chart_for_each_benchmark(tmp_path, tiny_model):
    root, out = write_benchmarks(tmp_path / "data"), tmp_path / "results"
    done = visiong1_eval(tiny_model, "rollout.engine=hf", "rollout.max_new_tokens=8", "ray.num_cpus=2",
                         "reward.num_cpus=0.5", "--benchmarks", ",".join(BENCHMARKS), "--data-root", str(root),
                         "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == sorted(BENCHMARKS)
    for name in BENCHMARKS:
        result = json.loads((out / f"{name}.json").read_text())
        records = result["records"]
        assert [r["benchmark"] for r in records] == [name] * ITEMS_PER_BENCHMARK
        assert (result["items"], result["scored"], result["unscorable"]) == (
            ITEMS_PER_BENCHMARK, ITEMS_PER_BENCHMARK, {}), records
        assert all(isinstance(r["prediction"], str) and r["score"] in (0.0, 1.0) for r in records)
        accuracy = round(sum(r["score"] for r in records) / ITEMS_PER_BENCHMARK, 4)
        assert result["accuracy"] == accuracy == summary[name]["accuracy"]
        assert name in done.stdout  # the table
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("benchmarks, setup, message", [
    ("mathvista,nope", None, "--benchmarks: unknown ['nope']; known: mathvista"),
    ("mathvista", None, "mathvista: no such directory"),
    ("mmstar", "header", "MMStar.tsv: missing column(s) ['answer']"),
])
def test_bad_input_stops_before_any_model_loads_and_names_the_problem(tmp_path, benchmarks, setup, message):
    if setup == "header":
        write_tsv(tmp_path / "mmstar" / "MMStar.tsv", ["index", "image", "question", "A"], [["1", "x", "q", "a"]])
    done = visiong1_eval("no-model-needed", "--benchmarks", benchmarks, "--data-root", str(tmp_path), timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr
