"""Rounds of a run: start the next one (with overrides of selection and steps), get, list, cancel, and each
round's sample ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from services.api.context import RunLauncher, Store
from services.api.idempotency import IdempotencyKey, fingerprint, respond_once
from services.api.models import (
    INT32_MAX,
    RoundCreate,
    RoundLedger,
    RoundList,
    RoundOut,
    round_setting,
)
from services.api.validation import round_config
from visiong1.store import Conflict, Round, RunStore
from visiong1.store.events import TERMINAL_EVENTS

router = APIRouter(prefix="/v1/runs/{run_id}/rounds", tags=["rounds"])
RoundIndex = Annotated[int, Path(ge=0, le=INT32_MAX)]


@router.post("", status_code=201, response_model=RoundOut, responses={404: {}, 409: {}, 422: {}})
def start_round(run_id: str, body: RoundCreate, request: Request, store: Store, launcher: RunLauncher,
                idempotency_key: IdempotencyKey = None):
    """Queue the run's next round (state `pending`); its coordinator picks it up. 409 while another round is active,
    before the run's configured rounds are done, after a cancel, or once the coordinator has ended."""
    def start() -> RoundOut:
        run = store.get_run(run_id)
        config = round_config(run.config, body.overrides)
        configured = config.round.rounds
        started = len(store.list_rounds(run_id))
        if started < configured:
            raise Conflict(f"run {run_id!r} has started {started} of its {configured} configured rounds; "
                           "rounds over REST follow them")
        ended = ended_by(store, run_id, run.last_event_id)
        if ended is not None:
            raise Conflict(f"run {run_id!r} has ended ({ended}): no coordinator serves new rounds")
        if launcher.alive(run_id) is False:
            raise Conflict(f"the coordinator of run {run_id!r} is not running: nobody would serve the round")
        return _out(store, store.start_round(run_id, body.overrides), config.round.steps)

    return respond_once(store, idempotency_key, fingerprint(request, body), 201, start)


@router.get("", response_model=RoundList, responses={404: {}})
def list_rounds(run_id: str, store: Store) -> RoundList:
    steps = round_setting(store.get_run(run_id), "steps")
    return RoundList(rounds=[_out(store, round_, steps) for round_ in store.list_rounds(run_id)])


@router.get("/{index}", response_model=RoundOut, responses={404: {}})
def get_round(run_id: str, index: RoundIndex, store: Store) -> RoundOut:
    steps = round_setting(store.get_run(run_id), "steps")
    return _out(store, store.get_round(run_id, index), steps)


@router.get("/{index}/ledger", response_model=RoundLedger, responses={404: {}})
def round_ledger(run_id: str, index: RoundIndex, store: Store) -> RoundLedger:
    """Every sample the round's steps generated, by fate: trained, dropped (by reason), superseded by a redo, in
    flight, or lost (scheduled but unsettled after the round ended)."""
    return RoundLedger(**store.ledger_summary(run_id, index))


@router.post("/{index}/cancel", status_code=202, response_model=RoundOut, responses={404: {}, 409: {}})
def cancel_round(run_id: str, index: RoundIndex, request: Request, store: Store,
                 idempotency_key: IdempotencyKey = None):
    """Ask the coordinator to stop the round at its next step boundary (it ends `cancelled`); 409 once ended."""
    def cancel() -> RoundOut:
        steps = round_setting(store.get_run(run_id), "steps")
        return _out(store, store.request_round_cancel(run_id, index), steps)

    return respond_once(store, idempotency_key, fingerprint(request, {}), 202, cancel)


def _out(store: RunStore, round_: Round, run_steps: int) -> RoundOut:
    return RoundOut.of(round_, run_steps, store.last_committed_step(round_.run_id, round_.index))


def ended_by(store: RunStore, run_id: str, last_event_id: int) -> str | None:
    """The kind of the run's terminal event when it is the newest one (the coordinator writes nothing after it)."""
    if last_event_id == 0:
        return None
    newest = store.events_after(run_id, last_event_id - 1, limit=1)
    return newest[0].kind if newest and newest[0].kind in TERMINAL_EVENTS else None
