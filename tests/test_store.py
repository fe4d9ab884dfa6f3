"""The run store against both backends: SQLite in a temp directory and a private PostgreSQL server.

The PostgreSQL server is started once per session (as the `postgres` user when the tests run as root, since the
server refuses root), gets a fresh database per test, and is stopped by its PID at the end. Without PostgreSQL's
binaries those tests skip.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from visiong1.store import (
    EventKind,
    MIGRATIONS,
    ActiveRoundExists,
    Conflict,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IllegalTransition,
    Migration,
    RoundNotFound,
    RoundState,
    RunCancelled,
    RunExists,
    RunNotFound,
    RunStatus,
    RunStore,
    SampleGroupPlan,
    SchemaVersionError,
    StepAlreadyRecorded,
    StoredResponse,
)
from visiong1.store import schema

ROOT = Path(__file__).parents[1]


# Fixtures ----------------------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """Where a fresh, empty store lives: a SQLite file path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "runs.sqlite3")
    server = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@pytest.fixture
def store(location) -> Iterator[RunStore]:
    with RunStore.open(location) as opened:
        yield opened


def raw_engine(location: str) -> sa.Engine:
    """An engine of our own on the store's database, to check what is really stored."""
    if "://" not in location:
        return sa.create_engine(f"sqlite:///{location}")
    return sa.create_engine(location.replace("postgresql://", "postgresql+psycopg://", 1))


ALL_PHASES = (RoundState.SCORING, RoundState.SELECTING, RoundState.TRAINING, RoundState.EVALUATING,
              RoundState.CHECKPOINTING, RoundState.DONE)


# Migrations --------------------------------------------------------------------------------------------------------

def test_migrations_create_the_schema_once(location):
    with RunStore.open(location) as store:
        assert store.schema_version() == len(MIGRATIONS)
        store.create_run("r1", {"seed": 1})
    with RunStore.open(location) as store:  # re-open: nothing re-applied, data kept
        assert store.schema_version() == len(MIGRATIONS)
        assert store.get_run("r1").config == {"seed": 1}
    engine = raw_engine(location)
    try:
        inspector = sa.inspect(engine)
        for table in schema.metadata.sorted_tables:  # the query-side tables match what the migrations built
            assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()), table.name
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert versions == [m.version for m in MIGRATIONS]
    finally:
        engine.dispose()


def test_upgrade_from_version_1_applies_only_the_new_migrations_and_keeps_the_runs(location):
    def add_note_column(conn):
        conn.execute(sa.text("ALTER TABLE runs ADD COLUMN note TEXT"))

    with RunStore.open(location, migrations=MIGRATIONS[:1]) as store:
        assert store.schema_version() == 1
    engine = raw_engine(location)
    try:
        with engine.begin() as conn:  # a run as version 1 of the program stored it
            conn.execute(sa.text("INSERT INTO runs (id, config, status, cancel_requested, last_event_id, created_at, "
                                 "updated_at) VALUES ('r1', '{}', 'created', false, 0, 0, 0)"))
    finally:
        engine.dispose()
    upgraded = MIGRATIONS + (Migration(len(MIGRATIONS) + 1, "runs.note", add_note_column),)
    with RunStore.open(location, migrations=upgraded) as store:
        assert store.schema_version() == len(upgraded)
        run = store.get_run("r1")
        assert (run.id, run.heartbeat_at) == ("r1", None)
        assert store.superseded_for("r1") == []
    with RunStore.open(location, migrations=upgraded) as store:  # applied once: a second ALTER would fail
        assert store.schema_version() == len(upgraded)
    with pytest.raises(SchemaVersionError, match="newer"):  # older code refuses a newer database
        RunStore.open(location, migrations=MIGRATIONS)


def test_misnumbered_migrations_are_refused(tmp_path):
    with pytest.raises(ValueError, match="numbered"):
        RunStore.open(tmp_path / "s.sqlite3", migrations=(Migration(2, "gap", lambda conn: None),))


# Runs and rounds ---------------------------------------------------------------------------------------------------

