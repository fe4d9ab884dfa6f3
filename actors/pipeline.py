"""The training steps' samples, generated in step with the learner (`rollout.max_staleness: 0`) or ahead of it.

With `max_staleness: k > 0` a producer thread generates and scores step s as soon as the learner has pushed the
weights it trained before step s - k, so a step's samples come from weights at most k versions older than the
learner's when it trains them, whether they were in flight or waited in the queue. The weights a unit ran on are the
ones its replica held when it started: a weight update queues behind a unit in flight on the same replica (it
finishes on the old weights), and the response carries the version its engine reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.round_selector import RoundSelector
from actors.selection import SampledStep
from visiong1.selection.curriculum import CurriculumSampler
from visiong1.types import PromptItem


@dataclass
class ProducedStep:
    """One step's samples with what producing them cost: `timings` (generate and reward seconds), the wall-clock
    span of the production, the seconds the producer waited for the learner before starting it and those the
    learner waited for it (its idle time; in a synchronous step, the whole production)."""

    step: int
    sampled: SampledStep | None = None
    error: BaseException | None = None
    timings: dict = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 0.0)
    waited_s: float = 0.0
    learner_waited_s: float = 0.0
    queued_behind: int = 0  # steps already produced beyond this one when the learner took it


class StepSource:
    """Hands the coordinator each training step's `SampledStep`, in step order.

    `produce(draw, timings)` samples one step (dynamic sampling included) from `draw(n)`, the round's next `n`
    items; the source guards the curriculum sampler so that the producer's draws and the coordinator's `observe`
    calls never interleave.
    `take(step)` returns step `step` (blocking until it is produced); `pushed(step)` says the weights trained at
    `step` now serve, which lets the producer start step `step + 1 + max_staleness`.
    """

    def __init__(self, produce: Callable[[Callable[[int], list[PromptItem]], dict], SampledStep],
                 selector: RoundSelector, sampler: CurriculumSampler, steps: range, max_staleness: int):
        self.produce, self.selector, self.sampler = produce, selector, sampler
        self.steps, self.max_staleness = steps, max_staleness
        self.condition = threading.Condition()
        self.sampler_lock = threading.Lock()
        self.produced: dict[int, ProducedStep] = {}
        self.draw_states: dict[int, dict] = {}  # the sampler's state before each step's first draw
        self.serving_through = steps.start - 1  # the newest step whose trained weights the rollout serves
        self.stopping = False
        self.busy: list[tuple[float, float]] = []  # the producer's spans, for the overlap metric
        self.thread = None
        if max_staleness > 0 and len(steps):
            self.thread = threading.Thread(target=self._produce_ahead, name="rollout-ahead", daemon=True)
            self.thread.start()

    def __enter__(self) -> StepSource:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _draw(self, count: int) -> list[PromptItem]:
        with self.sampler_lock:
            return self.selector.draw(self.sampler, count)

    def _produce_one(self, step: int, waited_s: float = 0.0) -> ProducedStep:
        if self.thread is not None:  # only a producer ahead makes the current state differ from a checkpoint's
            with self.sampler_lock:
                self.draw_states[step] = self.sampler.state_dict()
        result = ProducedStep(step, waited_s=waited_s)
        started = time.perf_counter()
        try:
            result.sampled = self.produce(self._draw, result.timings)
        except Exception as error:  # handed to the coordinator, which raises it at this step
            result.error = error
        result.span = (started, time.perf_counter())
        return result

    def _produce_ahead(self) -> None:
        for step in self.steps:
            waiting = time.perf_counter()
            with self.condition:
                self.condition.wait_for(lambda: self.stopping or step <= self.serving_through + 1 + self.max_staleness)
                if self.stopping:
                    return
            result = self._produce_one(step, time.perf_counter() - waiting)
            with self.condition:
                self.produced[step] = result
                self.busy.append(result.span)
                self.condition.notify_all()
            if result.error is not None:
                return

    def take(self, step: int) -> ProducedStep:
        """Step `step`'s samples (produced here when the source is synchronous); re-raises the producer's error."""
        asked = time.perf_counter()
        if self.thread is None:
            result = self._produce_one(step)
        else:
            with self.condition:
                self.condition.wait_for(lambda: step in self.produced)
                result = self.produced.pop(step)
                result.queued_behind = len(self.produced)
        result.learner_waited_s = time.perf_counter() - asked
        with self.sampler_lock:
            self.draw_states = {later: state for later, state in self.draw_states.items() if later >= step}
        if result.error is not None:
            raise result.error
        return result

    def queued(self) -> int:
        """Steps produced and waiting to be taken."""
        with self.condition:
            return len(self.produced)

    def pushed(self, step: int) -> None:
        with self.condition:
            self.serving_through = step
            self.condition.notify_all()

    def observe(self, trained_ids: list[str]) -> None:
        """The step's trained items, for the round's lineage and the curriculum's counts."""
        self.selector.mark_trained(trained_ids)
        with self.sampler_lock:
            self.sampler.observe(trained_ids)

    def checkpoint_state(self, next_step: int) -> dict:
        """The sampler's state as a checkpoint after step `next_step - 1` must save it: steps drawn ahead are undone
        (a resumed run draws them again), the counts of trained items are kept."""
        with self.sampler_lock:
            current, ahead = self.sampler.state_dict(), self.draw_states.get(next_step)
        if ahead is None:  # nothing drawn beyond `next_step - 1` (synchronous, or the producer is not there yet)
            return current
        return {**ahead, "observed": current["observed"],
                "replayed": {**ahead["replayed"], "trained": current["replayed"]["trained"]}}

    def overlap_s(self, start: float, stop: float) -> float:
        """Seconds of [start, stop] during which the producer was generating or scoring. Training spans only move
        forward, so spans that ended before `start` are dropped."""
        with self.condition:
            self.busy = spans = [(a, b) for a, b in self.busy if b > start]
        return sum(max(0.0, min(stop, b) - max(start, a)) for a, b in spans)

    def stop(self) -> None:
        """Stop producing; a step being produced finishes in the background and is discarded."""
        with self.condition:
            self.stopping = True
            self.condition.notify_all()


def pipeline_metrics(source: StepSource, produced: ProducedStep, learner_version: int,
                     train_started: float) -> dict[str, float]:
    """A step's asynchrony figures: how many versions behind `learner_version` (the learner's when it trained) its
    trained groups were sampled (mean, max), steps queued beyond it, the seconds from `train_started` to now (its
    training and weight push) during which the producer generated or scored and their share, and the seconds the
    learner waited for samples and the producer for the learner."""
    staleness = [learner_version - score.weight_version for score in produced.sampled.trained()]
    train_span = (train_started, time.perf_counter())
    overlap = source.overlap_s(*train_span)
    return {"async/staleness_mean": sum(staleness) / len(staleness), "async/staleness_max": max(staleness),
            "async/queue_depth": produced.queued_behind, "async/overlap_s": overlap,
            "async/overlap_share": overlap / max(train_span[1] - train_span[0], 1e-9),
            "time/learner_idle_s": produced.learner_waited_s, "time/rollout_idle_s": produced.waited_s}
