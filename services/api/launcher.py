"""Starting runs on Ray: one detached coordinator actor per run, named by the run id in the server's namespace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ray

from actors.launch import coordinator_actor, start_run
from actors.learner import plan_run
from services.api.context import LaunchFailed, LaunchTimeout, PlanRefused
from visiong1.config import RunConfig
from visiong1.store import NotFound, RunStore


class RayLauncher:
    def __init__(self, store: RunStore, namespace: str, start_timeout_s: float, poll_s: float = 0.1,
                 coordinator_env: dict[str, str] | None = None):
        """`coordinator_env`: environment variables of every coordinator started (and of its role actors); the
        chaos soak arms `visiong1.faults` crash points with them."""
        self.store, self.namespace = store, namespace
        self.start_timeout_s, self.poll_s, self.coordinator_env = start_timeout_s, poll_s, coordinator_env

    def launch(self, config: RunConfig) -> str:
        """Start the coordinator and wait until it has committed the run (so a 201 means GET finds it)."""
        if not ray.is_initialized():  # a remote call now would start a private local cluster instead
            raise LaunchFailed("the API is not connected to a Ray cluster")
        self._check_plan(config)
        run_id, _, finished = start_run(config, detached=True, env=self.coordinator_env)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                self.store.get_run(run_id)
                return run_id
            except NotFound:
                pass
            done, _ = ray.wait([finished], timeout=0)
            if done:  # run() ended before the run reached the store: it raised
                try:
                    ray.get(done[0])
                except ray.exceptions.RayError as error:  # the coordinator's own error, passed on by name
                    raise LaunchFailed(f"coordinator of run {run_id!r} failed before registering the run: "
                                       f"{type(error).__name__}: {error}") from error
                raise LaunchFailed(f"coordinator of run {run_id!r} ended without registering the run")
            if time.monotonic() > deadline:
                raise LaunchTimeout(f"coordinator of run {run_id!r} did not register the run in the store within "
                                    f"{self.start_timeout_s} s (api.start_timeout_s); it may still be starting")
            time.sleep(self.poll_s)

    def resume(self, run_id: str, config: RunConfig) -> None:
        """Kill the run's coordinator by handle if it lives (its role actors die with it), wait until its name is
        free, and start a new one that resumes from the run's newest checkpoint."""
        if not ray.is_initialized():
            raise LaunchFailed("the API is not connected to a Ray cluster")
        deadline = time.monotonic() + self.start_timeout_s
        while self.alive(run_id):
            ray.kill(ray.get_actor(run_id, namespace=self.namespace), no_restart=True)
            if time.monotonic() > deadline:
                raise LaunchTimeout(f"the coordinator of run {run_id!r} did not stop within {self.start_timeout_s} s")
            time.sleep(self.poll_s)
        coordinator = coordinator_actor(run_id, config, str(Path(config.output_dir) / run_id), detached=True,
                                        env=self.coordinator_env)
        coordinator.run.remote()

    def _check_plan(self, config: RunConfig) -> None:
        """Refuse a run whose GPU roles do not fit `resources.gpu_memory_gib` (the same check as `visiong1 plan`)."""
        if config.resources.gpu_memory_gib is None or config.model.path is None:
            return
        plan = ray.get(plan_run.remote(config), timeout=self.start_timeout_s)
        if plan["shortfalls"]:
            raise PlanRefused(plan)

    def alive(self, run_id: str) -> bool | None:
        try:
            ray.get_actor(run_id, namespace=self.namespace)
        except ValueError:  # no live actor of that name
            return False
        return True

    def ready(self) -> bool:
        return ray.is_initialized()

    def cluster(self) -> dict[str, Any]:
        nodes = [{"node_id": node["NodeID"], "alive": node["Alive"], "address": node["NodeManagerAddress"],
                  "resources": node["Resources"]} for node in ray.nodes()]
        return {"backend": "ray", "namespace": self.namespace, "nodes": nodes,
                "resources": {"total": ray.cluster_resources(), "available": ray.available_resources()}}
