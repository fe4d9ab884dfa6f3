"""Runs that lose their coordinator: the API's watchdog fails them (`coordinator_lost`) instead of showing them
`running` forever, and `POST /v1/runs/{id}/resume` restarts a failed run. The store is written as a coordinator
would (see tests/test_api_control.py); tests/test_recovery.py kills real coordinators."""

from __future__ import annotations

import time

import httpx

from services.api.watchdog import Watchdog
from tests.test_api_control import AUTH, FakeLauncher, post, serving
from tests.test_api_control import api, store_location  # noqa: F401 - pytest fixtures
from visiong1.store import LOST_REASON, RoundState, RunStatus, SampleGroupPlan


class GoneLauncher(FakeLauncher):
    """Reports the coordinators of the runs in `gone` as dead."""

    def __init__(self, store, gone: set[str]):
        super().__init__(store)
        self.gone = gone

    def alive(self, run_id: str) -> bool | None:
        return False if run_id in self.gone else None


def running_run(api, **round_settings) -> str:
    run_id = api.run_in_store(**round_settings)
    api.store.start_round(run_id)
    api.store.transition_round(run_id, 0, RoundState.TRAINING)
    return run_id


def test_the_watchdog_fails_a_silent_or_gone_coordinator_once_and_counts_it(api):
    silent, gone, beating = (running_run(api, watchdog_s=30.0) for _ in range(3))
    for run_id in (silent, gone, beating):
        api.store.heartbeat(run_id)
        time.sleep(0.01)  # strictly later heartbeats, so a sweep time can fall between them
    silent_at, beating_at = (api.store.get_run(run_id).heartbeat_at for run_id in (silent, beating))
    shown = httpx.get(f"{api.url}/v1/runs/{silent}", headers=AUTH).json()
    assert (shown["heartbeat_at"], shown["attempt"]) == (silent_at, 1)
    watchdog = Watchdog(api.store, GoneLauncher(api.store, {gone}), registry=None)

    assert watchdog.sweep(now=beating_at + 29.0) == [gone]  # silent only 29 s or so: within round.watchdog_s
    assert watchdog.sweep(now=(silent_at + beating_at) / 2 + 30.0) == [silent]  # past 30 s; `beating` is not
    assert watchdog.sweep(now=beating_at + 60.0) == [beating]
    assert watchdog.sweep(now=beating_at + 600.0) == []  # each is marked once
    assert watchdog.lost._value.get() == 3
    for run_id in (silent, gone, beating):
        assert api.store.get_run(run_id).status is RunStatus.FAILED
        round_ = api.store.get_round(run_id, 0)
        assert round_.state is RoundState.FAILED and round_.error.startswith(f"{LOST_REASON}: ")
        failures = [e for e in api.store.events_after(run_id, 0, limit=1000) if e.kind == "run_failed"]
        assert [e.payload["reason"] for e in failures] == [LOST_REASON]
    assert "no heartbeat for 30 s" in api.store.get_round(silent, 0).error
    assert "gone" in api.store.get_round(gone, 0).error


def test_a_lost_run_shows_failed_over_rest_and_sse_and_the_counter(api):
    run_id = running_run(api, watchdog_s=5.0)
    app = api.make_app()
    app.state.watchdog.sweep(now=time.time() + 10.0)  # never beat: measured from the run's creation
    with serving(app) as url:
        run = httpx.get(f"{url}/v1/runs/{run_id}", headers=AUTH).json()
        assert run["status"] == "failed" and run["rounds"][0]["error"].startswith(LOST_REASON)
        events = httpx.get(f"{url}/v1/runs/{run_id}/events?follow=false", headers=AUTH).text
        assert "event: run_failed" in events and f'"reason":"{LOST_REASON}"' in events.replace(" ", "")
        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
        assert "visiong1_runs_coordinator_lost_total 1.0" in metrics


def test_resume_restarts_only_a_failed_run(api):
    failed = running_run(api)
    api.store.transition_round(failed, 0, RoundState.FAILED, error="ActorDiedError: RewardWorker")
    answer = post(api, f"/v1/runs/{failed}/resume")
    assert answer.status_code == 202 and answer.json()["status"] == "failed"
    assert [(run_id, config.round.steps) for run_id, config in api.launcher.resumed] == [(failed, 7)]

    running = running_run(api)
    refused = post(api, f"/v1/runs/{running}/resume")
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    assert post(api, "/v1/runs/nope/resume").status_code == 404
    assert len(api.launcher.resumed) == 1


def test_a_rounds_ledger_over_rest(api):
    run_id = running_run(api)
    api.store.schedule_samples(run_id, 0, 0, [SampleGroupPlan("p0", [None, "excluded"]),
                                              SampleGroupPlan("p1", ["out_of_band"] * 2)])
    api.store.record_metrics(run_id, 0, 0, {"step": 0})
    api.store.schedule_samples(run_id, 0, 1, [SampleGroupPlan("p2", [None, None])])
    shown = httpx.get(f"{api.url}/v1/runs/{run_id}/rounds/0/ledger", headers=AUTH)
    assert shown.status_code == 200 and shown.json() == {
        "round": 0, "state": "training", "samples": 6, "trained": 1, "dropped": {"excluded": 1, "out_of_band": 2},
        "superseded": 0, "in_flight": 2, "lost": 0}
    assert httpx.get(f"{api.url}/v1/runs/{run_id}/rounds/7/ledger", headers=AUTH).status_code == 404
