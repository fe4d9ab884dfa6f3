"""The run store: runs, rounds, events, per-step metrics, rollout targets and idempotency keys.

SQLite (one file, the default) or PostgreSQL (by URL) through one SQLAlchemy Core code path, with numbered
migrations applied on open. The API process and every run's coordinator open it concurrently; each write commits
before it returns. Kept free of torch: the API process imports it.

    store = RunStore.open("runs")                      # runs/store.sqlite3, or "postgresql://user@host/db"
    store.create_run("demo-1", config.model_dump(mode="json"))
    round_ = store.start_round("demo-1", {"round.steps": 5})     # ActiveRoundExists -> HTTP 409
    store.transition_round("demo-1", round_.index, RoundState.TRAINING)
    store.record_metrics("demo-1", round_.index, step=0, metrics={"reward/mean": 0.4})
    store.events_after("demo-1", after_id=last_event_id, limit=100)

Errors map to HTTP statuses by class: NotFound (a KeyError) -> 404, Conflict -> 409, IdempotencyKeyReused and
ValueError -> 422.
"""

from visiong1.store.migrations import MIGRATIONS, Migration
from visiong1.store.records import (
    INACTIVE_STATES,
    PHASE_ORDER,
    ActiveRoundExists,
    Conflict,
    Event,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IllegalTransition,
    MetricsRow,
    NotFound,
    Round,
    RoundNotFound,
    RoundState,
    Run,
    RunCancelled,
    RunExists,
    RunNotFound,
    RunStatus,
    SampleGroupPlan,
    SchemaVersionError,
    StepAlreadyRecorded,
    StoredResponse,
    StoreError,
    allowed_transitions,
)
from visiong1.store.events import TERMINAL_EVENTS, EventKind
from visiong1.store.store import DEFAULT_FILENAME, LOST_REASON, RunStore

__all__ = [
    "DEFAULT_FILENAME", "INACTIVE_STATES", "LOST_REASON", "MIGRATIONS", "PHASE_ORDER", "ActiveRoundExists",
    "Conflict", "Event", "EventKind", "IdempotencyInProgress", "IdempotencyKeyReused", "IllegalTransition", "MetricsRow",
    "Migration", "NotFound", "Round", "RoundNotFound", "RoundState", "Run", "RunCancelled", "RunExists",
    "RunNotFound", "RunStatus", "RunStore", "SampleGroupPlan", "SchemaVersionError", "StepAlreadyRecorded",
    "StoreError", "StoredResponse", "TERMINAL_EVENTS", "allowed_transitions",
]
