"""The run page (`/ui/`) in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a real
uvicorn control plane fed by a store the test writes; tests/test_telemetry.py drives it against a real small run."""

from contextlib import contextmanager

from services.api.app import create_app
from services.api.server import serving_in_thread as serving
from tests.test_api_control import READER, TOKENS, WRITER, FakeLauncher
from visiong1.config import load_config, load_config_tree
from visiong1.store import RunStore

WAIT_MS = 60_000


@contextmanager
def page_on(browser, base: str, token: str = WRITER):
    """A page with `token` entered; collects script errors, refusals by its content policy (console errors other
    than the browser's notes on the 4xx answers the tests provoke) and every request's URL."""
    page = browser.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{base}/ui/")
    page.fill("#token", token)
    page.click("#token-form button")
    try:
        yield page, errors, requests
    finally:
        page.close()


def points(page) -> int:
    return int(page.get_attribute("#chart-reward", "data-points"))


def wait_points(page, at_least: int) -> int:
    page.wait_for_function("n => Number(document.getElementById('chart-reward').dataset.points) >= n", arg=at_least,
                           timeout=WAIT_MS)
    return points(page)


def message(page, *, ok: bool) -> str:
    """The message line once it says something of the given kind (a success in green, else an error)."""
    selector = "#message.ok" if ok else "#message:not(.ok)"
    page.wait_for_function("s => (document.querySelector(s)?.textContent ?? '').length > 0", arg=selector,
                           timeout=WAIT_MS)
    return page.text_content("#message")


def fed_run(store: RunStore) -> str:
    """A run whose events the test writes: three steps, a selection, an evaluation and a scaling event."""
    run_id = FakeLauncher(store).launch(load_config(None, ["name=fed"]))
    store.start_round(run_id)
    for step in range(3):
        store.record_metrics(run_id, 0, step, {"step": step, "reward/mean": step / 4, "reward/accuracy": step / 5,
                                               "time/generate_s": 1.0, "time/train_s": 2.0, "rollout/replicas": 1})
    store.append_event(run_id, "selection", {"round": 0, "pool": 40, "targets": 8, "in_band": 20, "kept": 16}, 0)
    store.append_event(run_id, "evaluation", {"label": "round_0", "round": 0, "step": 2, "items": 8, "seconds": 1.0,
                                              "accuracy": {"counting": 0.625, "charts": 0.25},
                                              "accuracy_mean": 0.4375}, 0)
    store.append_event(run_id, "rollout_scaled", {"replicas": 2, "previous": 1, "source": "autoscale",
                                                  "reason": "queue 12.0 per replica over target 4.0"})
    return run_id


def test_run_page_shows_a_fed_run_live_and_its_actions_reach_the_api(browser, tmp_path):
    config = load_config_tree({"output_dir": str(tmp_path), "store": str(tmp_path / "store.sqlite3")})
    with RunStore.open(config.store) as store, serving(create_app(config, launcher=FakeLauncher(store),
                                                                  tokens=TOKENS)) as base:
        run_id = fed_run(store)
        with page_on(browser, base, token="wrong") as (page, _, _):
            assert "401 invalid bearer token" in message(page, ok=False)
        with page_on(browser, base) as (page, errors, requests):
            page.click(f"text={run_id}")
            assert wait_points(page, 3) == 3
            store.record_metrics(run_id, 0, 3, {"step": 3, "reward/mean": 1.0, "rollout/replicas": 2})
            assert wait_points(page, 4) == 4  # the new step arrives over the open event stream
            assert page.text_content("#last-step") == "3"
            assert page.inner_text("#heldout tbody") == "charts\t0.250\ncounting\t0.625"
            assert page.inner_text("#funnel tbody") == "0\t40\t8\t20\t16"
            assert "rollout_scaled\trollout\t1\t2\tautoscale\tqueue 12.0 per replica" in page.inner_text("#scaling")

            page.fill("#replicas", "5000")  # the field's own check refuses < 1; the API's upper bound answers here
            page.click("#scale button[type=submit]")
            assert "422 body.replicas: Input should be less than or equal to 4096" in message(page, ok=False)
            assert store.get_run(run_id).rollout_replicas is None
            page.fill("#replicas", "3")
            page.click("#scale button[type=submit]")
            assert message(page, ok=True) == "rollout target 3 (api)"
            assert store.get_run(run_id).rollout_replicas == 3
            page.wait_for_function("() => document.getElementById('replica-source').textContent === 'api'")

            page.click("#cancel")
            assert message(page, ok=True) == f"run {run_id}: cancel requested"
            assert store.get_run(run_id).cancel_requested
            assert errors == []  # nothing the page's content policy refused, no script error
            assert all(url.startswith(base) for url in requests), "the page loads nothing from elsewhere"
        with page_on(browser, base, token=READER) as (page, _, _):
            page.goto(f"{base}/ui/#run={run_id}")
            page.click("#scale-clear")
            assert "403 this token may only read" in message(page, ok=False)
            assert store.get_run(run_id).rollout_replicas == 3
