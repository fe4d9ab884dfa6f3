"""Live metrics of every role, exported through Ray's metrics agent (`ray.util.metrics`).

Prometheus scrapes them from each node's agent the way it scrapes Ray's own metrics (on KubeRay, the `metrics` port
of every pod: k8s/base/ray/monitoring.yaml). Ray prefixes each name with `ray_` and exports on its report interval
(a few seconds), so a panel shows a step while it runs. Each quantity has one name, recorded by the process that
measures it; the control plane's per-step gauges leave these quantities out (services.api.telemetry.LIVE_KEYS).
The dashboard that reads them all:
k8s/base/control-plane/visiong1-dashboard.json.
"""

from __future__ import annotations

import threading
import time

from ray.util.metrics import Counter, Gauge, Histogram

from visiong1.rewards.metrics import LATENCY_BUCKETS

SECONDS = [0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]

METRICS: dict[str, tuple[type, str, tuple[str, ...]]] = {
    "visiong1_rollout_replicas": (Gauge, "Serving rollout replicas of a run's group", ()),
    "visiong1_rollout_units_in_flight": (Gauge, "Generation units a run's group dispatched, not yet answered", ()),
    "visiong1_rollout_tokens": (Counter, "Tokens a rollout replica generated", ("engine",)),
    "visiong1_rollout_unit_seconds": (Histogram, "Seconds a replica took for one generation unit", ("engine",)),
    "visiong1_rollout_weight_version": (Gauge, "Weight version a rollout replica serves", ("replica",)),
    "visiong1_rollout_time_to_first_token_seconds": (Histogram, "Seconds from a request's arrival at a vLLM replica "
                                                     "to its first token (queueing included)", ("engine",)),
    "visiong1_rollout_kv_cache_usage": (Gauge, "Share of a vLLM replica's KV cache in use, sampled while it "
                                        "generates", ("replica",)),
    "visiong1_learner_step_seconds": (Histogram, "Seconds of one learner rank's RL step", ("rank",)),
    "visiong1_learner_tokens": (Counter, "Tokens a learner rank trained on", ("rank",)),
    "visiong1_learner_peak_memory_bytes": (Gauge, "Peak memory of a learner rank in its newest step", ("rank",)),
    "visiong1_weight_sync_seconds": (Histogram, "Seconds to bring every rollout replica to new weights",
                                     ("transport",)),
    "visiong1_weight_sync_bytes": (Counter, "Bytes learner rank 0 sent per replica in weight syncs", ("transport",)),
    "visiong1_run_step": (Gauge, "The run's newest committed RL step", ("run",)),
    "visiong1_run_phase": (Gauge, "1 for the phase a run's coordinator is in, 0 for the others", ("run", "phase")),
    "visiong1_run_samples": (Counter, "Generated samples by their planned fate in the sample ledger",
                             ("run", "fate")),
    "visiong1_reward_samples": (Counter, "Samples a reward actor scored (reasons `timeout` and `resource_limit` "
                                "are its sandbox restarts; `excluded`: dropped from their group after a timeout)",
                                ("domain", "answer_type", "reason", "excluded")),
    "visiong1_reward_latency_seconds": (Histogram, "Wall time to score one sample", ("answer_type",)),
}
"""name -> (kind, description, tag keys)."""

BOUNDARIES = {"visiong1_reward_latency_seconds": list(LATENCY_BUCKETS)}
"""Histogram buckets other than SECONDS."""

HOLD_S = 2.0
"""How often held gauges are recorded again, well inside Ray's report interval."""


class HeldGauge:
    """A Ray gauge whose newest value per tag set is recorded again every HOLD_S: Ray's agent exports a gauge only
    when it was recorded since its previous export, so a value set once (replicas, phase) would vanish."""

    def __init__(self, gauge: Gauge):
        self.gauge, self.values = gauge, {}

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.values[tuple(sorted((tags or {}).items()))] = value
        self.gauge.set(value, tags=tags)

    def record_again(self) -> None:
        for key, value in list(self.values.items()):
            self.gauge.set(value, tags=dict(key) or None)


_made: dict[str, Counter | HeldGauge | Histogram] = {}


def metric(name: str) -> Counter | HeldGauge | Histogram:
    """This process's instance of `name`, made on first use (Ray registers a metric once per process); the first
    gauge starts the thread that holds this process's gauges."""
    if name not in _made:
        kind, description, tags = METRICS[name]
        extra = {"boundaries": BOUNDARIES.get(name, SECONDS)} if kind is Histogram else {}
        made = kind(name, description=description, tag_keys=tags, **extra)
        if kind is Gauge:
            if not any(isinstance(held, HeldGauge) for held in _made.values()):
                threading.Thread(target=_hold_gauges, daemon=True, name="held-gauges").start()
            made = HeldGauge(made)
        _made[name] = made
    return _made[name]


def _hold_gauges() -> None:
    while True:
        time.sleep(HOLD_S)
        for made in list(_made.values()):
            if isinstance(made, HeldGauge):
                made.record_again()
