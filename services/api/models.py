"""Request and response bodies of the REST API (pydantic), built from the run store's rows."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from visiong1.config import InfluenceConfig, RewardConfig, RolloutConfig, RoundConfig
from visiong1.store import Event, Round, RoundState, Run, RunStatus

INT32_MAX = 2**31 - 1
"""Largest round index or step the store holds (32-bit columns)."""
INT64_MAX = 2**63 - 1
"""Largest event id or row offset the store takes (64-bit)."""
MAX_DEPTH = 32
"""Deepest nesting a request body may have: config trees are a few levels deep, and deeper input only spends the
recursion that parsing and validating it need."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def malformed(value: Any) -> str | None:
    """What makes a parsed JSON value unusable (nesting past MAX_DEPTH, or a string with a lone surrogate, which
    JSON's `\\ud800` escapes can carry but Unicode text cannot), or None."""
    pending = [(value, 1)]
    while pending:  # iterative: the input's depth is what is in question
        node, depth = pending.pop()
        if isinstance(node, str) and not node.isascii() and _SURROGATE.search(node):
            return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
    return None


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _well_formed(cls, value: Any) -> Any:
        """Every field, before its own validation: refused (422 at that field) when `malformed`."""
        problem = malformed(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class RunCreate(Body):
    config: dict[str, Any] = Field(default_factory=dict)
    """Sparse run config tree merged over the server's config."""
    overrides: list[str] = Field(default_factory=list, max_length=1000)
    """Dotted overrides applied last, e.g. `round.steps=5`."""


class RoundCreate(Body):
    overrides: dict[str, Any] = Field(default_factory=dict, max_length=100)
    """Dotted keys (`round.steps`, `round.prompts_per_step`, `selection.*`) to JSON values, for this round only."""


class ReplicasUpdate(Body):
    replicas: int | None = Field(ge=1, le=4096)
    """The replica count to hold; null clears a count set earlier (as DELETE does)."""


class WorkersUpdate(Body):
    workers: int | None = Field(ge=1, le=4096)
    """The worker count to hold; null clears a count set earlier (as DELETE does)."""


class Pool(str, Enum):
    """The worker pools of a run that scale over REST (rollout has its own route: replicas and autoscale)."""

    REWARD = "reward"
    INFLUENCE = "influence"


POOL_CONFIG = {Pool.REWARD: (("reward",), RewardConfig), Pool.INFLUENCE: (("selection", "influence"), InfluenceConfig)}
"""Where each pool's configured `workers` lives in a run config."""


class PoolWorkers(BaseModel):
    run_id: str
    pool: Pool
    workers: int
    """The count set over REST (the run's coordinator applies it at its next step boundary), else the config's."""
    configured: int
    """`workers` of the pool's config section (`reward`, `selection.influence`)."""
    source: str
    """`api` while a count set over REST holds, else `config`."""

    @classmethod
    def of(cls, run: Run, pool: Pool) -> PoolWorkers:
        configured = pool_setting(run, pool, "workers")
        held = getattr(run, f"{pool.value}_workers")
        return cls(run_id=run.id, pool=pool, workers=configured if held is None else held, configured=configured,
                   source="config" if held is None else "api")


class RoundOut(BaseModel):
    run_id: str
    index: int
    state: RoundState
    overrides: dict[str, Any]
    cancel_requested: bool
    error: str | None
    created_at: float
    started_at: float | None
    updated_at: float
    finished_at: float | None
    steps: int
    """Steps this round trains (its override of `round.steps`, else the run's)."""
    last_step: int | None = None
    """Highest step committed in this round (steps count globally across the run); None before the first."""

    @classmethod
    def of(cls, round_: Round, run_steps: int, last_step: int | None = None) -> RoundOut:
        return cls(run_id=round_.run_id, index=round_.index, state=round_.state, overrides=round_.overrides,
                   cancel_requested=round_.cancel_requested, error=round_.error, created_at=round_.created_at,
                   started_at=round_.started_at, updated_at=round_.updated_at, finished_at=round_.finished_at,
                   steps=round_.overrides.get("round.steps", run_steps), last_step=last_step)


class RunSummary(BaseModel):
    id: str
    name: str
    status: RunStatus
    cancel_requested: bool
    rollout_replicas: int
    """Rollout replica target: set over REST, else the config's."""
    last_event_id: int
    created_at: float
    updated_at: float
    events: str
    """Path of the run's event stream."""
    heartbeat_at: float | None = None
    """When the run's coordinator last reported alive (the watchdog fails a running run silent past
    `round.watchdog_s`)."""
    attempt: int = 1
    """1 + how many times a restart superseded steps of the run."""

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(id=run.id, name=run.config.get("name", ""), status=run.status,
                   cancel_requested=run.cancel_requested, rollout_replicas=replicas_target(run),
                   last_event_id=run.last_event_id, created_at=run.created_at, updated_at=run.updated_at,
                   events=f"/v1/runs/{run.id}/events", heartbeat_at=run.heartbeat_at, attempt=run.attempt)


class RunOut(RunSummary):
    config: dict[str, Any]
    """The resolved config (a password in the store URL is masked)."""
    rounds: list[RoundOut]

    @classmethod
    def full(cls, run: Run, rounds: list[Round]) -> RunOut:
        steps = round_setting(run, "steps")
        return cls(**RunSummary.of(run).model_dump(), config=redacted(run.config),
                   rounds=[RoundOut.of(r, steps) for r in rounds])


class RunList(BaseModel):
    runs: list[RunSummary]


class RoundList(BaseModel):
    rounds: list[RoundOut]


class Replicas(BaseModel):
    run_id: str
    replicas: int
    """The count set over REST (the run's coordinator applies it at its next step boundary), else the config's."""
    configured: int
    """`rollout.replicas` of the run's config."""
    source: str
    """`api` while a count set over REST holds; else `autoscale` (the policy sizes the group within `autoscale`'s
    bounds; the current size is the `rollout/replicas` metric) or `config`."""
    autoscale: dict[str, Any] | None
    """`rollout.autoscale` of the run's config."""

    @classmethod
    def of(cls, run: Run) -> Replicas:
        autoscale = run.config.get("rollout", {}).get("autoscale")
        source = "api" if run.rollout_replicas is not None else "autoscale" if autoscale else "config"
        return cls(run_id=run.id, replicas=replicas_target(run), configured=_configured_replicas(run),
                   source=source, autoscale=autoscale)


class EventOut(BaseModel):
    id: int
    run_id: str
    type: str
    round: int | None
    time: float
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(id=event.id, run_id=event.run_id, type=event.kind, round=event.round_index,
                   time=event.created_at, payload=event.payload)


def pool_setting(run: Run, pool: Pool, key: str) -> Any:
    """`key` of the pool's config section in the run's stored config (its default where the stored tree is sparse)."""
    path, section = POOL_CONFIG[pool]
    tree = run.config
    for part in path:
        tree = tree.get(part, {})
    return tree.get(key, section.model_fields[key].default)


def round_setting(run: Run, key: str) -> Any:
    """`round.<key>` of the run's stored config (its default where the stored tree is sparse)."""
    return run.config.get("round", {}).get(key, RoundConfig.model_fields[key].default)


def _configured_replicas(run: Run) -> int:
    return run.config.get("rollout", {}).get("replicas", RolloutConfig.model_fields["replicas"].default)


def replicas_target(run: Run) -> int:
    return _configured_replicas(run) if run.rollout_replicas is None else run.rollout_replicas


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the store URL's password masked (it names the database every run writes to)."""
    store = config.get("store")
    if not store or "://" not in store:
        return config
    from sqlalchemy import make_url

    url = make_url(store)
    if url.password is None:
        return config
    return {**config, "store": url.render_as_string(hide_password=True)}


class RoundLedger(BaseModel):
    """A round's generated samples by fate (`RunStore.ledger_summary`); `lost` counts samples still scheduled after
    the round ended, and should be 0."""

    round: int
    state: RoundState
    samples: int
    trained: int
    dropped: dict[str, int]
    """By reason: `out_of_band`, `surplus`, `excluded`."""
    superseded: int
    """Redone after a restart (their step's rows were superseded)."""
    in_flight: int
    lost: int
