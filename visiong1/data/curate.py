"""Curation of one batch: candidates through the conversion rules and image validation, into CURATED_SCHEMA rows.

Pure functions of (rows, config), so the same code runs in a Ray Data `map_batches` worker and in a plain loop.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from visiong1.config import DataConfig, SourceConfig
from visiong1.data.adapters import row_to_candidate, source_root
from visiong1.data.images import NormalisedImage, normalise_image, read_image_bytes
from visiong1.data.rules import conversion_rules
from visiong1.data.schema import CURATED_SCHEMA, Candidate, Rejected, accepted_row, content_hash, rejected_row
from visiong1.data.synthetic import synthetic_item

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def rescale_coordinates(candidate: Candidate, first: NormalisedImage) -> Candidate:
    """Absolute-pixel box/point answers follow their (first) image through a resize."""
    if first.size == first.upright_size or candidate.answer_type not in ("bbox", "point"):
        return candidate
    if candidate.metadata.get("coords", "absolute") != "absolute":
        return candidate
    (old_w, old_h), (new_w, new_h) = first.upright_size, first.size
    values = [float(v) for v in _NUMBER.findall(candidate.answer)]
    scaled = [round(v * (new_w / old_w if i % 2 == 0 else new_h / old_h), 2) for i, v in enumerate(values)]
    candidate.answer = "[" + ", ".join(f"{v:g}" for v in scaled) + "]"
    candidate.metadata = {**candidate.metadata, "image_size": [new_w, new_h]}
    return candidate


def curate(candidate: Candidate, config: DataConfig, root: Path) -> dict:
    """One CURATED_SCHEMA row: accepted (images normalised, content hashed) or rejected with its reason."""
    try:
        for rule in conversion_rules(config):
            candidate = rule(candidate)
        images = [normalise_image(read_image_bytes(image, root), config.images) for image in candidate.images]
        candidate = rescale_coordinates(candidate, images[0])
    except Rejected as error:
        return rejected_row(candidate.source, candidate.key, candidate.question, error)
    data = [image.data for image in images]
    return accepted_row(candidate, data, content_hash(candidate.question, candidate.answer, data))


def curate_source_rows(rows: list[dict], spec: SourceConfig, config: DataConfig) -> pa.Table:
    """Raw rows of one source (as its adapter reads them) -> curated table."""
    root, curated = source_root(spec), []
    for row in rows:
        try:
            candidate = row_to_candidate(row, spec)
        except Rejected as error:
            curated.append(rejected_row(spec.name, None, str(row.get("question") or row.get("text") or ""), error))
            continue
        curated.append(curate(candidate, config, root))
    return pa.Table.from_pylist(curated, schema=CURATED_SCHEMA)


def synthetic_candidate(position: int, config: DataConfig) -> Candidate:
    """Synthetic item at pool position `position` (domains round-robin), as a candidate."""
    domains = config.domains
    item = synthetic_item(domains[position % len(domains)], position // len(domains), config.seed,
                          config.image_size, config.difficulty, config.corrupt_fraction)
    return Candidate(item.source, item.domain, item.question, item.answer, item.answer_type, list(item.images),
                     item.choices, None, item.metadata, key=item.id)


def curate_synthetic(positions: list[int], config: DataConfig) -> pa.Table:
    """Synthetic pool positions -> curated table (generated items pass the same validation as user data)."""
    rows = [curate(synthetic_candidate(position, config), config, Path(".")) for position in positions]
    return pa.Table.from_pylist(rows, schema=CURATED_SCHEMA)
