"""Liveness, readiness (unauthenticated, for probes) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from services.api.context import RunLauncher, Store

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
def readyz(store: Store, launcher: RunLauncher):
    """The store answers and runs can be started; 503 naming what is not ready otherwise."""
    problems = []
    try:
        store.schema_version()
    except SQLAlchemyError as error:
        problems.append(f"run store: {type(error).__name__}")
    if not launcher.ready():
        problems.append("launcher: not connected to the cluster")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, 503)
    return {"status": "ready"}


def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
