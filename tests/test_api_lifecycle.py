"""The full REST lifecycle over one real run: a real uvicorn server and HTTP client, the run's coordinator on the
test Ray cluster. Create a run, stream its events over SSE, start the next round with overrides, scale rollout up
and down during that round (learners untouched), cancel the run, and read the rounds' states back over REST."""

from __future__ import annotations

import json

import httpx
import psutil
import pytest

from services.api.app import create_app
from tests.conftest import TEST_NAMESPACE
from tests.test_api_control import AUTH, TOKENS, serving
from visiong1.client import parse_sse
from visiong1.config import load_config_tree

pytestmark = pytest.mark.slow

SMALL_RUN = ["model.warm_start_steps=60", "data.num_items=32", "eval.enabled=false", "rollout.engine=hf",
             "round.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=8",
             "rollout.num_cpus=0.5", "reward.num_cpus=0.1",
             "round.rounds=1", "round.steps=2", "round.idle_timeout_s=120"]


ROUND_1_STEPS = 1000  # far more than the background start, scale-down and cancel need: the cancel lands inside


def learner_pids() -> set[int]:
    """Pids of this session's live learner rank processes (Ray workers descend from this test process)."""
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[:1] and process.cmdline()[0].startswith("ray::LearnerWorker"):
                pids.add(process.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


class Driver:
    """Reacts to the run's events as an operator would, over REST: replicas up and the next round once round 0 is
    done, replicas down once a step was served by two (the new one starts in the background), and a run cancel
    once scaled down."""

    def __init__(self, http: httpx.Client, run_id: str):
        self.http, self.run_id = http, run_id
        self.learners_at: dict[str, set[int]] = {}
        self.scaling_down = False

    def on(self, kind: str, event: dict) -> None:
        payload = event["payload"]
        if kind == "step" and payload["step"] == 0:
            self.learners_at["first_step"] = learner_pids()
        elif kind == "round_state" and (payload["round"], payload["state"]) == (0, "done"):
            self.start_next_round()
        elif kind == "step" and payload["metrics"]["rollout/replicas"] == 2 and not self.scaling_down:
            self.scaling_down = True
            self.put_replicas(1)
        elif kind == "rollout_scaled" and payload["replicas"] == 1:
            self.learners_at["scaled_down"] = learner_pids()
            cancelled = self.http.post(f"/v1/runs/{self.run_id}/cancel")
            assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"], cancelled.text

    def start_next_round(self) -> None:
        # Targets apply only at step boundaries: set before the round is queued, this one applies at round 1's
        # first boundary. (Set just after, it races the coordinator to that boundary: selection here is quick.)
        self.put_replicas(2)
        started = self.http.post(f"/v1/runs/{self.run_id}/rounds", json={"overrides": {"round.steps": ROUND_1_STEPS}})
        assert started.status_code == 201, started.text
        assert (started.json()["index"], started.json()["steps"]) == (1, ROUND_1_STEPS)

    def put_replicas(self, replicas: int) -> None:
        put = self.http.put(f"/v1/runs/{self.run_id}/rollout/replicas", json={"replicas": replicas})
        assert put.status_code == 200 and put.json()["replicas"] == replicas, put.text


def test_rest_lifecycle_rounds_scaling_and_cancel_over_a_real_run(ray_cluster, model_cache, tmp_path):
    config = load_config_tree({"output_dir": str(tmp_path), "model": {"cache_dir": model_cache},
                               "ray": {"namespace": TEST_NAMESPACE}})
    with serving(create_app(config, tokens=TOKENS)) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        created = http.post("/v1/runs", json={"overrides": SMALL_RUN, "config": {"name": "life"}}, timeout=120)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        driver = Driver(http, run_id)
        events = []
        with http.stream("GET", f"/v1/runs/{run_id}/events", timeout=httpx.Timeout(30, read=120)) as stream:
            for sse in parse_sse(stream.iter_lines()):
                event = json.loads(sse["data"])
                events.append(event)
                driver.on(sse["event"], event)

        kinds = [event["type"] for event in events]
        assert kinds[-2:] == ["run_cancelled", "run_finished"] and "run_failed" not in kinds, kinds
        assert [event["id"] for event in events] == list(range(1, len(events) + 1))
        assert "cancel requested for the run" in events[-1]["payload"]["cancelled"]

        # Scaled up at round 1's first step boundary (the replica joined a few steps later), down at a later one;
        # the cancel stopped the round at the next boundary it reached (round 1 is long enough for all of it).
        scaled = [(e["round"], e["payload"]["previous"], e["payload"]["replicas"])
                  for e in events if e["type"] == "rollout_scaled"]
        assert scaled == [(1, 1, 2), (1, 2, 1)]
        steps = [e["payload"] for e in events if e["type"] == "step"]
        replicas = [(s["round"], s["step"], s["metrics"]["rollout/replicas"]) for s in steps]
        assert replicas[:2] == [(0, 0, 1), (0, 1, 1)] and replicas[-1][2] == 1, replicas
        served = [count for round_, _, count in replicas if round_ == 1]
        assert 2 in served and served[:served.index(2)] == [1] * served.index(2), replicas  # 1 until the new replica joined
        round_1 = [s["step"] for s in steps if s["round"] == 1]
        assert round_1 == list(range(2, 2 + len(round_1))) and 2 <= len(round_1) < ROUND_1_STEPS
        # Learners trained on through both scalings: versions rose every step, in the same rank processes.
        versions = [s["metrics"]["train/version"] for s in steps]
        assert versions == sorted(versions) and versions[-1] > versions[1], versions
        assert driver.learners_at["first_step"] and driver.learners_at["first_step"] == driver.learners_at["scaled_down"]
        round_1_states = [e["payload"]["state"] for e in events if e["type"] == "round_state" and e["round"] == 1]
        assert round_1_states == ["pending", "selecting", "training", "cancelled"]

        rounds = http.get(f"/v1/runs/{run_id}/rounds").json()["rounds"]
        assert [(r["index"], r["state"], r["steps"], r["last_step"]) for r in rounds] == [
            (0, "done", 2, 1), (1, "cancelled", ROUND_1_STEPS, round_1[-1])]
        assert rounds[1]["overrides"] == {"round.steps": ROUND_1_STEPS}
        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "cancelled" and run["rollout_replicas"] == 1
        metrics = http.get(f"/v1/runs/{run_id}/metrics", params={"round": 1}).json()
        assert [row["step"] for row in metrics] == round_1
        # Nothing serves the run any more.
        assert http.post(f"/v1/runs/{run_id}/rounds", json={}).status_code == 409
        assert http.put(f"/v1/runs/{run_id}/rollout/replicas", json={"replicas": 2}).status_code == 409


def test_a_run_that_does_not_fit_its_gpus_is_refused_with_the_plan(ray_cluster, tmp_path):
    """The same check as `visiong1 plan`, run by the API before it launches anything (on Ray: the API process
    never imports torch): the paper recipe on 20-GiB GPUs gets a 422 naming the roles, with the plan."""
    paper = {"model": {"path": "Qwen/Qwen2.5-VL-7B-Instruct", "warm_start_steps": 0},
             "learner": {"backend": "fsdp2", "ranks": 4, "num_gpus": 1, "micro_batch_tokens": 16384},
             "rollout": {"num_gpus": 1, "max_model_len": 6144}, "resources": {"gpu_memory_gib": 20}}
    config = load_config_tree({"output_dir": str(tmp_path), "ray": {"namespace": TEST_NAMESPACE}})
    with serving(create_app(config, tokens=TOKENS)) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
        refused = http.post("/v1/runs", json={"config": {"name": "too-big", **paper}})
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert "learner rank: needs" in body["detail"] and body["plan"]["model"]["parameters"] > 8e9
        assert {role["role"] for role in body["plan"]["roles"]} >= {"learner rank", "rollout replica (per GPU)"}
        assert http.get("/v1/runs").json()["runs"] == []  # nothing was launched or recorded