def test_round_lifecycle_and_run_status(store):
    run = store.create_run("r1", {"round": {"steps": 2}})
    assert (run.status, run.cancel_requested, run.rollout_replicas, run.last_event_id) == \
        (RunStatus.CREATED, False, None, 0)
    first = store.start_round("r1", {"selection.influence.enabled": False})
    assert (first.index, first.state) == (0, RoundState.PENDING)
    assert first.overrides == {"selection.influence.enabled": False}
    assert first.started_at is None and first.finished_at is None
    assert store.get_run("r1").status is RunStatus.RUNNING
    for state in ALL_PHASES:
        current = store.transition_round("r1", 0, state)
        assert current.state is state and store.get_round("r1", 0) == current
    assert current.started_at is not None and current.finished_at >= current.started_at
    assert store.get_run("r1").status is RunStatus.IDLE and store.active_round("r1") is None
    second = store.start_round("r1")
    assert second.index == 1 and store.active_round("r1") == second
    assert [r.index for r in store.list_rounds("r1")] == [0, 1]
    changes = [(e.payload["previous"], e.payload["state"])
               for e in store.events_after("r1") if e.kind == EventKind.ROUND_STATE]
    states = ["pending"] + [s.value for s in ALL_PHASES]
    assert changes == list(zip([None] + states[:-1], states)) + [(None, "pending")]


def test_phases_may_be_skipped_forward_but_never_backward(store):
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)  # an ablation without selection
    for backward in (RoundState.PENDING, RoundState.SCORING, RoundState.SELECTING, RoundState.TRAINING):
        with pytest.raises(IllegalTransition, match="training -> "):
            store.transition_round("r1", 0, backward)
    store.transition_round("r1", 0, RoundState.DONE)
    for state in RoundState:
        with pytest.raises(IllegalTransition, match="final"):
            store.transition_round("r1", 0, state, error="x" if state is RoundState.FAILED else None)
    assert store.get_round("r1", 0).state is RoundState.DONE


def test_failed_rounds_name_their_error_and_may_resume(store):
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    with pytest.raises(ValueError, match="error text is required"):
        store.transition_round("r1", 0, RoundState.FAILED)
    with pytest.raises(ValueError, match="only for it"):
        store.transition_round("r1", 0, RoundState.EVALUATING, error="not a failure")
    with pytest.raises(ValueError):
        store.transition_round("r1", 0, "sleeping")
    failed = store.transition_round("r1", 0, "failed", error="learner rank 1 died")
    assert (failed.error, store.get_run("r1").status) == ("learner rank 1 died", RunStatus.FAILED)
    resumed = store.transition_round("r1", 0, RoundState.TRAINING)
    assert (resumed.state, resumed.error, resumed.finished_at) == (RoundState.TRAINING, None, None)
    assert store.get_run("r1").status is RunStatus.RUNNING


def test_one_active_round_per_run(store):
    for run_id in ("r1", "r2"):
        store.create_run(run_id, {})
    store.start_round("r1")
    with pytest.raises(ActiveRoundExists, match="active round: 0 \\(pending\\)"):
        store.start_round("r1")
    store.start_round("r2")  # other runs are independent
    store.transition_round("r1", 0, RoundState.FAILED, error="rollout group died")
    store.start_round("r1")  # a failed round is not active ...
    with pytest.raises(ActiveRoundExists):  # ... but may not resume beside the newer active round
        store.transition_round("r1", 0, RoundState.SCORING)
    assert [r.state for r in store.list_rounds("r1")] == [RoundState.FAILED, RoundState.PENDING]


def test_the_database_itself_refuses_a_second_active_round(store, location):
    store.create_run("r1", {})
    store.start_round("r1")
    engine = raw_engine(location)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO rounds (run_id, round_index, state, overrides, cancel_requested, created_at, updated_at)"
                " VALUES ('r1', 1, 'training', '{}', false, 0, 0)"))
    finally:
        engine.dispose()


def test_cancel_run_and_round(store):
    store.create_run("r1", {})
    store.start_round("r1")
    assert store.request_round_cancel("r1", 0).cancel_requested
    assert store.request_run_cancel("r1").status is RunStatus.CANCELLING
    store.transition_round("r1", 0, RoundState.CANCELLED)
    assert store.get_run("r1").status is RunStatus.CANCELLED
    with pytest.raises(RunCancelled):
        store.start_round("r1")
    with pytest.raises(Conflict, match="already ended"):
        store.request_round_cancel("r1", 0)
    assert store.request_run_cancel("r1").status is RunStatus.CANCELLED  # idempotent
    store.create_run("r2", {})
    store.start_round("r2")
    store.transition_round("r2", 0, RoundState.FAILED, error="x")
    store.request_run_cancel("r2")
    with pytest.raises(RunCancelled, match="may not resume"):
        store.transition_round("r2", 0, RoundState.TRAINING)


