"""One real run through the control plane: a real uvicorn server and HTTP client, the run's coordinator on the test
Ray cluster committing to the server's store. Everything else about the API is in tests/test_api_control.py."""

import json

import httpx
import pytest

from services.api.app import create_app
from tests.conftest import TEST_NAMESPACE
from tests.test_api_control import AUTH, TOKENS, read_sse, serving
from visiong1.client import parse_sse
from visiong1.config import load_config_tree

pytestmark = pytest.mark.slow

TINY = ["model.warm_start_steps=60", "data.num_items=16", "round.steps=2", "round.prompts_per_step=4",
        "rollout.samples_per_prompt=4", "rollout.max_new_tokens=8", "reward.num_cpus=0.1",
        "eval.items_per_domain=8", "eval.pass_k=2"]


def test_a_run_started_over_rest_streams_to_the_end(ray_cluster, model_cache, tmp_path):
    config = load_config_tree({"output_dir": str(tmp_path), "model": {"cache_dir": model_cache},
                               "ray": {"namespace": TEST_NAMESPACE}})
    with serving(create_app(config, tokens=TOKENS)) as url:
        created = httpx.post(f"{url}/v1/runs", json={"overrides": TINY, "config": {"name": "api"}}, headers=AUTH,
                             timeout=120)
        assert created.status_code == 201, created.text
        run = created.json()
        assert run["id"].startswith("api-") and run["config"]["store"] == str(tmp_path / "store.sqlite3")
        scaled = False
        events = []
        with httpx.stream("GET", url + run["events"], headers=AUTH, timeout=300) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in parse_sse(response.iter_lines()):
                events.append(event)
                if event["event"] == "step" and not scaled:
                    # Mid-round: the coordinator applies the target at its next step boundary; the round goes on.
                    put = httpx.put(f"{url}/v1/runs/{run['id']}/rollout/replicas", json={"replicas": 2},
                                    headers=AUTH)
                    assert put.status_code == 200 and put.json()["replicas"] == 2
                    scaled = True
        kinds = [event["event"] for event in events]
        assert kinds[-1] == "run_finished", events[-1]
        assert [int(event["id"]) for event in events] == list(range(1, len(events) + 1))
        steps = [json.loads(event["data"])["payload"] for event in events if event["event"] == "step"]
        assert [step["step"] for step in steps] == [0, 1]
        assert all("reward/mean" in step["metrics"] and "time/train_s" in step["metrics"] for step in steps)
        states = [json.loads(e["data"])["payload"]["state"] for e in events if e["event"] == "round_state"]
        assert states[0] == "pending" and states[-1] == "done"
        shown = httpx.get(f"{url}/v1/runs/{run['id']}", headers=AUTH).json()
        assert shown["status"] == "idle" and [r["state"] for r in shown["rounds"]] == ["done"]
        assert f'visiong1_step{{run_id="{run["id"]}"}} 1.0' in httpx.get(f"{url}/metrics", headers=AUTH).text
        # The run has ended: no coordinator would serve another round.
        assert httpx.post(f"{url}/v1/runs/{run['id']}/rounds", json={}, headers=AUTH).status_code == 409
        # A client that reconnects with Last-Event-ID gets only what it has not seen.
        first_step = next(event["id"] for event in events if event["event"] == "step")
        with httpx.stream("GET", url + run["events"], headers={**AUTH, "Last-Event-ID": first_step},
                          timeout=60) as resumed:
            replay = read_sse(resumed)
        assert [e["id"] for e in replay] == [e["id"] for e in events[int(first_step):]]

