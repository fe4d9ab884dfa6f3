"""What every role's actors share: torch thread sizing and deadline-bounded waits that name the culprit."""

from __future__ import annotations

import os
import time

import ray
from ray.exceptions import GetTimeoutError


def size_torch_threads(num_cpus: float) -> int:
    """Give torch as many threads as the actor's CPU share: two torch processes of 2 threads each on a 2-core
    machine made a 1 s RL step take 30 s (spin-waiting threads); one thread each kept it at 1.06 s."""
    import torch

    threads = max(1, int(num_cpus))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def quiet_transformers() -> None:
    """No per-load progress bars from transformers inside actors: their logs are the run's logs."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def node_resources(node_resource: str | None) -> dict[str, float]:
    """Ray resources that place a role on the nodes offering `node_resource` (a KubeRay worker group's custom
    resource); a token amount, so it never limits how many actors fit. Empty when the role may go anywhere."""
    return {node_resource: 0.001} if node_resource else {}


def shard_bounds(total: int, parts: int, min_size: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of at most `parts` contiguous, near-equal, non-empty shards of `total` items, none smaller
    than `min_size` except the last.

    >>> shard_bounds(10, 3), shard_bounds(10, 3, min_size=5), shard_bounds(0, 3)
    ([(0, 4), (4, 8), (8, 10)], [(0, 5), (5, 10)], [])
    """
    size = max(min_size, -(-total // max(1, parts)))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def get_within(refs, timeout_s: float, culprit: str):
    """`ray.get` with a deadline; on expiry the error says which phase/actor did not answer. Of a list, the first
    task to fail raises at once: a rank blocked in a collective with a dead peer must not hold the wait until the
    deadline."""
    deadline = time.monotonic() + timeout_s
    try:
        if not isinstance(refs, list):
            return ray.get(refs, timeout=timeout_s)
        values, pending = {}, list(dict.fromkeys(refs))
        while pending:
            done, pending = ray.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise GetTimeoutError(f"{len(pending)} of {len(refs)} tasks pending")
            values[done[0]] = ray.get(done[0])
        return [values[ref] for ref in refs]
    except GetTimeoutError as error:
        raise TimeoutError(f"{culprit} did not finish within {timeout_s:.0f}s") from error

