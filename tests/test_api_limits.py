"""The API's limits against a real uvicorn server and an HTTP client (SQLite store, fake launcher, real tokens):
hostile input answers 4xx naming the field, never 500; per-token rate limits answer 429 with Retry-After; event
streams refuse clients without a token and cut off a client that stops reading, which then resumes without loss.
tests/test_api_fuzz.py fuzzes every write and query route with Hypothesis."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.api.app import create_app
from services.api.auth import Scope, Tokens
from services.api.feeds import PAGE
from services.api.ratelimit import PRUNE_AT, RateLimit, Throttled
from tests.test_api_control import (
    AUTH,
    READER,
    TOKENS,
    WRITER,
    FakeLauncher,
    read_sse,
    serving,
)
from visiong1.client import parse_sse
from visiong1.config import ConfigError, load_config_tree
from visiong1.store import RunStore

OTHER_WRITER = "second-writer-token-5555555555"
TWO_WRITERS = Tokens(((WRITER.encode(), Scope.WRITE), (OTHER_WRITER.encode(), Scope.WRITE)))
OTHER = {"authorization": f"Bearer {OTHER_WRITER}"}


class FakeClock:
    """The rate limits' clock, moved by the test instead of by waiting."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    url: str
    store: RunStore
    """The test's own connection to the server's store (the coordinator's view)."""
    launcher: FakeLauncher
    app: FastAPI


@contextlib.contextmanager
def served(root: Path, api: dict | None = None, tokens: Tokens = TOKENS,
           clock: Callable[[], float] = time.monotonic) -> Iterator[Served]:
    """A server on a SQLite store under `root`, with `api` settings over the defaults."""
    config = load_config_tree({"output_dir": str(root / "runs"), "store": str(root / "store.sqlite3"),
                               "api": {"data_roots": [str(root)], **(api or {})}})
    with RunStore.open(config.store) as store:
        launcher = FakeLauncher(store)
        app = create_app(config, launcher=launcher, tokens=tokens, clock=clock)
        with serving(app) as url:
            yield Served(url, store, launcher, app)


def strict_json(response: httpx.Response):
    """The body as strict JSON: NaN and Infinity, which Python's parser would take, fail the test."""
    def refuse(constant: str):
        raise AssertionError(f"non-standard JSON constant {constant} in {response.text[:200]}")
    return json.loads(response.text, parse_constant=refuse)


def raw(url: str, method: str, path: str, body: str | None = None, headers: dict | None = None) -> httpx.Response:
    """A request with `body` sent as is (httpx's own encoder refuses NaN and lone surrogates)."""
    return httpx.request(method, url + path, content=body,
                         headers={**AUTH, "content-type": "application/json", **(headers or {})})


# Hostile input: 4xx naming the field, never 500 --------------------------------------------------------------------

HOSTILE_RUN = "stored-run"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[Served]:
    """One server for every hostile request, with the run `HOSTILE_RUN` in its store."""
    with served(tmp_path_factory.mktemp("hostile")) as server:
        server.store.create_run(HOSTILE_RUN, load_config_tree({}).model_dump(mode="json"))
        yield server


def test_nan_in_a_body_is_refused_with_422_naming_the_field(hostile):
    response = raw(hostile.url, "POST", "/v1/runs", json.dumps({"overrides": {"learner.lr": float("nan")}}))
    assert response.status_code == 422, response.text
    [error] = strict_json(response)["detail"]
    assert error["loc"] == ["body", "overrides"] and error["input"] == {"learner.lr": "nan"}
    assert not hostile.launcher.launched


def deep(levels: int) -> dict:
    tree: dict = {"leaf": 1}
    for _ in range(levels):
        tree = {"a": tree}
    return tree


