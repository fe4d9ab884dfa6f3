"""Deterministic crash points for the fault tests and the chaos soak.

`VISIONG1_FAULTS` arms points (comma-separated) and `VISIONG1_FAULT_MARKERS` names a directory shared by every
process of the run. An armed point is `name` (its first arrival) or `name@k` (its k-th arrival, counted over all
processes): the process that makes that arrival creates the marker `<markers>/<name@k>` and SIGKILLs itself. Each
fault strikes once: a restarted process arrives later in the count. Unset, `crash_once` does nothing.

Points: `committed_step_<n>` and `resuming` (coordinator), `generate` and `weight_load` (rollout replica),
`score` (reward worker), `train` (learner rank), `influence_score` (influence actor, each chunk's shard), and in a
checkpoint save `writing_shards` (each write of a learner rank's shard files) and `before_manifest`,
`before_rename`, `before_retain` (the committing process, the coordinator in a run).
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

FAULTS_ENV, MARKERS_ENV = "VISIONG1_FAULTS", "VISIONG1_FAULT_MARKERS"


def armed_arrivals(point: str) -> set[int]:
    """The arrivals of `point` that crash (empty unless `VISIONG1_FAULTS` arms it)."""
    arrivals = set()
    for spec in filter(None, os.environ.get(FAULTS_ENV, "").split(",")):
        name, _, k = spec.partition("@")
        if name == point:
            arrivals.add(int(k or 1))
    return arrivals


def crash_once(point: str) -> None:
    """Count this arrival at `point`; SIGKILL this process when it is an armed one."""
    if not (armed := armed_arrivals(point)):
        return
    markers = Path(os.environ[MARKERS_ENV])
    with open(markers / f"{point}.arrivals", "ab") as counter:  # one byte per arrival, under a lock
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.write(b".")
        counter.flush()
        arrival = os.fstat(counter.fileno()).st_size
    if arrival in armed:
        (markers / f"{point}@{arrival}").touch(exist_ok=False)
        os.kill(os.getpid(), signal.SIGKILL)


def fault_env(markers: str | os.PathLike, *points: str) -> dict[str, str]:
    """The environment variables that arm `points` (for a Ray actor's `runtime_env`)."""
    return {FAULTS_ENV: ",".join(points), MARKERS_ENV: str(markers)}
