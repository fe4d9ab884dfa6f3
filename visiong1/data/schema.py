"""The pool schema (versioned Arrow/Parquet), candidate items before curation, and rejection reasons.

A pool row is a `PromptItem` plus `dimension` and `content_hash`; `visiong1.types.table_to_items` reads a pool
table directly (it selects the prompt columns).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pyarrow as pa

from visiong1.types import PROMPT_SCHEMA

SCHEMA_VERSION = 1

POOL_SCHEMA = pa.schema(
    [*PROMPT_SCHEMA, ("dimension", pa.string()), ("content_hash", pa.string())],
    metadata={"visiong1.pool_schema_version": str(SCHEMA_VERSION)},
)

# Curation output: accepted rows have reject_reason null; rejected rows keep their text fields but no images.
CURATED_SCHEMA = pa.schema([*POOL_SCHEMA, ("reject_reason", pa.string()), ("reject_detail", pa.string())])

REJECT_REASONS = (
    "missing_field",         # no question, answer or domain after column mapping
    "image_unreadable",      # file missing, or bytes that do not decode (truncated JPEG, not an image)
    "image_animated",        # several frames (animated GIF/WebP): which frame holds the answer is unknown
    "image_too_small",       # a side below images.min_side (1x1 spacer images)
    "image_aspect_ratio",    # longer/shorter side above images.max_aspect_ratio
    "image_out_of_budget",   # outside the pixel budget with images.resize = reject
    "multiple_questions",    # several sub-questions, one answer
    "choice_unresolved",     # a choice answer naming no single option
    "answer_unverifiable",   # the answer's own scorer does not accept it (or free text too long to verify)
    "unknown_answer_type",
    "duplicate",             # same content hash as an earlier item
)


class Rejected(Exception):
    """An item the pool does not take; `reason` is one of REJECT_REASONS, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str):
        assert reason in REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Candidate:
    """An item on its way into the pool. `images` hold encoded bytes or paths of image files; `key` is the
    item's stable id when the source names its items (else `source/<content hash prefix>` names it)."""

    source: str
    domain: str
    question: str
    answer: str
    answer_type: str | None
    images: list[bytes | str] = field(default_factory=list)
    choices: list[str] | None = None
    dimension: str | None = None
    metadata: dict = field(default_factory=dict)
    key: str | None = None


def content_hash(question: str, answer: str, images: list[bytes]) -> str:
    """sha256 over the question, the answer and every image's bytes (in order): equal content, equal hash."""
    digest = hashlib.sha256()
    for part in (question.strip().encode(), answer.strip().encode(), *images):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def accepted_row(candidate: Candidate, images: list[bytes], digest: str) -> dict:
    """The CURATED_SCHEMA row of an accepted candidate (its images already normalised)."""
    item_id = candidate.key if candidate.key is not None else f"{candidate.source}/{digest[:16]}"
    return {"id": item_id, "source": candidate.source, "domain": candidate.domain, "question": candidate.question,
            "images": images, "answer": candidate.answer, "answer_type": candidate.answer_type,
            "choices": candidate.choices, "metadata": json.dumps(candidate.metadata, sort_keys=True),
            "dimension": candidate.dimension, "content_hash": digest, "reject_reason": None, "reject_detail": None}


def rejected_row(source: str, key: str | None, question: str, error: Rejected) -> dict:
    """The CURATED_SCHEMA row of a rejected item: what it was and why, without its images."""
    return {"id": key, "source": source, "domain": None,
            "question": question[:500], "images": [], "answer": None, "answer_type": None, "choices": None,
            "metadata": None, "dimension": None, "content_hash": None, "reject_reason": error.reason,
            "reject_detail": error.detail[:500]}
