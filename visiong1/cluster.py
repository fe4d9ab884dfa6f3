"""Connecting to Ray: a private local cluster for demos and tests, or an existing cluster by address."""

from __future__ import annotations

import os
import tempfile

import ray


def connect(address: str | None, num_cpus: int, namespace: str) -> None:
    """Join the cluster at `address`, or start a private local one with `num_cpus` logical CPUs.

    `address="local"` rather than a bare `ray.init()`, which would silently attach to any Ray already running on
    the machine. The short temp dir keeps Ray's socket paths under the 108-byte limit.
    """
    if ray.is_initialized():
        return
    if address is not None:
        ray.init(address=address, namespace=namespace, log_to_driver=False)
        return
    temp_dir = tempfile.mkdtemp(prefix="vg1-ray-", dir=os.environ.get("VISIONG1_RAY_TMP", "/tmp"))
    ray.init(address="local", num_cpus=num_cpus, namespace=namespace, include_dashboard=False,
             _temp_dir=temp_dir, log_to_driver=False)
