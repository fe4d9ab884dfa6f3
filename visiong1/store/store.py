"""`RunStore`: runs, rounds, events, metrics, rollout targets and idempotency keys in SQLite or PostgreSQL.

One code path (SQLAlchemy Core) serves both backends. Every write method commits before it returns, so whatever a
caller acknowledges afterwards (an HTTP response, a finished step) is already durable. Several processes may open
the same database at once (the API and each run's coordinator):

- SQLite runs in WAL mode, so readers never wait for the writer, and every write transaction starts with
  `BEGIN IMMEDIATE`: it takes the write lock up front and waits for it up to the busy timeout. (A deferred
  transaction that reads and then writes fails at once with SQLITE_BUSY when another process committed in between;
  the busy timeout cannot help it.)
- PostgreSQL runs at READ COMMITTED; a write that depends on a run's state first locks that run's row
  (`SELECT ... FOR UPDATE`), so writers of one run queue up and writers of different runs do not.

Event ids come from a counter on the run's row, incremented inside the transaction that inserts the event: ids
are gapless per run and commit in id order, so `events_after(last_seen_id)` never skips an event that commits late.

A store is safe to share between threads, not across fork: each process opens its own.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from visiong1.store import schema
from visiong1.store.events import EventKind
from visiong1.store.migrations import MIGRATIONS, Migration, current_version, migrate
from visiong1.store.records import (
    INACTIVE_STATES,
    WORKING_PHASES,
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
    StepAlreadyRecorded,
    StoredResponse,
    StoreError,
    allowed_transitions,
)

DEFAULT_FILENAME = "store.sqlite3"
"""The SQLite file created when `RunStore.open` is given a directory."""
SCHEDULED, TRAINED, DROPPED, SUPERSEDED = "scheduled", "trained", "dropped", "superseded"
"""Sample fates in the ledger."""
LOST_REASON = "coordinator_lost"
"""`run_failed`'s reason when the API's watchdog found the run's coordinator gone or silent."""

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Run ids name directories and Ray actors too: keep them to safe characters."""
MAX_IDEMPOTENCY_KEY_CHARS = 255

# Execution option that marks a connection's transactions as writes (SQLite: BEGIN IMMEDIATE).
_WRITE_OPTION = "visiong1_write"
_INACTIVE = [state.value for state in INACTIVE_STATES]


class RunStore:
    """The run store; open one with `RunStore.open(location)` and close it with `close()` (or `with`)."""

    def __init__(self, engine: Engine):
        self._reads = engine
        self._writes = engine.execution_options(**{_WRITE_OPTION: True})

    @classmethod
    def open(cls, location: str | os.PathLike, *, migrations: tuple[Migration, ...] = MIGRATIONS,
             busy_timeout_s: float = 30.0) -> RunStore:
        """Connect and apply pending migrations.

        `location`: a PostgreSQL URL (`postgresql://user:pass@host:port/db`, also `postgres://`; driven by psycopg 3),
        an `sqlite:///path` URL, a SQLite file path, or an existing directory (the file `store.sqlite3` in it).
        Missing parent directories of a SQLite file are created. `busy_timeout_s`: how long a SQLite writer waits for
        another process's write lock before raising.
        """
        store = cls(_create_engine(location, busy_timeout_s))
        try:
            with store._writes.begin() as conn:
                migrate(conn, migrations)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._reads.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def schema_version(self) -> int:
        """The database's schema version (the newest applied migration)."""
        with self._reads.begin() as conn:
            return current_version(conn)

    # Runs

    def create_run(self, run_id: str, config: Mapping[str, Any]) -> Run:
        """Record a new run with its resolved config. Raises RunExists when the id is taken."""
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} must match {RUN_ID_PATTERN.pattern}")
        now = time.time()
        try:
            with self._writes.begin() as conn:
                conn.execute(schema.runs.insert().values(
                    id=run_id, config=_to_json(dict(config)), status=RunStatus.CREATED.value,
                    cancel_requested=False, rollout_replicas=None, last_event_id=0, created_at=now, updated_at=now,
                    attempt=1))
                # Read back what JSON made of the config (tuples become lists, keys strings).
                return _run(_select_run(conn, run_id))
        except sa.exc.IntegrityError as error:
            # The primary key is the only constraint this insert can violate.
            raise RunExists(f"run {run_id!r} already exists") from error

    def get_run(self, run_id: str) -> Run:
        with self._reads.begin() as conn:
            return _run(_select_run(conn, run_id))

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[Run]:
        """Runs, newest first."""
        _check_positive("limit", limit)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset!r}")
        query = (sa.select(schema.runs).order_by(schema.runs.c.created_at.desc(), schema.runs.c.id.desc())
                 .limit(limit).offset(offset))
        with self._reads.begin() as conn:
            return [_run(row) for row in conn.execute(query)]

    def request_run_cancel(self, run_id: str) -> Run:
        """Set the run's cancel flag (idempotent). The coordinator stops the active round at its next step
        boundary; from now on no round may start or resume."""
        with self._writes.begin() as conn:
            _lock_run(conn, run_id)
            conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(cancel_requested=True))
            _refresh_run_status(conn, run_id, time.time())
            return _run(_select_run(conn, run_id))

    def heartbeat(self, run_id: str) -> None:
        """Record that the run's coordinator is alive now (the API's watchdog reads `Run.heartbeat_at`)."""
        with self._writes.begin() as conn:
            _select_run(conn, run_id)
            conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(heartbeat_at=time.time()))

    def runs_with_status(self, *statuses: RunStatus) -> list[Run]:
        """Every run whose status is one of `statuses`, oldest first."""
        query = (sa.select(schema.runs).where(schema.runs.c.status.in_([RunStatus(s).value for s in statuses]))
                 .order_by(schema.runs.c.created_at))
        with self._reads.begin() as conn:
            return [_run(row) for row in conn.execute(query)]

    def mark_coordinator_lost(self, run_id: str, reason: str) -> bool:
        """Fail the run's active round with error `coordinator_lost: <reason>` and write `run_failed` (reason
        `coordinator_lost`) in one transaction. False when no round is active (nothing to mark, or another API
        replica marked it first)."""
        error = f"{LOST_REASON}: {reason}"
        now = time.time()
        with self._writes.begin() as conn:
            _lock_run(conn, run_id)
            active = conn.execute(_active_round_query(run_id)).one_or_none()
            if active is None:
                return False
            conn.execute(schema.rounds.update()
                         .where(schema.rounds.c.run_id == run_id, schema.rounds.c.round_index == active.round_index)
                         .values(state=RoundState.FAILED.value, error=error, updated_at=now, finished_at=now))
            _append_event(conn, run_id, EventKind.ROUND_STATE.value, active.round_index, now,
                          {"round": active.round_index, "state": RoundState.FAILED.value, "previous": active.state,
                           "error": error})
            _append_event(conn, run_id, EventKind.RUN_FAILED.value, active.round_index, now,
                          {"error": error, "reason": LOST_REASON})
            _refresh_run_status(conn, run_id, now)
            return True

    def set_rollout_replicas(self, run_id: str, replicas: int | None) -> Run:
        """Set the run's rollout replica count (at least 1), or clear it (None: the config's count, or its
        autoscale policy, sizes the group again); its coordinator applies it."""
        return self._set_count(run_id, "rollout_replicas", replicas)

    def set_reward_workers(self, run_id: str, workers: int | None) -> Run:
        """Set the run's reward worker count (at least 1), or clear it (None: back to the config's); its
        coordinator applies it at its next step boundary."""
        return self._set_count(run_id, "reward_workers", workers)

    def set_influence_workers(self, run_id: str, workers: int | None) -> Run:
        """Set the run's influence worker count (at least 1), or clear it (None: back to the config's); its
        coordinator applies it at its next step boundary or round start."""
        return self._set_count(run_id, "influence_workers", workers)

    def _set_count(self, run_id: str, column: str, count: int | None) -> Run:
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"{column.replace('_', ' ')} must be an integer >= 1 or None, got {count!r}")
        with self._writes.begin() as conn:
            _lock_run(conn, run_id)
            conn.execute(schema.runs.update().where(schema.runs.c.id == run_id)
                         .values({column: count, "updated_at": time.time()}))
            return _run(_select_run(conn, run_id))

    # Rounds

    def start_round(self, run_id: str, overrides: Mapping[str, Any] | None = None) -> Round:
        """Add the run's next round in state `pending` and write its `round_state` event.

        Raises ActiveRoundExists when another round of the run is active, RunCancelled after a cancel request.
        """
        now = time.time()
        with self._writes.begin() as conn:
            run = _lock_run(conn, run_id)
            if run.cancel_requested:
                raise RunCancelled(f"run {run_id!r} was cancelled: no new round may start")
            _refuse_second_active_round(conn, run_id)
            last_index = conn.scalar(sa.select(sa.func.max(schema.rounds.c.round_index))
                                     .where(schema.rounds.c.run_id == run_id))
            index = 0 if last_index is None else last_index + 1
            conn.execute(schema.rounds.insert().values(
                run_id=run_id, round_index=index, state=RoundState.PENDING.value,
                overrides=_to_json(dict(overrides or {})), cancel_requested=False, error=None, created_at=now,
                started_at=None, updated_at=now, finished_at=None))
            _append_event(conn, run_id, EventKind.ROUND_STATE.value, index, now,
                          {"round": index, "state": RoundState.PENDING.value, "previous": None, "error": None})
            _refresh_run_status(conn, run_id, now)
            return _round(_select_round(conn, run_id, index))

    def transition_round(self, run_id: str, index: int, new_state: RoundState | str,
                         error: str | None = None) -> Round:
        """Move a round to `new_state` and write its `round_state` event in the same transaction.

        `error` (why, naming the culprit) is required for `failed` and refused otherwise. Raises IllegalTransition
        for a move `allowed_transitions` does not list; resuming a failed round raises ActiveRoundExists when
        another round is active and RunCancelled after a cancel request.
        """
        new_state = RoundState(new_state)
        if (new_state is RoundState.FAILED) != (error is not None):
            raise ValueError(f"error text is required for {RoundState.FAILED.value!r} and only for it "
                             f"(got state {new_state.value!r}, error {error!r})")
        now = time.time()
        with self._writes.begin() as conn:
            run = _lock_run(conn, run_id)
            current = _round(_select_round(conn, run_id, index))
            if new_state not in allowed_transitions(current.state):
                allowed = sorted(state.value for state in allowed_transitions(current.state))
                raise IllegalTransition(f"round {index} of run {run_id!r}: {current.state.value} -> "
                                        f"{new_state.value} is not allowed (allowed: {allowed or 'none, final'})")
            if current.state is RoundState.FAILED and new_state is not RoundState.CANCELLED:
                if run.cancel_requested:
                    raise RunCancelled(f"run {run_id!r} was cancelled: round {index} may not resume")
                _refuse_second_active_round(conn, run_id)
            ends = new_state in INACTIVE_STATES
            starts = current.started_at is None and new_state in WORKING_PHASES
            conn.execute(schema.rounds.update()
                         .where(schema.rounds.c.run_id == run_id, schema.rounds.c.round_index == index)
                         .values(state=new_state.value, error=error, updated_at=now,
                                 started_at=now if starts else current.started_at,
                                 finished_at=now if ends else None))
            _append_event(conn, run_id, EventKind.ROUND_STATE.value, index, now,
                          {"round": index, "state": new_state.value, "previous": current.state.value,
                           "error": error})
            _refresh_run_status(conn, run_id, now)
            return _round(_select_round(conn, run_id, index))

    def request_round_cancel(self, run_id: str, index: int) -> Round:
        """Set an active round's cancel flag; the coordinator stops it at its next step boundary (or, for a round
        still `pending`, before starting it). Raises Conflict when the round has already ended."""
        with self._writes.begin() as conn:
            _lock_run(conn, run_id)
            current = _round(_select_round(conn, run_id, index))
            if not current.active:
                raise Conflict(f"round {index} of run {run_id!r} already ended ({current.state.value})")
            conn.execute(schema.rounds.update()
                         .where(schema.rounds.c.run_id == run_id, schema.rounds.c.round_index == index)
                         .values(cancel_requested=True, updated_at=time.time()))
            return _round(_select_round(conn, run_id, index))

    def get_round(self, run_id: str, index: int) -> Round:
        with self._reads.begin() as conn:
            return _round(_select_round(conn, run_id, index))

    def list_rounds(self, run_id: str) -> list[Round]:
        """The run's rounds by index."""
        with self._reads.begin() as conn:
            _select_run(conn, run_id)
            rows = conn.execute(sa.select(schema.rounds).where(schema.rounds.c.run_id == run_id)
                                .order_by(schema.rounds.c.round_index))
            return [_round(row) for row in rows]

    def active_round(self, run_id: str) -> Round | None:
        with self._reads.begin() as conn:
            _select_run(conn, run_id)
            row = conn.execute(_active_round_query(run_id)).one_or_none()
            return None if row is None else _round(row)

    # Events

    def append_event(self, run_id: str, kind: str, payload: Mapping[str, Any] | None = None,
                     round_index: int | None = None) -> Event:
        """Commit one event with the run's next id and return it."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
        with self._writes.begin() as conn:
            if round_index is not None:
                _select_round(conn, run_id, round_index)
            return _append_event(conn, run_id, kind, round_index, time.time(), dict(payload or {}))

    def events_after(self, run_id: str, after_id: int = 0, limit: int = 100) -> list[Event]:
        """The run's events with id > `after_id` in id order, at most `limit` (SSE `Last-Event-ID` resumes here)."""
        _check_positive("limit", limit)
        query = (sa.select(schema.events)
                 .where(schema.events.c.run_id == run_id, schema.events.c.id > after_id)
                 .order_by(schema.events.c.id).limit(limit))
        with self._reads.begin() as conn:
            _select_run(conn, run_id)
            return [_event(row) for row in conn.execute(query)]

    # Metrics

    def record_metrics(self, run_id: str, round_index: int, step: int, metrics: Mapping[str, Any]) -> Event:
        """Commit one step's metrics and its `step` event together; return the event.

        The round must be active. Raises StepAlreadyRecorded when this step was recorded before (a resumed
        coordinator must continue after `last_committed_step`).
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        metrics = dict(metrics)
        now = time.time()
        with self._writes.begin() as conn:
            _lock_run(conn, run_id)
            current = _round(_select_round(conn, run_id, round_index))
            if not current.active:
                raise Conflict(f"round {round_index} of run {run_id!r} is {current.state.value}: "
                               "metrics go only to an active round")
            if _step_exists(conn, run_id, round_index, step):
                raise StepAlreadyRecorded(f"step {step} of round {round_index} of run {run_id!r} is already "
                                          "recorded")
            conn.execute(schema.metrics.insert().values(run_id=run_id, round_index=round_index, step=step,
                                                        metrics=_to_json(metrics), created_at=now))
            # The step's open samples meet their planned fate with it; a redo superseded those of earlier attempts,
            # except for a step saved and then committed by the resume (its samples are of the attempt it died in).
            ledger = schema.ledger.c
            conn.execute(schema.ledger.update().where(ledger.run_id == run_id, ledger.step == step,
                                                      ledger.fate == SCHEDULED).values(fate=ledger.planned))
            return _append_event(conn, run_id, EventKind.STEP.value, round_index, now,
                                 {"round": round_index, "step": step, "metrics": metrics})

    def metrics_for(self, run_id: str, round_index: int | None = None) -> list[MetricsRow]:
        """The run's metrics rows (of one round, or all) ordered by round and step."""
        query = sa.select(schema.metrics).where(schema.metrics.c.run_id == run_id)
        if round_index is not None:
            query = query.where(schema.metrics.c.round_index == round_index)
        query = query.order_by(schema.metrics.c.round_index, schema.metrics.c.step)
        with self._reads.begin() as conn:
            _select_run(conn, run_id)
            return [MetricsRow(row.run_id, row.round_index, row.step, json.loads(row.metrics),
                               row.created_at) for row in conn.execute(query)]

    def supersede_steps(self, run_id: str, from_step: int) -> list[tuple[int, int]]:
        """Supersede everything of steps >= `from_step` (a restart redoes them): their metrics rows move to
        `superseded_metrics`, their ledger rows become `superseded`, the run's attempt counter advances and a
        `steps_superseded` event is written, in one transaction. Returns the (round, step) pairs of the metrics
        rows moved, in order; nothing is written when no row of those steps exists."""
        metrics, ledger = schema.metrics.c, schema.ledger.c
        moved = (metrics.run_id == run_id, metrics.step >= from_step)
        open_samples = (ledger.run_id == run_id, ledger.step >= from_step, ledger.fate != SUPERSEDED)
        now = time.time()
        with self._writes.begin() as conn:
            attempt = _lock_run(conn, run_id).attempt
            rows = conn.execute(sa.select(schema.metrics).where(*moved)
                                .order_by(metrics.round_index, metrics.step)).all()
            samples = conn.scalar(sa.select(sa.func.count()).select_from(schema.ledger).where(*open_samples))
            if not rows and not samples:
                return []
            if rows:
                conn.execute(schema.superseded_metrics.insert(), [
                    {"run_id": run_id, "attempt": attempt, "round_index": row.round_index, "step": row.step,
                     "metrics": row.metrics, "created_at": row.created_at, "superseded_at": now} for row in rows])
            conn.execute(schema.metrics.delete().where(*moved))
            conn.execute(schema.ledger.update().where(*open_samples).values(fate=SUPERSEDED))
            conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(attempt=attempt + 1))
            steps = [(row.round_index, row.step) for row in rows]
            _append_event(conn, run_id, EventKind.STEPS_SUPERSEDED.value, rows[0].round_index if rows else None, now,
                          {"from_step": from_step, "attempt": attempt, "steps": [step for _, step in steps],
                           "samples": samples})
            return steps

    # Sample ledger

    def schedule_samples(self, run_id: str, round_index: int, step: int, groups: list[SampleGroupPlan]) -> int:
        """Enter a step's generated samples in the ledger as `scheduled` under the run's current attempt, each with
        its planned fate (`trained`, or `dropped` with a reason) that `record_metrics` of the step makes real.
        Returns the number of samples entered."""
        with self._writes.begin() as conn:
            attempt = _lock_run(conn, run_id).attempt
            _select_round(conn, run_id, round_index)
            rows = [{"run_id": run_id, "step": step, "attempt": attempt, "group_index": index, "sample": sample,
                     "round_index": round_index, "prompt_id": group.prompt_id, "fate": SCHEDULED,
                     "planned": TRAINED if reason is None else DROPPED, "reason": reason}
                    for index, group in enumerate(groups) for sample, reason in enumerate(group.drop_reasons)]
            if rows:
                conn.execute(schema.ledger.insert(), rows)
            return len(rows)

    def ledger_summary(self, run_id: str, round_index: int) -> dict[str, Any]:
        """The round's samples by fate: `trained`, `dropped` (by reason), `superseded`, `scheduled` (in flight while
        the round is active) and `lost` (still scheduled after the round ended: the target is 0)."""
        ledger = schema.ledger.c
        query = (sa.select(ledger.fate, ledger.reason, sa.func.count()).where(
            ledger.run_id == run_id, ledger.round_index == round_index).group_by(ledger.fate, ledger.reason))
        with self._reads.begin() as conn:
            round_ = _round(_select_round(conn, run_id, round_index))
            counts = conn.execute(query).all()
        by_fate = {fate: sum(n for f, _, n in counts if f == fate)
                   for fate in (TRAINED, DROPPED, SUPERSEDED, SCHEDULED)}
        return {"round": round_index, "state": round_.state.value, "samples": sum(n for *_, n in counts),
                "trained": by_fate[TRAINED], "superseded": by_fate[SUPERSEDED],
                "dropped": {reason: n for fate, reason, n in counts if fate == DROPPED},
                "in_flight": by_fate[SCHEDULED] if round_.active else 0,
                "lost": 0 if round_.active else by_fate[SCHEDULED]}

    def superseded_for(self, run_id: str) -> list[MetricsRow]:
        """Metrics rows a redo replaced, by attempt, round and step."""
        table = schema.superseded_metrics.c
        query = (sa.select(schema.superseded_metrics).where(table.run_id == run_id)
                 .order_by(table.attempt, table.round_index, table.step))
        with self._reads.begin() as conn:
            _select_run(conn, run_id)
            return [MetricsRow(row.run_id, row.round_index, row.step, json.loads(row.metrics), row.created_at)
                    for row in conn.execute(query)]

    def last_committed_step(self, run_id: str, round_index: int) -> int | None:
        """The highest step recorded for the round; None before its first step."""
        with self._reads.begin() as conn:
            _select_round(conn, run_id, round_index)
            return conn.scalar(sa.select(sa.func.max(schema.metrics.c.step))
                               .where(schema.metrics.c.run_id == run_id,
                                      schema.metrics.c.round_index == round_index))

    # Idempotency keys

    def claim_idempotent(self, key: str, request_hash: str, *, stale_after_s: float = 300.0
                         ) -> StoredResponse | None:
        """Claim `key` for a request before executing it.

        Returns None when the caller now holds the key (execute, then `remember_idempotent` or, on failure,
        `release_idempotent`), or the stored response when this request was answered before (replay it).
        Raises IdempotencyKeyReused when the key was used with another request hash, IdempotencyInProgress while
        another holder runs. A claim older than `stale_after_s` without a response counts as abandoned (its
        holder died) and passes to the caller.
        """
        _check_key(key)
        now = time.time()
        table = schema.idempotency_keys
        try:
            with self._writes.begin() as conn:
                row = conn.execute(sa.select(table).where(table.c.key == key).with_for_update()).one_or_none()
                if row is None:
                    conn.execute(table.insert().values(key=key, request_hash=request_hash, status_code=None,
                                                       response=None, claimed_at=now, completed_at=None))
                    return None
                if row.request_hash != request_hash:
                    raise IdempotencyKeyReused(f"idempotency key {key!r} was used with a different request")
                if row.status_code is not None:
                    return StoredResponse(key, row.request_hash, row.status_code, json.loads(row.response))
                if now - row.claimed_at <= stale_after_s:
                    raise IdempotencyInProgress(f"a request with idempotency key {key!r} is still running")
                conn.execute(table.update().where(table.c.key == key).values(claimed_at=now))
                return None
        except sa.exc.IntegrityError as error:
            # Another process inserted the same key between our select and insert.
            raise IdempotencyInProgress(f"a request with idempotency key {key!r} is still running") from error

    def remember_idempotent(self, key: str, request_hash: str, status_code: int, body: Any) -> StoredResponse:
        """Store the response of a request whose key the caller claimed; later claims of the key replay it."""
        table = schema.idempotency_keys
        with self._writes.begin() as conn:
            row = _claimed_key(conn, key, request_hash)
            conn.execute(table.update().where(table.c.key == key)
                         .values(status_code=status_code, response=_to_json(body), completed_at=time.time()))
        return StoredResponse(key, row.request_hash, status_code, body)

    def release_idempotent(self, key: str, request_hash: str) -> None:
        """Drop the caller's claim of `key` without a response (the request failed), so a retry may run."""
        table = schema.idempotency_keys
        with self._writes.begin() as conn:
            _claimed_key(conn, key, request_hash)
            conn.execute(table.delete().where(table.c.key == key))


