"""A scoring process's judge: config, sandbox and metrics around `score`, shared by the Ray reward actors and the
HTTP reward service so both apply the same per-domain rules."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from visiong1.config import RewardConfig
from visiong1.rewards import score
from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.math import SYMBOLIC_FUNCTION
from visiong1.rewards.metrics import RewardMetrics
from visiong1.rewards.sandbox import SymbolicSandbox


@dataclass(frozen=True)
class Judgement:
    result: RewardResult
    excluded: bool
    """True when the sample timed out in a domain whose policy is to exclude it from its group."""
    seconds: float


class RewardJudge:
    def __init__(self, config: RewardConfig, metrics=None):
        """`metrics`: anything with RewardMetrics' `observe` (default: a RewardMetrics)."""
        self.config = config
        self.sandbox = SymbolicSandbox(workers=config.sandbox_workers, deadline_s=config.sample_deadline_s,
                                       memory_mb=config.sandbox_memory_mb, preload=(SYMBOLIC_FUNCTION,))
        self.metrics = metrics or RewardMetrics()
        # One thread per sandbox process plus one for in-process scorers: a bomb blocks only its own thread.
        self._threads = ThreadPoolExecutor(config.sandbox_workers + 1, thread_name_prefix="reward-judge")

    def judge(self, response: str | bytes, ground_truth: str, answer_type: str, domain: str = "default",
              **meta) -> Judgement:
        """Score one response under its domain's settings and record it in the metrics."""
        settings = self.config.domain(domain)
        if answer_type == "bbox":
            meta.setdefault("iou_threshold", settings.iou_threshold)
        started = time.perf_counter()
        result = score(response, ground_truth, answer_type, fallbacks=tuple(self.config.fallbacks),
                       sandbox=self.sandbox, custom_scorers=self.config.custom_scorers, **meta)
        seconds = time.perf_counter() - started
        excluded = result.reason == "timeout" and settings.on_timeout == "exclude"
        self.metrics.observe(domain, answer_type, result, seconds, excluded)
        return Judgement(result, excluded, seconds)

    def judge_many(self, requests: list[dict], unscorable_ok: bool = False
                   ) -> list[tuple[Judgement | GroundTruthError, float]]:
        """Judge `{response, ground_truth, answer_type, domain?, meta?}` requests concurrently, so a sample waiting
        on its sandbox deadline does not hold up the others. Returns (judgement, seconds from the call's start to
        this verdict) in request order. A ground truth its scorer cannot use raises, or with `unscorable_ok` takes
        the judgement's place as the GroundTruthError (evaluation counts such items instead of stopping)."""
        started = time.perf_counter()

        def one(request: dict) -> tuple[Judgement | GroundTruthError, float]:
            try:
                verdict = self.judge(request["response"], request["ground_truth"], request["answer_type"],
                                     request.get("domain", "default"), **request.get("meta", {}))
            except GroundTruthError as error:
                if not unscorable_ok:
                    raise
                verdict = error
            return verdict, time.perf_counter() - started

        return list(self._threads.map(one, requests))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()
