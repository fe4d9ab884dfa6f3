"""The tables as the store's queries see them: the schema after the newest migration.

Migrations (`migrations.py`) create and change the tables; these definitions only describe the result and must
match it (tests/test_store.py compares them with the migrated database).
"""

from __future__ import annotations

import sqlalchemy as sa


metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("rollout_replicas", sa.Integer),
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("reward_workers", sa.Integer),
    sa.Column("influence_workers", sa.Integer),
)

rounds = sa.Table(
    "rounds", metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("round_index", sa.Integer, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("overrides", sa.Text, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
)

events = sa.Table(
    "events", metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("round_index", sa.Integer),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("round_index", sa.Integer, primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.ForeignKeyConstraint(["run_id", "round_index"], ["rounds.run_id", "rounds.round_index"]),
)

superseded_metrics = sa.Table(
    "superseded_metrics", metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("round_index", sa.Integer, primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("superseded_at", sa.Double, nullable=False),
)

ledger = sa.Table(
    "ledger", metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("group_index", sa.Integer, primary_key=True),
    sa.Column("sample", sa.Integer, primary_key=True),
    sa.Column("round_index", sa.Integer, nullable=False),
    sa.Column("prompt_id", sa.Text, nullable=False),
    sa.Column("fate", sa.Text, nullable=False),
    sa.Column("planned", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
)
"""One row per sample a step generated: `fate` is `scheduled` until the step commits (then `planned`: `trained` or
`dropped` with a `reason`) or a redo supersedes it (`superseded`)."""

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.Text),
    sa.Column("claimed_at", sa.Double, nullable=False),
    sa.Column("completed_at", sa.Double),
)
