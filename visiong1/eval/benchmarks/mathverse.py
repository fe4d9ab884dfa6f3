"""MathVerse testmini (the five versions with images) from its Hugging Face Parquet (AI4Math/MathVerse config
`testmini`; the `testmini_text_only` file has no images and is skipped) or VLMEvalKit's `MathVerse_MINI*.tsv`.

HF columns (ZrrSkywalker/MathVerse README, "Data Usage"): sample_index, problem_index, problem_version, question,
image (image struct), answer, question_type, metadata, query_wo, query_cot, question_for_eval. The prompt is
`query_cot`, the official CoT-evaluation query (the project trains reasoning; `query_wo` asks for a bare answer).
VLMEvalKit's TSV (vlmeval/dataset/image_vqa.py class MathVerse) has index, image (base64), question, answer,
query_cot (used when present, as its `_cot` variant does), question_for_eval, problem_version.
"""

from __future__ import annotations

from pathlib import Path

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, numbered_tsv_rows,
                                              parquet_files, read_parquet_rows, required_field, tsv_files)
from visiong1.types import PromptItem

_HF_COLUMNS = ("sample_index", "problem_version", "image", "answer", "question_type", "query_cot",
               "question_for_eval")
_TSV_COLUMNS = ("index", "image", "question", "answer")


def load_mathverse(directory: Path) -> list[PromptItem]:
    """MathVerse testmini items (answer type `mathverse`) from `directory` (see module docstring)."""
    if files := [path for path in parquet_files(directory, split="testmini") if not _text_only(path)]:
        return [_hf_item(path, row, directory) for path, row in read_parquet_rows(files, _HF_COLUMNS)]
    if files := [path for path in tsv_files(directory) if not _text_only(path)]:
        return [_tsv_item(path, number, row) for path, number, row in numbered_tsv_rows(files, _TSV_COLUMNS)]
    raise BenchmarkFormatError(f"{directory}: no testmini Parquet (AI4Math/MathVerse) and no VLMEvalKit TSV")


def _text_only(path: Path) -> bool:
    name = path.as_posix().lower()
    return "text_only" in name or "text-only" in name


def _hf_item(path: Path, row: dict, root: Path) -> PromptItem:
    where = f"{path} sample_index {row['sample_index']}"
    metadata = {field: required_field(row, field, where)
                for field in ("question_type", "problem_version", "question_for_eval")}
    return benchmark_item("mathverse", row["sample_index"], required_field(row, "query_cot", where),
                          [image_bytes(row["image"], f"{where} field image", root)],
                          required_field(row, "answer", where), metadata)


def _tsv_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path} row {number} (index {row['index']})"
    prompt = row.get("query_cot") or required_field(row, "question", where)
    metadata = {field: row[field] for field in ("question_for_eval", "problem_version") if row.get(field)}
    return benchmark_item("mathverse", row["index"], prompt, [image_bytes(row["image"], f"{where} field image")],
                          required_field(row, "answer", where), metadata)
