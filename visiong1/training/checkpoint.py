"""Resumable checkpoints: written by one writer to a temporary directory, fsynced, renamed into place, with a
manifest of sha256 per file; loads pick the newest complete checkpoint and refuse a corrupt one by name.

Storage is a local path or any pyarrow filesystem URI (`s3://bucket/run`, `gs://...`, `file:///...`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid

from pyarrow import fs as pafs

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointCorruptError(RuntimeError):
    """A checkpoint file does not match its manifest."""


class CheckpointStore:
    def __init__(self, location: str, keep_last: int = 2):
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.keep_last = keep_last
        self.fs.create_dir(self.root, recursive=True)

    def save(self, step: int, files: dict[str, bytes], metric: float | None = None) -> str:
        """Write `files` (name -> content, names may contain `/`) as checkpoint `step`; returns its path.
        A crash at any point leaves either the complete new checkpoint or none (only a `.tmp-` directory)."""
        staging = f"{self.root}/.tmp-step-{step:08d}-{uuid.uuid4().hex[:8]}"
        digests = {name: self._write(f"{staging}/{name}", payload) for name, payload in files.items()}
        manifest = {"step": step, "metric": metric, "created": time.time(), "sha256": digests}
        self._write(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        final = f"{self.root}/step-{step:08d}"
        if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
            self.fs.delete_dir(final)  # a re-run of the same step replaces it
        self.fs.move(staging, final)
        if self.local:
            _fsync_directory(self.root)
        self._retain()
        return final

    def _write(self, path: str, payload: bytes) -> str:
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

    def complete(self) -> list[tuple[int, str]]:
        """(step, path) of every checkpoint that has a manifest, oldest first."""
        found = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            match = _STEP_DIR.match(info.base_name)
            if match and info.type == pafs.FileType.Directory and \
                    self.fs.get_file_info(f"{info.path}/{MANIFEST}").type == pafs.FileType.File:
                found.append((int(match.group(1)), info.path))
        return sorted(found)

    def latest(self) -> str | None:
        complete = self.complete()
        return complete[-1][1] if complete else None

    def read(self, path: str, names: list[str] | None = None) -> dict[str, bytes]:
        """Files of the checkpoint at `path` (all, or `names`), each verified against the manifest."""
        manifest = json.loads(self._read(f"{path}/{MANIFEST}"))
        wanted = names if names is not None else list(manifest["sha256"])
        contents = {}
        for name in wanted:
            if name not in manifest["sha256"]:
                raise CheckpointCorruptError(f"{path}: no {name} in the manifest")
            payload = self._read(f"{path}/{name}")
            if hashlib.sha256(payload).hexdigest() != manifest["sha256"][name]:
                raise CheckpointCorruptError(f"{path}/{name}: sha256 does not match the manifest; refusing to load")
            contents[name] = payload
        return contents

    def manifest(self, path: str) -> dict:
        return json.loads(self._read(f"{path}/{MANIFEST}"))

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def _retain(self) -> None:
        """Keep the newest `keep_last` checkpoints and the best one by metric (higher is better)."""
        complete = self.complete()
        keep = {path for _, path in complete[-self.keep_last:]}
        scored = [(self.manifest(path)["metric"], path) for _, path in complete]
        scored = [(metric, path) for metric, path in scored if metric is not None]
        if scored:
            keep.add(max(scored)[1])
        for _, path in complete:
            if path not in keep:
                self.fs.delete_dir(path)


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
