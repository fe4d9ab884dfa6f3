"""What every benchmark records beside its figures: machine, load, threads, date, git commit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0], "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": commit}


def write_result(name: str, figures: dict, config: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"{name}.json"
    target.write_text(json.dumps({"figures": figures, "config": config, "machine": machine()}, indent=2) + "\n")
    return target


def start_local(namespace: str = "visiong1-bench") -> str:
    """A private local Ray cluster (4 logical CPUs on the 2-core machine) and the cached tiny model's path."""
    from visiong1.cluster import connect
    from visiong1.models.tiny import tiny_model_path

    connect(None, num_cpus=4, namespace=namespace)
    return str(tiny_model_path(".cache/visiong1/models", seed=0))