def test_rollout_replica_target(store, location):
    store.create_run("r1", {})
    assert store.set_rollout_replicas("r1", 3).rollout_replicas == 3
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="replicas"):
            store.set_rollout_replicas("r1", bad)
    with RunStore.open(location) as other:
        assert other.get_run("r1").rollout_replicas == 3


def test_list_runs_newest_first(store):
    for run_id in ("a", "b", "c"):
        store.create_run(run_id, {})
    assert [r.id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.id for r in store.list_runs(limit=1, offset=1)] == ["b"]


# Events ------------------------------------------------------------------------------------------------------------

def test_events_resume_exactly_also_after_a_restart(location):
    with RunStore.open(location) as store:
        store.create_run("r1", {})
        ids = [store.append_event("r1", "tick", {"n": n}).id for n in range(5)]
        assert ids == [1, 2, 3, 4, 5]
        assert [e.payload["n"] for e in store.events_after("r1", after_id=2)] == [2, 3, 4]
        assert [e.id for e in store.events_after("r1", after_id=1, limit=2)] == [2, 3]
    with RunStore.open(location) as store:  # a restarted API process
        assert store.events_after("r1", after_id=5) == []
        assert store.append_event("r1", "tick", {"n": 5}).id == 6
        resumed = store.events_after("r1", after_id=4)
        assert [(e.id, e.kind, e.payload) for e in resumed] == [(5, "tick", {"n": 4}), (6, "tick", {"n": 5})]
        assert store.get_run("r1").last_event_id == 6


def test_event_ids_are_per_run(store):
    store.create_run("r1", {})
    store.create_run("r2", {})
    store.append_event("r1", "a")
    assert store.append_event("r2", "b").id == 1
    assert [e.kind for e in store.events_after("r2")] == ["b"]


CHILD_WRITER = """
import json, sys, time
from pathlib import Path
from visiong1.store import RunStore
location, go, first, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + 30
while not go.exists():  # start together with the other processes
    if time.monotonic() > deadline:
        sys.exit("the start signal never came")
    time.sleep(0.005)
with RunStore.open(location) as store:
    ids = []
    for step in range(first, first + 2 * count, 2):  # every other step, each with an event of its own beside it
        ids.append(store.record_metrics("r1", 0, step, {"step": step}).id)
        ids.append(store.append_event("r1", "tick", {"step": step}).id)
print(json.dumps(ids))
"""


