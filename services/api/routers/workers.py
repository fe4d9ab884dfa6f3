"""Worker pool scaling per run (`reward`, `influence`): a count set here lives in the store and the run's
coordinator applies it at its next step boundary (and, for influence, at a round's start, before selection scores).
Reward workers removed finish the scoring they hold first, so scoring goes on while the pool scales; the influence
pool is idle outside selection, and its new workers load the policy with the next pass."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.context import Store
from services.api.models import Pool, PoolWorkers, WorkersUpdate, pool_setting
from services.api.routers.rollout import scalable
from visiong1.store import Conflict, RunStore

router = APIRouter(prefix="/v1/runs/{run_id}/{pool}", tags=["workers"])


@router.get("/workers", response_model=PoolWorkers, responses={404: {}})
def get_workers(run_id: str, pool: Pool, store: Store) -> PoolWorkers:
    return PoolWorkers.of(store.get_run(run_id), pool)


@router.put("/workers", response_model=PoolWorkers, responses={404: {}, 409: {}, 422: {}})
def set_workers(run_id: str, pool: Pool, body: WorkersUpdate, store: Store) -> PoolWorkers:
    """Set the pool's worker count (`null` clears it, as DELETE does). 409 once the run is cancelled or ended, or
    for `influence` when the run's config has no influence pool."""
    return PoolWorkers.of(_set(store, run_id, pool, body.workers), pool)


@router.delete("/workers", response_model=PoolWorkers, responses={404: {}, 409: {}})
def clear_workers(run_id: str, pool: Pool, store: Store) -> PoolWorkers:
    """Clear a count set over REST: back to the `workers` of the pool's config section."""
    return PoolWorkers.of(_set(store, run_id, pool, None), pool)


def _set(store: RunStore, run_id: str, pool: Pool, workers: int | None):
    scalable(store, run_id)
    if pool is Pool.INFLUENCE and not pool_setting(store.get_run(run_id), pool, "enabled"):
        raise Conflict(f"run {run_id!r} has no influence pool (selection.influence.enabled is false)")
    setter = store.set_reward_workers if pool is Pool.REWARD else store.set_influence_workers
    return setter(run_id, workers)
