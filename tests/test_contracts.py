"""Contracts that cross processes: the event table and its docs, the resume cursor, lineage verdicts."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from visiong1.selection.lineage import new_lineage, read_round_manifest, write_round_manifest
from visiong1.selection.verdicts import Difficulty, Influence
from visiong1.store.events import EVENTS, TERMINAL_EVENTS, EventKind, markdown, missing_keys
from visiong1.types import PromptItem, RoundCursor

ROOT = Path(__file__).parents[1]


def test_the_event_reference_page_is_generated_from_the_event_table():
    assert (ROOT / "docs" / "events.md").read_text() == markdown(), \
        "regenerate it: python -m visiong1.store.events > docs/events.md"


def test_every_event_kind_is_documented_and_terminal_kinds_are_kinds():
    assert set(EVENTS) == set(EventKind)
    assert TERMINAL_EVENTS == {"run_finished", "run_failed"}
    assert missing_keys("checkpoint", {"path": "p", "round": 0}) == ["steps_done"]
    with pytest.raises(ValueError):
        missing_keys("no_such_kind", {})


def test_the_round_cursor_round_trips_and_reads_cursors_without_retired_items():
    cursor = RoundCursor(steps_done=4, round=1, round_start_step=2, policy_version=3, active=["a", "b"],
                         retired=["c"], selected=["a"], sampler={"drawn": {"a": 1}}, last_metrics={"step": 3})
    assert RoundCursor.from_json(cursor.to_json()) == cursor
    older = {key: value for key, value in cursor.to_json().items() if key != "retired"}
    assert RoundCursor.from_json(older).retired == []


def test_verdicts_are_written_and_read_back_as_their_strings(tmp_path):
    row = new_lineage(0, PromptItem("x", "s", "gui", "q", [], "A", "choice"))
    row.update(difficulty=Difficulty.IN_BAND, influence=Influence.KEPT, selected=True)
    path = write_round_manifest([row], tmp_path / "manifest.parquet")
    assert pq.read_table(path).column("difficulty").to_pylist() == ["in_band"]
    back = read_round_manifest(path)[0]
    assert (back["difficulty"], back["influence"]) == ("in_band", "kept") == (Difficulty.IN_BAND, Influence.KEPT)
