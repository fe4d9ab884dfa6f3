"""torch.distributed.checkpoint over any pyarrow filesystem (local paths, `s3://`, ...), with a sha256 of every file
a rank writes computed as the bytes stream out, so the checkpoint's manifest costs no second read.

Every rank writes its own shards of a state dict in parallel (`__{rank}_0.distcp`); the coordinating rank also writes
DCP's `.metadata`. Loading reads only the byte ranges of the shards this rank needs, whatever world size wrote them.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from contextlib import contextmanager
from typing import Iterator

from pyarrow import fs as pafs
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.filesystem import FileSystemBase

from visiong1.faults import crash_once
from visiong1.training.checkpoint import CheckpointStore


WRITEBACK_BYTES = 256 * 2**20


class _HashingWriter(io.RawIOBase):
    """A write-only stream that forwards to `raw` and keeps the sha256 and length of what passed through. On a
    local file it also has the kernel write back every `WRITEBACK_BYTES` (an fdatasync in a background thread), so
    the disk works while the rest is serialised and the fsync that precedes the commit finds little left to write.
    `finish()` waits for that thread, before `raw` closes."""

    def __init__(self, raw, local: bool):
        super().__init__()
        self.raw, self.sha256, self.position = raw, hashlib.sha256(), 0
        self.local, self.flushed_at, self.writeback = local, 0, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.raw.write(view)
        self.sha256.update(view)
        self.position += len(view)
        crash_once("writing_shards")
        if self.local and self.position - self.flushed_at >= WRITEBACK_BYTES and not self._writing_back():
            self.raw.flush()
            self.flushed_at = self.position
            self.writeback = threading.Thread(target=os.fdatasync, args=(self.raw.fileno(),), daemon=True)
            self.writeback.start()
        return len(view)

    def _writing_back(self) -> bool:
        return self.writeback is not None and self.writeback.is_alive()

    def finish(self) -> None:
        if self.writeback is not None:
            self.writeback.join()

    def tell(self) -> int:
        return self.position

    def fileno(self) -> int:
        return self.raw.fileno()  # DCP fsyncs local files through it


class ArrowFileSystem(FileSystemBase):
    """DCP's filesystem interface on a CheckpointStore's pyarrow filesystem. `digests` maps each path this process
    wrote to its sha256."""

    def __init__(self, store: CheckpointStore):
        self.store, self.digests = store, {}

    @contextmanager
    def create_stream(self, path, mode: str) -> Iterator[io.IOBase]:
        path = str(path)
        if "w" not in mode:
            with (open(path, "rb") if self.store.local else self.store.fs.open_input_file(path)) as stream:
                yield stream
            return
        with (open(path, "wb") if self.store.local else self.store.fs.open_output_stream(path)) as raw:
            stream = _HashingWriter(raw, self.store.local)
            try:
                yield stream
            finally:
                stream.finish()
        self.digests[path] = stream.sha256.hexdigest()

    def concat_path(self, path, suffix: str) -> str:
        return f"{path}/{suffix}"

    def init_path(self, path) -> str:
        return str(path)

    def rename(self, path, new_path) -> None:
        self.store.fs.move(str(path), str(new_path))
        self.digests[str(new_path)] = self.digests.pop(str(path))

    def mkdir(self, path) -> None:
        self.store.fs.create_dir(str(path), recursive=True)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return True

    def exists(self, path) -> bool:
        return self.store.fs.get_file_info(str(path)).type != pafs.FileType.NotFound

    def rm_file(self, path) -> None:
        self.store.fs.delete_file(str(path))

    def ls(self, path) -> list[str]:
        return [info.path for info in self.store.fs.get_file_info(pafs.FileSelector(str(path)))]


def save_state(state: dict, store: CheckpointStore, directory: str) -> dict[str, str]:
    """Write this rank's shards of `state` (a DCP state dict) under `directory`; a collective call when
    torch.distributed is initialised. Returns {path relative to the checkpoint: sha256} of the files this rank wrote.
    `directory` is one level below the checkpoint (e.g. `<staging>/state`)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    writer = FileSystemWriter(directory, sync_files=store.local)
    writer.fs = ArrowFileSystem(store)
    dcp.save(state, storage_writer=writer, no_dist=not dist.is_initialized())
    checkpoint_dir, name = directory.rsplit("/", 1)
    return {os.path.relpath(path, checkpoint_dir): digest for path, digest in writer.fs.digests.items()}


def state_reader(store: CheckpointStore, directory: str) -> FileSystemReader:
    """DCP's reader of the state under `directory`: `dcp.load(state, storage_reader=...)` fills `state` (tensors
    and DTensors shaped as they were saved, at any world size) reading only the byte ranges this rank needs."""
    reader = FileSystemReader(directory)
    reader.fs = ArrowFileSystem(store)
    return reader
