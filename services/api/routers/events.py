"""A run's events as server-sent events, read from the run store.

Each SSE event carries the store's event id, so `Last-Event-ID` (or `?after=` on a first connect) resumes exactly
after the last event the client saw, from any API process, also after a restart. The stream ends after the run's
terminal event. A slow client is bounded: the stream holds at most one page of events for it, and a client that
does not take a send within `SEND_TIMEOUT_S` is disconnected (it reconnects with Last-Event-ID and loses nothing).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.api.context import RunLauncher, ServerConfig, Store
from services.api.models import EventOut
from services.api.routers.rounds import TERMINAL_EVENTS
from visiong1.store import RunStore

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["events"])

PAGE = 100
"""Events read from the store at a time, and the most a stream buffers for one client."""
SEND_TIMEOUT_S = 30.0
PING_S = 15.0
LIVENESS_S = 5.0
"""How often an idle stream checks that the run's coordinator still lives."""


@router.get("/events", response_class=EventSourceResponse, responses={404: {}, 400: {}})
async def stream_events(run_id: str, store: Store, launcher: RunLauncher, server: ServerConfig,
                        last_event_id: Annotated[str | None, Header()] = None,
                        after: Annotated[int, Query(ge=0, description="resume after this event id")] = 0,
                        follow: Annotated[bool, Query(description="false: end once caught up")] = True):
    """`event:` is the event's type (`step`, `round_state`, `phase`, `run_finished`, ...), `id:` its id in the
    run, `data:` the event as JSON (`id`, `run_id`, `type`, `round`, `time`, `payload`)."""
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise HTTPException(400, f"Last-Event-ID must be a non-negative integer, got {last_event_id!r}")
        after = int(last_event_id)
    await anyio.to_thread.run_sync(store.get_run, run_id)  # 404 before the stream starts
    events = _events(store, launcher, run_id, after, follow, server.api.events_poll_s)
    return EventSourceResponse(events, ping=PING_S, send_timeout=SEND_TIMEOUT_S)


@router.get("/metrics", tags=["runs"], responses={404: {}})
def run_metrics(run_id: str, store: Store, round: int | None = Query(None, ge=0)) -> list[dict]:
    """Per-step metrics rows of the run (or of one round), in order."""
    return [{"round": row.round_index, "step": row.step, "time": row.created_at, "metrics": row.metrics}
            for row in store.metrics_for(run_id, round)]


async def _events(store: RunStore, launcher, run_id: str, after: int, follow: bool, poll_s: float):
    seen, checked = after, time.monotonic()
    while True:
        batch = await anyio.to_thread.run_sync(store.events_after, run_id, seen, PAGE)
        for event in batch:
            seen = event.id
            yield ServerSentEvent(EventOut.of(event).model_dump_json(), event=event.kind, id=str(event.id))
            if event.kind in TERMINAL_EVENTS:
                return
        if len(batch) == PAGE:
            continue
        if not follow:
            return
        if time.monotonic() - checked > LIVENESS_S:
            checked = time.monotonic()
            if await anyio.to_thread.run_sync(launcher.alive, run_id) is False:
                if await anyio.to_thread.run_sync(store.events_after, run_id, seen, 1):
                    continue  # it committed more before it went: deliver those first
                # No id: the event is not in the store, and a resume must not skip past real ones.
                yield ServerSentEvent(json.dumps({"run_id": run_id, "type": "run_failed", "payload": {
                    "error": "the run's coordinator is gone without a final event"}}), event="run_failed")
                return
        await asyncio.sleep(poll_s)
