"""Reward role: rule-based scoring of sampled groups (boxed exact match in the skeleton)."""

from __future__ import annotations

import ray

from visiong1.rewards import score
from visiong1.types import GroupScores, SampleGroup


@ray.remote
class RewardWorker:
    """Scores runs on the actor's main thread: math-verify's SIGALRM timeouts only work there (FIELD_NOTES)."""

    def score_groups(self, *shards: list[SampleGroup]) -> list[GroupScores]:
        """Score every sample of every group; shards are the per-replica outputs of a rollout call."""
        scored = []
        for group in (g for shard in shards for g in shard):
            results = [score(s.text, group.prompt.answer, group.prompt.answer_type) for s in group.samples]
            scored.append(GroupScores(group.prompt.id, [r.score for r in results], [r.accuracy for r in results],
                                      [r.reason for r in results],
                                      min(s.weight_version for s in group.samples)))
        return scored


class RewardPool:
    def __init__(self, workers: int, num_cpus: float):
        self.workers = [RewardWorker.options(num_cpus=num_cpus).remote() for _ in range(workers)]

    def actors(self) -> list:
        return list(self.workers)

    def async_score(self, shard_refs: list[ray.ObjectRef]) -> list[ray.ObjectRef]:
        """One ObjectRef of list[GroupScores] per rollout shard, spread round-robin over the workers."""
        return [self.workers[i % len(self.workers)].score_groups.remote(ref) for i, ref in enumerate(shard_refs)]
