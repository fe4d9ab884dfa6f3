"""Rollout scaling per run: a count set here lives in the store and the run's coordinator applies it at its next
step boundary (its rollout group's `scale(n)`), leaving the learners alone; it overrides `rollout.autoscale` until
cleared."""

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
    """Set the rollout replica count, which overrides `rollout.autoscale` until cleared (`null`, or DELETE);
    idempotent by nature (PUT). 409 once the run is cancelled or ended."""
    return Replicas.of(store.set_rollout_replicas(scalable(store, run_id), body.replicas))


@router.delete("/replicas", response_model=Replicas, responses={404: {}, 409: {}})
def clear_replicas(run_id: str, store: Store) -> Replicas:
    """Clear a count set over REST: the config's count, or its autoscale policy, sizes the group again."""
    return Replicas.of(store.set_rollout_replicas(scalable(store, run_id), None))


def scalable(store, run_id: str) -> str:
    """`run_id`, after checking that the run still has its actor groups (404 unknown, 409 cancelled or ended)."""
    run = store.get_run(run_id)
    ended = ended_by(store, run_id, run.last_event_id)
    if run.status is RunStatus.CANCELLED or ended is not None:
        raise Conflict(f"run {run_id!r} is {ended or run.status.value}: it has no actor group to scale")
    return run_id
