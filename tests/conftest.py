"""Shared fixtures: one private local Ray cluster and one tiny model per test session (ray.init costs 3-5 s)."""

from __future__ import annotations

import os

import pytest

TEST_NAMESPACE = "visiong1-test"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_model(model_cache) -> str:
    from visiong1.models.tiny import tiny_model_path

    return str(tiny_model_path(model_cache, seed=0))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A local cluster owned by this session; 8 logical CPUs so concurrent runs' actors can all schedule."""
    import ray

    from visiong1.cluster import connect

    os.environ.setdefault("VISIONG1_RAY_TMP", "/tmp")
    connect(address=None, num_cpus=8, namespace=TEST_NAMESPACE)
    yield ray
    ray.shutdown()
