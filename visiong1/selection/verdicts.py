"""What selection decided about an item, as the round manifest records it (its `difficulty` and `influence`
columns). String enums: they compare equal to, and are written to Parquet and JSON as, their values."""

from __future__ import annotations

from enum import StrEnum


class Difficulty(StrEnum):
    NOT_SCORED = "not_scored"
    IN_BAND = "in_band"
    TOO_EASY = "too_easy"
    """Pass rate at or above the band's top."""
    TOO_HARD = "too_hard"
    """Pass rate at or below the band's bottom."""
    RETIRED = "retired"
    """Retired as too easy in an earlier round; in this round's manifest only because the curriculum replays it."""


class Influence(StrEnum):
    NOT_SCORED = "not_scored"
    KEPT = "kept"
    BELOW_THRESHOLD = "below_threshold"
    BELOW_TOP_FRACTION = "below_top_fraction"
    TARGET = "target"
    """An influence target: held out of training for the whole run."""
