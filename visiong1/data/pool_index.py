"""A prompt pool as the coordinator holds it: ids, domains, answers and where each row lives, never the images.

The items stay in Parquet files (POOL_SCHEMA) on storage every role can read; `read_items` fetches the rows of a
batch, whole row groups at a time, so a reader's memory is bounded by the batch and the row-group size, not the
pool. Synthetic pools are written to files first (`write_items`), in chunks, so they never exist whole in memory.

>>> import tempfile
>>> from visiong1.data.synthetic import synthetic_item
>>> directory = tempfile.mkdtemp()
>>> write_items((synthetic_item("gui", i) for i in range(5)), f"{directory}/items.parquet", row_group_size=2)
5
>>> index = PoolIndex.open([f"{directory}/items.parquet"])
>>> row = index["synthetic-gui-s0-0000003"]
>>> (row.domain, row.row, len(index))
('gui', 3, 5)
>>> [item.id for item in read_items([index[i] for i in ("synthetic-gui-s0-0000004", "synthetic-gui-s0-0000001")])]
['synthetic-gui-s0-0000004', 'synthetic-gui-s0-0000001']
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visiong1.data.schema import POOL_SCHEMA, content_hash
from visiong1.types import PROMPT_SCHEMA, PromptItem, table_to_items

INDEX_COLUMNS = ["id", "source", "domain", "answer", "answer_type", "choices", "metadata", "content_hash"]
ROW_GROUP_SIZE = 64
"""Rows per row group of the files this module writes: what a reader pulls to get one of them."""


@dataclass(frozen=True)
class ItemRow:
    """One pool item without its question and images: what selection, the curriculum and lineage need, and the
    row's locator (`path`, `row`: its position in that Parquet file)."""

    id: str
    source: str
    domain: str
    answer: str
    answer_type: str
    content_hash: str
    path: str
    row: int
    choices: list[str] | None = None
    metadata: dict = field(default_factory=dict)


class PoolIndex:
    """The items of some Parquet files by id, in file order; `len`, iteration and `[id]` as for a dict."""

    def __init__(self, rows: dict[str, ItemRow]):
        self.rows = rows

    @classmethod
    def open(cls, paths: Iterable[str | Path]) -> PoolIndex:
        """Index the files (only the columns in INDEX_COLUMNS are read); raises ValueError on a repeated id."""
        rows: dict[str, ItemRow] = {}
        for path in map(str, paths):
            table = pq.read_table(path, columns=INDEX_COLUMNS)
            for position, record in enumerate(table.to_pylist()):
                if record["id"] in rows:
                    raise ValueError(f"item id {record['id']!r} appears twice ({rows[record['id']].path}, {path})")
                rows[record["id"]] = ItemRow(**{**record, "metadata": json.loads(record["metadata"] or "{}")},
                                             path=path, row=position)
        return cls(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __getitem__(self, item_id: str) -> ItemRow:
        return self.rows[item_id]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    def values(self) -> list[ItemRow]:
        return list(self.rows.values())

    def subset(self, ids: Iterable[str]) -> PoolIndex:
        return PoolIndex({item_id: self.rows[item_id] for item_id in ids})


def read_items(rows: list[ItemRow]) -> list[PromptItem]:
    """The full items (question and images included) of `rows`, in their order; only the row groups holding
    them are read, each once."""
    found: dict[tuple[str, int], PromptItem] = {}
    for path in sorted({row.path for row in rows}):
        file = pq.ParquetFile(path)
        starts = _row_group_starts(file.metadata)
        by_group: dict[int, list[int]] = defaultdict(list)
        for position in sorted({row.row for row in rows if row.path == path}):
            by_group[bisect.bisect_right(starts, position) - 1].append(position)
        for group, positions in by_group.items():
            table = file.read_row_group(group, columns=PROMPT_SCHEMA.names)
            items = table_to_items(table.take([position - starts[group] for position in positions]))
            found.update(((path, position), item) for position, item in zip(positions, items))
    return [found[(row.path, row.row)] for row in rows]


def _row_group_starts(metadata: pq.FileMetaData) -> list[int]:
    """The first row of every row group."""
    starts, total = [], 0
    for group in range(metadata.num_row_groups):
        starts.append(total)
        total += metadata.row_group(group).num_rows
    return starts


def write_items(items: Iterable[PromptItem], path: str | Path, row_group_size: int = ROW_GROUP_SIZE,
                chunk: int = 256) -> int:
    """Write items to one POOL_SCHEMA Parquet file, `chunk` at a time (content hashes computed on the way);
    written under a temporary name and renamed, so the file exists only complete. Returns the rows written."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    items, written = iter(items), 0
    with pq.ParquetWriter(partial, POOL_SCHEMA) as writer:
        while batch := list(islice(items, chunk)):
            writer.write_table(_pool_table(batch), row_group_size=row_group_size)
            written += len(batch)
    partial.rename(path)
    return written


def _pool_table(items: list[PromptItem]) -> pa.Table:
    columns = {name: [getattr(item, name) for item in items] for name in PROMPT_SCHEMA.names}
    columns["metadata"] = [json.dumps(item.metadata) for item in items]
    columns["dimension"] = [None] * len(items)
    columns["content_hash"] = [content_hash(item.question, item.answer, item.images) for item in items]
    return pa.table(columns, schema=POOL_SCHEMA)
