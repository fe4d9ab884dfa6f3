"""Selection driven through the run's actor groups: offline difficulty scoring of a pool, and DAPO-style dynamic
sampling of a training step. The statistics live in visiong1.selection; this module only moves batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import ray
from tqdm import tqdm

from actors.common import get_within
from visiong1.algorithms.advantages import grpo_advantages
from visiong1.config import RunConfig
from visiong1.eval.benchmarks.results import summarise
from visiong1.eval.heldout import pass_at_k, per_domain
from visiong1.selection.difficulty import DifficultyStore, difficulty_record, in_band, pass_rate
from visiong1.data.pool_index import ItemRow, read_items
from visiong1.store import SampleGroupPlan
from visiong1.types import GroupScores, PromptItem, items_to_table

ACCURACY_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class DynamicSamplingExhausted(RuntimeError):
    """Dynamic sampling used its generation batches without filling the step with in-band groups."""


@contextmanager
def timed(timings: dict, name: str) -> Iterator[None]:
    """Add the block's wall time to `timings[f"time/{name}_s"]` (a step's or a selection's metrics)."""
    started = time.perf_counter()
    yield
    key = f"time/{name}_s"
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - started


def generate_and_score(rollout, rewards, items: list[PromptItem], config: RunConfig, samples: int | None = None,
                       timings: dict | None = None, greedy: bool = False,
                       training: bool = False) -> tuple[list[ray.ObjectRef], list[GroupScores]]:
    """Sample `items` on the rollout group (`samples` each, or one greedy answer) and score them on the reward
    pool, each group as soon as it lands: (one group ref per item, scores in order); `training` samples get
    `rollout.overlong`'s handling. Seconds spent are added to `timings["time/generate_s"]` and, for the scoring
    left once generation ended, `timings["time/reward_s"]`."""
    timings = {} if timings is None else timings
    score_refs: list = [None] * len(items)

    def score(row: int, group_ref: ray.ObjectRef) -> None:
        score_refs[row] = rewards.async_score([group_ref], config.rollout if training else None)[0]

    started = time.perf_counter()
    shard_refs = rollout.generate(items_to_table(items), config.round.step_timeout_s, greedy=greedy, samples=samples,
                                  on_group=score)
    generated = time.perf_counter()
    shards = get_within(score_refs, config.reward.timeout_s, "reward pool")
    timings["time/generate_s"] = timings.get("time/generate_s", 0.0) + generated - started
    timings["time/reward_s"] = timings.get("time/reward_s", 0.0) + time.perf_counter() - generated
    return shard_refs, [score for shard in shards for score in shard]


def score_difficulty(items: list[ItemRow], rollout, rewards, config: RunConfig, store: DifficultyStore,
                     round_index: int, progress: bool = False) -> list[dict]:
    """Pass rates of every item not yet in `store`, chunk by chunk (each chunk read from storage, then persisted
    before the next), then the store's full contents as rows. Rerunning after an interruption scores only what is
    missing."""
    selection = config.selection
    done = store.scored_ids()
    todo = [item for item in items if item.id not in done]
    chunk = selection.difficulty_chunk
    for start in tqdm(range(0, len(todo), chunk), desc="difficulty", disable=not progress):
        batch = todo[start:start + chunk]
        shard_refs, scores = generate_and_score(rollout, rewards, read_items(batch), config,
                                                samples=selection.difficulty_samples)
        groups = [group for shard in ray.get(shard_refs) for group in shard]
        store.append([difficulty_record(round_index, item, score.rewards, score.accuracies,
                                        selection.band(item.source, item.domain),
                                        [sample.token_ids for sample in group.samples])
                      for item, score, group in zip(batch, scores, groups)])
    return store.read().to_pylist()


def accuracy_histogram(scores: list[GroupScores]) -> dict[str, int]:
    """Groups per bin of mean accuracy: exactly 0, (0, 0.2], ..., (0.8, 1), exactly 1."""
    counts = {"dynamic/groups_acc_0": 0, "dynamic/groups_acc_1": 0}
    for low, high in zip(ACCURACY_BINS, ACCURACY_BINS[1:]):
        counts[f"dynamic/groups_acc_{low:.1f}_{high:.1f}"] = 0
    for score in scores:
        mean = sum(score.accuracies) / len(score.accuracies)
        if mean == 0.0 or mean == 1.0:
            counts[f"dynamic/groups_acc_{int(mean)}"] += 1
            continue
        low = max(b for b in ACCURACY_BINS[:-1] if b < mean)
        counts[f"dynamic/groups_acc_{low:.1f}_{low + 0.2:.1f}"] += 1
    return counts