def _create_engine(location: str | os.PathLike, busy_timeout_s: float) -> Engine:
    text = os.fspath(location)
    if "://" not in text:
        path = Path(text)
        if path.is_dir():
            path = path / DEFAULT_FILENAME
        text = f"sqlite:///{path}"
    url = sa.make_url(text)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend == "postgresql":
        # pre_ping: a pooled connection may have been cut by a database restart since its last use.
        return sa.create_engine(url, pool_pre_ping=True)
    if backend != "sqlite":
        raise ValueError(f"run store supports SQLite and PostgreSQL, not {backend!r} ({url.render_as_string()})")
    if url.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite store would not be shared between connections: give a file path")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s})
    _configure_sqlite(engine, busy_timeout_s)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # Python's sqlite3 would otherwise start transactions itself, and only before DML; we emit BEGIN below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = _enable_wal(cursor, deadline=time.monotonic() + busy_timeout_s)
        if mode != "wal":
            raise StoreError(f"SQLite refused WAL mode (journal mode stays {mode!r}); "
                             "the store needs it for concurrent readers and writers")
        # FULL: a commit is on disk before it returns, even across power loss ("persisted before acknowledged").
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _enable_wal(cursor: sqlite3.Cursor, deadline: float) -> str:
    """Switch the database to WAL (a no-op once it is: the mode is kept in the file); return the mode now in force.

    Switching a new database needs an exclusive lock, and SQLite fails at once instead of calling the busy handler
    when another process opens the same new file at that moment: retry until the deadline.
    """
    while True:
        try:
            return cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "database is locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValueError(f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, got {key!r}")


