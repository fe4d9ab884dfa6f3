"""A run's events as server-sent events, read from the run store.

Each SSE event carries the store's event id, so `Last-Event-ID` (or `?after=` on a first connect) resumes exactly
after the last event the client saw, from any API process, also after a restart. The stream ends after the run's
terminal event. Following streams share one store poller per run (`services.api.feeds`): a client behind the
poller's memory catches up from the store page by page. A slow client is bounded: the stream holds at most one
page of events for it, and a client that does not take a send within `api.sse_send_timeout_s` is disconnected (it
reconnects with Last-Event-ID and loses nothing). Opening a stream spends one of the token's `api.stream_*` budget.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Query
from sse_starlette import EventSourceResponse

from services.api.context import RunFeeds, ServerConfig, Store
from services.api.feeds import PAGE, Encoded, Feeds, RunFeed, encode, gone_message
from services.api.models import INT32_MAX, INT64_MAX
from services.api.ratelimit import limit_streams
from visiong1.store import RunStore
from visiong1.store.events import TERMINAL_EVENTS

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["events"])

PING_S = 15.0
FEED_CHECK_S = 5.0
"""How long a stream waits on its feed before checking that the feed still runs."""
LAST_EVENT_ID = re.compile(r"\s*([0-9]{1,19})\s*")


@router.get("/events", response_class=EventSourceResponse, responses={404: {}, 400: {}, 429: {}},
            dependencies=[Depends(limit_streams)])
async def stream_events(run_id: str, store: Store, feeds: RunFeeds, server: ServerConfig,
                        last_event_id: Annotated[str | None, Header()] = None,
                        after: Annotated[int, Query(ge=0, le=INT64_MAX, description="resume after this event id")] = 0,
                        follow: Annotated[bool, Query(description="false: end once caught up")] = True):
    """`event:` is the event's type (`step`, `round_state`, `phase`, `run_finished`, ...), `id:` its id in the
    run, `data:` the event as JSON (`id`, `run_id`, `type`, `round`, `time`, `payload`)."""
    if last_event_id is not None:
        after = _resume_after(last_event_id)
    run = await anyio.to_thread.run_sync(store.get_run, run_id)  # 404 before the stream starts
    events = _follow(feeds, store, run_id, after, run.last_event_id) if follow else _catch_up(store, run_id, after)
    return EventSourceResponse(events, ping=PING_S, send_timeout=server.api.sse_send_timeout_s)


def _resume_after(last_event_id: str) -> int:
    """The event id a Last-Event-ID header names; 400 unless it is an integer from 0 to INT64_MAX."""
    match = LAST_EVENT_ID.fullmatch(last_event_id)
    if match is None or int(match[1]) > INT64_MAX:
        raise HTTPException(400, f"Last-Event-ID must be an integer from 0 to {INT64_MAX}, got {last_event_id!r}")
    return int(match[1])


@router.get("/metrics", tags=["runs"], responses={404: {}})
def run_metrics(run_id: str, store: Store, round: int | None = Query(None, ge=0, le=INT32_MAX)) -> list[dict]:
    """Per-step metrics rows of the run (or of one round), in order."""
    return [{"round": row.round_index, "step": row.step, "time": row.created_at, "metrics": row.metrics}
            for row in store.metrics_for(run_id, round)]


async def _catch_up(store: RunStore, run_id: str, after: int):
    """The run's events after `after` as they are in the store now, page by page; ends once caught up."""
    seen = after
    while True:
        batch = [encode(event) for event in await anyio.to_thread.run_sync(store.events_after, run_id, seen, PAGE)]
        if batch:
            seen, chunk, ended = _chunk(batch)
            yield chunk
            if ended:
                return
        if len(batch) < PAGE:
            return


async def _follow(feeds: Feeds, store: RunStore, run_id: str, after: int, newest: int):
    """The run's events after `after` until its terminal event: from the shared feed (started at `newest`, the
    run's newest event id when this stream opened, if this is the run's first stream), else from the store."""
    feed = feeds.subscribe(run_id, newest)
    try:
        seen = after
        while True:
            changed = feed.changed()  # taken before reading: a change after the read still wakes this stream
            batch = await _next_page(feed, store, run_id, seen)
            if batch:
                seen, chunk, ended = _chunk(batch)
                yield chunk
                if ended:
                    return
                continue
            if feed.gone:
                yield gone_message(run_id)
                return
            await _wait(feed, changed)
    finally:
        feeds.unsubscribe(feed)


def _chunk(batch: list[Encoded]) -> tuple[int, bytes, bool]:
    """The batch's messages up to and including a terminal event, as one write (one send for the whole page
    instead of one per event); returns (id of the last event in it, the bytes, whether the run ended)."""
    for position, event in enumerate(batch):
        if event.kind in TERMINAL_EVENTS:
            batch = batch[:position + 1]
            break
    return batch[-1].id, b"".join(event.message for event in batch), batch[-1].kind in TERMINAL_EVENTS


async def _next_page(feed: RunFeed, store: RunStore, run_id: str, seen: int):
    """Events after `seen`: from the feed's memory, or from the store when `seen` is older than that."""
    held = feed.after(seen)
    if held is not None:
        return held
    return [encode(event) for event in await anyio.to_thread.run_sync(store.events_after, run_id, seen, PAGE)]


async def _wait(feed: RunFeed, changed: asyncio.Event) -> None:
    """Until the feed changes; raises if the feed stopped without a change (its store error, if it had one)."""
    while not changed.is_set():
        with anyio.move_on_after(FEED_CHECK_S):
            await changed.wait()
        if not changed.is_set() and not feed.running():
            feed.after(0)  # raises the feed's error, if any
            raise RuntimeError(f"the event feed of run {feed.run_id!r} stopped")
