"""Reward role: actors that judge sampled groups with the rule-based scorers, scaled independently."""

from __future__ import annotations

import threading
from collections.abc import Callable

import ray

from actors.common import node_resources, shard_bounds
from actors.telemetry import metric
from visiong1.algorithms.overlong import apply_overlong
from visiong1.config import RewardConfig, RolloutConfig
from visiong1.faults import crash_once
from visiong1.rewards.base import RewardResult
from visiong1.rewards.judge import RewardJudge
from visiong1.store.events import EventKind
from visiong1.types import GroupScores, SampleGroup


class RewardTelemetry:
    """The judge's metrics through Ray's metrics agent (actors.telemetry), as the other roles export theirs."""

    def observe(self, domain: str, answer_type: str, result: RewardResult, seconds: float, excluded: bool) -> None:
        metric("visiong1_reward_samples").inc(tags={"domain": domain, "answer_type": answer_type,
                                                    "reason": result.reason, "excluded": str(excluded).lower()})
        metric("visiong1_reward_latency_seconds").observe(seconds, tags={"answer_type": answer_type})


@ray.remote
class RewardWorker:
    """Judges on the actor's main thread; symbolic work runs in the judge's killable sandbox processes."""

    def __init__(self, config: RewardConfig):
        self.judge = RewardJudge(config, RewardTelemetry())

    def score_groups(self, *shards: list[SampleGroup], training: RolloutConfig | None = None) -> list[GroupScores]:
        """Score every sample of every group; shards are the per-replica outputs of a rollout call. For training
        samples, `training` (the run's rollout config) applies its overlong filtering and punishment."""
        crash_once("score")
        groups = [group for shard in shards for group in shard]
        requests = [{"response": sample.text, "ground_truth": group.prompt.answer,
                     "answer_type": group.prompt.answer_type, "domain": group.prompt.domain,
                     "meta": group.prompt.scorer_meta()} for group in groups for sample in group.samples]
        verdicts = iter(verdict for verdict, _ in self.judge.judge_many(requests))
        scores = [self._group_scores(group, [next(verdicts) for _ in group.samples]) for group in groups]
        if training is None or not (training.overlong.filter or training.overlong.punish):
            return scores
        return [apply_overlong(score, group.samples, training) for score, group in zip(scores, groups)]

    @staticmethod
    def _group_scores(group: SampleGroup, verdicts: list) -> GroupScores:
        return GroupScores(group.prompt.id, [v.result.score for v in verdicts], [v.result.accuracy for v in verdicts],
                           [v.result.reason for v in verdicts], min(s.weight_version for s in group.samples),
                           [v.excluded for v in verdicts])

    def score_texts(self, requests: list[dict], unscorable_ok: bool = False) -> list[dict]:
        """Score raw `{response, ground_truth, answer_type, domain?, meta?}` requests (benchmarks and tools);
        `latency_s` runs from this call's start to the sample's verdict. With `unscorable_ok`, a request whose
        ground truth its scorer cannot use answers `{"unscorable": why}` instead of failing the call."""
        return [{"unscorable": str(v)} if isinstance(v, Exception) else
                {"score": v.result.score, "reason": v.result.reason, "accuracy": v.result.accuracy,
                 "extracted": v.result.extracted, "excluded": v.excluded, "seconds": v.seconds, "latency_s": latency}
                for v, latency in self.judge.judge_many(requests, unscorable_ok)]

    def sandbox_pids(self) -> list[int]:
        return self.judge.sandbox.pids()


class RewardPool:
    """Reward actors of one run; `scale` changes their number while scoring goes on (from another thread)."""

    def __init__(self, config: RewardConfig, emit: Callable[..., None] | None = None):
        """`emit(kind, **payload)` records the pool's scaling events (the run's event log)."""
        self.config = config
        self.emit = emit or (lambda kind, **payload: None)
        self.lock = threading.Lock()
        self.workers: list = []
        self.outstanding: dict = {}  # worker -> refs of its scoring calls not yet known to be finished
        self.turn = 0  # the worker the next scoring call goes to, modulo their number
        self.scale(config.workers)

    def actors(self) -> list:
        with self.lock:
            return list(self.workers)

    def shutdown(self) -> None:
        for actor in self.actors():
            ray.kill(actor)

    def scale(self, workers: int) -> int:
        """Grow or shrink to `workers` actors. Removed ones take no new calls and finish the ones they hold (within
        `reward.timeout_s`) before they are killed, their sandboxes with them."""
        if workers < 1:
            raise ValueError(f"a reward pool needs at least one worker, got {workers}")
        with self.lock:
            while len(self.workers) < workers:
                # Scoring is pure: a restarted actor may re-run the calls its predecessor died in.
                actor = RewardWorker.options(num_cpus=self.config.num_cpus, max_restarts=self.config.max_restarts,
                                             max_task_retries=self.config.max_restarts,
                                             resources=node_resources(self.config.node_resource))
                self.workers.append(actor.remote(self.config))
            removed = self.workers[workers:]
            del self.workers[workers:]
        for actor in removed:
            pending = self.outstanding.pop(actor, [])
            ray.wait(pending, num_returns=len(pending), timeout=self.config.timeout_s, fetch_local=False)
            ray.kill(actor)
        return len(self.workers)

    def reconcile(self, override: int | None) -> None:
        """Between steps: hold the worker count set over REST (`override`; None: `reward.workers`)."""
        target = self.config.workers if override is None else override
        if target != (before := len(self.actors())):
            self.scale(target)
            self.emit(EventKind.REWARD_SCALED, workers=target, previous=before,
                      source="config" if override is None else "api")

    def _dispatch(self, calls: list[tuple]) -> list[ray.ObjectRef]:
        """Start `(worker, method, args, kwargs)` calls and remember them on their worker, for a drain."""
        refs = []
        with self.lock:
            for worker, method, args, kwargs in calls:
                refs.append(getattr(worker, method).remote(*args, **kwargs))
                held = self.outstanding.setdefault(worker, [])
                held.append(refs[-1])
                if len(held) > 64:  # forget the finished ones now and then
                    self.outstanding[worker] = ray.wait(held, num_returns=len(held), timeout=0,
                                                        fetch_local=False)[1]
        return refs

    def async_score(self, shard_refs: list[ray.ObjectRef],
                    training: RolloutConfig | None = None) -> list[ray.ObjectRef]:
        """One ObjectRef of list[GroupScores] per rollout shard, spread round-robin over the workers (`training`:
        as for `RewardWorker.score_groups`)."""
        workers = self.actors()
        with self.lock:  # calls of one shard each take the workers in turn too
            first, self.turn = self.turn, self.turn + len(shard_refs)
        return self._dispatch([(workers[(first + i) % len(workers)], "score_groups", (ref,), {"training": training})
                               for i, ref in enumerate(shard_refs)])

    def async_score_texts(self, requests: list[dict], unscorable_ok: bool = False) -> list[ray.ObjectRef]:
        """Split raw requests evenly over the workers; one ObjectRef of results per worker, in request order."""
        workers = self.actors()
        return self._dispatch([(worker, "score_texts", (requests[start:stop], unscorable_ok), {})
                               for worker, (start, stop) in zip(workers, shard_bounds(len(requests), len(workers)))])
