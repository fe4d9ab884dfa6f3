"""The step source that runs generation ahead of the learner: its staleness bound, its order and its checkpoints.

The producer here is a function standing in for generate-and-score (no Ray): what is under test is when it may
run, which weight version it samples with, and what a checkpoint taken while it is ahead records."""

import threading
import time

import pytest

from actors.pipeline import StepSource, pipeline_metrics
from actors.selection import SampledStep
from visiong1.selection.curriculum import CurriculumSampler
from visiong1.types import GroupScores, PromptItem

DOMAINS = {f"item{i}": ("a" if i % 2 else "b") for i in range(12)}


class Selector:
    """The two calls the step source makes on the round's selector, over a real curriculum sampler."""

    def __init__(self):
        self.trained: list[str] = []

    def draw(self, sampler: CurriculumSampler, count: int) -> list[PromptItem]:
        return [PromptItem(item_id, "synthetic", DOMAINS[item_id], "How many?", [], "1", "count")
                for item_id in sampler.next_batch(count)]

    def mark_trained(self, item_ids: list[str]) -> None:
        self.trained += item_ids


class Learner:
    """Trains step after step, slower than generation, and pushes each step's weights (one version per step)."""

    def __init__(self, train_s: float):
        self.version, self.train_s, self.log = 0, train_s, []
        self.lock = threading.Lock()

    def record(self, entry: tuple) -> None:
        with self.lock:
            self.log.append(entry)

    def produce(self, draw, timings: dict) -> SampledStep:
        """One step of two groups, sampled with the weights the rollout serves now."""
        version = self.version
        self.record(("generate", version))
        items = draw(2)
        scores = [GroupScores(item.id, [1.0, 0.0], [1.0, 0.0], ["correct", "wrong"], version) for item in items]
        timings["time/generate_s"] = 0.0
        return SampledStep([], scores, [True, True], 1, [None, None])

    def run(self, source: StepSource, steps: range) -> list[dict]:
        metrics = []
        for step in steps:
            produced = source.take(step)
            source.observe([score.prompt_id for score in produced.sampled.trained()])
            learner_version, training = self.version, time.perf_counter()
            self.record(("train_start", step))
            time.sleep(self.train_s)
            self.record(("train_end", step))
            self.version += 1  # the push: the rollout serves the new weights from here on
            source.pushed(step)
            metrics.append(pipeline_metrics(source, produced, learner_version, training))
        return metrics


def new_sampler() -> CurriculumSampler:
    return CurriculumSampler(DOMAINS, {}, seed=3)


@pytest.mark.parametrize("max_staleness", [0, 1, 2])
def test_samples_are_never_more_than_max_staleness_versions_behind_the_learner(max_staleness):
    """Training is slowed on purpose, so the producer would run arbitrarily far ahead if the bound did not hold
    for queued steps too."""
    learner = Learner(train_s=0.05)
    with StepSource(learner.produce, Selector(), new_sampler(), range(8), max_staleness) as source:
        metrics = learner.run(source, range(8))
    assert max(m["async/staleness_max"] for m in metrics) == max_staleness  # the bound, reached
    assert all(m["async/queue_depth"] <= max_staleness for m in metrics)
    generated = [version for kind, version in learner.log if kind == "generate"]
    assert generated == sorted(generated) and len(generated) == 8


def test_generation_of_the_next_step_completes_while_the_learner_trains():
    """Order, not time: with max_staleness 1, step s + 1 is generated on weight version s (those trained at step
    s - 1) between the start and the end of learner step s (step 1 is generated with step 0, before any push)."""
    learner = Learner(train_s=0.2)
    with StepSource(learner.produce, Selector(), new_sampler(), range(4), 1) as source:
        learner.run(source, range(4))
    log = learner.log
    for step in (1, 2):
        start, end = log.index(("train_start", step)), log.index(("train_end", step))
        assert ("generate", step) in log[start:end]


def test_a_synchronous_source_generates_only_after_the_previous_step_pushed():
    learner = Learner(train_s=0.0)
    with StepSource(learner.produce, Selector(), new_sampler(), range(4), 0) as source:
        metrics = learner.run(source, range(4))
    assert [entry for entry in learner.log if entry[0] != "train_start"] == [
        entry for step in range(4) for entry in (("generate", step), ("train_end", step))]
    assert all(m["async/staleness_max"] == 0 and m["async/overlap_s"] == 0.0 for m in metrics)


def test_a_checkpoint_taken_while_generation_is_ahead_rewinds_the_draws_but_keeps_what_trained():
    """The sampler state saved after step 1 must equal a synchronous run's after the same two trained steps, even
    though the asynchronous producer has already drawn steps 2 and 3."""
    learner, selector = Learner(train_s=0.0), Selector()
    source = StepSource(learner.produce, selector, new_sampler(), range(6), 2)
    learner.run(source, range(2))
    deadline = time.monotonic() + 10
    while source.queued() < 2 and time.monotonic() < deadline:  # steps 2 and 3 drawn ahead
        time.sleep(0.01)
    assert source.queued() == 2
    state = source.checkpoint_state(2)
    source.stop()

    synchronous = new_sampler()
    for _ in range(2):
        synchronous.observe(synchronous.next_batch(2))
    assert state == synchronous.state_dict()
    assert selector.trained == [item for step in range(2) for item in learner_items(learner, step)]
    resumed = new_sampler()
    resumed.load_state_dict(state)
    assert resumed.next_batch(2) == learner_items(learner, 2)  # a resumed round draws step 2's prompts again


def learner_items(learner: Learner, step: int) -> list[str]:
    """The items a fresh sampler draws for `step` (two per step)."""
    sampler = new_sampler()
    return [sampler.next_batch(2) for _ in range(step + 1)][step]


def test_an_error_while_generating_ahead_is_raised_at_its_step():
    def produce(draw, timings):
        draw(1)
        if produce.calls == 1:
            raise RuntimeError("reward pool gone")
        produce.calls += 1
        return SampledStep([], [GroupScores("x", [1.0], [1.0], ["correct"], 0)], [True], 1, [None])

    produce.calls = 0
    with StepSource(produce, Selector(), new_sampler(), range(3), 1) as source:
        source.take(0)
        source.pushed(0)
        with pytest.raises(RuntimeError, match="reward pool gone"):
            source.take(1)
