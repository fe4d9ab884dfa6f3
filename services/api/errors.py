"""Error bodies that can always be sent: an error about bad input often echoes that input (FastAPI's 422 carries it,
config errors quote it), and strict JSON cannot carry NaN, Infinity or lone surrogates, so echoing them verbatim
would turn the 4xx into a 500."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

ECHO_DEPTH = 10
"""Containers nested deeper than this in an error body are cut to "..." (enough to show which value it was)."""


def encodable(value: Any, depth: int = 0) -> Any:
    """`value` as strict JSON carries it: non-finite floats as their text (`nan`, `inf`, `-inf`), lone surrogates
    as `?`, objects other than JSON's as their `str`, containers nested past ECHO_DEPTH as "..."."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, (dict, list, tuple)) and depth >= ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {encodable(str(key)): encodable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(item, depth + 1) for item in value]
    return encodable(str(value))


def error_response(status: int, content: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(encodable(content), status, headers=headers)
