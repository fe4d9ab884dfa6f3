"""FastAPI app: start a run, stream its events as server-sent events.

Runs execute in coordinator actors named by run id; this process only validates input and talks to them through
Ray, so it can restart without touching training. (The full control plane is the control-plane issue.)
"""

from __future__ import annotations

import asyncio
import json

import ray
from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from actors.coordinator import TERMINAL_EVENTS, start_run
from visiong1.config import ConfigError, load_config_tree


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict = Field(default_factory=dict)
    """Run config tree (sparse; defaults are the CPU demo)."""
    overrides: list[str] = Field(default_factory=list)
    """Dotted overrides applied on top of `config`, e.g. `round.steps=5`."""


class RunStarted(BaseModel):
    id: str
    events: str


def create_app(namespace: str, max_body_bytes: int = 1 << 20, poll_s: float = 0.25) -> FastAPI:
    """The app; Ray must already be connected in this process (see `server.main`)."""
    app = FastAPI(title="visiong1", version="0.1.0")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Starlette has no body limit of its own; refuse oversized bodies before reading them.
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > max_body_bytes:
            return _error(413, f"request body of {declared} bytes exceeds {max_body_bytes}")
        return await call_next(request)

    @app.get("/healthz")
    def health() -> dict:
        return {"status": "ok", "ray": ray.is_initialized()}

    @app.post("/v1/runs", status_code=201, response_model=RunStarted)
    def start(body: StartRun) -> RunStarted:
        try:
            config = load_config_tree(body.config, body.overrides)
        except ConfigError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        run_id, _, _ = start_run(config, detached=True)
        return RunStarted(id=run_id, events=f"/v1/runs/{run_id}/events")

    @app.get("/v1/runs/{run_id}/events")
    async def events(run_id: str, last_event_id: int | None = Header(default=None)):
        coordinator = _coordinator(run_id, namespace)
        first = 0 if last_event_id is None else last_event_id + 1
        return EventSourceResponse(_stream(coordinator, run_id, first, poll_s))

    return app


def _coordinator(run_id: str, namespace: str):
    try:
        return ray.get_actor(run_id, namespace=namespace)
    except ValueError:
        raise HTTPException(status_code=404, detail=f"no run {run_id!r}") from None


async def _stream(coordinator, run_id: str, first: int, poll_s: float):
    """Yield events from `first` on, until a terminal event; a dead coordinator ends the stream with run_failed."""
    seen = first
    while True:
        try:
            batch = await coordinator.events.remote(seen)
        except ray.exceptions.RayActorError as error:
            yield {"event": "run_failed", "data": json.dumps({"type": "run_failed", "run_id": run_id,
                                                              "error": f"coordinator died: {error}"})}
            return
        for event in batch:
            seen = event["seq"] + 1
            yield {"event": event["type"], "id": str(event["seq"]), "data": json.dumps(event)}
            if event["type"] in TERMINAL_EVENTS:
                return
        await asyncio.sleep(poll_s)


def _error(status: int, detail: str):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"detail": detail})
