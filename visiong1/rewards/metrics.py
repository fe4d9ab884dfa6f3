"""Prometheus metrics of reward scoring: samples by domain, answer type and reason; latency by answer type.

The reward HTTP service serves these; the run's reward actors record the same quantities through Ray's metrics
agent instead (actors.reward.RewardTelemetry), so any number of actors is scraped on each node's one port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from visiong1.rewards.base import RewardResult

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0)


class RewardMetrics:
    """One registry per scoring process (reward actor or HTTP service)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.samples = Counter("visiong1_reward_samples", "Scored samples", ["domain", "answer_type", "reason"],
                               registry=self.registry)
        self.excluded = Counter("visiong1_reward_excluded_samples", "Samples excluded from their group after a "
                                "timeout", ["domain"], registry=self.registry)
        self.latency = Histogram("visiong1_reward_latency_seconds", "Wall time to score one sample",
                                 ["answer_type"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe(self, domain: str, answer_type: str, result: RewardResult, seconds: float, excluded: bool) -> None:
        """One judged sample; `excluded`: it timed out in a domain that excludes such samples from their group."""
        self.samples.labels(domain, answer_type, result.reason).inc()
        self.latency.labels(answer_type).observe(seconds)
        if excluded:
            self.excluded.labels(domain).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
