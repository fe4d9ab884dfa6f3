"""Live metrics of every role, exported through Ray's metrics agent (`ray.util.metrics`).

Prometheus scrapes them from each node's agent the way it scrapes Ray's own metrics (on KubeRay, the `metrics` port
of every pod: k8s/base/ray/monitoring.yaml). Ray prefixes each name with `ray_` and exports on its report interval
(a few seconds), so a panel shows a step while it runs. Each quantity has one name, recorded by the process that
measures it; the control plane's per-step gauges leave these quantities out (services.api.telemetry.LIVE_KEYS).
The dashboard that reads them all:
k8s/base/control-plane/visiong1-dashboard.json.
"""

from __future__ import annotations

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
                                "are its sandbox restarts)", ("domain", "answer_type", "reason")),
    "visiong1_reward_excluded_samples": (Counter, "Samples excluded from their group after a timeout", ("domain",)),
    "visiong1_reward_latency_seconds": (Histogram, "Wall time to score one sample", ("answer_type",)),
}
"""name -> (kind, description, tag keys)."""

BOUNDARIES = {"visiong1_reward_latency_seconds": list(LATENCY_BUCKETS)}
"""Histogram buckets other than SECONDS."""

_made: dict[str, Counter | Gauge | Histogram] = {}


def metric(name: str) -> Counter | Gauge | Histogram:
    """This process's instance of `name`, made on first use (Ray registers a metric once per process)."""
    if name not in _made:
        kind, description, tags = METRICS[name]
        extra = {"boundaries": BOUNDARIES.get(name, SECONDS)} if kind is Histogram else {}
        _made[name] = kind(name, description=description, tag_keys=tags, **extra)
    return _made[name]