def test_two_processes_write_concurrently_without_lost_or_duplicated_ids(store, location, tmp_path):
    count, go = 60, tmp_path / "go"
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    before = store.get_run("r1").last_event_id
    # Writer 0 records the even steps, writer 1 the odd ones; both are released at the same moment.
    writers = [subprocess.Popen([sys.executable, "-c", CHILD_WRITER, location, str(go), str(first), str(count)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for first in (0, 1)]
    go.touch()
    returned = []
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        returned.append(json.loads(out))
    written = list(range(before + 1, before + 4 * count + 1))
    assert sorted(returned[0] + returned[1]) == written
    events = store.events_after("r1", after_id=before, limit=1000)
    assert [e.id for e in events] == written
    for first, ids in enumerate(returned):  # each writer's events are its own, in its own order
        assert [e.payload["step"] for e in events if e.id in set(ids)] == \
            [step for step in range(first, 2 * count, 2) for _ in range(2)]
    assert [row.step for row in store.metrics_for("r1", 0)] == list(range(2 * count))


def test_stores_opening_a_fresh_database_together_migrate_it_once(location):
    def slow_first_migration(conn):
        MIGRATIONS[0].apply(conn)
        time.sleep(0.5)  # every other opener arrives while this migration's transaction is open

    migrations = (Migration(1, MIGRATIONS[0].description, slow_first_migration),) + MIGRATIONS[1:]
    opened, failures = [], []

    def open_store():
        try:
            with RunStore.open(location, migrations=migrations) as store:
                opened.append(store.schema_version())
        except Exception as error:  # reported by the assertion below
            failures.append(error)

    openers = [threading.Thread(target=open_store) for _ in range(3)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=30)
    assert failures == [] and opened == [len(MIGRATIONS)] * 3
    engine = raw_engine(location)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_version")).scalars().all()
        assert sorted(versions) == [m.version for m in MIGRATIONS]
    finally:
        engine.dispose()


def test_threads_share_one_store(store):
    store.create_run("r1", {})
    ids: list[int] = []
    lock = threading.Lock()

    def append_some():
        for _ in range(20):
            event_id = store.append_event("r1", "tick").id
            with lock:
                ids.append(event_id)

    threads = [threading.Thread(target=append_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(ids) == list(range(1, 81))


# Metrics -----------------------------------------------------------------------------------------------------------

def test_metrics_are_committed_before_record_returns(store, location):
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    assert store.last_committed_step("r1", 0) is None
    for step in range(3):
        event = store.record_metrics("r1", 0, step, {"reward/mean": step / 10, "loss": float("nan")})
        assert (event.kind, event.payload["step"], event.round_index) == (EventKind.STEP, step, 0)
    with RunStore.open(location) as other:  # its own connections, as another process's: already there
        rows = other.metrics_for("r1", round_index=0)
        assert [(r.step, r.metrics["reward/mean"]) for r in rows] == [(0, 0.0), (1, 0.1), (2, 0.2)]
        assert math.isnan(rows[0].metrics["loss"])  # NaN survives (a diverged loss is information)
        assert other.last_committed_step("r1", 0) == 2
        assert [e.payload["step"] for e in other.events_after("r1") if e.kind == EventKind.STEP] == [0, 1, 2]
    with pytest.raises(StepAlreadyRecorded):
        store.record_metrics("r1", 0, 1, {"reward/mean": 1.0})
    assert store.metrics_for("r1")[1].metrics["reward/mean"] == 0.1
    store.transition_round("r1", 0, RoundState.DONE)
    with pytest.raises(Conflict, match="active round"):
        store.record_metrics("r1", 0, 3, {})


def test_metrics_that_json_cannot_encode_are_refused_and_nothing_is_written(store):
    store.create_run("r1", {})
    store.start_round("r1")
    with pytest.raises(TypeError):
        store.record_metrics("r1", 0, 0, {"value": object()})
    assert store.metrics_for("r1") == [] and store.events_after("r1")[-1].kind == EventKind.ROUND_STATE


def test_superseded_steps_move_aside_and_a_redo_commits_them_again(store):
    store.create_run("r1", {})
    for index, steps in ((0, range(0, 3)), (1, range(3, 6))):
        store.start_round("r1")
        store.transition_round("r1", index, RoundState.TRAINING)
        for step in steps:
            store.record_metrics("r1", index, step, {"step": step, "try": 1})
        if index == 0:
            store.transition_round("r1", 0, RoundState.DONE)
    before = store.get_run("r1").last_event_id

    assert store.supersede_steps("r1", 2) == [(0, 2), (1, 3), (1, 4), (1, 5)]
    assert [(m.round_index, m.step) for m in store.metrics_for("r1")] == [(0, 0), (0, 1)]
    superseded = store.events_after("r1", before)
    assert [(e.kind, e.payload) for e in superseded] == [
        ("steps_superseded", {"from_step": 2, "attempt": 1, "steps": [2, 3, 4, 5], "samples": 0})]
    for step in (3, 4):  # the redo commits the steps again (a done round's step stays superseded)
        store.record_metrics("r1", 1, step, {"step": step, "try": 2})
    assert store.supersede_steps("r1", 4) == [(1, 4)]
    assert store.supersede_steps("r1", 9) == []  # nothing after step 9: no event either
    assert [(m.step, m.metrics["try"]) for m in store.metrics_for("r1")] == [(0, 1), (1, 1), (3, 2)]
    assert [(m.round_index, m.step, m.metrics["try"]) for m in store.superseded_for("r1")] == [
        (0, 2, 1), (1, 3, 1), (1, 4, 1), (1, 5, 1), (1, 4, 2)]
    assert [e.kind for e in store.events_after("r1", before)].count("steps_superseded") == 2


def test_the_ledger_settles_each_sample_once_and_counts_the_lost(store):
    """Scheduled samples meet their planned fate when their step commits; a redo supersedes the open ones and
    schedules again under the next attempt; what is still scheduled when its round ends is lost."""
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    plan = [SampleGroupPlan("p0", [None, None]), SampleGroupPlan("p1", ["out_of_band", "out_of_band"]),
            SampleGroupPlan("p2", [None, "excluded"])]
    assert store.schedule_samples("r1", 0, 0, plan) == 6
    assert store.ledger_summary("r1", 0)["in_flight"] == 6
    store.record_metrics("r1", 0, 0, {"step": 0})
    store.schedule_samples("r1", 0, 1, plan[:1])  # step 1 dies before it commits ...
    assert store.supersede_steps("r1", 1) == []  # ... no metrics row to move, but its samples are superseded
    assert store.get_run("r1").attempt == 2
    store.schedule_samples("r1", 0, 1, plan[:1])  # the redo, under attempt 2
    store.record_metrics("r1", 0, 1, {"step": 1})
    store.schedule_samples("r1", 0, 2, plan[:1])  # step 2 never commits and the round ends
    store.transition_round("r1", 0, RoundState.FAILED, error="lost on purpose")
    assert store.ledger_summary("r1", 0) == {
        "round": 0, "state": "failed", "samples": 12, "trained": 5, "superseded": 2,
        "dropped": {"out_of_band": 2, "excluded": 1}, "in_flight": 0, "lost": 2}
    events = [e.payload for e in store.events_after("r1", 0, limit=100) if e.kind == "steps_superseded"]
    assert events == [{"from_step": 1, "attempt": 1, "steps": [], "samples": 2}]


def test_a_step_committed_after_a_later_redo_began_settles_its_own_samples(store):
    """The resume commits a checkpointed step its coordinator died before committing, after superseding what came
    later: that step's samples, scheduled under the attempt it died in, are settled all the same."""
    store.create_run("r1", {})
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    store.schedule_samples("r1", 0, 0, [SampleGroupPlan("p0", [None, "excluded"])])
    store.schedule_samples("r1", 0, 1, [SampleGroupPlan("p1", [None])])
    store.supersede_steps("r1", 1)
    store.record_metrics("r1", 0, 0, {"step": 0})
    summary = store.ledger_summary("r1", 0)
    assert (summary["trained"], summary["dropped"], summary["superseded"], summary["in_flight"]) == \
        (1, {"excluded": 1}, 1, 0)


def test_heartbeats_and_a_lost_coordinator_fail_the_active_round_once(store):
    store.create_run("r1", {})
    assert store.get_run("r1").heartbeat_at is None
    started = time.time()
    store.heartbeat("r1")
    assert store.get_run("r1").heartbeat_at >= started
    assert store.mark_coordinator_lost("r1", "gone") is False  # no active round: nothing to fail
    store.start_round("r1")
    store.transition_round("r1", 0, RoundState.TRAINING)
    assert [run.id for run in store.runs_with_status(RunStatus.RUNNING)] == ["r1"]

    assert store.mark_coordinator_lost("r1", "no heartbeat for 200 s") is True
    assert store.mark_coordinator_lost("r1", "again") is False
    assert store.get_run("r1").status is RunStatus.FAILED and store.runs_with_status(RunStatus.RUNNING) == []
    assert store.get_round("r1", 0).error == "coordinator_lost: no heartbeat for 200 s"
    kinds = [(e.kind, e.payload.get("reason")) for e in store.events_after("r1", 0)]
    assert kinds[-2:] == [("round_state", None), ("run_failed", "coordinator_lost")]
    assert store.transition_round("r1", 0, RoundState.TRAINING).state is RoundState.TRAINING  # resumable
    with pytest.raises(RunNotFound):
        store.heartbeat("nope")


# Idempotency keys --------------------------------------------------------------------------------------------------

def test_idempotency_keys(store):
    assert store.claim_idempotent("k1", "hash-a") is None  # ours: execute the request
    with pytest.raises(IdempotencyInProgress):
        store.claim_idempotent("k1", "hash-a")
    with pytest.raises(IdempotencyKeyReused):
        store.claim_idempotent("k1", "hash-b")
    store.remember_idempotent("k1", "hash-a", 201, {"id": "r1"})
    assert store.claim_idempotent("k1", "hash-a") == StoredResponse("k1", "hash-a", 201, {"id": "r1"})
    with pytest.raises(IdempotencyKeyReused):
        store.claim_idempotent("k1", "hash-b")
    with pytest.raises(Conflict, match="already has a response"):
        store.remember_idempotent("k1", "hash-a", 500, None)


def test_idempotency_claims_can_be_released_or_go_stale(store):
    assert store.claim_idempotent("k1", "h") is None
    store.release_idempotent("k1", "h")  # the request failed: a retry may run it
    assert store.claim_idempotent("k1", "h") is None
    assert store.claim_idempotent("k1", "h", stale_after_s=0.0) is None  # its holder died
    with pytest.raises(KeyError, match="not claimed"):
        store.remember_idempotent("other", "h", 200, {})
    with pytest.raises(ValueError, match="idempotency key"):
        store.claim_idempotent("", "h")


# Bad input ---------------------------------------------------------------------------------------------------------

def test_unknown_runs_and_rounds_raise_key_errors_naming_them(store):
    calls = [lambda: store.get_run("nope"), lambda: store.start_round("nope"),
             lambda: store.events_after("nope"), lambda: store.append_event("nope", "x"),
             lambda: store.record_metrics("nope", 0, 0, {}), lambda: store.set_rollout_replicas("nope", 1),
             lambda: store.request_run_cancel("nope"), lambda: store.list_rounds("nope"),
             lambda: store.metrics_for("nope"), lambda: store.transition_round("nope", 0, "training")]
    for call in calls:
        with pytest.raises(RunNotFound, match="no run 'nope'") as caught:
            call()
        assert isinstance(caught.value, KeyError)
    store.create_run("r1", {})
    for call in (lambda: store.get_round("r1", 4), lambda: store.transition_round("r1", 4, "training"),
                 lambda: store.record_metrics("r1", 4, 0, {}), lambda: store.append_event("r1", "x", round_index=4)):
        with pytest.raises(RoundNotFound, match="run 'r1' has no round 4"):
            call()


def test_bad_values_are_refused(store):
    store.create_run("r1", {})
    with pytest.raises(RunExists):
        store.create_run("r1", {})
    for bad_id in ("", "../etc", "a b", "x" * 200, 7):
        with pytest.raises(ValueError, match="run id"):
            store.create_run(bad_id, {})
    store.start_round("r1")
    for bad_step in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step"):
            store.record_metrics("r1", 0, bad_step, {})
    with pytest.raises(ValueError, match="limit"):
        store.events_after("r1", limit=0)
    with pytest.raises(ValueError, match="kind"):
        store.append_event("r1", "")


def test_unsupported_locations_are_refused(tmp_path):
    with pytest.raises(ValueError, match="SQLite and PostgreSQL"):
        RunStore.open("mysql://user@localhost/db")
    with pytest.raises(ValueError, match="in-memory"):
        RunStore.open("sqlite://")


def test_a_directory_holds_the_default_file(tmp_path):
    with RunStore.open(tmp_path) as store:
        store.create_run("r1", {})
    assert (tmp_path / "store.sqlite3").exists()


# SQLite concurrency ------------------------------------------------------------------------------------------------

def test_sqlite_readers_and_the_writer_do_not_wait_for_each_other_and_writers_queue(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    with RunStore.open(path, busy_timeout_s=5.0) as store, RunStore.open(path, busy_timeout_s=0.0) as impatient:
        store.create_run("r1", {})  # `impatient` fails instead of waiting for any lock: it proves who waits
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # as another process would
        try:
            other.execute("BEGIN")
            other.execute("SELECT count(*) FROM runs").fetchone()  # an open read transaction ...
            assert impatient.append_event("r1", "x").id == 1  # ... does not hold up a commit (WAL)
            other.execute("COMMIT")

            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO runs (id, config, status, cancel_requested, last_event_id, created_at, "
                          "updated_at) VALUES ('held', '{}', 'created', 0, 0, 0, 0)")  # a writer ...
            assert impatient.get_run("r1").id == "r1"  # ... does not hold up a reader
            with pytest.raises(sa.exc.OperationalError, match="locked"):  # nor may a writer pass it
                impatient.append_event("r1", "x")
            released = threading.Event()

            def release() -> None:
                other.execute("COMMIT")
                released.set()

            releaser = threading.Timer(0.5, release)
            releaser.start()
            assert store.append_event("r1", "x").id == 2  # a second writer waits for the lock instead of failing
            assert released.is_set()  # ... until the first one committed
            releaser.join()
        finally:
            other.close()
        assert {r.id for r in store.list_runs()} == {"r1", "held"}
