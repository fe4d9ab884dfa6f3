"""`visiong1 serve`: connect to Ray and run the control plane under uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys

import uvicorn

from services.api.app import create_app
from services.api.auth import TOKEN_ENV, Tokens
from visiong1.cluster import connect
from visiong1.config import RunConfig


def main(config: RunConfig) -> int:
    tokens = Tokens.load(config.api.token_file)
    if not tokens.enabled and not _loopback(config.api.host):
        print(f"visiong1 serve: refusing to serve on {config.api.host} without a bearer token: set {TOKEN_ENV} "
              "or api.token_file", file=sys.stderr)
        return 2
    if not tokens.enabled:
        print("visiong1 serve: no bearer token configured: the API is open to every local user of this machine",
              file=sys.stderr)
    connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    uvicorn.run(create_app(config, tokens=tokens), host=config.api.host, port=config.api.port)
    return 0


def _loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except socket.gaierror:
        return False
