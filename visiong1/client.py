"""HTTP client of the control plane (`visiong1 serve`), used by the `visiong1 runs|rounds|watch|scale` commands.

    client = Client("http://127.0.0.1:8000", token=os.environ.get("VISIONG1_API_TOKEN"))
    run = client.create_run({"round": {"steps": 5}}, ["learner.lr=1e-6"])
    client.start_round(run["id"], {"round.steps": 10})
    for event in client.events(run["id"]):          # resumes with Last-Event-ID when the connection drops
        print(event["type"], event["payload"])

Every POST carries an `Idempotency-Key`, so a POST whose response was lost is retried once without doing the work
twice. Errors raise `ApiError` with the status and the server's detail.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import httpx

from visiong1.store.events import TERMINAL_EVENTS

URL_ENV = "VISIONG1_API_URL"
TOKEN_ENV = "VISIONG1_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 30.0,
                 reconnects: int = 5):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self.reconnects = reconnects

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Runs
    def create_run(self, config: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
        return self._post("/v1/runs", {"config": config or {}, "overrides": list(overrides)})

    def list_runs(self, limit: int = 100) -> list[dict]:
        return self._call("GET", "/v1/runs", params={"limit": limit})["runs"]

    def get_run(self, run_id: str) -> dict:
        return self._call("GET", f"/v1/runs/{run_id}")

    def cancel_run(self, run_id: str) -> dict:
        return self._post(f"/v1/runs/{run_id}/cancel", None)

    def resume_run(self, run_id: str) -> dict:
        return self._post(f"/v1/runs/{run_id}/resume", None)

    # Rounds
    def start_round(self, run_id: str, overrides: dict[str, Any] | None = None) -> dict:
        return self._post(f"/v1/runs/{run_id}/rounds", {"overrides": overrides or {}})

    def get_round(self, run_id: str, index: int) -> dict:
        return self._call("GET", f"/v1/runs/{run_id}/rounds/{index}")

    def cancel_round(self, run_id: str, index: int) -> dict:
        return self._post(f"/v1/runs/{run_id}/rounds/{index}/cancel", None)

    # Rollout
    def rollout_replicas(self, run_id: str) -> dict:
        return self._call("GET", f"/v1/runs/{run_id}/rollout/replicas")

    def scale_rollout(self, run_id: str, replicas: int | None) -> dict:
        """None clears a count set earlier."""
        return self._call("PUT", f"/v1/runs/{run_id}/rollout/replicas", json={"replicas": replicas})

    def scale_workers(self, run_id: str, pool: str, workers: int | None) -> dict:
        """The `reward` or `influence` pool's worker count; None clears a count set earlier."""
        return self._call("PUT", f"/v1/runs/{run_id}/{pool}/workers", json={"workers": workers})

    # Events
    def events(self, run_id: str, after: int = 0, follow: bool = True) -> Iterator[dict]:
        """The run's events as dicts (`id`, `type`, `round`, `time`, `payload`) until its terminal event.

        A dropped connection is resumed from the last event id, up to `reconnects` times in a row."""
        last_id, failures = after, 0
        while True:
            try:
                headers = {"Last-Event-ID": str(last_id), "accept": "text/event-stream"}
                with self.http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers,
                                      params={"follow": str(follow).lower()}, timeout=httpx.Timeout(30, read=None)) as response:
                    if response.status_code != 200:
                        response.read()
                        raise ApiError(response.status_code, _detail(response))
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        data = json.loads(event["data"])
                        if "id" in event:
                            last_id = int(event["id"])
                        yield data
                        if data["type"] in TERMINAL_EVENTS:
                            return
                if not follow:
                    return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > self.reconnects:
                    raise

    def _post(self, path: str, body: Any) -> dict:
        """POST with an idempotency key; retried once with the same key after a transport error."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        try:
            return self._call("POST", path, json=body, headers=headers)
        except httpx.TransportError:
            return self._call("POST", path, json=body, headers=headers)

    def _call(self, method: str, path: str, **kwargs) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response.json()


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text


def parse_sse(lines) -> Iterator[dict[str, str]]:
    """Server-sent events (fields `event`, `id`, `data`; comments skipped) from a line iterator."""
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if current:
                yield current
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[field] = current[field] + "\n" + value if field == "data" and field in current else value
    if current:
        yield current


def describe(event: dict) -> str:
    """One line of `visiong1 watch` output for an event."""
    payload, kind = event["payload"], event["type"]
    if kind == "step":
        metrics = payload.get("metrics", {})
        shown = " ".join(f"{key}={value:.4g}" for key, value in metrics.items()
                         if key in ("reward/mean", "reward/accuracy", "train/loss", "time/step_s")
                         and isinstance(value, (int, float)))
        return f"round {payload.get('round')} step {payload.get('step')}: {shown}".rstrip(": ")
    if kind == "round_state":
        error = f" ({payload['error']})" if payload.get("error") else ""
        return f"round {payload.get('round')}: {payload.get('previous') or '-'} -> {payload.get('state')}{error}"
    if kind == "phase":
        return f"phase {payload.get('phase')}"
    if kind == "run_failed":
        return f"run failed: {payload.get('error')}"
    return kind


def run_command(args) -> int:
    """The `visiong1 runs|rounds|watch|scale` commands (parsed by visiong1.cli)."""
    import yaml

    with Client(args.url) as client:
        try:
            if args.command == "runs":
                if args.runs_command == "create":
                    tree = yaml.safe_load(Path(args.config_file).read_text()) or {}
                    result = client.create_run(tree, args.overrides)
                elif args.runs_command == "list":
                    result = client.list_runs()
                elif args.runs_command == "get":
                    result = client.get_run(args.run_id)
                elif args.runs_command == "resume":
                    result = client.resume_run(args.run_id)
                else:
                    result = client.cancel_run(args.run_id)
            elif args.command == "rounds":
                if args.rounds_command == "start":
                    overrides = {}
                    for override in args.overrides:  # dotted keys stay flat: they are the round's override keys
                        key, _, raw = override.partition("=")
                        overrides[key] = yaml.safe_load(raw)
                    if args.steps is not None:
                        overrides["round.steps"] = args.steps
                    result = client.start_round(args.run_id, overrides)
                elif args.rounds_command == "get":
                    result = client.get_round(args.run_id, args.index)
                else:
                    result = client.cancel_round(args.run_id, args.index)
            elif args.command == "scale":
                if args.scale_command == "rollout":
                    result = client.scale_rollout(args.run_id, args.count)
                else:
                    result = client.scale_workers(args.run_id, args.scale_command, args.count)
            else:
                return _watch(client, args.run_id, args.after)
        except ApiError as error:
            print(f"visiong1 {args.command}: {error}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2))
    return 0


def _watch(client: Client, run_id: str, after: int) -> int:
    status = 0
    for event in client.events(run_id, after=after):
        print(f"[{event.get('id', '-')}] {describe(event)}", flush=True)
        status = 1 if event["type"] == "run_failed" else 0
    return status