@pytest.mark.parametrize("method, path, body, status, names", [
    # FastAPI's own validation: the 422 echoes the input, which strict JSON could not carry as posted.
    ("POST", "/v1/runs", '{"overrides": [NaN, Infinity]}', 422, ("body", "overrides")),
    ("POST", "/v1/runs", "1e400", 422, ("body",)),
    ("PUT", "/v1/runs/RUN/rollout/replicas", '{"replicas": -Infinity}', 422, ("body", "replicas")),
    ("POST", "/v1/runs", '{"overrides": ["\\ud800"]}', 422, ("body", "overrides")),
    ("POST", "/v1/runs", '{"config": {"\\udfff": 1}}', 422, ("body", "config")),
    ("POST", "/v1/runs", json.dumps({"config": deep(900)}), 422, ("body", "config")),
    ("POST", "/v1/runs/RUN/rounds", json.dumps({"overrides": {"round.steps": deep(40)}}), 422, ("body", "overrides")),
    # Integers past the store's columns, in paths and queries.
    ("GET", "/v1/runs?offset=9999999999999999999", None, 422, ("query", "offset")),
    ("GET", "/v1/runs/RUN/rounds/99999999999999999999", None, 422, ("path", "index")),
    ("POST", "/v1/runs/RUN/rounds/3000000000/cancel", "{}", 422, ("path", "index")),
    ("GET", "/v1/runs/RUN/metrics?round=3000000000", None, 422, ("query", "round")),
    ("GET", "/v1/runs/RUN/events?follow=false&after=9999999999999999999", None, 422, ("query", "after")),
    # The config checks: the detail names the override or the config path.
    ("POST", "/v1/runs", json.dumps({"overrides": ["learner.lr=" + "[" * 600]}), 422,
     "override learner.lr: value is not valid YAML"),
    ("POST", "/v1/runs", json.dumps({"overrides": ["round.steps=" + "9" * 5000]}), 422,
     "override round.steps: value is not valid YAML"),
    ("POST", "/v1/runs", json.dumps({"overrides": ["round.steps=0b" + "1" * 20000]}), 422,
     "round.steps: an integer of 20000 bits is beyond"),
    ("POST", "/v1/runs", json.dumps({"overrides": ["../etc=1"]}), 422,
     "override ../etc: the dotted key has an empty part"),
    ("POST", "/v1/runs", json.dumps({"overrides": ["round.steps=!!python/object/apply:os.getpid []"]}), 422,
     "override round.steps: value is not valid YAML"),
    ("POST", "/v1/runs", json.dumps({"config": {"data": {"pool": "pool\u0000x"}}}), 422,
     "data.pool: contains a NUL character"),
    ("POST", "/v1/runs", '{"config": {"rollout": {"temperature": NaN}}}', 422, "rollout.temperature"),
    ("POST", "/v1/runs/RUN/rounds", '{"overrides": {"selection.pass_rate_low": NaN}}', 422,
     "selection.pass_rate_low"),
])
def test_hostile_input_is_refused_naming_where(hostile, method, path, body, status, names):
    response = raw(hostile.url, method, path.replace("RUN", HOSTILE_RUN), body)
    assert response.status_code == status, response.text
    detail = strict_json(response)["detail"]
    if isinstance(names, tuple):
        assert detail and all(error["loc"][:len(names)] == list(names) for error in detail), detail
    else:
        assert names in detail
    assert not hostile.launcher.launched and not hostile.store.list_rounds(HOSTILE_RUN)


@pytest.mark.parametrize("last_event_id", [b"x", b"-1", b"\xb2", b"99999999999999999999", b"1 2"])
def test_a_bad_last_event_id_is_400(hostile, last_event_id):
    # b"\xb2" is a superscript two to the server (headers are Latin-1): str.isdigit() says yes, int() says no.
    response = httpx.get(f"{hostile.url}/v1/runs/{HOSTILE_RUN}/events",
                         headers={**AUTH, "Last-Event-ID": last_event_id})
    assert response.status_code == 400 and "Last-Event-ID" in strict_json(response)["detail"]


