"""The round manifest: every pool item's fate in a round (pass rate, influence score, kept or dropped and why,
trained or not, and the corruption kind where the data knows it), as Parquet, and the per-domain funnel
pool -> band -> influence -> trained, with the known-corrupted items counted at every stage. Items retired in an
earlier round appear (difficulty `retired`) only when the curriculum replays them; the funnel counts those that
trained as `replayed`, outside the stages.

>>> rows = [new_lineage(1, PromptItem(i, "s", "gui", "q", [], "A", "choice")) for i in "abcd"]
>>> rows[0].update(difficulty="in_band", influence="kept", selected=True, trained=True)
>>> rows[1].update(difficulty="too_easy", corrupted="wrong_answer")
>>> rows[2].update(influence="target")  # held out as an influence target: never a training candidate
>>> rows[3].update(difficulty="retired", trained=True)  # retired in round 0, replayed and trained in round 1
>>> funnel(rows)["gui"]  # doctest: +NORMALIZE_WHITESPACE
{'pool': 2, 'band': 1, 'influence': 1, 'trained': 1, 'targets': 1, 'replayed': 1, 'corrupted_pool': 1,
 'corrupted_band': 0, 'corrupted_influence': 0, 'corrupted_trained': 0}
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visiong1.selection.verdicts import Difficulty, Influence
from visiong1.types import PromptItem

ROUND_MANIFEST_SCHEMA = pa.schema([
    ("round", pa.int32()), ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("pass_rate", pa.float32()), ("difficulty", pa.string()), ("influence_score", pa.float32()),
    ("influence", pa.string()), ("selected", pa.bool_()), ("trained", pa.bool_()), ("corrupted", pa.string()),
])
PASSED_DIFFICULTY = (Difficulty.IN_BAND, Difficulty.NOT_SCORED)
PASSED_INFLUENCE = (Influence.KEPT, Influence.NOT_SCORED)
STAGES = ("pool", "band", "influence", "trained")


def new_lineage(round_index: int, item: PromptItem) -> dict:
    """An item's row before selection: nothing scored, nothing decided; `corrupted` is the kind the data flags in
    `metadata.corrupted` (synthetic pools), else None."""
    corrupted = (item.metadata or {}).get("corrupted")
    return {"round": round_index, "id": item.id, "source": item.source, "domain": item.domain, "pass_rate": None,
            "difficulty": Difficulty.NOT_SCORED, "influence_score": None, "influence": Influence.NOT_SCORED, "selected": False,
            "trained": False, "corrupted": str(corrupted) if corrupted else None}


def funnel(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per domain: candidate items in the pool, after the difficulty band, after influence, and trained on, and
    `corrupted_<stage>`, the known-corrupted ones among them; the influence targets (held out of training, never
    scored for difficulty) are counted apart as `targets`, and retired items that trained again as `replayed`."""
    stages: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = stages.setdefault(row["domain"], dict.fromkeys(
            [*STAGES, "targets", "replayed", *(f"corrupted_{stage}" for stage in STAGES)], 0))
        if row["influence"] == Influence.TARGET:
            counts["targets"] += 1
            continue
        if row["difficulty"] == Difficulty.RETIRED:
            counts["replayed"] += bool(row["trained"])
            continue
        passed = {"pool": True, "band": row["difficulty"] in PASSED_DIFFICULTY,
                  "trained": bool(row["trained"])}
        passed["influence"] = passed["band"] and row["influence"] in PASSED_INFLUENCE
        for stage in STAGES:
            counts[stage] += passed[stage]
            counts[f"corrupted_{stage}"] += passed[stage] and row.get("corrupted") is not None
    return dict(sorted(stages.items()))


def corrupted_shares(stages_by_domain: dict[str, dict[str, int]]) -> dict[str, float]:
    """Share of known-corrupted items at each stage of a `funnel`, over all domains (0 for an empty stage)."""
    totals = {key: sum(counts[key] for counts in stages_by_domain.values())
              for key in [*STAGES, *(f"corrupted_{stage}" for stage in STAGES)]}
    return {stage: totals[f"corrupted_{stage}"] / totals[stage] if totals[stage] else 0.0 for stage in STAGES}


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
