"""Checkpoints on object storage, against a real S3-compatible server this module starts (moto's): a save commits by
its manifest at the final path (S3 has no rename), loads back exactly, exports, and a save that died before its
manifest is never taken for a checkpoint."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pyarrow import fs as pafs

from visiong1.config import LearnerConfig
from visiong1.training.checkpoint import MANIFEST, CheckpointStore
from visiong1.training.export import export_checkpoint
from visiong1.training.trainer import PolicyTrainer


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    """host:port of a moto S3 server owned by this module (stopped by its handle)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def bucket_uri(s3_endpoint, monkeypatch, request) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = request.node.name.replace("_", "-")[:50].strip("-")
    pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1",
                     allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/run/checkpoints?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"


def test_a_checkpoint_round_trips_through_s3_and_exports(bucket_uri, tiny_model, tmp_path):
    trainer = PolicyTrainer(tiny_model, LearnerConfig(num_cpus=1))
    store = CheckpointStore(bucket_uri)
    staging = store.begin(1)
    assert staging == f"{store.root}/step-00000001"  # no rename on S3: written in place, the manifest commits
    digests = trainer.save_checkpoint(store, staging, {"steps_done": 1})
    assert store.complete() == []
    path = store.commit(staging, 1, digests, world_size=1, backend="torch")
    assert store.latest() == path and {"state/.metadata", "state/__0_0.distcp", "extra.json"} <= set(digests)
    store.verify(path, sorted(digests))

    with torch.no_grad():
        for parameter in trainer.model.parameters():
            parameter.add_(1.0)  # the load below must put every weight back
    assert trainer.load_checkpoint(CheckpointStore(bucket_uri), path) == {"steps_done": 1}
    restored = trainer.full_state_dict()
    location, query = bucket_uri.split("?")
    out = export_checkpoint(f"{location}/step-00000001?{query}", tmp_path / "hf")
    from transformers import AutoModelForImageTextToText

    exported = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    assert all(torch.equal(exported[name], tensor) for name, tensor in restored.items())


def test_a_save_that_died_before_its_manifest_is_not_a_checkpoint(bucket_uri, tiny_model):
    trainer = PolicyTrainer(tiny_model, LearnerConfig(num_cpus=1))
    store = CheckpointStore(bucket_uri)
    first = store.begin(1)
    path = store.commit(first, 1, trainer.save_checkpoint(store, first, {}), world_size=1, backend="torch")
    second = store.begin(2)
    trainer.save_checkpoint(store, second, {})  # every shard written, then the writer dies: no manifest
    assert store.latest() == path
    assert store.remove_stale() == [second]
    assert store.fs.get_file_info(f"{second}/{MANIFEST}").type == pafs.FileType.NotFound
    assert [step for step, _ in store.complete()] == [1]
