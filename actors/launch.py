"""Starting a run: its id, its directory, and its coordinator actor (named by the run id)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from actors.coordinator import Coordinator
from visiong1.config import RunConfig, absolute_paths


def start_run(config: RunConfig, detached: bool = False, env: dict[str, str] | None = None):
    """Create the run's coordinator actor (named by the run id, with environment `env`) and start its round;
    returns (id, handle, ref)."""
    config = absolute_paths(config)
    run_id = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir = Path(config.output_dir) / run_id
    coordinator = coordinator_actor(run_id, config, str(run_dir), detached, env)
    return run_id, coordinator, coordinator.run.remote()


def coordinator_actor(run_id: str, config: RunConfig, run_dir: str, detached: bool,
                      env: dict[str, str] | None = None):
    """The run's coordinator actor. One whose process dies is restarted and its `run` retried (up to
    `round.max_retries` times, at least once): it resumes from its newest checkpoint. `env`: environment variables
    of its process and its role actors' (the fault tests arm `visiong1.faults` crash points with them)."""
    restarts = max(1, config.round.max_retries)
    options = {"name": run_id, "lifetime": "detached" if detached else None, "max_restarts": restarts,
               "max_task_retries": restarts, "runtime_env": {"env_vars": env} if env else None}
    return Coordinator.options(**options).remote(run_id, config, run_dir)
