"""MathVista testmini from its Hugging Face Parquet (AI4Math/MathVista, split `testmini`) or VLMEvalKit's
`MathVista_MINI.tsv`.

HF columns (dataset card of AI4Math/MathVista): pid, question, image (path), decoded_image (image struct), choices,
unit, precision, answer, question_type, answer_type, metadata, query. The prompt is `query`, the one the official
pipeline (lupantech/MathVista evaluation/build_query.py) built. VLMEvalKit's TSV (open-compass/VLMEvalKit
vlmeval/dataset/utils/mathvista.py) has index, image (base64), question (its prompt), answer, choices (a Python list
literal), question_type, answer_type and, in some releases, precision; without it a float answer's precision is its
number of decimals, which is how MathVista's precisions were set.
"""

from __future__ import annotations

from pathlib import Path

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, list_literal,
                                              numbered_tsv_rows, parquet_files, read_parquet_rows, required_field,
                                              tsv_files)
from visiong1.types import PromptItem

_HF_COLUMNS = ("pid", "query", "decoded_image", "choices", "precision", "answer", "question_type", "answer_type")
_TSV_COLUMNS = ("index", "image", "question", "answer", "choices", "question_type", "answer_type")


def load_mathvista(directory: Path) -> list[PromptItem]:
    """MathVista testmini items (answer type `mathvista`) from `directory` (see module docstring)."""
    if files := parquet_files(directory, split="testmini"):
        return [_hf_item(path, row, directory) for path, row in read_parquet_rows(files, _HF_COLUMNS)]
    if files := tsv_files(directory):
        return [_tsv_item(path, number, row) for path, number, row in numbered_tsv_rows(files, _TSV_COLUMNS)]
    raise BenchmarkFormatError(f"{directory}: no testmini Parquet (AI4Math/MathVista) and no VLMEvalKit TSV")


def _hf_item(path: Path, row: dict, root: Path) -> PromptItem:
    where = f"{path} pid {row['pid']}"
    return _item(row["pid"], required_field(row, "query", where), image_bytes(row["decoded_image"],
                 f"{where} field decoded_image", root), row, row["choices"], row["precision"], where)


def _tsv_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path} row {number} (index {row['index']})"
    multi_choice = row["question_type"] == "multi_choice"
    choices = list_literal(row["choices"], f"{where} field choices", allow_empty=False) if multi_choice else None
    precision = row.get("precision") or _decimals(row["answer"]) if row["answer_type"] == "float" else None
    return _item(row["index"], required_field(row, "question", where),
                 image_bytes(row["image"], f"{where} field image"), row, choices, precision, where)


def _item(official_id: str, prompt: str, image: bytes, row: dict, choices: list[str] | None,
          precision: float | str | None, where: str) -> PromptItem:
    metadata = {"question_type": required_field(row, "question_type", where),
                "value_type": required_field(row, "answer_type", where)}
    if precision not in (None, ""):
        metadata["precision"] = int(float(precision))
    return benchmark_item("mathvista", official_id, prompt, [image], required_field(row, "answer", where), metadata,
                          list(choices) if choices else None)


def _decimals(answer: str) -> int:
    return len(answer.split(".", 1)[1]) if "." in answer else 0
