"""Killable worker processes with a wall deadline per call and a memory cap: the only place model text meets sympy.

math-verify's own timeouts use SIGALRM, which fails in any non-main thread, and with them off `9^{9^{9^9}}` hangs
forever. A child process that the parent kills at the deadline is a real bound in every context:
threads, async handlers, Ray actors.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

STARTUP_DEADLINE_S = 60.0


@dataclass(frozen=True)
class SandboxOutcome:
    """`reason` is None on success (then `value` holds the function's return), else why there is no value."""

    value: Any = None
    reason: str | None = None
    detail: str = ""


class _Worker:
    def __init__(self, memory_bytes: int, preload: tuple[str, ...]):
        self.workdir = tempfile.mkdtemp(prefix="vg1-sandbox-")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workdir, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "visiong1.rewards.sandbox_worker", str(memory_bytes), *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.workdir, env=env,
            text=True, bufsize=1)
        self.ready = False
        self.calls = 0

    def read_line(self, deadline: float) -> str | None:
        """One reply line, or None if the deadline passes or the process dies first."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
            return None
        return self.process.stdout.readline() or None

    def wait_ready(self) -> None:
        if not self.ready:
            line = self.read_line(time.monotonic() + STARTUP_DEADLINE_S)
            if line is None:
                raise RuntimeError(f"sandbox worker pid {self.process.pid} did not start within {STARTUP_DEADLINE_S}s "
                                   f"(exit code {self.process.poll()})")
            self.ready = True

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class SymbolicSandbox:
    """A pool of worker processes. `call` is thread-safe; a worker that misses its deadline or dies is killed and
    replaced at once, and the call reports `timeout` or `resource_limit`. Workers are recycled after
    `recycle_after` calls to bound slow leaks."""

    def __init__(self, workers: int = 1, deadline_s: float = 2.0, memory_mb: int = 1024,
                 preload: tuple[str, ...] = (), recycle_after: int = 2_000):
        if workers < 1 or deadline_s <= 0:
            raise ValueError(f"need workers >= 1 and deadline_s > 0, got {workers}, {deadline_s}")
        self.deadline_s = deadline_s
        self.memory_bytes = memory_mb << 20
        self.preload = tuple(preload)
        self.recycle_after = recycle_after
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.replaced = 0
        for _ in range(workers):
            self._idle.put(self._spawn())
        atexit.register(self.close)

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_bytes, self.preload)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()
        self._idle.put(self._spawn())

    def call(self, function: str, *args) -> SandboxOutcome:
        """Run `module:function(*args)` (JSON-serialisable args and result) in a worker within the deadline."""
        worker = self._idle.get()
        try:
            worker.wait_ready()
            worker.process.stdin.write(json.dumps({"fn": function, "args": args}) + "\n")
            worker.process.stdin.flush()
            line = worker.read_line(time.monotonic() + self.deadline_s)
        except (BrokenPipeError, OSError, RuntimeError) as error:
            line, detail = None, f"worker failed: {error}"
        else:
            detail = ""
        if line is None:
            died = worker.process.poll() is not None
            self.replaced += 1
            self._retire(worker)
            if died:  # killed by the kernel or crashed: almost always the memory cap
                return SandboxOutcome(reason="resource_limit", detail=detail or "worker died")
            return SandboxOutcome(reason="timeout", detail=f"no answer within {self.deadline_s}s")
        worker.calls += 1
        if worker.calls >= self.recycle_after:
            self._retire(worker)
        else:
            self._idle.put(worker)
        reply = json.loads(line)
        if reply["ok"]:
            return SandboxOutcome(value=reply["value"])
        return SandboxOutcome(reason=reply["reason"], detail=reply["error"])

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.process.pid for worker in self._all]

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
