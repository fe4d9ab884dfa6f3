"""What every benchmark records beside its figures: machine, load, threads, date, git commit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import psutil

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


class PeakSampler:
    """Calls `_sample()` in a thread every `interval_s` while the `with` block runs, and once more at its end;
    subclasses keep their peaks there."""

    def __init__(self, interval_s: float):
        self.interval_s, self.peak, self.samples = interval_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class PeakMemory(PeakSampler):
    """Peak of (RSS of this process tree + object store bytes used), sampled in a thread."""

    def __init__(self, with_ray: bool, interval_s: float = 0.5):
        super().__init__(interval_s)
        self.with_ray, self._state = with_ray, None

    def _object_store_bytes(self) -> int:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        import ray
        if self._state is None:
            self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return get_memory_info_reply(self._state).store_stats.object_store_bytes_used

    def _tree_rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _sample(self) -> None:
        total = self._tree_rss() + (self._object_store_bytes() if self.with_ray else 0)
        self.peak, self.samples = max(self.peak, total), self.samples + 1


def resident(field: str = "RssAnon") -> int:
    """Bytes of this process's resident memory of one kind (`RssAnon`: anonymous; `VmRSS`: all, file-backed pages
    such as memory-mapped safetensors included), from /proc/self/status (Linux only)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakResident(PeakSampler):
    """Peaks of this process's anonymous (`peak`) and total (`peak_total`) resident memory while the block runs,
    sampled in a thread every `interval_s`."""

    def __init__(self, interval_s: float = 0.005):
        super().__init__(interval_s)
        self.peak_total = 0

    def _sample(self) -> None:
        self.peak, self.peak_total = max(self.peak, resident()), max(self.peak_total, resident("VmRSS"))
        self.samples += 1


def grouped_bars(groups: list[str], series: dict[str, list[float]], ylabel: str, target: Path) -> Path:
    """A bar chart with one cluster per group and one bar per series in it (`series[name][i]` for `groups[i]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.2))
    width = 0.8 / len(series)
    for offset, (name, values) in enumerate(series.items()):
        axes.bar([i + offset * width for i in range(len(groups))], values, width, label=name)
    axes.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over one
    figure.tight_layout()
    figure.savefig(target, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return target
