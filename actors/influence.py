"""Influence role: a pool of actors computing sketched gradient features of pool items against a target set.

A scoring pass: every actor loads the current policy weights (when given); with `precondition`, the actors sum the
squared target gradients of their target shard and the mean (`[parameter subset size]`) is broadcast back as the
preconditioner; the target items are sharded and featurised, their features broadcast per domain, then the
candidates are scored against them chunk by chunk, each chunk sharded over the actors and its scores persisted (an
interrupted pass resumes after its last whole chunk). Only scores cross back to the driver (candidate features stay
in the actors). The math is in visiong1.selection.influence.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np
import ray

from actors.common import get_within, node_resources, quiet_transformers, shard_bounds, size_torch_threads
from visiong1.config import InfluenceConfig
from visiong1.faults import crash_once
from visiong1.store.events import EventKind
from visiong1.selection.scoring import InfluenceStore, domain_targets, influence_scores
from visiong1.data.pool_index import ItemRow, read_items
from visiong1.types import WeightUpdate


@ray.remote
class InfluenceWorker:
    def __init__(self, model_path: str, config: InfluenceConfig, system_prompt: str, temperature: float):
        size_torch_threads(config.num_cpus)
        quiet_transformers()
        from visiong1.selection.influence import GradientFeaturizer  # torch: imported in the actor only

        self.featurizer = GradientFeaturizer(model_path, config, system_prompt, temperature)
        self.version, self.sync_group = 0, None

    def update_weights(self, update: WeightUpdate) -> int:
        self.featurizer.load_state_dict(ray.get(update.tensors))
        self.version = update.version
        return self.version

    def sync_world(self) -> int:
        return 1

    def join_sync_group(self, host: str, port: int, world: int, timeout_s: float) -> None:
        """Join a collective weight sync group whose rank 0 (a learner) hosts it at host:port."""
        from actors.weight_sync import open_group

        self.sync_group = open_group(host, port, 1, world, timeout_s)

    def receive_weights(self, plan, version: int) -> int:
        """Receive `version` over the sync group (the collective transport) and load it."""
        from actors.weight_sync import receive_state_dict

        self.featurizer.load_state_dict(receive_state_dict(self.sync_group, plan))
        self.version = version
        return version

    def squared_gradient_sum(self, rows: list[ItemRow]) -> np.ndarray:
        """`[subset size]` sum of the targets' squared gradients."""
        return self.featurizer.squared_gradient_sum(read_items(rows))

    def precondition_with(self, second_moment: np.ndarray | None) -> None:
        self.featurizer.precondition_with(second_moment)

    def target_features(self, rows: list[ItemRow]) -> np.ndarray:
        """`[len(rows), projection_dim]` unit-norm features of the targets (read from storage here)."""
        return self.featurizer.features(read_items(rows), target=True)

    def weight_version(self) -> int:
        return self.version

    def scores(self, rows: list[ItemRow], targets: dict[str, np.ndarray], samples: dict | None = None) -> dict:
        """`[len(rows)]` scores against `targets` (per domain, `[targets, projection_dim]` unit-norm features)."""
        crash_once("influence_score")
        started = time.perf_counter()
        features = self.featurizer.features(read_items(rows), samples)
        scores = influence_scores(features, [row.domain for row in rows], targets, self.featurizer.config.aggregate)
        return {"scores": scores, "seconds": time.perf_counter() - started, "pid": os.getpid(), "version": self.version}


def shards(items: list, count: int) -> list[list]:
    """`items` cut into at most `count` contiguous, near-equal shards (none empty)."""
    return [items[start:stop] for start, stop in shard_bounds(len(items), count)]


