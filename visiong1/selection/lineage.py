"""The round manifest: every pool item's fate in a round (pass rate, influence score, kept or dropped and why,
trained or not), as Parquet, and the per-domain funnel pool -> band -> influence -> trained.

>>> rows = [new_lineage(0, i, "s", "gui") for i in "abc"]
>>> rows[0].update(difficulty="in_band", influence="kept", selected=True, trained=True)
>>> rows[1].update(difficulty="too_easy")
>>> rows[2].update(influence="target")  # held out as an influence target: never a training candidate
>>> funnel(rows)
{'gui': {'pool': 2, 'band': 1, 'influence': 1, 'trained': 1, 'targets': 1}}
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROUND_MANIFEST_SCHEMA = pa.schema([
    ("round", pa.int32()), ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("pass_rate", pa.float32()), ("difficulty", pa.string()), ("influence_score", pa.float32()),
    ("influence", pa.string()), ("selected", pa.bool_()), ("trained", pa.bool_()),
])
PASSED_DIFFICULTY = ("in_band", "not_scored")
PASSED_INFLUENCE = ("kept", "not_scored")


def new_lineage(round_index: int, item_id: str, source: str, domain: str) -> dict:
    """An item's row before selection: nothing scored, nothing decided."""
    return {"round": round_index, "id": item_id, "source": source, "domain": domain, "pass_rate": None,
            "difficulty": "not_scored", "influence_score": None, "influence": "not_scored", "selected": False,
            "trained": False}


def funnel(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per domain: candidate items in the pool, after the difficulty band, after influence, and trained on; the
    influence targets (held out of training, never scored for difficulty) are counted apart as `targets`."""
    stages: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = stages.setdefault(row["domain"], {"pool": 0, "band": 0, "influence": 0, "trained": 0, "targets": 0})
        if row["influence"] == "target":
            counts["targets"] += 1
            continue
        counts["pool"] += 1
        if row["difficulty"] in PASSED_DIFFICULTY:
            counts["band"] += 1
            if row["influence"] in PASSED_INFLUENCE:
                counts["influence"] += 1
        counts["trained"] += bool(row["trained"])
    return dict(sorted(stages.items()))


def write_round_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial")
    pq.write_table(pa.Table.from_pylist(rows, schema=ROUND_MANIFEST_SCHEMA), staging)
    os.replace(staging, path)
    return path


def read_round_manifest(path: str | Path) -> list[dict]:
    return pq.read_table(path, schema=ROUND_MANIFEST_SCHEMA).to_pylist()
