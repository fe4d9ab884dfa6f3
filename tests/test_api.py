"""The REST surface against a real uvicorn server, driven by an HTTP client; runs execute on the test Ray cluster."""

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from services.api.app import create_app
from tests.conftest import TEST_NAMESPACE

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api_url(ray_cluster):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(TEST_NAMESPACE, max_body_bytes=4096), host="127.0.0.1",
                                          port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def read_sse(response) -> list[dict]:
    """Parse a text/event-stream body into events (type, id, data), in order."""
    events, current = [], {}
    for line in response.iter_lines():
        if not line:
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")
    return events


def test_started_run_streams_step_events_to_the_end(api_url, model_cache, tmp_path):
    overrides = [f"model.cache_dir={model_cache}", "model.warm_start_steps=60", f"output_dir={tmp_path}",
                 "data.num_items=16", "round.steps=2", "round.prompts_per_step=4", "rollout.samples_per_prompt=4",
                 "rollout.max_new_tokens=8", "reward.num_cpus=0.1"]
    created = httpx.post(f"{api_url}/v1/runs", json={"overrides": overrides, "config": {"name": "api"}})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["id"].startswith("api-") and run["events"] == f"/v1/runs/{run['id']}/events"
    with httpx.stream("GET", api_url + run["events"], timeout=300) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    steps = [json.loads(event["data"]) for event in events if event["event"] == "step"]
    assert [step["step"] for step in steps] == [0, 1]
    assert all("reward/mean" in step and "time/train_s" in step for step in steps)
    # A client that reconnects with Last-Event-ID gets only what it has not seen.
    last_step_id = next(event["id"] for event in events if event["event"] == "step")
    with httpx.stream("GET", api_url + run["events"], headers={"Last-Event-ID": last_step_id}, timeout=60) as resumed:
        replay = read_sse(resumed)
    assert int(replay[0]["id"]) == int(last_step_id) + 1 and replay[-1]["event"] == "run_finished"


def test_invalid_config_is_rejected_with_the_field_path(api_url):
    response = httpx.post(f"{api_url}/v1/runs", json={"overrides": ["learner.lr=-1"]})
    assert response.status_code == 422
    assert "learner.lr: Input should be greater than 0" in response.json()["detail"]
    response = httpx.post(f"{api_url}/v1/runs", json={"config": {"rollout": {"replica": 2}}})
    assert response.status_code == 422 and "rollout.replica" in response.json()["detail"]


def test_unknown_run_is_404_and_oversized_body_is_413(api_url):
    assert httpx.get(f"{api_url}/v1/runs/nope/events").status_code == 404
    response = httpx.post(f"{api_url}/v1/runs", json={"overrides": ["name=" + "x" * 5000]})
    assert response.status_code == 413
