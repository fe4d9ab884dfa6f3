"""`Idempotency-Key` on POSTs: the first response is stored in the run store and replayed for a retry of the same
request; the same key with another request is refused (422); a retry while the first is still running gets 409.

Only successful (2xx) responses are remembered: a failed request releases its key, so a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from visiong1.store import RunStore

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


def fingerprint(request: Request, body: Any) -> str:
    """Method, path and the parsed body (key order and whitespace do not matter)."""
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.url.path}\n{canonical}".encode()).hexdigest()


def respond_once(store: RunStore, key: str | None, request_hash: str, status_code: int,
                 action: Callable[[], Any]) -> JSONResponse:
    """Run `action` (returning the body) once per key; without a key, just run it."""
    if key is None:
        return JSONResponse(jsonable_encoder(action()), status_code)
    stored = store.claim_idempotent(key, request_hash)
    if stored is not None:
        return JSONResponse(stored.body, stored.status_code, headers={"Idempotent-Replayed": "true"})
    try:
        body = jsonable_encoder(action())
    except BaseException:
        store.release_idempotent(key, request_hash)
        raise
    store.remember_idempotent(key, request_hash, status_code, body)
    return JSONResponse(body, status_code)
