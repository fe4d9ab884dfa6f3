"""Per-caller rate limits: a token bucket for writes (POST/PUT/PATCH/DELETE) and one for opening event streams,
keyed by the caller that `services.api.auth.authorize` identified (the bearer token's position among the configured
tokens, never the token itself; the client host when no token is configured).

The buckets live in this process's memory, so each API replica enforces the limits on its own: behind N replicas a
caller may get up to N times the configured rate. A refused request gets HTTP 429 naming the limit, with
`Retry-After` in whole seconds (at least 1), and counts in `visiong1_api_throttled_total{limit}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter

from visiong1.config import ApiConfig

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRUNE_AT = 10_000
"""Callers remembered before idle (full) buckets are dropped; a dropped bucket is the same as a full one."""


class Throttled(Exception):
    """A caller's bucket is empty (HTTP 429 with Retry-After)."""

    def __init__(self, limit: RateLimit, wait_s: float):
        self.limit = limit.name
        self.retry_after_s = max(1, math.ceil(wait_s))
        super().__init__(f"too many {limit.what}: at most {limit.burst} at once and {limit.rate_per_s:g} per second "
                         f"per token (api.{limit.name}_burst, api.{limit.name}_rate_per_s); "
                         f"retry in {self.retry_after_s} s")


@dataclass
class Bucket:
    level: float
    """Requests the caller may make now (fractional while refilling)."""
    at: float
    """Clock reading `level` was computed at."""


class RateLimit:
    """`burst` requests at once per caller, refilled at `rate_per_s`. Not thread-safe: take it on the event loop."""

    def __init__(self, name: str, what: str, rate_per_s: float, burst: int, clock: Callable[[], float],
                 refused: Counter):
        self.name, self.what, self.rate_per_s, self.burst = name, what, rate_per_s, burst
        self.clock, self.refused = clock, refused
        self.buckets: dict[str, Bucket] = {}
        self._prune_at = PRUNE_AT

    def take(self, caller: str) -> None:
        """Spend one request of the caller's bucket; raises Throttled with the wait until the next one."""
        now = self.clock()
        level = self._level(self.buckets.get(caller), now)
        if level < 1:
            self.buckets[caller] = Bucket(level, now)
            self.refused.labels(self.name).inc()
            raise Throttled(self, (1 - level) / self.rate_per_s)
        self.buckets[caller] = Bucket(level - 1, now)
        if len(self.buckets) > self._prune_at:
            self._prune(now)

    def _level(self, bucket: Bucket | None, now: float) -> float:
        if bucket is None:
            return self.burst
        return min(self.burst, bucket.level + max(0.0, now - bucket.at) * self.rate_per_s)

    def _prune(self, now: float) -> None:
        # Doubling the threshold keeps pruning amortised O(1) even when every remembered caller is active.
        self.buckets = {caller: bucket for caller, bucket in self.buckets.items()
                        if self._level(bucket, now) < self.burst}
        self._prune_at = max(PRUNE_AT, 2 * len(self.buckets))


@dataclass(frozen=True)
class RateLimits:
    writes: RateLimit
    streams: RateLimit

    @classmethod
    def of(cls, api: ApiConfig, clock: Callable[[], float], registry: CollectorRegistry) -> RateLimits:
        refused = Counter("visiong1_api_throttled", "Requests refused with 429 by a per-token rate limit",
                          ["limit"], registry=registry)
        return cls(RateLimit("write", "writes", api.write_rate_per_s, api.write_burst, clock, refused),
                   RateLimit("stream", "event streams", api.stream_rate_per_s, api.stream_burst, clock, refused))


async def limit_writes(request: Request) -> None:
    """Dependency of every /v1 route, after `authorize`: a write spends one of its caller's writes (async: the
    buckets are only touched on the event loop)."""
    if request.method in WRITE_METHODS:
        request.app.state.context.limits.writes.take(request.state.caller)


async def limit_streams(request: Request) -> None:
    """Dependency of the event stream route, after `authorize`: opening a stream spends one of its caller's
    streams."""
    request.app.state.context.limits.streams.take(request.state.caller)
