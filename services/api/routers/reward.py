"""Reward pool scaling per run: a worker count set here lives in the store and the run's coordinator applies it at
its next step boundary; workers removed finish the scoring they hold first, so scoring goes on while it scales."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.context import Store
from services.api.models import RewardWorkers, RewardWorkersUpdate
from services.api.routers.rollout import scalable

router = APIRouter(prefix="/v1/runs/{run_id}/reward", tags=["reward"])


@router.get("/workers", response_model=RewardWorkers, responses={404: {}})
def get_workers(run_id: str, store: Store) -> RewardWorkers:
    return RewardWorkers.of(store.get_run(run_id))


@router.put("/workers", response_model=RewardWorkers, responses={404: {}, 409: {}, 422: {}})
def set_workers(run_id: str, body: RewardWorkersUpdate, store: Store) -> RewardWorkers:
    """Set the reward worker count (`null` clears it, as DELETE does). 409 once the run is cancelled or ended."""
    return RewardWorkers.of(store.set_reward_workers(scalable(store, run_id), body.workers))


@router.delete("/workers", response_model=RewardWorkers, responses={404: {}, 409: {}})
def clear_workers(run_id: str, store: Store) -> RewardWorkers:
    """Clear a count set over REST: back to `reward.workers` of the run's config."""
    return RewardWorkers.of(store.set_reward_workers(scalable(store, run_id), None))
