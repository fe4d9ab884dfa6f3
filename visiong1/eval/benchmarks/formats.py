"""Reading a benchmark's local copy: the Parquet files of its Hugging Face dataset (a `--local-dir` download, or the
hub cache layout `datasets--ORG--NAME/snapshots/<revision>/`), or VLMEvalKit's TSV with base64 images; the field
readers and the item constructor every loader shares.

Every error names the file, the field and what was expected (`BenchmarkFormatError`).
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from visiong1.types import PromptItem


class BenchmarkFormatError(ValueError):
    """A benchmark directory, file or field is not in the format its loader expects."""


def parquet_files(directory: Path, split: str | None = None) -> list[Path]:
    """The Parquet files under `directory` (any depth, sorted), restricted to those whose path names `split` when
    given (HF datasets name files `<split>-00000-of-00001.parquet` or put them under `<split>/`)."""
    files = sorted(directory.rglob("*.parquet"))
    if split is not None:
        files = [path for path in files if split in path.relative_to(directory).as_posix()]
    return files


def tsv_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.tsv"))


def is_test_split(path: Path) -> bool:
    """Whether `path` is a Parquet file of the `test` split: HF names split files `test-00000-of-00001.parquet` or
    puts them under `test/`; `testmini-*` is another split and does not count."""
    return path.name.startswith("test-") or path.stem == "test" or path.parent.name == "test"


def read_parquet_rows(files: list[Path], required: tuple[str, ...]) -> Iterator[tuple[Path, dict]]:
    """(file, row) for every row of `files`; a file lacking a `required` column stops with its name."""
    for path in files:
        table = pq.read_table(path)
        missing = [name for name in required if name not in table.column_names]
        if missing:
            raise BenchmarkFormatError(f"{path}: missing column(s) {missing}; expected {list(required)}, "
                                       f"found {table.column_names}")
        for row in table.to_pylist():
            yield path, row


def read_tsv_rows(path: Path, required: tuple[str, ...]) -> Iterator[dict]:
    """Rows of a VLMEvalKit TSV (tab-separated, header row, `image` as base64); missing columns stop with the file."""
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's 128 KiB default
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkFormatError(f"{path}: missing column(s) {missing}; expected {list(required)}, "
                                       f"found {reader.fieldnames}")
        yield from reader


def numbered_tsv_rows(files: list[Path], required: tuple[str, ...]) -> Iterator[tuple[Path, int, dict]]:
    """(file, row number, row) for every row of the VLMEvalKit TSVs `files`, numbered from 1 within each file (the
    number error messages give); a file lacking a `required` column stops with its name (`read_tsv_rows`)."""
    for path in files:
        for number, row in enumerate(read_tsv_rows(path, required), start=1):
            yield path, number, row


def required_field(row: dict, field: str, where: str) -> str:
    """`row[field]` as text; a missing, None or empty value stops with `where` (file and row) and the field's name."""
    value = row.get(field)
    if value is None or str(value) == "":
        raise BenchmarkFormatError(f"{where}: field {field} is empty")
    return str(value)


def list_literal(value, where: str, allow_empty: bool) -> list[str]:
    """The items, as text, of a cell holding a Python list literal (VLMEvalKit's `choices`, MMMU's `options`) or
    already a list. `where` names the file, row and field; a value that is no list literal, or an empty list unless
    `allow_empty`, stops with it."""
    if isinstance(value, list):
        items = value
    else:
        try:
            items = ast.literal_eval(str(value))
        except (ValueError, SyntaxError):
            raise BenchmarkFormatError(f"{where}: {str(value)[:80]!r} is not a Python list literal") from None
    if not isinstance(items, list) or not (items or allow_empty):
        expected = "a list" if allow_empty else "a non-empty list"
        raise BenchmarkFormatError(f"{where}: expected {expected}, got {str(value)[:80]!r}")
    return [str(item) for item in items]


def benchmark_item(benchmark: str, official_id: str | int, question: str, images: list[bytes], answer: str,
                   metadata: dict, choices: list[str] | None = None) -> PromptItem:
    """The item `<benchmark>/<official_id>` (source, domain and answer type: the benchmark's name, its scorer)."""
    return PromptItem(id=f"{benchmark}/{official_id}", source=benchmark, domain=benchmark, question=question,
                      images=images, answer=answer, answer_type=benchmark, choices=choices, metadata=metadata)


def image_bytes(value, where: str, root: Path | None = None) -> bytes:
    """Encoded image bytes from an HF image struct `{bytes, path}`, raw bytes, a base64 string (VLMEvalKit) or a
    path relative to `root`. `where` names the file, row and field for the error."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    if isinstance(value, str) and value:
        if root is not None and (root / value).is_file():
            return (root / value).read_bytes()
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BenchmarkFormatError(f"{where}: image is neither a file under {root} nor base64") from None
    raise BenchmarkFormatError(f"{where}: no image (expected an HF image struct, bytes, base64 text or a path)")
