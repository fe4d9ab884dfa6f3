"""Rollout scaling per run: the target lives in the store; the run's coordinator applies it at its next step
boundary (its rollout group's `scale(n)`), leaving the learners alone."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.context import Store
from services.api.models import Replicas, ReplicasUpdate
from services.api.routers.rounds import ended_by
from visiong1.store import Conflict, RunStatus

router = APIRouter(prefix="/v1/runs/{run_id}/rollout", tags=["rollout"])


@router.get("/replicas", response_model=Replicas, responses={404: {}})
def get_replicas(run_id: str, store: Store) -> Replicas:
    return Replicas.of(store.get_run(run_id))


@router.put("/replicas", response_model=Replicas, responses={404: {}, 409: {}, 422: {}})
def set_replicas(run_id: str, body: ReplicasUpdate, store: Store) -> Replicas:
    """Set the rollout replica target (idempotent by nature: PUT). 409 once the run is cancelled or ended."""
    run = store.get_run(run_id)
    ended = ended_by(store, run_id, run.last_event_id)
    if run.status is RunStatus.CANCELLED or ended is not None:
        raise Conflict(f"run {run_id!r} is {ended or run.status.value}: there is no rollout group to scale")
    return Replicas.of(store.set_rollout_replicas(run_id, body.replicas))
