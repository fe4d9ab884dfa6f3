"""Cluster status: the compute cluster's nodes and resources, and per live run its coordinator, rollout target and
the latest step's rollout health as the coordinator reported it (weight version, replicas)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.context import RunLauncher, Store
from services.api.models import replicas_target
from visiong1.store import RunStatus

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])

LIVE = (RunStatus.CREATED, RunStatus.RUNNING, RunStatus.CANCELLING, RunStatus.IDLE, RunStatus.FAILED)


@router.get("")
def cluster_status(store: Store, launcher: RunLauncher) -> dict:
    runs = []
    for run in store.list_runs(limit=100):
        if run.status not in LIVE:
            continue
        rows = store.metrics_for(run.id)
        latest = rows[-1].metrics if rows else {}
        runs.append({"run_id": run.id, "status": run.status, "coordinator_alive": launcher.alive(run.id),
                     "rollout_replicas_target": replicas_target(run),
                     "rollout": {key: value for key, value in latest.items() if key.startswith("rollout/")},
                     "step": rows[-1].step if rows else None})
    return {**launcher.cluster(), "runs": runs}
