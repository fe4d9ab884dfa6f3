"""Resumable checkpoints written by many writers and committed by one manifest.

Every learner rank writes its own files into the checkpoint's staging location in parallel; then one `commit` writes
the manifest (sha256 per file), which is the commit: locally the staging directory is renamed into place, on object
storage (no rename) the manifest is written last at the final path. A checkpoint without a manifest is never loaded,
so "the newest complete checkpoint loads" holds through a crash at any point.

Storage is a local path or any pyarrow filesystem URI (`s3://bucket/run`, `gs://...`, `file:///...`). This module
does not import torch: the coordinator commits and lists checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid

from pyarrow import fs as pafs

from visiong1.faults import crash_once

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 1: one writer, the whole model gathered into model.safetensors; 2: per-rank DCP shards
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_CHUNK = 16 << 20


class CheckpointCorruptError(RuntimeError):
    """A checkpoint file does not match its manifest."""


class CheckpointFormatError(RuntimeError):
    """A checkpoint this version cannot resume from (an older format, or a world size its format cannot change)."""


def run_checkpoints(uri: str | None, run_id: str, run_dir: str) -> str:
    """Where a run's resumable checkpoints go: `<uri>/<run id>` (a URI's query kept), or `<run dir>/checkpoints`."""
    if uri is None:
        return f"{run_dir}/checkpoints"
    location, _, query = uri.partition("?")
    return f"{location.rstrip('/')}/{run_id}" + (f"?{query}" if query else "")


class CheckpointStore:
    def __init__(self, location: str, keep_last: int = 2):
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.keep_last = keep_last
        self.fs.create_dir(self.root, recursive=True)

    # --- writing ----------------------------------------------------------------------------------------------------
    def begin(self, step: int) -> str:
        """Where the writers of checkpoint `step` put their files: a fresh staging directory locally; on object
        storage the final path itself, emptied first (its manifest goes first, so it is never half complete)."""
        if self.local:
            staging = f"{self.root}/.tmp-step-{step:08d}-{uuid.uuid4().hex[:8]}"
        else:
            staging = self._final(step)
            self._delete_checkpoint(staging)
        self.fs.create_dir(staging, recursive=True)
        return staging

    def write_file(self, path: str, payload: bytes) -> str:
        """Write `payload` to `path` (durably, locally); returns its sha256."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if self.local:  # fsync needs a real file descriptor
            with open(path, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            with self.fs.open_output_stream(path) as stream:
                stream.write(payload)
        return hashlib.sha256(payload).hexdigest()

    def upload(self, local_path: str, path: str) -> str:
        """Copy a local file to `path` in chunks (never whole in memory); returns its sha256."""
        digest = hashlib.sha256()
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with open(local_path, "rb") as source, self.fs.open_output_stream(path) as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
        return digest.hexdigest()

    def commit(self, staging: str, step: int, digests: dict[str, str], metric: float | None = None,
               **facts) -> str:
        """Make the checkpoint in `staging` complete: `digests` ({relative path: sha256} of every file every writer
        wrote) and `facts` (JSON: world size, backend) go into the manifest, written last. Returns the final path."""
        missing = [name for name in digests if not self._exists(f"{staging}/{name}")]
        if missing:
            raise CheckpointCorruptError(f"{staging}: files reported written are missing: {missing[:5]}")
        manifest = {"format": FORMAT_VERSION, "step": step, "metric": metric, "created": time.time(), **facts,
                    "sha256": dict(sorted(digests.items()))}
        crash_once("before_manifest")
        self.write_file(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        final = self._final(step)
        if self.local:
            crash_once("before_rename")
            self._delete_checkpoint(final)  # a re-run of the same step replaces it
            self.fs.move(staging, final)
            _fsync_directory(self.root)
        crash_once("before_retain")
        self._retain()
        return final

    def remove_stale(self) -> list[str]:
        """Delete what crashed saves left: staging directories and checkpoint directories without a manifest.
        Call it only when no save is in progress (at start). Returns the deleted paths."""
        stale = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type != pafs.FileType.Directory:
                continue
            partial = _STEP_DIR.match(info.base_name) and not self._exists(f"{info.path}/{MANIFEST}")
            if info.base_name.startswith(".tmp-step-") or partial:
                self.fs.delete_dir(info.path)
                stale.append(info.path)
        return stale

    # --- reading ----------------------------------------------------------------------------------------------------
    def complete(self) -> list[tuple[int, str]]:
        """(step, path) of every checkpoint that has a manifest, oldest first."""
        found = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            match = _STEP_DIR.match(info.base_name)
            if match and info.type == pafs.FileType.Directory and self._exists(f"{info.path}/{MANIFEST}"):
                found.append((int(match.group(1)), info.path))
        return sorted(found)

    def latest(self) -> str | None:
        complete = self.complete()
        return complete[-1][1] if complete else None

    def manifest(self, path: str) -> dict:
        """The manifest of the checkpoint at `path`; CheckpointFormatError when it is not this version's format."""
        manifest = json.loads(self._read(f"{path}/{MANIFEST}"))
        version = manifest.get("format", 1)
        if version != FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{path} is a format-{version} checkpoint (format 1: a single writer gathered the whole model on rank "
                f"0); this version reads format {FORMAT_VERSION} (sharded, one writer per rank). Export its weights "
                f"with the release that wrote it and start a new run from them")
        return manifest

    def verify(self, path: str, names: list[str]) -> None:
        """Check `names` (paths relative to the checkpoint) against the manifest, streaming each file once."""
        expected = self.manifest(path)["sha256"]
        for name in names:
            if name not in expected:
                raise CheckpointCorruptError(f"{path}: no {name} in the manifest")
            digest = hashlib.sha256()
            with self.fs.open_input_stream(f"{path}/{name}") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != expected[name]:
                raise CheckpointCorruptError(f"{path}/{name}: sha256 does not match the manifest; refusing to load")

    def read(self, path: str, name: str) -> bytes:
        """One small file of the checkpoint, verified against the manifest."""
        payload = self._read(f"{path}/{name}")
        if hashlib.sha256(payload).hexdigest() != self.manifest(path)["sha256"].get(name):
            raise CheckpointCorruptError(f"{path}/{name}: sha256 does not match the manifest; refusing to load")
        return payload

    def download(self, path: str, local_path: str) -> None:
        """Copy one file of a checkpoint to a local path, in chunks."""
        with self.fs.open_input_stream(path) as source, open(local_path, "wb") as target:
            while chunk := source.read(_CHUNK):
                target.write(chunk)

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _final(self, step: int) -> str:
        return f"{self.root}/step-{step:08d}"

    def _delete_checkpoint(self, path: str) -> None:
        """Remove a checkpoint directory, manifest first, so no reader ever sees it complete but partial."""
        if self._exists(f"{path}/{MANIFEST}"):
            self.fs.delete_file(f"{path}/{MANIFEST}")
        if self._exists(path):
            self.fs.delete_dir(path)

    def _retain(self) -> None:
        """Keep the newest `keep_last` checkpoints and the best one by metric (higher is better)."""
        complete = self.complete()
        keep = {path for _, path in complete[-self.keep_last:]}
        scored = [(json.loads(self._read(f"{path}/{MANIFEST}")).get("metric"), path) for _, path in complete]
        scored = [(metric, path) for metric, path in scored if metric is not None]
        if scored:
            keep.add(max(scored)[1])
        for _, path in complete:
            if path not in keep:
                self._delete_checkpoint(path)


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