class InfluencePool:
    """`config.workers` InfluenceWorkers; `score` runs one pass and returns scores aligned with the candidates.
    The pool is idle outside a pass, when `reconcile` may resize it; new workers load the policy with the next
    pass."""

    def __init__(self, model_path: str, config: InfluenceConfig, system_prompt: str, temperature: float,
                 emit: Callable[..., None] | None = None):
        """`emit(kind, **payload)` records the pool's scaling events (the run's event log)."""
        self.config, self.emit = config, emit or (lambda kind, **payload: None)
        self.options = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus,
                        "resources": node_resources(config.node_resource)}
        self.worker_args = (model_path, config, system_prompt, temperature)
        self.workers = [self._start() for _ in range(config.workers)]

    def _start(self):
        return InfluenceWorker.options(**self.options).remote(*self.worker_args)

    def reconcile(self, override: int | None) -> None:
        """Outside passes: hold the worker count set over REST (`override`; None: `selection.influence.workers`)."""
        target = self.config.workers if override is None else override
        if target == (before := len(self.workers)):
            return
        for worker in self.workers[target:]:
            ray.kill(worker)
        self.workers = self.workers[:target] + [self._start() for _ in range(target - before)]
        self.emit(EventKind.INFLUENCE_SCALED, workers=target, previous=before,
                  source="config" if override is None else "api")

    def shutdown(self) -> None:
        for worker in self.workers:
            ray.kill(worker)

    def score(self, candidates: list[ItemRow], targets: list[ItemRow], timeout_s: float,
              load_policy: Callable[[list], Any] | None = None, samples: dict | None = None,
              store: InfluenceStore | None = None, round_index: int = 0) -> tuple[np.ndarray, dict]:
        """Influence scores of `candidates` against `targets` (`samples` by candidate id for the policy-gradient
        loss), after `load_policy(actors)` put the current policy into every actor (the run's weight sync);
        returns (scores, metrics). Candidates go in chunks of `score_chunk`; each finished chunk is appended to
        `store`, and candidates it already scored on the same weight version are not scored again. Only the rows'
        locators travel: each actor reads its shard's items from storage."""
        started = time.perf_counter()
        if load_policy is not None:
            load_policy(self.workers)
        version = get_within(self.workers[0].weight_version.remote(), timeout_s, "influence actor")
        known = store.scores(version) if store is not None else {}
        todo = [row for row in candidates if row.id not in known]
        if todo:
            per_domain = self._target_features(targets, timeout_s)
            samples = ray.put(samples) if samples else None  # once for every chunk and actor, not per call
            for start in range(0, len(todo), self.config.score_chunk):
                chunk = todo[start:start + self.config.score_chunk]
                scores = self._score_chunk(chunk, per_domain, samples, timeout_s)
                rows = [{"round": round_index, "id": row.id, "score": float(value), "version": version}
                        for row, value in zip(chunk, scores)]
                if store is not None:
                    store.append(rows)
                known.update({row["id"]: row["score"] for row in rows})
        seconds = time.perf_counter() - started
        return np.array([known[row.id] for row in candidates], dtype=np.float32), {
            "influence/scored": len(todo), "influence/resumed": len(candidates) - len(todo),
            "influence/targets": len(targets), "influence/items_per_s": (len(todo) + len(targets)) / seconds,
            "influence/workers": len(self.workers), "influence/version": version, "time/influence_pass_s": seconds}

    def _target_features(self, targets: list[ItemRow], timeout_s: float) -> ray.ObjectRef:
        """Precondition every actor (when configured), then the targets' features per domain, in the object store."""
        target_shards = shards(targets, len(self.workers))
        self._precondition(target_shards, timeout_s)
        target_features = get_within([worker.target_features.remote(shard)
                                      for worker, shard in zip(self.workers, target_shards)],
                                     timeout_s, "influence target features")
        return ray.put(domain_targets(np.concatenate(target_features), [t.domain for t in targets]))

    def _score_chunk(self, chunk: list[ItemRow], per_domain: ray.ObjectRef, samples: ray.ObjectRef | None,
                     timeout_s: float) -> np.ndarray:
        outcomes = get_within([worker.scores.remote(shard, per_domain, samples)
                               for worker, shard in zip(self.workers, shards(chunk, len(self.workers)))],
                              timeout_s, "influence scoring")
        return np.concatenate([outcome["scores"] for outcome in outcomes])

    def _precondition(self, target_shards: list[list[ItemRow]], timeout_s: float) -> None:
        """Every actor preconditions with the mean squared target gradient (`config.precondition`), else not."""
        second_moment = None
        if self.config.precondition:
            sums = get_within([worker.squared_gradient_sum.remote(shard)
                               for worker, shard in zip(self.workers, target_shards)], timeout_s,
                              "influence preconditioner")
            second_moment = ray.put(np.sum(sums, axis=0) / sum(len(shard) for shard in target_shards))
        get_within([worker.precondition_with.remote(second_moment) for worker in self.workers], timeout_s,
                   "influence actors preconditioning")
