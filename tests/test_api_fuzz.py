"""Hypothesis against every write route and every route with query or integer path parameters, on a real uvicorn
server (SQLite store, fake launcher, real tokens): wrong types, NaN and Infinity, deep nesting, huge integers, any
Unicode (lone surrogates too), missing and extra fields. Whatever is sent, the answer is 2xx (valid input) or 4xx,
never 5xx, its body is strict JSON, and a 422 names where the problem is: FastAPI's `loc` points at a parameter or
body field that was sent or declared, and a config error's text names a key or override that was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.ratelimit import WRITE_METHODS
from tests.test_api_control import AUTH
from tests.test_api_limits import Served, served, strict_json
from visiong1.config import load_config_tree
from visiong1.store import RoundState

OPEN_RUN, ENDED_RUN = "open-run", "ended-run"
"""A run whose configured round is done (it takes rounds over REST), and one that has ended (streams end)."""
UNLIMITED = {"write_burst": 10**9, "write_rate_per_s": 1e9, "stream_burst": 10**9, "stream_rate_per_s": 1e9}
ABSENT = object()
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Call:
    method: str
    path: str
    """Segments already percent-encoded."""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = ABSENT
    """A JSON value, sent by Python's encoder (NaN, Infinity and lone surrogates as it writes them)."""
    fields: frozenset[str] = frozenset()
    """What a FastAPI 422 may point at besides what was sent: declared body fields and path parameters."""
    mentions: tuple[str, ...] = ()
    """What was sent that a config error must name (keys, override keys)."""


# Values ------------------------------------------------------------------------------------------------------------

EDGE_TEXT = ["", " ", "\x00", "\ud800", "\udfff", "\ufb00", "\u0663", "\u00b2", "\U0001f600", "\u202e", "\n", "=",
             ".", "..", "a.b", "null", "NaN", "-1", "1e999", "../etc", "%00", "{", "[", "x" * 3000]
# Lone surrogates come from EDGE_TEXT only: drawn in every string they would leave little else to test.
texts = (st.sampled_from(EDGE_TEXT) | st.text(max_size=20)
         | st.text(st.characters(categories=["Lu", "Nd", "No", "Zs", "Cc", "So", "Mn"]), max_size=10))
numbers = (st.integers() | st.integers(-2**80, 2**80) | st.sampled_from([2**31, 2**63, 2**64, -2**63 - 1, 10**30])
           | st.floats() | st.booleans() | st.none())
scalars = numbers | texts
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
                           max_leaves=8)


def nested(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = {"a": value} if level % 2 else [value]
    return value


values = json_values | st.integers(20, 150).map(nested)
params = texts | numbers.map(str)
# Empty segments and "/" (which ASGI servers decode from %2F before routing) make another path, not a bad value.
segments = params.filter(lambda text: text and "/" not in text)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=300).map(str.strip)
idempotency = st.none() | header_values


def path_segment(text: str) -> str:
    # Dots too: a client would resolve "." and ".." segments before sending.
    return quote(text, safe="", errors="surrogatepass").replace(".", "%2E")


def with_key(headers: dict[str, str], key: str | None) -> dict[str, str]:
    return headers if key is None else {**headers, "Idempotency-Key": key}


def with_extras(body: dict, extras: dict) -> dict:
    return {**extras, **body}


def half_and_half(first: st.SearchStrategy, second: st.SearchStrategy) -> st.SearchStrategy:
    """`first` for about half the examples (`first | second` would weigh each of second's own branches like it)."""
    return st.booleans().flatmap(lambda pick: first if pick else second)