def test_event_streams_need_a_token(hostile):
    path = f"{hostile.url}/v1/runs/{HOSTILE_RUN}/events?follow=false"
    missing = httpx.get(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="visiong1"'
    wrong = httpx.get(path, headers={"authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    reader = httpx.get(path, headers={"authorization": f"Bearer {READER}"})  # streams are reads
    assert reader.status_code == 200 and reader.headers["content-type"].startswith("text/event-stream")


# Rate limits -------------------------------------------------------------------------------------------------------

def throttled_count(url: str, limit: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    found = re.search(rf'^visiong1_api_throttled_total{{limit="{limit}"}} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_writes_over_the_burst_get_429_with_retry_after_until_the_bucket_refills(tmp_path):
    clock = FakeClock()
    with served(tmp_path, {"write_burst": 3, "write_rate_per_s": 0.5}, TWO_WRITERS, clock) as server:
        def cancel(headers=AUTH) -> httpx.Response:  # a write the limiter sees: 404 means it got through
            return httpx.post(f"{server.url}/v1/runs/nope/cancel", headers=headers)

        assert [cancel().status_code for _ in range(3)] == [404] * 3
        refused = cancel()
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        assert refused.json() == {"limit": "write", "detail": "too many writes: at most 3 at once and 0.5 per second "
                                  "per token (api.write_burst, api.write_rate_per_s); retry in 2 s"}
        assert cancel(OTHER).status_code == 404  # the other token has its own bucket
        assert httpx.get(f"{server.url}/v1/runs", headers=AUTH).status_code == 200  # reads are not limited
        clock.now += 1.9  # 0.95 of a request refilled
        early = cancel()
        assert early.status_code == 429 and early.headers["retry-after"] == "1"
        clock.now += 0.1
        assert [cancel().status_code, cancel().status_code] == [404, 429]
        assert throttled_count(server.url, "write") == 3 and throttled_count(server.url, "stream") == 0


def test_event_streams_have_their_own_limit_and_need_a_token(tmp_path):
    clock = FakeClock()
    with served(tmp_path, {"stream_burst": 2, "stream_rate_per_s": 0.001}, TOKENS, clock) as server:
        run_id = server.launcher.launch(load_config_tree({"name": "streamed"}))
        server.store.append_event(run_id, "run_finished", {})
        path = f"{server.url}/v1/runs/{run_id}/events"
        for _ in range(2):
            with httpx.stream("GET", path, headers=AUTH, timeout=30) as response:
                assert [event["event"] for event in read_sse(response)] == ["run_finished"]
        refused = httpx.get(path, headers=AUTH)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1000"
        assert refused.json()["limit"] == "stream"
        # Without a valid token: 401 first, whatever the token's bucket holds.
        anonymous = httpx.get(path)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(path, headers={"authorization": "Bearer nope"}).status_code == 401
        # Writes spend their own bucket.
        assert httpx.post(f"{server.url}/v1/runs/{run_id}/cancel", headers=AUTH).status_code == 202
        assert throttled_count(server.url, "stream") == 1


def test_without_tokens_each_client_host_has_its_own_bucket(tmp_path):
    with served(tmp_path, {"write_burst": 1}, Tokens(), FakeClock()) as server:
        def cancel(host: str) -> int:
            transport = httpx.HTTPTransport(local_address=host)  # the client's source address on loopback
            with httpx.Client(transport=transport) as client:
                return client.post(f"{server.url}/v1/runs/nope/cancel").status_code

        assert [cancel("127.0.0.1"), cancel("127.0.0.1"), cancel("127.0.0.2")] == [404, 429, 404]


def test_idle_callers_are_forgotten_so_the_buckets_stay_bounded():
    clock = FakeClock()
    refused = Counter("refused", "refused", ["limit"], registry=CollectorRegistry())
    limit = RateLimit("write", "writes", rate_per_s=1.0, burst=2, clock=clock, refused=refused)
    for caller in range(PRUNE_AT):
        limit.take(f"host {caller}")
    assert len(limit.buckets) == PRUNE_AT
    clock.now += 1.0  # their buckets are full again: the same as never seen
    limit.take("busy")  # one caller past PRUNE_AT: the full buckets are dropped
    assert list(limit.buckets) == ["busy"]
    limit.take("busy")
    with pytest.raises(Throttled):
        limit.take("busy")  # a bucket in use keeps what was spent


@pytest.mark.parametrize("field", ["write_rate_per_s", "write_burst", "stream_rate_per_s", "stream_burst",
                                   "sse_send_timeout_s"])
def test_limits_must_be_positive(field):
    with pytest.raises(ConfigError, match=rf"api\.{field}: Input should be greater than"):
        load_config_tree({"api": {field: 0}})


# Event streams: a client that stops reading ------------------------------------------------------------------------

def open_streams(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    return float(re.search(r"^visiong1_api_event_streams (\S+)$", text, re.MULTILINE)[1])


def wait_for_streams(url: str, count: int, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while open_streams(url) != count:
        assert time.monotonic() < deadline, f"the server did not reach {count} open streams in {deadline_s} s"
        time.sleep(0.05)


def dechunk(data: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, as far as `data` holds whole chunks."""
    body, position = b"", 0
    while (line_end := data.find(b"\r\n", position)) >= 0:
        size = int(data[position:line_end], 16)
        start = line_end + 2
        if size == 0 or start + size + 2 > len(data):
            break
        body += data[start:start + size]
        position = start + size + 2
    return body


def complete_events(body: bytes) -> list[dict]:
    """The events of an SSE body that arrived whole (up to the last blank line)."""
    whole = body[:body.rfind(b"\r\n\r\n") + 4].decode()
    return list(parse_sse(whole.splitlines()))


def test_a_stalled_client_is_cut_off_and_resumes_without_loss(tmp_path):
    total = 3 * PAGE  # far more than one page plus the sockets' buffers hold at 64 KiB an event
    with served(tmp_path, {"sse_send_timeout_s": 0.5, "events_poll_s": 0.05}) as server:
        run_id = server.launcher.launch(load_config_tree({"name": "stalled"}))
        server.store.start_round(run_id)  # event 1
        port = int(server.url.rsplit(":", 1)[1])
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server feels the stall
            client.connect(("127.0.0.1", port))
            client.sendall(f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: test\r\n"
                           f"Authorization: Bearer {WRITER}\r\n\r\n".encode())
            client.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += client.recv(1)
            head, data = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
            wait_for_streams(server.url, 1)
            for index in range(total):  # the client reads nothing meanwhile
                server.store.append_event(run_id, "note", {"index": index, "pad": "x" * 65536})
            wait_for_streams(server.url, 0)  # the server gave up on the client
            while chunk := client.recv(1 << 16):  # what the sockets held, then the end of the connection
                data += chunk
        received = complete_events(dechunk(data))
        ids = [int(event["id"]) for event in received]
        # Cut off: at most the page in flight plus a page's worth in the sockets' buffers, not the 3 pages + 1.
        assert 1 <= len(ids) <= 2 * PAGE and ids == list(range(1, len(ids) + 1))
        server.store.append_event(run_id, "run_finished", {})
        with httpx.stream("GET", f"{server.url}/v1/runs/{run_id}/events", timeout=30,
                          headers={**AUTH, "Last-Event-ID": str(ids[-1])}) as response:
            resumed = read_sse(response)
    resumed_ids = [int(event["id"]) for event in resumed]
    assert resumed_ids == list(range(ids[-1] + 1, total + 3))
    notes = [json.loads(event["data"])["payload"]["index"] for event in received + resumed if event["event"] == "note"]
    assert notes == list(range(total)) and resumed[-1]["event"] == "run_finished"
