"""What every role's actors share: torch thread sizing and deadline-bounded waits that name the culprit."""

from __future__ import annotations

import os

import ray
from ray.exceptions import GetTimeoutError


def size_torch_threads(num_cpus: float) -> int:
    """Give torch as many threads as the actor's CPU share: oversubscribed spin-waiting threads made a 1 s step
    take 30 s on 2 cores (FIELD_NOTES)."""
    import torch

    threads = max(1, int(num_cpus))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def quiet_transformers() -> None:
    """No per-load progress bars from transformers inside actors: their logs are the run's logs."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def get_within(refs, timeout_s: float, culprit: str):
    """`ray.get` with a deadline; on expiry the error says which phase/actor did not answer."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except GetTimeoutError as error:
        raise TimeoutError(f"{culprit} did not finish within {timeout_s:.0f}s") from error

