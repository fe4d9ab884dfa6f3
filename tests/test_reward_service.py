"""The reward service over HTTP: a real uvicorn server started by the CLI in its own process, stopped by PID."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    port = free_port()
    command = [str(Path(sys.executable).parent / "visiong1"), "reward", "serve", f"api.port={port}",
               "reward.sample_deadline_s=1.0", "reward.domains={medical: {on_timeout: exclude}}", "api.max_body_bytes=300000"]
    process = subprocess.Popen(command, env={**os.environ, "VISIONG1_REWARD_TOKEN": TOKEN},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "reward service did not come up in 60 s"
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def post(url: str, body, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/score", json=body, headers=headers, timeout=30)


def test_batch_scoring(service):
    items = [
        {"response": r"\boxed{\frac{1}{2}}", "ground_truth": "0.5", "answer_type": "math"},
        {"response": r"\boxed{(B)}", "ground_truth": "B", "answer_type": "choice"},
        {"response": r"\boxed{[0, 0, 10, 10]}", "ground_truth": "[0, 0, 10, 20]", "answer_type": "bbox"},
        {"response": r"\boxed{\int_0^1 x^{x^{x^{x}}} dx}", "ground_truth": "1", "answer_type": "math",
         "domain": "medical"},
        {"response": "no box here", "ground_truth": "3", "answer_type": "count"},
    ]
    response = post(service, {"items": items})
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["reason"] for r in results] == ["correct", "correct", "correct", "timeout", "no_answer"]
    assert results[2]["score"] == pytest.approx(0.5)
    assert [r["excluded"] for r in results] == [False, False, False, True, False]


def test_auth_is_required(service):
    body = {"items": [{"response": r"\boxed{1}", "ground_truth": "1", "answer_type": "count"}]}
    assert post(service, body, token=None).status_code == 401
    assert post(service, body, token="wrong").status_code == 401
    assert httpx.get(f"{service}/metrics").status_code == 401


@pytest.mark.parametrize("body, status", [
    ({"items": []}, 422),
    ({"items": [{"response": "x", "ground_truth": "1", "answer_type": "poem"}]}, 422),
    ({"items": [{"response": "x", "ground_truth": "1", "answer_type": "count", "extra": 1}]}, 422),
    ({"items": [{"response": r"\boxed{A}", "ground_truth": "A or B", "answer_type": "choice"}]}, 422),
    ({"items": [{"response": "x" * 400_000, "ground_truth": "1", "answer_type": "count"}]}, 413),
])
def test_bad_requests_get_clear_errors(service, body, status):
    response = post(service, body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_metrics_count_what_was_scored(service):
    post(service, {"items": [{"response": r"\boxed{7}", "ground_truth": "7", "answer_type": "count",
                              "domain": "charts"}]})
    text = httpx.get(f"{service}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'visiong1_reward_samples_total{answer_type="count",domain="charts",reason="correct"} 1.0' in text
