"""Public benchmarks read from local copies in their official release formats, as PromptItems whose answer type
is the benchmark's official scorer (`visiong1.rewards.official`).

Loader contract: `load(directory) -> list[PromptItem]` over `<data-root>/<benchmark>/`; item ids are
`<benchmark>/<official id>`, `source` and `domain` are the benchmark's name, `question` is the prompt the official
pipeline builds (options included), `metadata` carries what the scorer needs. A directory in no known format, a
missing column or a missing image stops with BenchmarkFormatError naming the file and field.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from visiong1.eval.benchmarks.formats import BenchmarkFormatError
from visiong1.types import PromptItem

BENCHMARKS = ("mathvista", "mmmu", "mmmu_pro", "mmstar", "chartqa", "mathverse", "mathvision", "ai2d", "scienceqa")
_MODULES = {"mathvista": "mathvista", "mmmu": "mmmu", "mmmu_pro": "mmmu", "mmstar": "multiple_choice",
            "chartqa": "chartqa", "mathverse": "mathverse", "mathvision": "mathvision", "ai2d": "multiple_choice",
            "scienceqa": "multiple_choice"}


def load_benchmark(name: str, data_root: Path) -> list[PromptItem]:
    """Every item of benchmark `name` from `data_root/name` (loaders: visiong1.eval.benchmarks.<module>.load_<name>)."""
    if name not in BENCHMARKS:
        raise BenchmarkFormatError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    directory = Path(data_root) / name
    if not directory.is_dir():
        raise BenchmarkFormatError(f"{directory}: no such directory (expected the local copy of {name})")
    module = importlib.import_module(f"visiong1.eval.benchmarks.{_MODULES[name]}")
    return getattr(module, f"load_{name}")(directory)
