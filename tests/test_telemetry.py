"""A small live run watched from outside, as its users watch it: the Grafana dashboard against a live scrape (Ray's
metrics agent, with every role's live metrics and Ray's own, and the control plane's GET /metrics, as Prometheus
reads them), then the run page in a real browser (tests/test_run_page.py has its fixtures)."""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from actors.launch import start_run
from services.api.app import create_app
from tests.test_api_control import AUTH, TOKENS, FakeLauncher, serving
from tests.test_round_control import wait_for
from tests.test_run_page import WAIT_MS, message, page_on, wait_points
from visiong1.config import load_config, load_config_tree
from visiong1.store import RunStore

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parent.parent / "k8s" / "base" / "control-plane" / "visiong1-dashboard.json"
CANNOT_EXIST_ON_CPU = {"ray_node_gpus_utilization": "no GPU on a CPU cluster",
                       "autoscaler_active_nodes": "no Ray autoscaler on a local cluster",
                       "autoscaler_pending_nodes": "no Ray autoscaler on a local cluster"}
VLLM_ONLY = {"ray_visiong1_rollout_time_to_first_token_seconds_bucket", "ray_visiong1_rollout_kv_cache_usage"}
"""The scraped run uses the transformers engine; tests/test_rollout.py scrapes these from a vLLM replica."""


def panel_metrics() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {name for panel in panels for target in panel["targets"]
            for name in re.findall(r"\b((?:visiong1|ray|autoscaler)_[a-z0-9_]+)\b", target["expr"])}


def exported(text: str) -> set[str]:
    """Series names in a Prometheus exposition, and the families its `# TYPE` lines declare (a labelled counter
    that has not counted yet has no series)."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.MULTILINE):
        names |= {family, f"{family}_total"} if kind == "counter" else {family}
    return names


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    coordinator: object
    store: RunStore
    api: str
    """The control plane's base URL, serving the run's store."""


@pytest.fixture(scope="module")
def live_run(ray_cluster, model_cache, tmp_path_factory):
    """A small run with far more steps than its observers need, past its first steps, and a control plane over its
    store; the run is cancelled at the end unless a test did it already."""
    output = tmp_path_factory.mktemp("live")
    config = load_config(None, [f"model.cache_dir={model_cache}", "model.warm_start_steps=60", f"output_dir={output}",
                                "data.num_items=32", "eval.enabled=false", "round.rounds=1", "round.steps=1000",
                                "round.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.engine=hf",
                                "rollout.max_new_tokens=8", "rollout.num_cpus=0.5", "reward.num_cpus=0.1",
                                "learner.lr=1e-3", "rollout.weight_sync=collective"])
    run_id, coordinator, done = start_run(config)
    api_config = load_config_tree({"output_dir": str(output), "store": str(output / "store.sqlite3")})
    with RunStore.open(api_config.store) as store, serving(create_app(api_config, launcher=FakeLauncher(store),
                                                                      tokens=TOKENS)) as api:
        wait_for(coordinator, ray_cluster, "step", step=1)
        yield LiveRun(run_id, coordinator, store, api)
        store.request_run_cancel(run_id)
    ray_cluster.get(done, timeout=300)


def test_every_dashboard_panel_queries_a_metric_a_running_run_exports(ray_cluster, live_run):
    agent = f"http://127.0.0.1:{ray_cluster.nodes()[0]['MetricsExportPort']}/metrics"
    wanted = panel_metrics() - set(CANNOT_EXIST_ON_CPU) - VLLM_ONLY
    deadline, seen = time.monotonic() + 120, set()
    while not wanted <= seen and time.monotonic() < deadline:  # Ray's agent exports every few seconds
        seen = exported(httpx.get(agent).text) | exported(httpx.get(f"{live_run.api}/metrics", headers=AUTH).text)
        time.sleep(2)
    assert sorted(wanted - seen) == []
    assert {"ray_visiong1_rollout_tokens_total", "ray_visiong1_learner_step_seconds_bucket",
            "ray_visiong1_weight_sync_bytes_total", "ray_visiong1_run_phase",
            "ray_visiong1_reward_samples_total"} <= seen  # the live roles themselves


def test_run_page_follows_the_live_run_and_scales_its_rollout(browser, live_run):
    """In a real browser: the reward chart's points grow while the page is open, "Scale rollout" reaches the run's
    coordinator (its rollout_scaled event shows on the page) and "Cancel run" ends the run."""
    with page_on(browser, live_run.api) as (page, errors, _):
        page.goto(f"{live_run.api}/ui/#run={live_run.run_id}")
        seen = wait_points(page, 2)
        assert wait_points(page, seen + 1) > seen  # points grow while the run trains
        page.fill("#replicas", "2")
        page.click("#scale button[type=submit]")
        assert message(page, ok=True) == "rollout target 2 (api)"
        page.wait_for_selector("#scaling td:text-is('api')", timeout=WAIT_MS)
        assert page.inner_text("#scaling tbody").startswith("rollout_scaled\trollout\t1\t2\tapi")
        page.click("#cancel")
        page.wait_for_function("() => document.getElementById('run-status').textContent.startsWith('cancelled')",
                               timeout=WAIT_MS * 3)
        assert errors == []
    assert live_run.store.get_run(live_run.run_id).cancel_requested
