"""`POST /v1/score`, `GET /healthz`, `GET /metrics`: the same judge the Ray reward actors use.

Handlers are sync (FastAPI runs them in a thread pool): the judge's sandbox is thread-safe and its deadlines do
not rely on signals, so threads are safe here.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from visiong1.config import RewardConfig
from visiong1.rewards import ANSWER_TYPES, GroundTruthError
from visiong1.rewards.judge import RewardJudge

MAX_ITEMS = 1024


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response: str = Field(max_length=200_000)
    """The model's full response."""
    ground_truth: str = Field(max_length=10_000)
    answer_type: str
    """One of the built-in types or a configured custom scorer's type."""
    domain: str = "default"
    """Selects per-domain settings (IoU threshold, timeout policy)."""
    meta: dict = Field(default_factory=dict)
    """Scorer settings: choices, coords, predicted_coords, image_size."""


class ScoreBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ScoreRequest] = Field(min_length=1, max_length=MAX_ITEMS)


class ScoreResult(BaseModel):
    score: float
    reason: Literal["correct", "wrong", "no_answer", "parse_error", "timeout", "resource_limit"]
    accuracy: float
    extracted: str | None
    excluded: bool


def create_reward_app(config: RewardConfig, token: str | None = None, max_body_bytes: int = 8 << 20) -> FastAPI:
    """The app; with `token` set, every route but /healthz requires `Authorization: Bearer <token>`."""
    app = FastAPI(title="visiong1 reward service", version="0.1.0")
    judge = RewardJudge(config)
    app.router.on_shutdown.append(judge.close)
    known_types = {*ANSWER_TYPES, *config.custom_scorers}

    def authorised(authorization: str | None = Header(default=None)) -> None:
        if token is not None and not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > max_body_bytes:
            return JSONResponse(status_code=413, content={"detail": f"body over {max_body_bytes} bytes"})
        return await call_next(request)

    @app.get("/healthz")
    def health() -> dict:
        return {"status": "ok", "sandbox_workers": len(judge.sandbox.pids())}

    @app.get("/metrics", dependencies=[Depends(authorised)])
    def metrics() -> Response:
        return Response(judge.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/score", dependencies=[Depends(authorised)])
    def score_batch(batch: ScoreBatch) -> list[ScoreResult]:
        unknown = sorted({item.answer_type for item in batch.items} - known_types)
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown answer types {unknown}; known: {sorted(known_types)}")
        results = []
        for index, item in enumerate(batch.items):
            try:
                verdict = judge.judge(item.response, item.ground_truth, item.answer_type, item.domain, **item.meta)
            except (GroundTruthError, TypeError) as error:  # a bad ground truth or meta key: the caller's data
                raise HTTPException(status_code=422, detail=f"items[{index}]: {error}") from None
            results.append(ScoreResult(score=verdict.result.score, reason=verdict.result.reason,
                                       accuracy=verdict.result.accuracy, extracted=verdict.result.extracted,
                                       excluded=verdict.excluded))
        return results

    return app
