"""MathVision (MATH-V) test set (3,040 items, the set mathllm/MATH-V evaluation/evaluate.py scores) from its
Hugging Face Parquet (MathLLMs/MathVision, split `test`; `testmini` files are skipped) or VLMEvalKit's
`MathVision.tsv`.

HF columns: id, question, options (list, empty for free-form), image (path), decoded_image (image struct), answer,
solution, level, subject. The prompt is the question followed by `(A) option` lines, as the official CoT prompt
(mathllm/MATH-V models/GPT4V.py process_example) lays them out, without its instruction sentence (the project's
prompt template adds its own `\\boxed{}` instruction). VLMEvalKit's TSV (vlmeval/dataset/utils/mathv.py) has index,
image (base64), question, answer and choices (a Python list literal).
"""

from __future__ import annotations

from pathlib import Path

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, is_test_split,
                                              list_literal, numbered_tsv_rows, parquet_files, read_parquet_rows,
                                              required_field, tsv_files)
from visiong1.types import PromptItem

_HF_COLUMNS = ("id", "question", "options", "decoded_image", "answer")
_TSV_COLUMNS = ("index", "image", "question", "answer", "choices")


def load_mathvision(directory: Path) -> list[PromptItem]:
    """MathVision test items (answer type `mathvision`) from `directory` (see module docstring)."""
    if files := [path for path in parquet_files(directory) if is_test_split(path)]:
        return [_hf_item(path, row, directory) for path, row in read_parquet_rows(files, _HF_COLUMNS)]
    if files := [path for path in tsv_files(directory) if "mini" not in path.name.lower()]:
        return [_tsv_item(path, number, row) for path, number, row in numbered_tsv_rows(files, _TSV_COLUMNS)]
    raise BenchmarkFormatError(f"{directory}: no test-split Parquet (MathLLMs/MathVision) and no VLMEvalKit TSV")


def _hf_item(path: Path, row: dict, root: Path) -> PromptItem:
    where = f"{path} id {row['id']}"
    options = [str(option) for option in row["options"] or []]
    return _item(row["id"], required_field(row, "question", where), options,
                 image_bytes(row["decoded_image"], f"{where} field decoded_image", root),
                 required_field(row, "answer", where), {"level": row.get("level"), "subject": row.get("subject")})


def _tsv_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path} row {number} (index {row['index']})"
    question = required_field(row, "question", where)
    # VLMEvalKit writes `[]` for free-form questions and the option list otherwise; a blank cell has no options
    cell = row["choices"]
    options = list_literal(cell, f"{where} field choices", allow_empty=True) if cell.strip() else []
    return _item(row["index"], question, options, image_bytes(row["image"], f"{where} field image"),
                 required_field(row, "answer", where), {})


def _item(official_id: str, question: str, options: list[str], image: bytes, answer: str,
          metadata: dict) -> PromptItem:
    lettered = "".join(f"({chr(ord('A') + index)}) {option}\n" for index, option in enumerate(options))
    prompt = f"{question}\n{lettered}".rstrip("\n")
    return benchmark_item("mathvision", official_id, prompt, [image], answer,
                          {key: value for key, value in metadata.items() if value is not None}, options or None)
