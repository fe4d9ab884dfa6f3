"""`GET /metrics` in Prometheus text format: the API's own request counts and latencies, runs by status, and each
run's latest step metrics as `visiong1_<key with non-alphanumerics as _>{run_id="..."}` (`reward/mean` ->
`visiong1_reward_mean`), the names the k8s Grafana dashboard queries, except the LIVE_KEYS quantities. Run
figures are read from the store at scrape time, so every API replica exports the same values."""

from __future__ import annotations

import math
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visiong1.store import MetricsRow, RunStatus, RunStore

MAX_RUNS = 200
"""Newest runs exported (a scrape stays bounded however many runs the store holds)."""
LIVE_KEYS = frozenset({"rollout/tokens_per_s", "rollout/replicas", "rollout/queue_depth", "train/step_s",
                       "train/tokens", "train/tokens_per_s", "train/peak_memory_mb"})
"""Step keys whose quantity the roles export live through Ray's metrics agent (actors/telemetry.py): not exported
here a second time under another name."""


def latest_metrics(store: RunStore, run_id: str) -> MetricsRow | None:
    """The run's newest metrics row (reads only its newest rounds)."""
    for round_ in reversed(store.list_rounds(run_id)):
        rows = store.metrics_for(run_id, round_.index)
        if rows:
            return rows[-1]
    return None


def metric_name(key: str) -> str:
    return "visiong1_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


class StoreCollector:
    """Runs by status and the latest step's metrics per run; cached per run until its next event."""

    def __init__(self, store: RunStore):
        self.store = store
        self._latest: dict[str, tuple[int, MetricsRow | None]] = {}

    def collect(self):
        runs = self.store.list_runs(limit=MAX_RUNS)
        by_status = GaugeMetricFamily("visiong1_runs", "Runs by status (newest runs)", labels=["status"])
        for status in RunStatus:
            by_status.add_metric([status.value], sum(run.status is status for run in runs))
        yield by_status
        families: dict[str, GaugeMetricFamily] = {}
        latest = {}
        for run in runs:
            cached = self._latest.get(run.id)
            row = cached[1] if cached and cached[0] == run.last_event_id else latest_metrics(self.store, run.id)
            latest[run.id] = (run.last_event_id, row)
            if row is None:
                continue
            for key, value in row.metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                name = metric_name(key)
                if name == "visiong1_runs" or name.startswith("visiong1_api_") or key in LIVE_KEYS:
                    continue  # the API's own families, and quantities the roles export live
                family = families.setdefault(name, GaugeMetricFamily(name, f"latest step's {key}", labels=["run_id"]))
                family.add_metric([run.id], float(value) if math.isfinite(value) else value)
        self._latest = latest  # forget runs that fell off the list
        yield from families.values()


class RequestMetrics:
    """ASGI middleware: request count by route template and status, latency until the response starts (for an
    event stream: until the stream opens)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("visiong1_api_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("visiong1_api_request_seconds", "Time to response start", ["method", "route"],
                                 registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The route template, not the path: run ids must not explode the label set.
                route = scope.get("route")
                template = route.path if route is not None else "unmatched"
                self.latency.labels(scope["method"], template).observe(time.perf_counter() - started)
                self.requests.labels(scope["method"], template, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, timed_send)