@dataclass
class SampledStep:
    """A step's training input after dynamic sampling: every generated shard, the scores of every group in
    shard order, and which groups train (the rest get no advantages)."""

    shard_refs: list = field(default_factory=list)
    scores: list[GroupScores] = field(default_factory=list)
    keep: list[bool] = field(default_factory=list)
    batches: int = 0
    drop_reasons: list[str | None] = field(default_factory=list)
    """Per group: None when it trains, else `out_of_band` (mean accuracy outside its band) or `surplus` (beyond
    the step's target)."""

    def trained(self) -> list[GroupScores]:
        return [score for score, keep in zip(self.scores, self.keep) if keep]

    def advantages(self, scale_by_std: bool) -> list[list[float | None]]:
        """GRPO advantages per group and sample (`[groups][samples]`), all None in the groups that do not train."""
        rows = grpo_advantages([s.rewards for s in self.scores], [s.excluded for s in self.scores],
                               scale_by_std=scale_by_std)
        return [row if keep else [None] * len(row) for row, keep in zip(rows, self.keep)]

    def ledger_plan(self) -> list[SampleGroupPlan]:
        """Every generated sample's planned fate for the ledger: trained, or dropped with its group's reason or,
        in a kept group, `excluded` when the reward pool left it out."""
        plans = []
        for score, group_reason in zip(self.scores, self.drop_reasons):
            excluded = score.excluded or [False] * len(score.rewards)
            plans.append(SampleGroupPlan(score.prompt_id, [group_reason or ("excluded" if out else None)
                                                           for out in excluded]))
        return plans


def dynamic_sample(draw: Callable[[int], list[PromptItem]], rollout, rewards, config: RunConfig,
                   timings: dict | None = None) -> SampledStep:
    """Generate batches of `round.prompts_per_step` prompts from `draw(n)` until that many groups have a mean
    accuracy inside their band (the rest are dropped, extras beyond the target too). Raises
    DynamicSamplingExhausted after `selection.max_generation_batches` batches."""
    target, selection = config.round.prompts_per_step, config.selection
    step = SampledStep()
    while sum(step.keep) < target:
        if step.batches == selection.max_generation_batches:
            raise DynamicSamplingExhausted(
                f"dynamic sampling kept {sum(step.keep)} of {target} groups after {step.batches} generation "
                f"batches (selection.max_generation_batches); mean accuracies outside the band everywhere")
        items = draw(target)
        shard_refs, scores = generate_and_score(rollout, rewards, items, config, timings=timings, training=True)
        step.batches += 1
        step.shard_refs += shard_refs
        step.scores += scores
        for item, score in zip(items, scores):
            wanted = sum(step.keep) < target
            accuracies = trainable_accuracies(score)
            banded = bool(accuracies) and in_band(accuracies, selection.band(item.source, item.domain))
            step.keep.append(wanted and banded)
            step.drop_reasons.append(None if wanted and banded else ("out_of_band" if wanted else "surplus"))
    return step


def trainable_accuracies(score: GroupScores) -> list[float]:
    """The accuracies of the group's samples that stay in it (excluded ones, timed out or cut at the length limit,
    take no part in its advantages, so neither in its band test)."""
    return [accuracy for accuracy, out in zip(score.accuracies, score.excluded or [False] * len(score.accuracies))
            if not out]


def sample_step(draw: Callable[[int], list[PromptItem]], rollout, rewards, config: RunConfig,
                timings: dict) -> SampledStep:
    """Generate and score one step's groups from `draw(n)`: `round.prompts_per_step` prompts plainly, or by dynamic
    sampling (`selection.dynamic_sampling`; then some groups do not train)."""
    if config.selection.dynamic_sampling:
        return dynamic_sample(draw, rollout, rewards, config, timings)
    shard_refs, scores = generate_and_score(rollout, rewards, draw(config.round.prompts_per_step), config,
                                            timings=timings, training=True)
    return SampledStep(shard_refs, scores, [True] * len(scores), 1, [None] * len(scores))


