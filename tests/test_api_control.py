"""The control plane against a real uvicorn server and an HTTP client, on SQLite and PostgreSQL.

Runs, rounds and events are written straight into the run store here, as a coordinator would: reading and writing
the store is the API's whole contract with coordinators (tests/test_api.py runs one real run end to end). A fake
launcher stands in for Ray when a run is created: it registers the run in the store, as a coordinator does.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.auth import Scope, Tokens
from services.api.server import serving_in_thread as serving
from visiong1 import cli
from visiong1.client import parse_sse
from visiong1.config import RunConfig, load_config_tree
from visiong1.store import RoundState, RunStatus, RunStore

WRITER, READER = "writer-token-0123456789", "reader-token-9876543210"
TOKENS = Tokens(((WRITER.encode(), Scope.WRITE), (READER.encode(), Scope.READ)))
AUTH = {"authorization": f"Bearer {WRITER}"}


class FakeLauncher:
    """Registers the run in the store as a coordinator would, and starts nothing."""

    def __init__(self, store: RunStore):
        self.store, self.launched, self.resumed = store, [], []

    def launch(self, config: RunConfig) -> str:
        run_id = f"{config.name}-{uuid.uuid4().hex[:8]}"
        self.store.create_run(run_id, config.model_dump(mode="json"))
        self.launched.append(config)
        return run_id

    def resume(self, run_id: str, config: RunConfig) -> None:
        self.resumed.append((run_id, config))

    def alive(self, run_id: str) -> bool | None:
        return None

    def ready(self) -> bool:
        return True

    def cluster(self) -> dict:
        return {"backend": "fake", "nodes": []}


def read_sse(response) -> list[dict]:
    return list(parse_sse(response.iter_lines()))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    server = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@dataclass
class Api:
    url: str
    store: RunStore
    """The test's own connection to the server's store (the coordinator's view)."""
    launcher: FakeLauncher
    config: RunConfig
    data_root: Path

    def make_app(self):
        return create_app(self.config, launcher=self.launcher, tokens=TOKENS)

    def run_in_store(self, rounds: int = 1, **round_settings) -> str:
        """A run as its coordinator registers it: the server's config with `round` settings."""
        config = self.config.model_copy(update={"round": self.config.round.model_copy(
            update={"rounds": rounds, **round_settings})})
        return self.launcher.launch(config.model_copy(update={"name": "stored"}))

    def finish_round(self, run_id: str) -> int:
        index = self.store.start_round(run_id).index
        self.store.transition_round(run_id, index, RoundState.TRAINING)
        self.store.record_metrics(run_id, index, 0, {"step": 0, "reward/mean": 0.5})
        self.store.transition_round(run_id, index, RoundState.DONE)
        return index


@pytest.fixture
def api(store_location, tmp_path) -> Iterator[Api]:
    data_root = tmp_path / "data"
    data_root.mkdir()
    config = load_config_tree({"output_dir": str(tmp_path / "runs"), "store": store_location,
                               "round": {"steps": 7},
                               "api": {"max_body_bytes": 4096, "data_roots": [str(data_root)]}})
    with RunStore.open(store_location) as store:
        launcher = FakeLauncher(store)
        partial = Api("", store, launcher, config, data_root)
        with serving(partial.make_app()) as url:
            partial.url = url
            yield partial


def post(api: Api, path: str, body=None, **kwargs) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.post(api.url + path, json=body if body is not None else {}, headers=headers, **kwargs)


def get(api: Api, path: str, **kwargs) -> httpx.Response:
    return httpx.get(api.url + path, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


# Auth, limits, health ----------------------------------------------------------------------------------------------

def test_bearer_auth_guards_everything_but_probes(api):
    missing = httpx.get(f"{api.url}/v1/runs")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{api.url}/v1/runs", headers={"authorization": f"Bearer {WRITER}x"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert WRITER not in wrong.text
    assert httpx.get(f"{api.url}/metrics").status_code == 401
    reader = {"authorization": f"Bearer {READER}"}
    assert httpx.get(f"{api.url}/v1/runs", headers=reader).status_code == 200
    refused = httpx.post(f"{api.url}/v1/runs", json={}, headers=reader)
    assert refused.status_code == 403 and not api.launcher.launched
    for probe in ("/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(api.url + probe).status_code == 200, probe


def test_oversized_bodies_are_refused_with_413(api):
    declared = post(api, "/v1/runs", {"overrides": ["name=" + "x" * 5000]})
    assert declared.status_code == 413 and "4096" in declared.json()["detail"]

    def chunks():  # no content-length: the limit must hold while the body streams in
        yield b'{"overrides": ["name='
        for _ in range(10):
            yield b"x" * 1000
        yield b'"]}'

    streamed = httpx.post(f"{api.url}/v1/runs", content=chunks(),
                          headers={**AUTH, "content-type": "application/json"})
    assert streamed.status_code == 413
    assert not api.launcher.launched


def test_tokens_file_and_env(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# operators\nalpha\nbeta read\n")
    tokens = Tokens.load(str(path), environ={"VISIONG1_API_TOKEN": "gamma"})
    assert [tokens.identify(t) for t in ("alpha", "beta", "gamma", "delta")] == \
        [(0, Scope.WRITE), (1, Scope.READ), (2, Scope.WRITE), None]
    path.write_text("alpha admin\n")
    with pytest.raises(ValueError, match=r"tokens:1") as raised:
        Tokens.load(str(path), environ={})
    assert "alpha" not in str(raised.value)


# Runs --------------------------------------------------------------------------------------------------------------

def test_created_run_inherits_the_server_config_and_shares_its_store(api, store_location):
    response = post(api, "/v1/runs", {"config": {"name": "api", "round": {"prompts_per_step": 2}},
                                      "overrides": ["learner.lr=1e-5"]})
    assert response.status_code == 201, response.text
    run = response.json()
    config = run["config"]
    assert (config["round"]["steps"], config["round"]["prompts_per_step"], config["learner"]["lr"]) == (7, 2, 1e-5)
    assert config["store"] == store_location and config["output_dir"] == api.config.output_dir
    assert run["status"] == "created" and run["events"] == f"/v1/runs/{run['id']}/events"
    assert api.store.get_run(run["id"]).config == api.launcher.launched[0].model_dump(mode="json")
    assert [r["id"] for r in get(api, "/v1/runs").json()["runs"]] == [run["id"]]
    assert get(api, f"/v1/runs/{run['id']}").json()["config"] == config
    assert get(api, "/v1/runs/nope").status_code == 404


@pytest.mark.parametrize("body, path", [
    ({"config": {"rollout": {"replica": 2}}}, "rollout.replica: Extra inputs are not permitted"),
    ({"overrides": ["learner.lr=-1"]}, "learner.lr: Input should be greater than 0"),
    ({"overrides": ["round.steps=1000000000"]}, "round.steps: 1000000000 is beyond"),
    ({"overrides": ["data.pool=/etc"]}, "data.pool: '/etc' is outside the allowed data roots"),
    ({"overrides": ["selection.influence.targets=/etc"]},
     "selection.influence.targets: '/etc' is outside the allowed data roots"),
    ({"config": {"data": {"sources": [{"name": "s", "format": "jsonl", "path": "DATA/../../secret.jsonl"}]}}},
     "data.sources[0].path"),
    ({"overrides": ["output_dir=/tmp/elsewhere"]}, "output_dir: is set by the server"),
    ({"overrides": ["store=/tmp/other.sqlite3"]}, "store: is set by the server"),
    ({"overrides": ["ray.namespace=other"]}, "ray: is set by the server"),
    ({"overrides": ["round.steps"]}, "not of the form dotted.key=value"),
    ({"overrides": [" =[[["]}, "override ' =[[[': the key is blank"),
    ({"overrides": ["round.steps=[1"]}, "override round.steps: value is not valid YAML"),
    ({"overrides": ["0.0=None"]}, "0.0: Extra inputs are not permitted"),  # names the key, not its section
    ({"config": {"round": 3}}, "round: Input should be a valid dictionary"),
])
def test_invalid_configs_are_refused_with_the_field_path(api, body, path):
    body = json.loads(json.dumps(body).replace("DATA", str(api.data_root)))
    response = post(api, "/v1/runs", body)
    assert response.status_code == 422, response.text
    assert path in response.json()["detail"]
    assert not api.launcher.launched


def test_non_finite_numbers_are_refused(api):
    # JSON has no NaN, but Python's parser (and so the server's) takes the literal: refuse it by path.
    raw = '{"config": {"rollout": {"temperature": NaN}, "learner": {"lr": Infinity}}}'
    response = httpx.post(f"{api.url}/v1/runs", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422
    assert "rollout.temperature" in response.json()["detail"] and "learner.lr" in response.json()["detail"]


def test_data_inside_the_allowed_roots_is_accepted(api):
    pool = api.data_root / "pool"
    targets = api.data_root / "targets"
    response = post(api, "/v1/runs", {"overrides": [f"data.pool={pool}", f"selection.influence.targets={targets}"]})
    assert response.status_code == 201, response.text
    config = response.json()["config"]
    assert (config["data"]["pool"], config["selection"]["influence"]["targets"]) == (str(pool), str(targets))


def test_idempotency_key_replays_the_first_response(api):
    key = {"Idempotency-Key": "create-1"}
    first = post(api, "/v1/runs", {"config": {"name": "once"}, "overrides": ["round.steps=3"]}, headers=key)
    assert first.status_code == 201
    # The same request with other key order and whitespace is the same request.
    raw = '{ "overrides": ["round.steps=3"],  "config": {"name": "once"} }'
    again = httpx.post(f"{api.url}/v1/runs", content=raw,
                       headers={**AUTH, **key, "content-type": "application/json"})
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and len(api.launcher.launched) == 1
    other = post(api, "/v1/runs", {"config": {"name": "twice"}}, headers=key)
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    # A refused request does not keep its key: a corrected retry runs.
    bad = post(api, "/v1/runs", {"overrides": ["learner.lr=-1"]}, headers={"Idempotency-Key": "create-2"})
    assert bad.status_code == 422
    good = post(api, "/v1/runs", {"overrides": ["learner.lr=1e-6"]}, headers={"Idempotency-Key": "create-2"})
    assert good.status_code == 201 and len(api.launcher.launched) == 2


def test_cancelled_run_takes_no_rounds_and_no_scaling(api):
    run_id = api.run_in_store()
    api.finish_round(run_id)
    response = post(api, f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert post(api, f"/v1/runs/{run_id}/rounds").status_code == 409
    assert httpx.put(f"{api.url}/v1/runs/{run_id}/rollout/replicas", json={"replicas": 2},
                     headers=AUTH).status_code == 409
    assert post(api, "/v1/runs/nope/cancel").status_code == 404


# Rounds ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, path", [
    ({"selection.b=1": {"\u0006": ""}}, "selection.b=1: Extra inputs are not permitted"),  # set as given, never parsed
    ({"selection.pass_rate_low": "\U0001f600"}, "selection.pass_rate_low: Input should be a valid number"),
])
def test_round_overrides_are_set_as_given_and_refused_naming_the_key(api, overrides, path):
    run_id = api.run_in_store(rounds=1)
    api.finish_round(run_id)
    response = post(api, f"/v1/runs/{run_id}/rounds", {"overrides": overrides})
    assert response.status_code == 422, response.text
    assert path in response.json()["detail"]


def test_round_lifecycle(api):
    run_id = api.run_in_store(rounds=1)
    early = post(api, f"/v1/runs/{run_id}/rounds")
    assert early.status_code == 409 and "configured rounds" in early.json()["detail"]
    api.finish_round(run_id)  # the coordinator's configured round
    response = post(api, f"/v1/runs/{run_id}/rounds",
                    {"overrides": {"round.steps": 3, "round.prompts_per_step": 8, "selection.pass_rate_low": 0.1}})
    assert response.status_code == 201, response.text
    round_ = response.json()
    assert (round_["index"], round_["state"], round_["steps"], round_["last_step"]) == (1, "pending", 3, None)
    assert api.store.get_round(run_id, 1).overrides == {"round.steps": 3, "round.prompts_per_step": 8,
                                                        "selection.pass_rate_low": 0.1}
    assert api.store.get_run(run_id).status is RunStatus.RUNNING
    second = post(api, f"/v1/runs/{run_id}/rounds")
    assert second.status_code == 409 and "active round" in second.json()["detail"]
    api.store.transition_round(run_id, 1, RoundState.TRAINING)
    api.store.record_metrics(run_id, 1, 1, {"step": 1})
    shown = get(api, f"/v1/runs/{run_id}/rounds/1").json()
    assert (shown["state"], shown["last_step"]) == ("training", 1)
    assert [r["index"] for r in get(api, f"/v1/runs/{run_id}/rounds").json()["rounds"]] == [0, 1]
    cancelled = post(api, f"/v1/runs/{run_id}/rounds/1/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"]
    assert api.store.get_round(run_id, 1).cancel_requested
    api.store.transition_round(run_id, 1, RoundState.CANCELLED)  # the coordinator, at its next step boundary
    assert post(api, f"/v1/runs/{run_id}/rounds/1/cancel").status_code == 409
    assert get(api, f"/v1/runs/{run_id}/rounds/7").status_code == 404
    assert post(api, f"/v1/runs/{run_id}/rounds/7/cancel").status_code == 404
    api.store.append_event(run_id, "run_finished", {})
    ended = post(api, f"/v1/runs/{run_id}/rounds")
    assert ended.status_code == 409 and "ended (run_finished)" in ended.json()["detail"]


@pytest.mark.parametrize("overrides, message", [
    ({"learner.lr": 1e-5}, "learner.lr: a round may override only"),
    ({"round.rounds": 5}, "round.rounds: a round may override only"),
    ({"round.steps": 0}, "round.steps: Input should be greater than or equal to 1"),
    ({"round.steps": 10**9}, "round.steps: 1000000000 is beyond"),
    ({"round.prompts_per_step": 0}, "round.prompts_per_step: Input should be greater than or equal to 1"),
    ({"selection.no_such_knob": 1}, "selection.no_such_knob: Extra inputs are not permitted"),
])
def test_round_overrides_are_validated(api, overrides, message):
    run_id = api.run_in_store(rounds=1)
    api.finish_round(run_id)
    response = post(api, f"/v1/runs/{run_id}/rounds", {"overrides": overrides})
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    assert api.store.active_round(run_id) is None


# Rollout -----------------------------------------------------------------------------------------------------------

def test_rollout_replicas_get_put_and_clear(api):
    run_id = api.run_in_store()
    path = f"{api.url}/v1/runs/{run_id}/rollout/replicas"
    assert httpx.get(path, headers=AUTH).json() == {"run_id": run_id, "replicas": 1, "configured": 1,
                                                    "source": "config", "autoscale": None}
    for replicas in (3, 2):
        response = httpx.put(path, json={"replicas": replicas}, headers=AUTH)
        assert response.status_code == 200 and response.json()["replicas"] == replicas
        assert api.store.get_run(run_id).rollout_replicas == replicas
    assert httpx.get(path, headers=AUTH).json()["source"] == "api"
    cleared = httpx.delete(path, headers=AUTH)
    assert cleared.status_code == 200 and cleared.json()["source"] == "config"
    assert api.store.get_run(run_id).rollout_replicas is None
    httpx.put(path, json={"replicas": 3}, headers=AUTH)
    assert httpx.put(path, json={"replicas": None}, headers=AUTH).json()["replicas"] == 1  # null clears too
    assert httpx.delete(path, headers={"authorization": f"Bearer {READER}"}).status_code == 403


def test_reward_workers_get_put_and_clear(api):
    run_id = api.run_in_store()
    path = f"{api.url}/v1/runs/{run_id}/reward/workers"
    assert httpx.get(path, headers=AUTH).json() == {"run_id": run_id, "pool": "reward", "workers": 1,
                                                    "configured": 1, "source": "config"}
    response = httpx.put(path, json={"workers": 3}, headers=AUTH)
    assert response.status_code == 200 and response.json() == {"run_id": run_id, "pool": "reward", "workers": 3,
                                                               "configured": 1, "source": "api"}
    assert api.store.get_run(run_id).reward_workers == 3
    assert httpx.put(path, json={"workers": 0}, headers=AUTH).status_code == 422
    assert httpx.delete(path, headers=AUTH).json()["source"] == "config"
    assert api.store.get_run(run_id).reward_workers is None
    assert httpx.put(f"{api.url}/v1/runs/nope/reward/workers", json={"workers": 2}, headers=AUTH).status_code == 404
    assert httpx.put(path, json={"replicas": 0}, headers=AUTH).status_code == 422
    assert httpx.put(path, json={"replicas": 2}, headers={"authorization": f"Bearer {READER}"}).status_code == 403
    assert httpx.put(f"{api.url}/v1/runs/nope/rollout/replicas", json={"replicas": 2},
                     headers=AUTH).status_code == 404


def test_influence_workers_are_set_only_for_a_run_with_an_influence_pool(api):
    without = api.run_in_store()  # the server's config: influence off
    refused = httpx.put(f"{api.url}/v1/runs/{without}/influence/workers", json={"workers": 2}, headers=AUTH)
    assert refused.status_code == 409 and "selection.influence.enabled is false" in refused.json()["detail"]
    assert api.store.get_run(without).influence_workers is None
    config = api.config.model_copy(update={"name": "influenced", "selection": api.config.selection.model_copy(
        update={"influence": api.config.selection.influence.model_copy(update={"enabled": True, "workers": 2})})})
    run_id = api.launcher.launch(config)
    path = f"{api.url}/v1/runs/{run_id}/influence/workers"
    response = httpx.put(path, json={"workers": 4}, headers=AUTH)
    assert response.status_code == 200 and response.json() == {"run_id": run_id, "pool": "influence", "workers": 4,
                                                               "configured": 2, "source": "api"}
    assert (api.store.get_run(run_id).influence_workers, api.store.get_run(run_id).reward_workers) == (4, None)
    assert httpx.delete(path, headers=AUTH).json()["workers"] == 2
    unknown = httpx.put(f"{api.url}/v1/runs/{run_id}/learner/workers", json={"workers": 2}, headers=AUTH)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["path", "pool"]


# Events ------------------------------------------------------------------------------------------------------------

def test_events_resume_exactly_after_an_api_restart(api):
    run_id = api.run_in_store()
    index = api.store.start_round(run_id).index
    api.store.transition_round(run_id, index, RoundState.TRAINING)
    for step in range(3):
        api.store.record_metrics(run_id, index, step, {"step": step, "reward/mean": step / 10})
    # First API process: follow the stream until the second step, then drop the connection.
    seen = []
    with httpx.stream("GET", f"{api.url}/v1/runs/{run_id}/events", headers=AUTH, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse_sse(response.iter_lines()):
            seen.append(event)
            if event["event"] == "step" and json.loads(event["data"])["payload"]["step"] == 1:
                break
    assert [int(e["id"]) for e in seen] == list(range(1, len(seen) + 1))
    last_seen = seen[-1]["id"]
    # The API restarts (a new app, a new store connection); meanwhile the coordinator commits more.
    with serving(api.make_app()) as restarted:
        def coordinator():
            time.sleep(0.5)
            api.store.record_metrics(run_id, index, 3, {"step": 3})
            api.store.transition_round(run_id, index, RoundState.DONE)
            api.store.append_event(run_id, "run_finished", {"steps": 4})

        writer = threading.Thread(target=coordinator)
        writer.start()
        with httpx.stream("GET", f"{restarted}/v1/runs/{run_id}/events", timeout=30,
                          headers={**AUTH, "Last-Event-ID": last_seen}) as response:
            resumed = read_sse(response)
        writer.join()
    ids = [int(e["id"]) for e in resumed]
    assert ids == list(range(int(last_seen) + 1, int(last_seen) + 1 + len(ids)))
    steps = [json.loads(e["data"])["payload"]["step"] for e in resumed if e["event"] == "step"]
    assert steps == [2, 3] and resumed[-1]["event"] == "run_finished"
    data = json.loads(resumed[-1]["data"])
    assert data == {"id": ids[-1], "run_id": run_id, "type": "run_finished", "round": None,
                    "time": data["time"], "payload": {"steps": 4}}


def test_event_stream_errors_and_catch_up_mode(api):
    run_id = api.run_in_store()
    api.store.start_round(run_id)
    assert get(api, "/v1/runs/nope/events").status_code == 404
    assert get(api, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"}).status_code == 400
    with httpx.stream("GET", f"{api.url}/v1/runs/{run_id}/events?follow=false&after=0", headers=AUTH,
                      timeout=10) as response:
        events = read_sse(response)
    assert [e["event"] for e in events] == ["round_state"]


# Metrics, cluster --------------------------------------------------------------------------------------------------

def test_prometheus_metrics_export_runs_and_latest_steps(api):
    run_id = api.run_in_store()
    index = api.store.start_round(run_id).index
    api.store.transition_round(run_id, index, RoundState.TRAINING)
    api.store.record_metrics(run_id, index, 0, {"step": 0, "reward/mean": 0.25})
    api.store.record_metrics(run_id, index, 1, {"step": 1, "reward/mean": 0.5, "train/step_s": 1.5,
                                                "rollout/weight_version": 2, "note": "text is skipped"})
    assert get(api, f"/v1/runs/{run_id}").status_code == 200
    text = get(api, "/metrics").text
    assert f'visiong1_step{{run_id="{run_id}"}} 1.0' in text
    assert f'visiong1_reward_mean{{run_id="{run_id}"}} 0.5' in text
    assert "visiong1_train_step_s" not in text  # exported live by the learners (actors/telemetry.py)
    assert f'visiong1_rollout_weight_version{{run_id="{run_id}"}} 2.0' in text
    assert 'visiong1_runs{status="running"} 1.0' in text and "visiong1_note" not in text
    assert 'visiong1_api_requests_total{method="GET",route="/v1/runs/{run_id}",status="200"}' in text
    rows = get(api, f"/v1/runs/{run_id}/metrics").json()
    assert [row["step"] for row in rows] == [0, 1]
    cluster = get(api, "/v1/cluster").json()
    assert cluster["backend"] == "fake"
    assert cluster["runs"][0]["rollout"] == {"rollout/weight_version": 2} and cluster["runs"][0]["step"] == 1


# CLI client --------------------------------------------------------------------------------------------------------

def test_cli_client_drives_the_api(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VISIONG1_API_TOKEN", WRITER)
    config_file = tmp_path / "run.yaml"
    config_file.write_text("name: cli\nround:\n  rounds: 1\n")
    assert cli.main(["runs", "create", "--url", api.url, str(config_file), "round.steps=3"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert (run["config"]["name"], run["config"]["round"]["steps"]) == ("cli", 3)
    api.finish_round(run["id"])
    assert cli.main(["rounds", "start", "--url", api.url, "--steps", "2", run["id"],
                     "selection.pass_rate_low=0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["overrides"] == {"selection.pass_rate_low": 0.1, "round.steps": 2}
    assert cli.main(["scale", "rollout", run["id"], "3", "--url", api.url]) == 0
    assert cli.main(["scale", "reward", run["id"], "2", "--url", api.url]) == 0
    assert (api.store.get_run(run["id"]).rollout_replicas, api.store.get_run(run["id"]).reward_workers) == (3, 2)
    assert cli.main(["scale", "reward", run["id"], "clear", "--url", api.url]) == 0
    assert api.store.get_run(run["id"]).reward_workers is None
    capsys.readouterr()
    api.store.transition_round(run["id"], 1, RoundState.TRAINING)
    api.store.record_metrics(run["id"], 1, 1, {"step": 1, "reward/mean": 0.75})
    api.store.append_event(run["id"], "run_finished", {})
    assert cli.main(["watch", run["id"], "--url", api.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "round 1 step 1: reward/mean=0.75" in "\n".join(lines) and lines[-1].endswith("run_finished")
    monkeypatch.setenv("VISIONG1_API_TOKEN", "wrong")
    assert cli.main(["runs", "list", "--url", api.url]) == 1
    assert "HTTP 401" in capsys.readouterr().err
