"""A sandbox worker process: reads JSON requests from stdin, runs the named scoring function, writes JSON replies.

Started by `SymbolicSandbox` as `python -I -m visiong1.rewards.sandbox_worker MEMORY_BYTES`. Its address space
is capped with RLIMIT_AS; the parent enforces the wall deadline by killing it. Model text reaches it only as
function arguments: nothing here evaluates text as code.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import resource
import sys


def _function(path: str, cache: dict):
    if path not in cache:
        module, name = path.split(":")
        cache[path] = getattr(importlib.import_module(module), name)
    return cache[path]


def _forget_state() -> None:
    """Drop sympy's global cache after every sample, so nothing a sample built reaches the next. (A full
    `gc.collect()` here cost 29 ms per sample, 150x the judging itself, and guards nothing the cache clear does not.)"""
    if "sympy" in sys.modules:
        from sympy.core.cache import clear_cache

        clear_cache()


def serve(memory_bytes: int, preload: list[str]) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    functions: dict = {}
    for path in preload:  # import before announcing readiness, so no sample's deadline pays for it
        _function(path, functions)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            value = _function(request["fn"], functions)(*request["args"])
            reply = {"ok": True, "value": dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value}
        except MemoryError:
            reply = {"ok": False, "reason": "resource_limit", "error": "MemoryError"}
        except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
            reply = {"ok": False, "reason": "parse_error", "error": f"{type(error).__name__}: {error}"[:500]}
        print(json.dumps(reply), flush=True)
        _forget_state()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2:])