def check_trainable(trained: list[GroupScores], policy_version: int, config: RunConfig) -> None:
    """Refuse to train on samples more than `rollout.max_staleness` versions behind `policy_version` (0: on-policy)
    or on fewer groups with a trainable sample than `round.min_step_groups_fraction` of `round.prompts_per_step`."""
    staleness = policy_version - min(s.weight_version for s in trained)
    if staleness > config.rollout.max_staleness:
        raise RuntimeError(f"samples are {staleness} weight versions behind the learner (version {policy_version}); "
                           f"rollout.max_staleness={config.rollout.max_staleness}")
    usable = sum(not (s.excluded and all(s.excluded)) for s in trained)
    wanted = config.round.min_step_groups_fraction * config.round.prompts_per_step
    if usable < wanted:
        raise RuntimeError(f"the step has {usable} groups with a trainable sample, fewer than "
                           f"round.min_step_groups_fraction={config.round.min_step_groups_fraction} of "
                           f"{config.round.prompts_per_step}")


def dynamic_metrics(step: SampledStep) -> dict[str, float]:
    kept = [score for score, keep in zip(step.scores, step.keep) if keep]
    return {"dynamic/generation_batches": step.batches, "dynamic/groups_generated": len(step.scores),
            "dynamic/groups_kept": len(kept),
            "dynamic/kept_pass_rate_mean": sum(pass_rate(s.accuracies) for s in kept) / max(1, len(kept)),
            **accuracy_histogram(step.scores)}


def evaluate(items: list[PromptItem], rollout, rewards, config: RunConfig, benchmarks: bool = True) -> dict:
    """Held-out evaluation: greedy accuracy per domain, and pass@k from `eval.pass_k` samples at the rollout
    temperature (when k > 1); means are over domains (each domain counts once). Items whose metadata names a
    `template` (the synthetic generators do) also get greedy accuracy per `domain/template`: a domain's mean can
    hide one template stuck at zero (the tiny model cannot localize). With `benchmarks` and `eval.benchmarks` set,
    `benchmarks` holds each benchmark's summary on the run's fixed sample, scored by its official rule."""
    timings: dict = {}
    _, greedy = generate_and_score(rollout, rewards, items, config, greedy=True, timings=timings)
    accuracy = per_domain([(item.domain, score.accuracies[0]) for item, score in zip(items, greedy)])
    result = {"accuracy": accuracy, "accuracy_mean": sum(accuracy.values()) / len(accuracy), "items": len(items),
              "accuracy_by_template": per_domain([(f"{item.domain}/{item.metadata['template']}", score.accuracies[0])
                                                  for item, score in zip(items, greedy)
                                                  if "template" in item.metadata])}
    k = config.eval.pass_k
    if k > 1:
        _, sampled = generate_and_score(rollout, rewards, items, config, samples=k, timings=timings)
        passed = per_domain([(item.domain, pass_at_k(k, sum(a == 1.0 for a in score.accuracies), k))
                             for item, score in zip(items, sampled)])
        result |= {"pass_at_k": passed, "pass_at_k_mean": sum(passed.values()) / len(passed), "pass_k": k}
    if benchmarks and config.eval.benchmarks:
        from actors.benchmark_eval import evaluate_benchmarks, run_benchmark_items  # imports the actor groups

        started = time.perf_counter()
        records = evaluate_benchmarks(run_benchmark_items(config.eval, config.round.seed), rollout, rewards, config)
        result["benchmarks"] = summarise(records)
        timings["time/benchmarks_s"] = time.perf_counter() - started
    return result | {"seconds": round(sum(timings.values()), 2)}


def reward_metrics(scores: list[GroupScores]) -> dict[str, float]:
    """A step's reward, accuracy and reason shares over the groups that train, and their oldest weight version."""
    rewards = np.array([s.rewards for s in scores])
    accuracies = np.array([s.accuracies for s in scores])
    reasons = [r for s in scores for r in s.reasons]
    mixed = [0 < row.mean() < 1 for row in accuracies]
    metrics = {"reward/mean": float(rewards.mean()), "reward/accuracy": float(accuracies.mean()),
               "reward/excluded": sum(sum(s.excluded) for s in scores),
               "reward/mixed_group_fraction": float(np.mean(mixed)), "rollout/samples": len(reasons),
               "rollout/sample_version": min(s.weight_version for s in scores)}
    for reason in sorted(set(reasons)):
        metrics[f"reward/reason_{reason}"] = reasons.count(reason) / len(reasons)
    return metrics


def domain_accuracy(scores: list[GroupScores], domain: Callable[[str], str]) -> dict[str, float]:
    """Sampled accuracy per domain over every group generated in the step (kept or not): which domains RL moves."""
    by_domain = per_domain([(domain(s.prompt_id), float(np.mean(s.accuracies))) for s in scores])
    return {f"reward/accuracy_{name}": value for name, value in by_domain.items()}
