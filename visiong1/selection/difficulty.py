"""Pass-rate difficulty: the share of k samples whose binary accuracy is 1, and the band that keeps an item.

The band is always computed on the binary `accuracy` of the reward result, never on a shaped reward (a bbox IoU
of 0.4 is not "40% passed").

>>> from visiong1.config import SelectionConfig
>>> decide(pass_rate([1.0, 0.0, 1.0, 0.0, 0.0]), SelectionConfig().band("any", "any"))
(True, <Difficulty.IN_BAND: 'in_band'>)
>>> decide(0.8, SelectionConfig().band("any", "any"))  # boundaries are exclusive
(False, <Difficulty.TOO_EASY: 'too_easy'>)
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visiong1.config import PassRateBand
from visiong1.selection.verdicts import Difficulty

DIFFICULTY_SCHEMA = pa.schema([
    ("round", pa.int32()), ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("rewards", pa.list_(pa.float32())), ("accuracies", pa.list_(pa.float32())), ("pass_rate", pa.float32()),
    ("band_low", pa.float32()), ("band_high", pa.float32()), ("keep", pa.bool_()), ("reason", pa.string()),
    ("responses", pa.list_(pa.list_(pa.int32()))),  # sampled token ids: the policy-gradient influence loss uses them
])


def pass_rate(accuracies: list[float]) -> float:
    """Share of samples that are accurate (accuracy exactly 1)."""
    if not accuracies:
        raise ValueError("pass rate of a group with no samples")
    return sum(1 for value in accuracies if value == 1.0) / len(accuracies)


def decide(rate: float, band: PassRateBand) -> tuple[bool, Difficulty]:
    """Keep strictly inside (low, high): `too_hard` at or below low, `too_easy` at or above high."""
    if rate <= band.low:
        return False, Difficulty.TOO_HARD
    if rate >= band.high:
        return False, Difficulty.TOO_EASY
    return True, Difficulty.IN_BAND


def in_band(accuracies: list[float], band: PassRateBand) -> bool:
    """The online (dynamic-sampling) test on one group's accuracies."""
    return decide(pass_rate(accuracies), band)[0]


def difficulty_record(round_index: int, item, rewards: list[float], accuracies: list[float],
                      band: PassRateBand, responses: list[list[int]] | None = None) -> dict:
    """One DIFFICULTY_SCHEMA row for a scored item (`responses`: the samples' token ids)."""
    rate = pass_rate(accuracies)
    keep, reason = decide(rate, band)
    return {"round": round_index, "id": item.id, "source": item.source, "domain": item.domain, "rewards": rewards,
            "accuracies": accuracies, "pass_rate": rate, "band_low": band.low, "band_high": band.high,
            "keep": keep, "reason": reason, "responses": responses or []}


class ChunkStore:
    """Results as Parquet chunks of `schema` in `directory`. A chunk is written to a temporary name and renamed, so
    after an interruption the store holds whole chunks only and work resumes after them."""

    schema: pa.Schema

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def chunks(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.parquet"))

    def scored_ids(self) -> set[str]:
        return {row_id for path in self.chunks()
                for row_id in pq.read_table(path, columns=["id"]).column("id").to_pylist()}

    def append(self, rows: list[dict]) -> Path:
        target = self.directory / f"chunk-{len(self.chunks()):06d}.parquet"
        staging = target.with_suffix(".partial")
        pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), staging)
        os.replace(staging, target)
        return target

    def read(self) -> pa.Table:
        tables = [pq.read_table(path, schema=self.schema) for path in self.chunks()]
        return pa.concat_tables(tables) if tables else self.schema.empty_table()


class DifficultyStore(ChunkStore):
    """Per-round difficulty results (DIFFICULTY_SCHEMA rows)."""

    schema = DIFFICULTY_SCHEMA
