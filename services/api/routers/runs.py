"""Runs: create (starts a coordinator), list, get, cancel, resume."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from services.api.context import RunLauncher, ServerConfig, Store
from services.api.idempotency import IdempotencyKey, fingerprint, respond_once
from services.api.models import INT64_MAX, RunCreate, RunList, RunOut, RunSummary
from services.api.validation import build_run_config
from visiong1.config import RunConfig
from visiong1.store import Conflict, RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post("", status_code=201, response_model=RunOut,
             responses={409: {"description": "idempotency key in use"}, 413: {}, 422: {}, 502: {}, 504: {}})
def create_run(body: RunCreate, request: Request, store: Store, server: ServerConfig, launcher: RunLauncher,
               idempotency_key: IdempotencyKey = None):
    """Validate the config (the server's config, then `config`, then `overrides`) and start the run's coordinator;
    answers once the coordinator has registered the run in the store."""
    def start() -> RunOut:
        config = build_run_config(server, body.config, body.overrides)
        run_id = launcher.launch(config)
        return RunOut.full(store.get_run(run_id), store.list_rounds(run_id))

    return respond_once(store, idempotency_key, fingerprint(request, body), 201, start)


@router.get("", response_model=RunList)
def list_runs(store: Store, limit: int = Query(100, ge=1, le=1000),
              offset: int = Query(0, ge=0, le=INT64_MAX)) -> RunList:
    """Runs, newest first."""
    return RunList(runs=[RunSummary.of(run) for run in store.list_runs(limit, offset)])


@router.get("/{run_id}", response_model=RunOut, responses={404: {}})
def get_run(run_id: str, store: Store) -> RunOut:
    return RunOut.full(store.get_run(run_id), store.list_rounds(run_id))


@router.post("/{run_id}/cancel", status_code=202, response_model=RunOut, responses={404: {}})
def cancel_run(run_id: str, request: Request, store: Store, idempotency_key: IdempotencyKey = None):
    """Request cancellation (idempotent): the coordinator stops the active round at its next step boundary and no
    round may start afterwards. The run's status shows `cancelling` until the round has stopped."""
    def cancel() -> RunOut:
        run = store.request_run_cancel(run_id)
        return RunOut.full(run, store.list_rounds(run_id))

    return respond_once(store, idempotency_key, fingerprint(request, {}), 202, cancel)


@router.post("/{run_id}/resume", status_code=202, response_model=RunOut, responses={404: {}, 409: {}, 502: {}})
def resume_run(run_id: str, request: Request, store: Store, launcher: RunLauncher,
               idempotency_key: IdempotencyKey = None):
    """Restart a failed run from its newest checkpoint that verifies: its coordinator is replaced (the old one is
    killed if it still lives) and its failed round resumes. 409 unless the run's status is `failed`."""
    def resume() -> RunOut:
        run = store.get_run(run_id)
        if run.status is not RunStatus.FAILED:
            raise Conflict(f"run {run_id!r} is {run.status.value}: only a failed run resumes")
        launcher.resume(run_id, RunConfig.model_validate(run.config))
        return RunOut.full(store.get_run(run_id), store.list_rounds(run_id))

    return respond_once(store, idempotency_key, fingerprint(request, {}), 202, resume)
