"""Rollout autoscaling policy: how many replicas a generation call's load asks for (pure logic, no Ray).

The load is the prompts of the call about to be dispatched (a training step, a difficulty-scoring chunk, an
evaluation): each call is cut into about one unit per serving replica, so its prompts per replica is what one replica
must generate before the call can finish.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from visiong1.config import AutoscaleConfig


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    previous: int
    reason: str


class ReplicaPolicy:
    """Grows at once to ceil(prompts / target) replicas (at most `max_replicas`); shrinks one replica at a time,
    once calls have asked for fewer replicas for `cooldown_s` (counted from the first such call, and again after
    each removal). Never outside [min_replicas, max_replicas]."""

    def __init__(self, config: AutoscaleConfig, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self.low_since: float | None = None  # when calls started asking for fewer replicas than serve

    def wanted(self, prompts: int) -> int:
        bounds = self.config
        return min(bounds.max_replicas, max(bounds.min_replicas, math.ceil(prompts / bounds.target)))

    def decide(self, replicas: int, prompts: int) -> ScalingDecision | None:
        """The change to make before dispatching a call of `prompts` prompts to `replicas` serving replicas."""
        wanted, now = self.wanted(prompts), self.clock()
        if wanted >= replicas:
            self.low_since = None
            if wanted == replicas:
                return None
            return ScalingDecision(wanted, replicas, f"{prompts} prompts ask for {wanted} replicas at "
                                                     f"{self.config.target:g} prompts per replica")
        if self.low_since is None:
            self.low_since = now
        if now - self.low_since < self.config.cooldown_s:
            return None
        self.low_since = now
        return ScalingDecision(replicas - 1, replicas, f"calls asked for {wanted} replicas for "
                                                       f"{self.config.cooldown_s:g}s")
