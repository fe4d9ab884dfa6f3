"""What every request needs, injected by type: the run store, the server's config, and the run launcher.

The API process keeps no state of its own beyond these handles: runs, rounds, events, metrics, replica targets and
idempotency keys all live in the run store, so the API may be restarted or replicated freely. The one exception is
the rate limits' buckets, which each replica keeps (and enforces) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from services.api.auth import Tokens
from services.api.feeds import Feeds
from services.api.ratelimit import RateLimits
from visiong1.config import ConfigError, RunConfig
from visiong1.store import RunStore


class LaunchFailed(RuntimeError):
    """The run's coordinator failed before registering the run (HTTP 502)."""


class LaunchTimeout(TimeoutError):
    """The run's coordinator did not register the run in time (HTTP 504)."""


class PlanRefused(ConfigError):
    """A GPU role of the run needs more memory than `resources.gpu_memory_gib` (HTTP 422, with the plan)."""

    def __init__(self, plan: dict):
        super().__init__("the run does not fit its GPUs:\n  " + "\n  ".join(plan["shortfalls"]))
        self.plan = plan


class Launcher(Protocol):
    """Starts coordinators; the Ray implementation is `services.api.launcher.RayLauncher`."""

    def launch(self, config: RunConfig) -> str:
        """Start a run's coordinator; return the run id once the run is in the store."""

    def resume(self, run_id: str, config: RunConfig) -> None:
        """Replace the run's coordinator (the old actor is killed if it still lives) with one that resumes the run
        from its newest checkpoint; returns once the new coordinator is started."""

    def alive(self, run_id: str) -> bool | None:
        """Whether the run's coordinator is alive (None: cannot tell)."""

    def ready(self) -> bool:
        """Whether runs can be started now."""

    def cluster(self) -> dict[str, Any]:
        """Nodes and resources of the cluster runs execute on."""


@dataclass(frozen=True)
class ApiContext:
    config: RunConfig
    """The server's config: the base of every run's config and the `api` settings."""
    store: RunStore
    launcher: Launcher
    tokens: Tokens
    feeds: Feeds
    """Shared per-run event pollers of this process's open streams (a cache of the store, not state)."""
    limits: RateLimits
    """Per-token request budgets of this process (each replica limits on its own)."""


def _context(request: Request) -> ApiContext:
    return request.app.state.context


def _store(request: Request) -> RunStore:
    return request.app.state.context.store


def _config(request: Request) -> RunConfig:
    return request.app.state.context.config


def _launcher(request: Request) -> Launcher:
    return request.app.state.context.launcher


def _feeds(request: Request) -> Feeds:
    return request.app.state.context.feeds


Context = Annotated[ApiContext, Depends(_context)]
Store = Annotated[RunStore, Depends(_store)]
ServerConfig = Annotated[RunConfig, Depends(_config)]
RunLauncher = Annotated[Launcher, Depends(_launcher)]
RunFeeds = Annotated[Feeds, Depends(_feeds)]
