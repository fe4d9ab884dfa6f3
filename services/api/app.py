"""The control plane's FastAPI app: runs, rounds, events (SSE), rollout and reward scaling, cluster status, health,
and the run page (`/ui/`, static files that call the same API).

Every resource reads and writes the run store; runs execute in coordinator actors that commit to the same store,
so this process keeps no state of its own (but its rate limits' buckets, per replica) and may restart (or run as
several replicas) without touching training.
A watchdog task fails runs whose coordinator is gone or silent (`services.api.watchdog`).

    app = create_app(config)                        # store from config (or `store=`), runs started on Ray
    app = create_app(config, launcher=fake)         # tests: anything with launch/alive/ready/cluster

Errors: 400 bad Last-Event-ID, 401 missing/invalid token (with WWW-Authenticate), 403 read-only token on a write,
404 unknown run or round, 409 state conflicts (active round, cancelled run, idempotency key in use), 413 body over
`api.max_body_bytes`, 422 invalid config or request (with the field path) or an idempotency key reused with another
body, 429 a token over its write or event stream rate (`api.write_*`, `api.stream_*`; with Retry-After), 502/504 a
coordinator that failed or did not register in time. Error bodies are strict JSON even when the input was not
(`services.api.errors`): bad input never gets a 500.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge

from services.api.auth import Tokens, authorize
from services.api.context import (
    ApiContext,
    Launcher,
    LaunchFailed,
    LaunchTimeout,
    PlanRefused,
)
from services.api.errors import error_response
from services.api.feeds import Feeds
from services.api.limits import BodyLimit
from services.api.ratelimit import RateLimits, Throttled, limit_writes
from services.api.routers import cluster, events, health, rollout, rounds, runs, workers
from services.api.telemetry import RequestMetrics, StoreCollector
from services.api.watchdog import Watchdog
from visiong1.config import ConfigError, RunConfig
from visiong1.store import (
    DEFAULT_FILENAME,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    RunStore,
)

STORE_ENV = "VISIONG1_STORE_URL"
UI_DIR = Path(__file__).resolve().parent / "ui"


class RunPageFiles(StaticFiles):
    """The run page (`/ui/`): static files, unauthenticated like any page; its data calls carry the user's token.
    Served with a policy that allows scripts, styles and requests to this origin only (nothing from a CDN)."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:"
        return response


def store_location(config: RunConfig) -> str:
    """The server's run store: `VISIONG1_STORE_URL`, else `store`, else `<output_dir>/store.sqlite3` (absolute)."""
    location = os.environ.get(STORE_ENV) or config.store or str(Path(config.output_dir) / DEFAULT_FILENAME)
    return location if "://" in location else str(Path(location).resolve())


def server_config(config: RunConfig) -> RunConfig:
    """The server's config as runs inherit it: `store` and `output_dir` pinned, so coordinators share its store."""
    return config.model_copy(update={"store": store_location(config),
                                     "output_dir": str(Path(config.output_dir).resolve())})


def create_app(config: RunConfig, *, launcher: Launcher | None = None, store: RunStore | None = None,
               tokens: Tokens | None = None, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The app. Defaults: the store at `store_location(config)`, tokens from `api.token_file` and the env, and runs
    started on Ray (which must already be connected in this process, see `server.main`). `clock` (seconds, never
    going back) paces the rate limits."""
    config = server_config(config)
    store = store or RunStore.open(config.store)
    if launcher is None:
        from services.api.launcher import RayLauncher

        launcher = RayLauncher(store, config.ray.namespace, config.api.start_timeout_s)
    tokens = tokens if tokens is not None else Tokens.load(config.api.token_file)

    feeds = Feeds(store, launcher, config.api.events_poll_s)
    registry = CollectorRegistry()
    watchdog = Watchdog(store, launcher, registry)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        sweeping = asyncio.get_running_loop().create_task(watchdog.run_forever(), name="watchdog")
        yield
        sweeping.cancel()
        feeds.close()
        store.close()

    app = FastAPI(title="visiong1", version="0.1.0", lifespan=lifespan,
                  description="Control plane of visiong1: runs, rounds, event streams, rollout scaling.")
    app.state.context = ApiContext(config=config, store=store, launcher=launcher, tokens=tokens,
                                    feeds=feeds, limits=RateLimits.of(config.api, clock, registry))
    app.state.registry, app.state.watchdog = registry, watchdog
    registry.register(StoreCollector(store))
    Gauge("visiong1_api_event_streams", "Event streams following a run in this API replica",
          registry=registry).set_function(feeds.open_streams)

    authorized = [Depends(authorize), Depends(limit_writes)]
    for module in (runs, rounds, events, rollout, workers, cluster):
        app.include_router(module.router, dependencies=authorized)
    app.include_router(health.router)
    app.mount("/ui", RunPageFiles(directory=UI_DIR, html=True), name="ui")
    app.add_api_route("/metrics", health.metrics, methods=["GET"], dependencies=authorized, tags=["health"],
                      include_in_schema=True)
    _add_error_handlers(app)
    # Outermost last: metrics see every response, the body limit applies before any route reads a byte.
    app.add_middleware(BodyLimit, max_bytes=config.api.max_body_bytes)
    app.add_middleware(RequestMetrics, registry=app.state.registry)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int):
        async def respond(_request: Request, error: Exception) -> JSONResponse:
            return error_response(status, {"detail": str(error)})
        return respond

    # IdempotencyKeyReused is a ValueError, registered before nothing broader: only the store's own errors and
    # config errors map to statuses; anything else is a bug and stays a 500.
    for error_class, status in ((NotFound, 404), (Conflict, 409), (IdempotencyKeyReused, 422), (ConfigError, 422),
                                (LaunchFailed, 502), (LaunchTimeout, 504)):
        app.add_exception_handler(error_class, handler(status))

    async def refuse_plan(_request: Request, error: PlanRefused) -> JSONResponse:
        return error_response(422, {"detail": str(error), "plan": error.plan})

    async def refuse_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, {"detail": error.errors()})

    async def throttle(_request: Request, error: Throttled) -> JSONResponse:
        return error_response(429, {"detail": str(error), "limit": error.limit},
                              headers={"Retry-After": str(error.retry_after_s)})

    app.add_exception_handler(PlanRefused, refuse_plan)
    app.add_exception_handler(RequestValidationError, refuse_request)
    app.add_exception_handler(Throttled, throttle)