def _select_run(conn: Connection, run_id: str) -> Row:
    row = conn.execute(sa.select(schema.runs).where(schema.runs.c.id == run_id)).one_or_none()
    if row is None:
        raise RunNotFound(f"no run {run_id!r}")
    return row


def _lock_run(conn: Connection, run_id: str) -> Row:
    """The run's row, locked until the transaction ends (PostgreSQL; SQLite's write lock already covers it)."""
    row = conn.execute(sa.select(schema.runs).where(schema.runs.c.id == run_id).with_for_update()).one_or_none()
    if row is None:
        raise RunNotFound(f"no run {run_id!r}")
    return row


def _select_round(conn: Connection, run_id: str, index: int) -> Row:
    row = conn.execute(sa.select(schema.rounds).where(schema.rounds.c.run_id == run_id,
                                                      schema.rounds.c.round_index == index)).one_or_none()
    if row is None:
        _select_run(conn, run_id)
        raise RoundNotFound(f"run {run_id!r} has no round {index}")
    return row


def _active_round_query(run_id: str) -> sa.Select:
    return sa.select(schema.rounds).where(schema.rounds.c.run_id == run_id, schema.rounds.c.state.not_in(_INACTIVE))


def _refuse_second_active_round(conn: Connection, run_id: str) -> None:
    active = conn.execute(_active_round_query(run_id)).one_or_none()
    if active is not None:
        raise ActiveRoundExists(f"run {run_id!r} already has an active round: {active.round_index} "
                                f"({active.state})")


