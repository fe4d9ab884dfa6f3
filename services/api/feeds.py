"""One store poller per run, shared by all of that run's open event streams.

Without it every SSE client polls the store on its own, so N clients cost N queries per poll interval and fill the
thread pool that plain requests also need. A `RunFeed` polls once per interval for everyone, keeps the newest
events (at most `keep`, each already encoded as an SSE message) in memory, and wakes its subscribers. It is a cache,
never the source of truth: a client whose position is older than the feed's memory reads those events from the
store itself, page by page, until it has caught up. The feed stops polling when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from dataclasses import dataclass

import anyio
from sse_starlette import ServerSentEvent

from services.api.models import EventOut
from visiong1.store import Event, RunStore

PAGE = 100
"""Events read from the store at a time."""
LIVENESS_S = 5.0
"""How often an idle feed checks that the run's coordinator still lives."""
GONE_MESSAGE = "the run's coordinator is gone without a final event"


@dataclass(frozen=True)
class Encoded:
    """An event as its SSE message (encoded once, sent to every subscriber)."""
    id: int
    kind: str
    message: bytes


def encode(event: Event) -> Encoded:
    sse = ServerSentEvent(EventOut.of(event).model_dump_json(), event=event.kind, id=str(event.id))
    return Encoded(event.id, event.kind, sse.encode())


def gone_message(run_id: str) -> bytes:
    """The stream's last message when the coordinator died silently. No id: the event is not in the store, and a
    resume must not skip past real ones."""
    payload = {"run_id": run_id, "type": "run_failed", "payload": {"error": GONE_MESSAGE}}
    return ServerSentEvent(json.dumps(payload), event="run_failed").encode()


class RunFeed:
    """The newest events of one run, polled from the store every `poll_s` while anyone subscribes.

    Memory holds the events with ids in (`floor`, `newest`]; `after(seen)` answers from it, or None when `seen` is
    older than `floor` (read the store then). A store error while polling ends the feed and is raised to every
    subscriber; `gone` is set when the launcher reports the run's coordinator dead and the store holds nothing new.
    """

    def __init__(self, store: RunStore, launcher, run_id: str, start_after: int, poll_s: float, keep: int):
        self.store, self.launcher, self.run_id = store, launcher, run_id
        self.poll_s, self.keep = poll_s, keep
        self.floor = self.newest = start_after
        self.events: list[Encoded] = []
        self.ids: list[int] = []
        self.gone = False
        self.error: BaseException | None = None
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def after(self, seen: int) -> list[Encoded] | None:
        """Events with id > `seen` held in memory (at most PAGE); None when `seen` predates the memory."""
        if self.error is not None:
            raise self.error
        if seen < self.floor:
            return None
        start = bisect.bisect_right(self.ids, seen)
        return self.events[start:start + PAGE]

    def changed(self) -> asyncio.Event:
        """Set at the next change (new events, gone, error); take it before checking `after`, then wait on it."""
        return self._changed

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name=f"feed {self.run_id}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _poll(self) -> None:
        checked = time.monotonic()
        try:
            while True:
                batch = await anyio.to_thread.run_sync(self.store.events_after, self.run_id, self.newest, PAGE)
                if batch:
                    self._append([encode(event) for event in batch])
                    if len(batch) == PAGE:
                        continue
                elif time.monotonic() - checked > LIVENESS_S:
                    checked = time.monotonic()
                    if await anyio.to_thread.run_sync(self.launcher.alive, self.run_id) is False:
                        await self._mark_gone_unless_more()
                await asyncio.sleep(self.poll_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - handed to every subscriber, which raises it
            self.error = error
            self._notify()

    async def _mark_gone_unless_more(self) -> None:
        """The coordinator may have committed more before it went: those come first, `gone` only after."""
        if not await anyio.to_thread.run_sync(self.store.events_after, self.run_id, self.newest, 1):
            self.gone = True
            self._notify()

    def _append(self, encoded: list[Encoded]) -> None:
        self.events.extend(encoded)
        self.ids.extend(event.id for event in encoded)
        self.newest = encoded[-1].id
        if len(self.events) > 2 * self.keep:  # trim in bulk: amortised O(1) per event
            dropped = len(self.events) - self.keep
            self.floor = self.ids[dropped - 1]
            del self.events[:dropped], self.ids[:dropped]
        self._notify()


class Feeds:
    """The app's feeds by run id: created for a run's first subscriber, stopped after its last one leaves."""

    def __init__(self, store: RunStore, launcher, poll_s: float, keep: int = 10 * PAGE):
        self.store, self.launcher, self.poll_s, self.keep = store, launcher, poll_s, keep
        self._feeds: dict[str, RunFeed] = {}

    def subscribe(self, run_id: str, after: int) -> RunFeed:
        feed = self._feeds.get(run_id)
        if feed is None or not feed.running():  # none yet, or it ended on a store error: start afresh
            feed = self._feeds[run_id] = RunFeed(self.store, self.launcher, run_id, after, self.poll_s, self.keep)
            feed.start()
        feed.subscribers += 1
        return feed

    def open_streams(self) -> int:
        """Streams following a run in this process now (safe from any thread: one snapshot of the feeds)."""
        return sum(feed.subscribers for feed in list(self._feeds.values()))

    def unsubscribe(self, feed: RunFeed) -> None:
        feed.subscribers -= 1
        if feed.subscribers == 0:
            feed.stop()
            if self._feeds.get(feed.run_id) is feed:
                del self._feeds[feed.run_id]

    def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.stop()
