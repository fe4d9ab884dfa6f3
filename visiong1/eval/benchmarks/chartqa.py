"""ChartQA test set (2,500 items: human and augmented) from a Hugging Face Parquet copy or VLMEvalKit's
`ChartQA_TEST.tsv`.

Two HF layouts are read, told apart by their columns: HuggingFaceM4/ChartQA (image, query, label: list of answers,
human_or_machine: 0 human / 1 machine) and lmms-lab/ChartQA (type: human_test / augmented_test, question, answer,
image). Neither has an item id, so the id is the row's position in the test split (`chartqa/test-<n>`); VLMEvalKit's
TSV (index, image, question, answer) uses its index. The prompt is the bare question (ChartQA has no official
prompt; VLMEvalKit appends "Answer the question using a single word or phrase.", the project's template asks for a
box instead).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, is_test_split,
                                              numbered_tsv_rows, parquet_files, read_parquet_rows, required_field,
                                              tsv_files)
from visiong1.types import PromptItem

_M4_COLUMNS = ("image", "query", "label", "human_or_machine")
_LMMS_COLUMNS = ("image", "question", "answer", "type")
_TSV_COLUMNS = ("index", "image", "question", "answer")
_M4_SOURCES = {0: "human", 1: "machine"}


def load_chartqa(directory: Path) -> list[PromptItem]:
    """ChartQA test items (answer type `chartqa`) from `directory` (see module docstring)."""
    if files := [path for path in parquet_files(directory) if is_test_split(path)]:
        columns = _M4_COLUMNS if "label" in pq.read_schema(files[0]).names else _LMMS_COLUMNS
        rows = read_parquet_rows(files, columns)
        return [_hf_item(path, number, row, directory) for number, (path, row) in enumerate(rows)]
    if files := tsv_files(directory):
        return [_tsv_item(path, number, row) for path, number, row in numbered_tsv_rows(files, _TSV_COLUMNS)]
    raise BenchmarkFormatError(f"{directory}: no test-split Parquet (HuggingFaceM4/ChartQA or lmms-lab/ChartQA) "
                               f"and no VLMEvalKit TSV")


def _hf_item(path: Path, number: int, row: dict, root: Path) -> PromptItem:
    where = f"{path} row {number}"
    image = image_bytes(row["image"], f"{where} field image", root)
    if "label" in row:
        labels = [str(label) for label in row["label"] or [] if str(label)]
        if not labels:
            raise BenchmarkFormatError(f"{where}: field label has no answer")
        metadata = {"type": _M4_SOURCES.get(row["human_or_machine"], str(row["human_or_machine"]))}
        if len(labels) > 1:
            metadata["other_answers"] = labels[1:]
        return benchmark_item("chartqa", f"test-{number}", required_field(row, "query", where), [image], labels[0],
                              metadata)
    return benchmark_item("chartqa", f"test-{number}", required_field(row, "question", where), [image],
                          required_field(row, "answer", where), {"type": required_field(row, "type", where)})


def _tsv_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path} row {number} (index {row['index']})"
    metadata = {"type": row["split"]} if row.get("split") else {}
    return benchmark_item("chartqa", row["index"], required_field(row, "question", where),
                          [image_bytes(row["image"], f"{where} field image")], required_field(row, "answer", where),
                          metadata)
