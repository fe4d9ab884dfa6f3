"""`visiong1 serve`: connect to Ray and run the control plane under uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def serving_in_thread(app, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread of this process (tests, benchmarks, notebooks);
    yields its base URL and stops the server on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {start_timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"uvicorn did not stop within {start_timeout_s} s")
