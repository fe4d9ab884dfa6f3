"""Numbered schema migrations, applied in order when a store opens.

Each migration is frozen once released: it builds its own table objects rather than importing `schema.py`, so a
database created today and one upgraded from version 1 end with the same tables. To change the schema, append a
`Migration` with the next number and update `schema.py` to the result.

`schema_version` holds one row per applied migration. `migrate` runs all pending migrations in one transaction
under a lock (SQLite's write lock; a PostgreSQL advisory lock), so processes opening the same database at once
apply each migration exactly once, and a failed migration leaves the database at its previous version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from visiong1.store.records import INACTIVE_STATES, SchemaVersionError

# Any constant works; it only has to be the same in every process that migrates this database.
POSTGRES_MIGRATION_LOCK = 0x76697367  # "visg"

schema_version = sa.Table(
    "schema_version", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]
    """Changes the schema inside the caller's transaction; never commits."""


def _create_tables_v1(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table(
        "runs", meta,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("rollout_replicas", sa.Integer),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    rounds = sa.Table(
        "rounds", meta,
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("round_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("overrides", sa.Text, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
    )
    # One active round per run, enforced by the database itself so that no interleaving of writers can break it.
    inactive = ", ".join(f"'{state.value}'" for state in INACTIVE_STATES)
    active_only = sa.text(f"state NOT IN ({inactive})")
    sa.Index("rounds_one_active_per_run", rounds.c.run_id, unique=True,
             sqlite_where=active_only, postgresql_where=active_only)
    sa.Table(
        "events", meta,
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("round_index", sa.Integer),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    sa.Table(
        "metrics", meta,
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("round_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.ForeignKeyConstraint(["run_id", "round_index"], ["rounds.run_id", "rounds.round_index"]),
    )
    sa.Table(
        "idempotency_keys", meta,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", sa.Text),
        sa.Column("claimed_at", sa.Double, nullable=False),
        sa.Column("completed_at", sa.Double),
    )
    meta.create_all(conn)


def _add_recovery_tables_v2(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN heartbeat_at FLOAT"))
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1"))
    meta = sa.MetaData()
    sa.Table("runs", meta, sa.Column("id", sa.Text, primary_key=True))  # the key's target; exists, not created
    sa.Table(
        "superseded_metrics", meta,
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("round_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("superseded_at", sa.Double, nullable=False),
    )
    sa.Table(
        "ledger", meta,
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("group_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sample", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("round_index", sa.Integer, nullable=False),
        sa.Column("prompt_id", sa.Text, nullable=False),
        sa.Column("fate", sa.Text, nullable=False),
        sa.Column("planned", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
    )
    meta.create_all(conn)


def _add_reward_workers_v3(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN reward_workers INTEGER"))


def _add_influence_workers_v4(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN influence_workers INTEGER"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, rounds, events, metrics, idempotency keys", _create_tables_v1),
    Migration(2, "coordinator heartbeats, run attempts, superseded metrics rows, the sample ledger",
              _add_recovery_tables_v2),
    Migration(3, "the reward worker count set over REST", _add_reward_workers_v3),
    Migration(4, "the influence worker count set over REST", _add_influence_workers_v4),
)


def current_version(conn: Connection) -> int:
    """The newest applied migration's number; 0 for a database without the version table."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0


def migrate(conn: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations newer than the database inside the caller's write transaction; return the version.

    Raises SchemaVersionError when the database is newer than the newest of `migrations` (a newer program
    wrote it: running older code against it could corrupt it).
    """
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, got {numbers}")
    if conn.dialect.name == "postgresql":
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogs; serialize migrators.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(POSTGRES_MIGRATION_LOCK)))
    schema_version.create(conn, checkfirst=True)
    version = current_version(conn)
    if version > len(migrations):
        raise SchemaVersionError(f"database schema version {version} is newer than this program's "
                                 f"{len(migrations)}: upgrade visiong1 before opening it")
    for migration in migrations[version:]:
        migration.apply(conn)
        conn.execute(schema_version.insert().values(version=migration.version, description=migration.description,
                                                    applied_at=time.time()))
    return len(migrations)