def body_of(known: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Objects with some of the `known` fields (each of its strategy), or with extra fields too; or any value."""
    objects = st.fixed_dictionaries({}, optional=known)
    extras = st.dictionaries(texts, values, min_size=1, max_size=2)
    return objects | st.builds(with_extras, objects, extras) | values


# Config trees and overrides -----------------------------------------------------------------------------------------

CONFIG_KEYS = ["name", "learner.lr", "round.steps", "round.rounds", "rollout.replicas", "rollout.temperature",
               "data.pool", "data.num_items", "data.sources", "model.path", "selection.influence.targets",
               "selection.pass_rate_low", "api.port", "store", "output_dir", "ray.namespace"]
YAML_TEXT = ["[" * 300, "{a: " * 100, "!!python/object/apply:os.getpid []", "0b" + "1" * 20000, "9" * 5000, ".nan",
             ".inf", "&a [*a, *a]", "~", "2001-13-45", "!!float x", "!!binary ?", "1e400", "1", "-1", "true", "[1, 2]"]
ROUND_KEYS = ["round.steps", "round.prompts_per_step",
              "selection.pass_rate_low", "selection.influence.targets", "selection.difficulty_samples",
              "learner.lr", "round.rounds", "selection.", "selection.influence", "selection.a=b"]


def tree(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested sections (a later key replaces a value in its way)."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return root


config_trees = st.dictionaries(st.sampled_from(CONFIG_KEYS) | texts, json_values, max_size=4).map(tree)
override_strings = (st.builds("{}={}".format, st.sampled_from(CONFIG_KEYS) | texts,
                              st.sampled_from(YAML_TEXT) | params) | texts)


def keys_in(value: Any) -> list[str]:
    """Every dict key at any depth of `value`."""
    if isinstance(value, dict):
        return [str(key) for key in value] + [k for item in value.values() for k in keys_in(item)]
    if isinstance(value, list):
        return [k for item in value for k in keys_in(item)]
    return []


def config_mentions(body: Any) -> tuple[str, ...]:
    if not isinstance(body, dict):
        return ()
    overrides = body.get("overrides")
    named = keys_in(body.get("config")) + keys_in(overrides)
    if isinstance(overrides, list):
        named += [item.partition("=")[0] for item in overrides if isinstance(item, str)]
        named += [repr(item) for item in overrides if isinstance(item, str)]
    return tuple(named)


def names(detail: str, name: str) -> bool:
    """Whether a config error's text names `name`: anywhere, or for a blank key, as the path of a problem line
    (`<root>` for an empty top-level key)."""
    if name.strip():
        return name in detail
    return any(f"\n  {path}: " in detail for path in (name, name or "<root>"))


# One strategy of calls per route ----------------------------------------------------------------------------------

run_ids = half_and_half(st.sampled_from([OPEN_RUN, ENDED_RUN]), segments)


@st.composite
def create_run(draw) -> Call:
    overrides = st.lists(override_strings, min_size=1, max_size=4)
    # Well-formed bodies with hostile configs reach the config checks; the rest tests the body's own validation.
    well_formed = (st.fixed_dictionaries({"config": config_trees}, optional={"overrides": overrides})
                   | st.fixed_dictionaries({"overrides": overrides}))
    body = draw(half_and_half(well_formed, body_of({"config": config_trees | values, "overrides": overrides | values})))
    key = draw(idempotency)
    mentions = config_mentions(body) + (("idempotency key",) if key is not None else ())
    return Call("POST", "/v1/runs", headers=with_key({}, key), body=body, fields=frozenset({"config", "overrides"}),
                mentions=mentions)


@st.composite
def start_round(draw) -> Call:
    overrides = st.dictionaries(st.sampled_from(ROUND_KEYS) | texts, json_values, min_size=1, max_size=4)
    body = draw(half_and_half(st.fixed_dictionaries({"overrides": overrides}),
                              body_of({"overrides": overrides | values})))
    key = draw(idempotency)
    mentions = config_mentions(body) + (("idempotency key",) if key is not None else ())
    run_id = draw(half_and_half(st.just(OPEN_RUN), run_ids))
    return Call("POST", f"/v1/runs/{path_segment(run_id)}/rounds", headers=with_key({}, key), body=body,
                fields=frozenset({"overrides", "run_id"}), mentions=mentions)


@st.composite
def set_replicas(draw) -> Call:
    body = draw(half_and_half(st.fixed_dictionaries({"replicas": st.integers(1, 4096)}),
                              body_of({"replicas": values | numbers})))
    return Call("PUT", f"/v1/runs/{path_segment(draw(run_ids))}/rollout/replicas", body=body,
                fields=frozenset({"replicas", "run_id"}))


@st.composite
def clear_replicas(draw) -> Call:
    return Call("DELETE", f"/v1/runs/{path_segment(draw(run_ids))}/rollout/replicas", fields=frozenset({"run_id"}))


pools = half_and_half(st.sampled_from(["reward", "influence"]), segments)


@st.composite
def set_workers(draw) -> Call:
    body = draw(half_and_half(st.fixed_dictionaries({"workers": st.integers(1, 4096) | st.none()}),
                              body_of({"workers": values | numbers})))
    return Call("PUT", f"/v1/runs/{path_segment(draw(run_ids))}/{path_segment(draw(pools))}/workers", body=body,
                fields=frozenset({"workers", "run_id", "pool"}))


@st.composite
def workers_call(draw, method: str) -> Call:
    return Call(method, f"/v1/runs/{path_segment(draw(run_ids))}/{path_segment(draw(pools))}/workers",
                fields=frozenset({"run_id", "pool"}))


@st.composite
def run_action(draw, action: str) -> Call:
    """Cancel or resume: no body is declared (whatever comes is ignored), only the run and an Idempotency-Key."""
    run_id = draw(half_and_half(st.just(ENDED_RUN), segments))  # not OPEN_RUN: a cancel would end its rounds
    body = draw(st.just(ABSENT) | values)
    key = draw(idempotency)
    return Call("POST", f"/v1/runs/{path_segment(run_id)}/{action}", headers=with_key({}, key), body=body,
                fields=frozenset({"run_id"}), mentions=("idempotency key",) if key is not None else ())


@st.composite
def cancel_round(draw) -> Call:
    run_id, index = draw(run_ids), draw(st.sampled_from(["0", "1"]) | segments)
    key = draw(idempotency)
    return Call("POST", f"/v1/runs/{path_segment(run_id)}/rounds/{path_segment(index)}/cancel",
                headers=with_key({}, key), fields=frozenset({"run_id", "index"}),
                mentions=("idempotency key",) if key is not None else ())


@st.composite
def read_round(draw, suffix: str) -> Call:
    """GET a round (`suffix` ""), or one of its sub-resources."""
    run_id, index = draw(run_ids), draw(st.sampled_from(["0", "1"]) | segments)
    return Call("GET", f"/v1/runs/{path_segment(run_id)}/rounds/{path_segment(index)}{suffix}",
                fields=frozenset({"run_id", "index"}))


@st.composite
def list_runs(draw) -> Call:
    query = draw(st.fixed_dictionaries({}, optional={"limit": params, "offset": params}))
    return Call("GET", "/v1/runs", query=query)


@st.composite
def stream_events(draw) -> Call:
    query = draw(st.fixed_dictionaries({}, optional={"after": params, "follow": params | st.sampled_from(["false"])}))
    headers = draw(st.fixed_dictionaries({}, optional={"Last-Event-ID": header_values}))
    return Call("GET", f"/v1/runs/{path_segment(draw(half_and_half(st.just(ENDED_RUN), run_ids)))}/events", query=query,
                headers=headers, fields=frozenset({"run_id"}))


@st.composite
def run_metrics(draw) -> Call:
    query = draw(st.fixed_dictionaries({}, optional={"round": params}))
    return Call("GET", f"/v1/runs/{path_segment(draw(run_ids))}/metrics", query=query, fields=frozenset({"run_id"}))


ROUTES = {
    ("POST", "/v1/runs"): create_run(),
    ("POST", "/v1/runs/{run_id}/cancel"): run_action("cancel"),
    ("POST", "/v1/runs/{run_id}/resume"): run_action("resume"),
    ("POST", "/v1/runs/{run_id}/rounds"): start_round(),
    ("POST", "/v1/runs/{run_id}/rounds/{index}/cancel"): cancel_round(),
    ("PUT", "/v1/runs/{run_id}/rollout/replicas"): set_replicas(),
    ("DELETE", "/v1/runs/{run_id}/rollout/replicas"): clear_replicas(),
    ("PUT", "/v1/runs/{run_id}/{pool}/workers"): set_workers(),
    ("DELETE", "/v1/runs/{run_id}/{pool}/workers"): workers_call("DELETE"),
    ("GET", "/v1/runs/{run_id}/{pool}/workers"): workers_call("GET"),
    ("GET", "/v1/runs"): list_runs(),
    ("GET", "/v1/runs/{run_id}/rounds/{index}"): read_round(""),
    ("GET", "/v1/runs/{run_id}/rounds/{index}/ledger"): read_round("/ledger"),
    ("GET", "/v1/runs/{run_id}/events"): stream_events(),
    ("GET", "/v1/runs/{run_id}/metrics"): run_metrics(),
}


# The server and the checks ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[tuple[Served, httpx.Client]]:
    """One server for all examples (limits lifted: the fuzz is one token's burst), with OPEN_RUN and ENDED_RUN."""
    with served(tmp_path_factory.mktemp("fuzz"), UNLIMITED) as server, \
            httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        config = load_config_tree({"round": {"rounds": 1}}).model_dump(mode="json")
        for run_id in (OPEN_RUN, ENDED_RUN):
            server.store.create_run(run_id, config)
            server.store.start_round(run_id)
            server.store.transition_round(run_id, 0, RoundState.TRAINING)
            server.store.record_metrics(run_id, 0, 0, {"step": 0})
            server.store.transition_round(run_id, 0, RoundState.DONE)
        server.store.append_event(ENDED_RUN, "run_finished", {})
        yield server, client


def send(client: httpx.Client, call: Call) -> tuple[int, Any]:
    """The status and the JSON body (None for an event stream that opened: it is not read)."""
    query = "&".join(f"{path_segment(key)}={path_segment(value)}" for key, value in call.query.items())
    url = call.path + (f"?{query}" if query else "")
    headers = {name: value.encode("latin-1") for name, value in call.headers.items()}
    content = None
    if call.body is not ABSENT:
        content = json.dumps(call.body).encode()
        headers["content-type"] = b"application/json"
    with client.stream(call.method, url, content=content, headers=headers) as response:
        if response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream"):
            return 200, None
        response.read()
        return response.status_code, strict_json(response) if response.content else None


def check(call: Call, status: int, body: Any) -> None:
    assert 200 <= status < 300 or 400 <= status < 500, (status, body)
    if status != 422:
        return
    detail = body["detail"]
    if isinstance(detail, str):
        assert any(names(detail, name) for name in call.mentions), detail
        return
    sent = set(call.query) | {name.lower() for name in call.headers} | call.fields
    sent |= set(call.body) if isinstance(call.body, dict) else set()
    for error in detail:
        where, *rest = error["loc"]
        assert where in ("body", "query", "path", "header"), error
        if rest and not (where == "body" and not isinstance(call.body, dict)):
            assert str(rest[0]).lower() in {str(name).lower() for name in sent}, error


def test_every_write_and_query_route_is_fuzzed(fuzzed):
    server, _ = fuzzed
    routes = {(method, route.path) for route in server.app.routes if isinstance(route, APIRoute)
              for method in route.methods
              if method in WRITE_METHODS or route.dependant.query_params
              or any(param.field_info.annotation is not str for param in route.dependant.path_params)}
    assert routes == set(ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_fuzzed_requests_get_no_5xx_and_422s_name_the_field(fuzzed, route):
    _, client = fuzzed

    @FUZZ
    @given(call=ROUTES[route])
    def exchange(call: Call) -> None:
        check(call, *send(client, call))

    exchange()
