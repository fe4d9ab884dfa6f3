"""Bearer-token auth: tokens from a file (one per line, optionally `read` for GET-only) and `VISIONG1_API_TOKEN`.

Tokens are compared in constant time (`hmac.compare_digest`, against every configured token, so timing reveals
neither which one matched nor how many there are) and never logged or echoed.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from fastapi import HTTPException, Request

TOKEN_ENV = "VISIONG1_API_TOKEN"


class Scope(str, Enum):
    READ = "read"
    """GET requests only."""
    WRITE = "write"
    """Everything."""


@dataclass(frozen=True)
class Tokens:
    entries: tuple[tuple[bytes, Scope], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def load(cls, token_file: str | None, environ: dict[str, str] | None = None) -> Tokens:
        """Tokens of `token_file` (`TOKEN` or `TOKEN read` per line, `#` comments) plus the env token."""
        environ = os.environ if environ is None else environ
        entries: list[tuple[bytes, Scope]] = []
        if token_file is not None:
            for number, line in enumerate(Path(token_file).read_text().splitlines(), 1):
                fields = line.split("#", 1)[0].split()
                if not fields:
                    continue
                if len(fields) > 2 or (len(fields) == 2 and fields[1] not in {s.value for s in Scope}):
                    # Name the line, never its content: it holds a secret.
                    raise ValueError(f"{token_file}:{number}: expected `TOKEN` or `TOKEN read|write`")
                entries.append((fields[0].encode(), Scope(fields[1]) if len(fields) == 2 else Scope.WRITE))
        if environ.get(TOKEN_ENV):
            entries.append((environ[TOKEN_ENV].strip().encode(), Scope.WRITE))
        return cls(tuple(entries))

    def identify(self, presented: str) -> tuple[int, Scope] | None:
        """The position of the presented token among the configured ones and its scope; None for no token of them."""
        candidate = presented.encode()
        found = None
        for index, (token, scope) in enumerate(self.entries):  # no early exit: every comparison runs
            if hmac.compare_digest(candidate, token) and found is None:
                found = index, scope
        return found


def authorize(request: Request) -> None:
    """Dependency of every /v1 route: 401 without a valid token, 403 for a read-only token on a write. Sets
    `request.state.caller`, whom rate limits count against: the token's position (never the token itself), or the
    client's host when no token is configured."""
    tokens: Tokens = request.app.state.context.tokens
    if not tokens.enabled:
        request.state.caller = f"host {request.client.host if request.client else 'unknown'}"
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="visiong1"'})
    found = tokens.identify(presented.strip())
    if found is None:
        raise HTTPException(401, "invalid bearer token",
                            headers={"WWW-Authenticate": 'Bearer realm="visiong1", error="invalid_token"'})
    index, scope = found
    if scope is Scope.READ and request.method not in ("GET", "HEAD", "OPTIONS"):
        raise HTTPException(403, "this token may only read")
    request.state.caller = f"token {index}"
