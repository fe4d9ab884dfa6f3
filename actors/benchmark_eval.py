"""Benchmark evaluation on the actor groups: greedy answers from the rollout group, each judged on the reward pool
by its benchmark's official scorer. `visiong1 eval` runs it on a model directory; a run with `eval.benchmarks` runs
it in every evaluate phase on a fixed sample."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import ray
from rich.console import Console
from tqdm import tqdm

from actors.common import get_within
from actors.reward import RewardPool
from actors.rollout import RolloutGroup
from visiong1.cluster import connect
from visiong1.config import EvalConfig, RunConfig
from visiong1.eval.benchmarks import load_benchmark
from visiong1.eval.benchmarks.results import record, sample_items, summarise, summary_table, write_results
from visiong1.types import PromptItem, items_to_table

EVAL_CHUNK = 64  # prompts per generate call: large enough for vLLM's batching, small enough for a live progress bar


def evaluate_benchmarks(items: list[PromptItem], rollout, rewards, config: RunConfig,
                        progress: bool = False) -> list[dict]:
    """One greedy answer per item, judged by the item's official scorer; returns records in item order
    (`visiong1.eval.benchmarks.results.record`)."""
    records: list[dict] = []
    for start in tqdm(range(0, len(items), EVAL_CHUNK), desc="benchmarks", disable=not progress):
        batch = items[start:start + EVAL_CHUNK]
        shard_refs = rollout.generate(items_to_table(batch), config.round.step_timeout_s, greedy=True)
        groups = [group for shard in ray.get(shard_refs) for group in shard]
        requests = [{"response": group.samples[0].text, "ground_truth": group.prompt.answer,
                     "answer_type": group.prompt.answer_type, "domain": group.prompt.domain,
                     "meta": group.prompt.scorer_meta()} for group in groups]
        parts = get_within(rewards.async_score_texts(requests, unscorable_ok=True), config.reward.timeout_s,
                           "reward pool")
        verdicts = [verdict for part in parts for verdict in part]
        records += [record(group.prompt, group.samples[0].text, verdict) for group, verdict in zip(groups, verdicts)]
    return records


@functools.lru_cache(maxsize=4)
def _run_sample(root: str, names: tuple[str, ...], per_benchmark: int, seed: int) -> tuple[PromptItem, ...]:
    return tuple(item for name in names
                 for item in sample_items(load_benchmark(name, Path(root)), per_benchmark, seed))


def run_benchmark_items(evaluation: EvalConfig, seed: int) -> list[PromptItem]:
    """The run's benchmark sample: `eval.benchmark_items` per benchmark, fixed by `seed`, read once per process."""
    return list(_run_sample(evaluation.benchmark_root, tuple(evaluation.benchmarks), evaluation.benchmark_items, seed))


def model_directory(path: str, scratch: Path) -> str:
    """A Hugging Face model directory as given, or the one exported from a checkpoint (store) into `scratch`."""
    if (Path(path) / "config.json").is_file():
        return path
    from visiong1.training.export import export_checkpoint

    return str(export_checkpoint(path, scratch / "model"))


def main(config: RunConfig, model: str, benchmarks: list[str], data_root: str, output_dir: str,
         limit: int | None = None) -> int:
    """`visiong1 eval`: every item (or the first `limit`) of each benchmark; writes results under `output_dir`."""
    console = Console()
    items = [item for name in benchmarks for item in load_benchmark(name, Path(data_root))[:limit]]
    console.print(f"{len(items)} items from {len(benchmarks)} benchmark(s)")
    connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    with tempfile.TemporaryDirectory(prefix="visiong1-eval-") as scratch:
        rollout = RolloutGroup(model_directory(model, Path(scratch)), config.rollout, config.round.system_prompt,
                               config.round.seed, cache_root=str(Path(config.model.cache_dir).parent / "engines"))
        rewards = RewardPool(config.reward)
        try:
            records = evaluate_benchmarks(items, rollout, rewards, config, progress=True)
        finally:
            rollout.shutdown()
            rewards.shutdown()
    summary = summarise(records)
    console.print(summary_table(summary, f"{model}"))
    for path in write_results(records, summary, Path(output_dir), title=str(model)):
        console.print(f"wrote {path}")
    return 0