def _refresh_run_status(conn: Connection, run_id: str, now: float) -> None:
    """Derive the run's status from its rounds and cancel flag (see RunStatus) and store it."""
    cancel_requested = conn.scalar(sa.select(schema.runs.c.cancel_requested).where(schema.runs.c.id == run_id))
    has_active = conn.execute(_active_round_query(run_id)).first() is not None
    latest = conn.scalar(sa.select(schema.rounds.c.state).where(schema.rounds.c.run_id == run_id)
                         .order_by(schema.rounds.c.round_index.desc()).limit(1))
    if has_active:
        status = RunStatus.CANCELLING if cancel_requested else RunStatus.RUNNING
    elif cancel_requested:
        status = RunStatus.CANCELLED
    elif latest is None:
        status = RunStatus.CREATED
    elif latest == RoundState.FAILED.value:
        status = RunStatus.FAILED
    else:
        status = RunStatus.IDLE
    conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(status=status.value, updated_at=now))


def _append_event(conn: Connection, run_id: str, kind: str, round_index: int | None, now: float,
                  payload: dict[str, Any]) -> Event:
    # The counter update locks the run's row until commit, so ids of one run commit in order (module docstring).
    event_id = conn.scalar(schema.runs.update().where(schema.runs.c.id == run_id)
                           .values(last_event_id=schema.runs.c.last_event_id + 1)
                           .returning(schema.runs.c.last_event_id))
    if event_id is None:
        raise RunNotFound(f"no run {run_id!r}")
    conn.execute(schema.events.insert().values(run_id=run_id, id=event_id, kind=kind, round_index=round_index,
                                               payload=_to_json(payload), created_at=now))
    return Event(run_id, event_id, kind, round_index, payload, now)


