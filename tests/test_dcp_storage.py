"""Sharded state written through DCP on a local store: every file's sha256 is computed as it streams out, and the
kernel is made to write back while the rest is still being serialised; what loads back is what was saved."""

import hashlib
import os

import torch
import torch.distributed.checkpoint as dcp

from visiong1.training import dcp_storage
from visiong1.training.checkpoint import CheckpointStore


def test_a_local_save_writes_back_as_it_goes_and_its_digests_match_the_files(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(dcp_storage, "WRITEBACK_BYTES", 64 * 1024)
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or os.fsync(fd))
    state = {"model": {f"layer{i}.weight": torch.randn(128, 128) for i in range(4)}}  # 256 KiB of fp32
    digests = dcp_storage.save_state(state, CheckpointStore(str(tmp_path)), f"{tmp_path}/step/state")
    assert len(synced) >= 2  # writebacks during the shard file's 256 KiB, before its final fsync
    assert digests and all(hashlib.sha256((tmp_path / "step" / name).read_bytes()).hexdigest() == digest
                           for name, digest in digests.items())
    loaded = {"model": {name: torch.zeros(128, 128) for name in state["model"]}}
    dcp.load(loaded, storage_reader=dcp_storage.state_reader(CheckpointStore(str(tmp_path)), f"{tmp_path}/step/state"),
             no_dist=True)
    assert all(torch.equal(loaded["model"][name], tensor) for name, tensor in state["model"].items())
