"""Rows the run store returns, the round state machine, and the store's exceptions.

Rows are frozen dataclasses of plain JSON-able values (timestamps are Unix seconds), so the API can return them
as they are and the coordinator can pass them through Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class RoundState(str, Enum):
    """States of one round; the working phases run in declaration order, from `pending` to `done`."""

    PENDING = "pending"
    SCORING = "scoring"
    SELECTING = "selecting"
    TRAINING = "training"
    EVALUATING = "evaluating"
    CHECKPOINTING = "checkpointing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


PHASE_ORDER = (RoundState.PENDING, RoundState.SCORING, RoundState.SELECTING, RoundState.TRAINING,
               RoundState.EVALUATING, RoundState.CHECKPOINTING, RoundState.DONE)
WORKING_PHASES = PHASE_ORDER[1:-1]
INACTIVE_STATES = (RoundState.DONE, RoundState.FAILED, RoundState.CANCELLED)
"""A round in any other state is the run's active round (at most one per run)."""


def allowed_transitions(state: RoundState) -> frozenset[RoundState]:
    """Where a round in `state` may go next.

    - A working phase (and `pending`) moves forward only, possibly skipping phases (an ablation without selection
      goes from `pending` to `training`), or ends `failed` or `cancelled`.
    - `failed` may resume into any working phase (the coordinator resumes from its last checkpoint) or be cancelled.
    - `done` and `cancelled` are final.
    """
    if state in (RoundState.DONE, RoundState.CANCELLED):
        return frozenset()
    if state is RoundState.FAILED:
        return frozenset(WORKING_PHASES) | {RoundState.CANCELLED}
    later = PHASE_ORDER[PHASE_ORDER.index(state) + 1:]
    return frozenset(later) | {RoundState.FAILED, RoundState.CANCELLED}


class RunStatus(str, Enum):
    """A run's status, derived by the store from its rounds and cancel flag whenever either changes."""

    CREATED = "created"
    """No round started yet."""
    RUNNING = "running"
    """A round is active."""
    CANCELLING = "cancelling"
    """Cancel requested; the active round has not stopped yet."""
    IDLE = "idle"
    """The latest round ended `done` or `cancelled`; the next round may start."""
    FAILED = "failed"
    """The latest round failed; it may resume, or a new round may start."""
    CANCELLED = "cancelled"
    """Cancel requested and no round active: final, no round may start."""


@dataclass(frozen=True)
class Run:
    id: str
    config: dict[str, Any]
    """The resolved run config as JSON."""
    status: RunStatus
    cancel_requested: bool
    rollout_replicas: int | None
    """Rollout replica target set through the API; None means the config's own count."""
    last_event_id: int
    """Id of the newest event of this run (0 before the first)."""
    created_at: float
    updated_at: float
    heartbeat_at: float | None = None
    """When the run's coordinator last reported alive (None before its first heartbeat)."""
    attempt: int = 1
    """1 + how many times a restart superseded steps of the run (ledger rows are filed under it)."""
    reward_workers: int | None = None
    """Reward worker count set through the API; None means the config's own count."""
    influence_workers: int | None = None
    """Influence worker count set through the API; None means the config's own count."""


@dataclass(frozen=True)
class Round:
    run_id: str
    index: int
    """0, 1, 2, ... within the run."""
    state: RoundState
    overrides: dict[str, Any]
    """Per-round overrides (selection, steps) as given when the round started."""
    cancel_requested: bool
    error: str | None
    """Why the round failed (names the culprit); None unless `state` is `failed`."""
    created_at: float
    started_at: float | None
    """When the round first left `pending`."""
    updated_at: float
    finished_at: float | None
    """When the round entered `done`, `failed` or `cancelled` (cleared when a failed round resumes)."""

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES


@dataclass(frozen=True)
class Event:
    run_id: str
    id: int
    """1, 2, 3, ... per run, in commit order: a reader that has seen id N never later finds a new id below N."""
    kind: str
    round_index: int | None
    payload: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class MetricsRow:
    run_id: str
    round_index: int
    step: int
    metrics: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class SampleGroupPlan:
    """One generated group as the ledger schedules it: per sample, None (it trains) or why it is dropped."""

    prompt_id: str
    drop_reasons: list[str | None]


@dataclass(frozen=True)
class StoredResponse:
    """The response first given to a POST with an idempotency key, replayed for a retry of the same request."""

    key: str
    request_hash: str
    status_code: int
    body: Any


class StoreError(Exception):
    """Base of the run store's own errors."""


class NotFound(StoreError, KeyError):
    """An unknown run or round (HTTP 404)."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class RunNotFound(NotFound):
    pass


class RoundNotFound(NotFound):
    pass


class Conflict(StoreError):
    """The request contradicts the current state (HTTP 409)."""


class RunExists(Conflict):
    pass


class ActiveRoundExists(Conflict):
    """The run already has an active round; only one may be active per run."""


class RunCancelled(Conflict):
    """Cancel was requested for the run: no round may start or resume."""


class IllegalTransition(Conflict):
    """A round state change that `allowed_transitions` does not list."""


class StepAlreadyRecorded(Conflict):
    """Metrics of this (run, round, step) were committed before: a step must never be done twice."""


class IdempotencyInProgress(Conflict):
    """Another request holding the same idempotency key has not finished yet."""


class IdempotencyKeyReused(StoreError, ValueError):
    """The idempotency key was used before with a different request body (HTTP 422)."""


class SchemaVersionError(StoreError):
    """The database was migrated by a newer program than this one."""
