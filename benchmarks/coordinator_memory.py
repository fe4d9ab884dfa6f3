"""Peak resident memory of a run's coordinator actor during `visiong1 demo`.

Runs the demo (the user's command, its own process and Ray cluster) and samples every process whose title names the
Coordinator actor; a process's VmHWM is its own peak RSS, so the largest reading over the run is the coordinator's
peak. Also reports the run's held-out accuracy before and after the rounds and the demo's wall time, so a change to
the coordinator can be checked for the same figures (the demo is deterministic per seed) and its time.

Run: python -m benchmarks.coordinator_memory [--label NAME] [override ...]   (overrides as for `visiong1 demo`)
Writes benchmarks/results/coordinator_memory.json (one entry per label, so two labels compare side by side).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.common import RESULTS, machine


def coordinator_peaks() -> dict[int, int]:
    """VmHWM bytes of every live process titled as the Coordinator actor, by PID."""
    peaks = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith("ray::Coordinator"):
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except FileNotFoundError:
                continue
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[process.pid] = kib * 1024
    return peaks


def run(overrides: list[str], output_dir: Path, interval_s: float = 1.0) -> dict:
    """The demo with `overrides`, sampled every `interval_s`: coordinator peak RSS, held-out figures, wall time."""
    command = [sys.executable, "-m", "visiong1.cli", "demo", f"output_dir={output_dir}", *overrides]
    started = time.perf_counter()
    demo = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peaks: dict[int, int] = {}
    while demo.poll() is None:
        for pid, peak in coordinator_peaks().items():
            peaks[pid] = max(peaks.get(pid, 0), peak)
        time.sleep(interval_s)
    if demo.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {demo.returncode}")
    summary = json.loads(next(output_dir.glob("*/summary.json")).read_text())
    evaluations = summary["evaluations"]
    return {"coordinator_peak_rss_mib": round(max(peaks.values()) / 2**20, 1), "coordinator_processes": len(peaks),
            "wall_s": round(time.perf_counter() - started, 1),
            "accuracy_initial": evaluations[0]["accuracy_mean"], "accuracy_final": evaluations[-1]["accuracy_mean"],
            "accuracy_final_by_domain": evaluations[-1]["accuracy"],
            "phase_seconds": summary["phase_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vg1-coordmem-") as tmp:
        figures = run(args.overrides, Path(tmp))
    target = RESULTS / "coordinator_memory.json"
    results = json.loads(target.read_text()) if target.exists() else {}
    results[args.label] = {"figures": figures, "overrides": args.overrides, "machine": machine()}
    RESULTS.mkdir(exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
