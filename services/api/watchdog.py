"""The API's watchdog: a run that the store says is running but whose coordinator is gone, or has not reported a
heartbeat for `round.watchdog_s` seconds, is failed with reason `coordinator_lost` (its round `failed`, so
`POST /v1/runs/{id}/resume` can restart it). Without it such a run would show `running` forever.

Every API replica sweeps; the store marks a run once (the first replica's transaction wins).
"""

from __future__ import annotations

import asyncio
import time

import anyio
from prometheus_client import CollectorRegistry, Counter

from visiong1.store import RunStatus, RunStore

SWEEP_EVERY_S = 5.0
DEFAULT_WATCHDOG_S = 120.0
"""For a run whose stored config predates `round.watchdog_s`."""


class Watchdog:
    def __init__(self, store: RunStore, launcher, registry: CollectorRegistry):
        self.store, self.launcher = store, launcher
        self.lost = Counter("visiong1_runs_coordinator_lost", "Runs failed because their coordinator was gone or "
                            "silent past round.watchdog_s", registry=registry)

    def sweep(self, now: float | None = None) -> list[str]:
        """Fail every running run whose coordinator is gone or silent; returns their ids."""
        now = time.time() if now is None else now
        failed = []
        for run in self.store.runs_with_status(RunStatus.RUNNING, RunStatus.CANCELLING):
            reason = self._lost_reason(run, now)
            if reason is not None and self.store.mark_coordinator_lost(run.id, reason):
                self.lost.inc()
                failed.append(run.id)
        return failed

    def _lost_reason(self, run, now: float) -> str | None:
        """Why the run's coordinator counts as lost, or None while it lives. A coordinator beats from the moment it
        registers the run, so a run without any heartbeat is measured from its creation."""
        limit = run.config.get("round", {}).get("watchdog_s", DEFAULT_WATCHDOG_S)
        silent = now - (run.heartbeat_at or run.created_at)
        if self.launcher.alive(run.id) is False:
            return "the coordinator actor is gone"
        if silent > limit:
            return f"no heartbeat for {silent:.0f} s (round.watchdog_s={limit:g})"
        return None

    async def run_forever(self) -> None:
        """Sweep every `SWEEP_EVERY_S` seconds until cancelled."""
        while True:
            await anyio.to_thread.run_sync(self.sweep)
            await asyncio.sleep(SWEEP_EVERY_S)