def _step_exists(conn: Connection, run_id: str, round_index: int, step: int) -> bool:
    return conn.scalar(sa.select(schema.metrics.c.step).where(
        schema.metrics.c.run_id == run_id, schema.metrics.c.round_index == round_index,
        schema.metrics.c.step == step)) is not None


def _claimed_key(conn: Connection, key: str, request_hash: str) -> Row:
    """The key's row, which must be an unanswered claim of the same request."""
    table = schema.idempotency_keys
    row = conn.execute(sa.select(table).where(table.c.key == key).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"idempotency key {key!r} is not claimed")
    if row.request_hash != request_hash:
        raise IdempotencyKeyReused(f"idempotency key {key!r} was used with a different request")
    if row.status_code is not None:
        raise Conflict(f"idempotency key {key!r} already has a response")
    return row


def _to_json(value: Any) -> str:
    """Python's JSON: non-finite floats (a NaN loss) round-trip; what json cannot encode (numpy scalars other than
    float64, tensors) raises TypeError before anything is written."""
    return json.dumps(value, separators=(",", ":"))


def _run(row: Row) -> Run:
    return Run(id=row.id, config=json.loads(row.config), status=RunStatus(row.status),
               cancel_requested=bool(row.cancel_requested), rollout_replicas=row.rollout_replicas,
               last_event_id=row.last_event_id, created_at=row.created_at, updated_at=row.updated_at,
               heartbeat_at=row.heartbeat_at, attempt=row.attempt, reward_workers=row.reward_workers,
               influence_workers=row.influence_workers)


def _round(row: Row) -> Round:
    return Round(run_id=row.run_id, index=row.round_index, state=RoundState(row.state),
                 overrides=json.loads(row.overrides), cancel_requested=bool(row.cancel_requested), error=row.error,
                 created_at=row.created_at, started_at=row.started_at, updated_at=row.updated_at,
                 finished_at=row.finished_at)


def _event(row: Row) -> Event:
    return Event(run_id=row.run_id, id=row.id, kind=row.kind, round_index=row.round_index,
                 payload=json.loads(row.payload), created_at=row.created_at)
