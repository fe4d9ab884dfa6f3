"""Reward pool throughput and latency on this machine, clean and with 1% adversarial inputs.

Drives a RewardPool of real Ray actors with ordinary answers of every type, then the same stream with 1% of
adversarial inputs mixed in (code payloads, power towers, huge factorials, 10^4 nested fractions, 1 MB of
parentheses, 100 KB responses, invalid UTF-8 and NUL bytes). Latency of a sample: from the actor receiving its
batch to its verdict. Optional `--timeouts F` adds a fraction F of answers that run into the sandbox deadline.

Run: python -m benchmarks.reward_pool [--samples 6000] [--workers 2]
Writes benchmarks/results/reward_pool.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import ray
from rich.console import Console
from rich.progress import track

from visiong1.cluster import connect
from actors.reward import RewardPool
from benchmarks.common import write_result
from visiong1.config import load_config

ORDINARY = [  # (response, ground truth, answer type, meta): right and wrong answers in the forms models write
    (r"so \boxed{\frac{1}{2}}", "0.5", "math", {}), (r"\boxed{0.75}", r"\frac{3}{4}", "math", {}),
    (r"\boxed{12}", "12", "math", {}), (r"\boxed{13}", "12", "math", {}), (r"\boxed{50\%}", "0.5", "math", {}),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\sqrt{2}/2", "math", {}), (r"\boxed{x+1}", "1+x", "math", {}),
    (r"\boxed{[1,2)}", "[1, 2)", "math", {}), (r"\boxed{2\pi}", r"\pi", "math", {}),
    (r"\boxed{(B)}", "B", "choice", {}), (r"\boxed{Option C}", "B", "choice", {}), (r"\boxed{b}", "B", "choice", {}),
    (r"\boxed{The Eiffel Tower}", "eiffel tower", "text", {}), (r"\boxed{red}", "blue", "text", {}),
    (r"\boxed{three}", "3", "count", {}), (r"\boxed{4}", "3", "count", {}),
    (r"\boxed{[0, 0, 10, 10]}", "[0, 0, 10, 12]", "bbox", {}), (r"\boxed{[5, 5, 20, 20]}", "[0, 0, 10, 10]", "bbox", {}),
    (r"\boxed{(5, 5)}", "[0, 0, 10, 10]", "point", {}), ("I am not sure.", "3", "count", {}),
]
ADVERSARIAL = [
    (r"\boxed{__import__('os').system('touch /tmp/vg1-pwned')}", "1", "math", {}),
    (r"\boxed{().__class__.__bases__[0].__subclasses__()}", "1", "math", {}),
    (r"\boxed{9^{9^{9^9}}}", "1", "math", {}), (r"\boxed{(10^{100})!}", "1", "math", {}),
    (r"\boxed{" + r"\frac{1}{" * 10_000 + "2" + "}" * 10_000 + "}", "1", "math", {}),
    (r"\boxed{" + "(" * 1_000_000 + "}", "1", "math", {}),
    ("lorem ipsum " * 8_500 + r"\boxed{7}", "7", "math", {}),
    (b"\xff\xfe\x00\\boxed{1\x00}".decode("utf-8", errors="surrogateescape"), "1", "math", {}),
]
DEADLINE_BOMB = (r"\boxed{\int_0^1 x^{x^{x^{x}}} dx}", "1", "math", {})


def stream(samples: int, adversarial: float, timeouts: float, seed: int) -> list[tuple[bool, dict]]:
    """(is_ordinary, request) pairs; the adversarial share is spread uniformly through the stream."""
    rng = random.Random(seed)
    requests = []
    for _ in range(samples):
        draw = rng.random()
        if draw < timeouts:
            source, ordinary = DEADLINE_BOMB, False
        elif draw < timeouts + adversarial:
            source, ordinary = rng.choice(ADVERSARIAL), False
        else:
            source, ordinary = rng.choice(ORDINARY), True
        response, truth, kind, meta = source
        requests.append((ordinary, {"response": response, "ground_truth": truth, "answer_type": kind, "meta": meta}))
    return requests


def run(pool: RewardPool, requests: list[tuple[bool, dict]], batch: int, label: str) -> dict:
    """Score the stream in batches; returns ordinary-sample throughput and latency percentiles."""
    latencies, reasons = [], {}
    started = time.perf_counter()
    for offset in track(range(0, len(requests), batch), description=label):
        chunk = requests[offset:offset + batch]
        results = [r for part in ray.get(pool.async_score_texts([request for _, request in chunk])) for r in part]
        for (ordinary, _), result in zip(chunk, results):
            if ordinary:
                latencies.append(result["latency_s"])
            else:
                reasons[result["reason"]] = reasons.get(result["reason"], 0) + 1
    wall = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {"samples": len(requests), "ordinary_samples": len(latencies), "wall_s": wall,
            "samples_per_s": len(requests) / wall, "ordinary_samples_per_s": len(latencies) / wall,
            "ordinary_latency_p50_ms": 1000 * quantiles[49], "ordinary_latency_p99_ms": 1000 * quantiles[98],
            "adversarial_reasons": reasons}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2, help="reward actors")
    parser.add_argument("--batch", type=int, default=64, help="requests per actor call")
    parser.add_argument("--timeouts", type=float, default=0.0, help="fraction of deadline bombs to add")
    args = parser.parse_args()
    console = Console()
    connect(None, num_cpus=2, namespace="visiong1-bench")
    config = load_config(None, [f"reward.workers={args.workers}", "reward.num_cpus=1"]).reward
    pool = RewardPool(config)
    ray.get(pool.async_score_texts([{"response": r"\boxed{x+1}", "ground_truth": "1+x", "answer_type": "math"}] * 8))
    clean = run(pool, stream(args.samples, 0.0, 0.0, seed=0), args.batch, "clean")
    mixed = run(pool, stream(args.samples, 0.01, args.timeouts, seed=0), args.batch, "1% adversarial")
    figures = {"clean": clean, "adversarial_1pct": mixed,
               "p99_ratio_mixed_over_clean": mixed["ordinary_latency_p99_ms"] / clean["ordinary_latency_p99_ms"],
               "throughput_ratio_mixed_over_clean": mixed["ordinary_samples_per_s"] / clean["ordinary_samples_per_s"]}
    target = write_result("reward_pool", figures, {**vars(args), "sandbox_workers": config.sandbox_workers,
                                                   "sample_deadline_s": config.sample_deadline_s})
    for name in ("clean", "adversarial_1pct"):
        run_figures = figures[name]
        console.print(f"{name:>17}: {run_figures['samples_per_s']:.0f} samples/s, ordinary p50 "
                      f"{run_figures['ordinary_latency_p50_ms']:.1f} ms, p99 {run_figures['ordinary_latency_p99_ms']:.1f} ms")
    console.print(f"p99 ratio {figures['p99_ratio_mixed_over_clean']:.2f}; results in {target}")
    ray.shutdown()


if __name__ == "__main__":
    main()
