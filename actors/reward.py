"""Reward role: actors that judge sampled groups with the rule-based scorers, scaled independently."""

from __future__ import annotations

import ray

from actors.common import node_resources, shard_bounds
from visiong1.algorithms.overlong import apply_overlong
from visiong1.config import RewardConfig, RolloutConfig
from visiong1.faults import crash_once
from visiong1.rewards.judge import RewardJudge
from visiong1.types import GroupScores, SampleGroup


@ray.remote
class RewardWorker:
    """Judges on the actor's main thread; symbolic work runs in the judge's killable sandbox processes."""

    def __init__(self, config: RewardConfig, index: int):
        self.judge = RewardJudge(config)
        if config.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(config.metrics_port + index, registry=self.judge.metrics.registry)

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

    def metrics_text(self) -> str:
        return self.judge.metrics.exposition().decode()

    def sandbox_pids(self) -> list[int]:
        return self.judge.sandbox.pids()


class RewardPool:
    """Reward actors of one run; `scale` changes their number while the run goes on."""

    def __init__(self, config: RewardConfig):
        self.config = config
        self.workers: list = []
        self.scale(config.workers)

    def actors(self) -> list:
        return list(self.workers)

    def shutdown(self) -> None:
        for actor in self.workers:
            ray.kill(actor)

    def scale(self, workers: int) -> int:
        """Grow or shrink to `workers` actors (removed ones are killed; their sandboxes die with them)."""
        if workers < 1:
            raise ValueError(f"a reward pool needs at least one worker, got {workers}")
        while len(self.workers) < workers:
            # Scoring is pure: a restarted actor may re-run the calls its predecessor died in.
            actor = RewardWorker.options(num_cpus=self.config.num_cpus, max_restarts=self.config.max_restarts,
                                         max_task_retries=self.config.max_restarts,
                                         resources=node_resources(self.config.node_resource))
            self.workers.append(actor.remote(self.config, len(self.workers)))
        while len(self.workers) > workers:
            ray.kill(self.workers.pop())
        return len(self.workers)

    def async_score(self, shard_refs: list[ray.ObjectRef],
                    training: RolloutConfig | None = None) -> list[ray.ObjectRef]:
        """One ObjectRef of list[GroupScores] per rollout shard, spread round-robin over the workers (`training`:
        as for `RewardWorker.score_groups`)."""
        return [self.workers[i % len(self.workers)].score_groups.remote(ref, training=training)
                for i, ref in enumerate(shard_refs)]

    def async_score_texts(self, requests: list[dict], unscorable_ok: bool = False) -> list[ray.ObjectRef]:
        """Split raw requests evenly over the workers; one ObjectRef of results per worker, in request order."""
        return [worker.score_texts.remote(requests[start:stop], unscorable_ok)
                for worker, (start, stop) in zip(self.workers, shard_bounds(len(requests), len(self.workers)))]
