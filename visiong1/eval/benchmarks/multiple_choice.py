"""MMStar, AI2D and ScienceQA-IMG from their Hugging Face Parquet releases or VLMEvalKit's TSVs, as items scored
by VLMEvalKit's multiple-choice rule (`visiong1.rewards.official.multiple_choice`).

Formats (column names checked against the releases):
- MMStar, Lin-Chen/MMStar `mmstar.parquet`: index, question (options inline: `...\\nOptions: A: x, B: y, ...`),
  image, answer (letter), category, l2_category, meta_info.
- AI2D, lmms-lab/ai2d `data/test-*.parquet`: question, options (list), answer (the option's index as text),
  image; no id column, so an item's id is its row number across the sorted files.
- ScienceQA, derek-thomas/ScienceQA or lmms-lab/ScienceQA (`ScienceQA-IMG`), test split: image, question,
  choices (list), answer (int index), hint, ...; rows without an image are skipped (the IMG subset).
- VLMEvalKit TSVs (`MMStar.tsv`, `AI2D_TEST.tsv`, `ScienceQA_TEST.tsv`/`_VAL`): index, image (base64; a short
  value is the index of the row holding the image; `[...]` lists several), question, hint, A, B, ..., answer.
Parquet wins when a directory holds both (the MMStar repository ships both).

The question is VLMEvalKit's MCQ prompt (open-compass/VLMEvalKit @ e8e78f05f3080fe28154f2130321f17951c3be94,
`vlmeval/dataset/image_mcq.py`, ImageMCQDataset.build_prompt): optional `Hint:`, `Question:`, lettered options,
"Please select the correct answer from the options above."
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from visiong1.eval.benchmarks.formats import (BenchmarkFormatError, benchmark_item, image_bytes, parquet_files,
                                              read_parquet_rows, read_tsv_rows, tsv_files)
from visiong1.types import PromptItem

MMSTAR_COLUMNS = ("index", "question", "image", "answer")
AI2D_COLUMNS = ("question", "options", "answer", "image")
SCIENCEQA_COLUMNS = ("image", "question", "choices", "answer")
TSV_COLUMNS = ("index", "image", "question", "answer")
IMAGE_REFERENCE_MAX_CHARS = 64  # VLMEvalKit: an image cell this short names the row whose image it shares


def load_mmstar(directory: Path) -> list[PromptItem]:
    """MMStar's 1500 items (Parquet, else VLMEvalKit TSV)."""
    files = parquet_files(directory)
    if not files:
        return load_vlmevalkit_mcq(directory, "mmstar")
    return [_mmstar_item(path, row) for path, row in read_parquet_rows(files, MMSTAR_COLUMNS)]


def load_ai2d(directory: Path) -> list[PromptItem]:
    """AI2D's test items (Parquet, else VLMEvalKit TSV)."""
    files = parquet_files(directory, "test")
    if not files:
        return load_vlmevalkit_mcq(directory, "ai2d")
    rows = read_parquet_rows(files, AI2D_COLUMNS)
    return [_ai2d_item(path, number, row) for number, (path, row) in enumerate(rows)]


def load_scienceqa(directory: Path) -> list[PromptItem]:
    """ScienceQA-IMG: the test items that have an image (Parquet, else VLMEvalKit TSV)."""
    files = parquet_files(directory, "test")
    image_subset = [path for path in files if "ScienceQA-IMG" in path.relative_to(directory).as_posix()]
    files = image_subset or files  # lmms-lab ships the FULL and IMG subsets side by side
    if not files:
        return load_vlmevalkit_mcq(directory, "scienceqa", skip_imageless=True)
    rows = read_parquet_rows(files, SCIENCEQA_COLUMNS)
    return [_scienceqa_item(path, number, row) for number, (path, row) in enumerate(rows) if row["image"]]


def vlmevalkit_prompt(question: str, options: list[str], hint: str | None = None) -> str:
    """ImageMCQDataset.build_prompt's text (its trailing space before the last newline included)."""
    prompt = f"Hint: {hint}\n" if hint else ""
    prompt += f"Question: {question}\n"
    if options:
        prompt += "Options:\n" + "".join(f"{letter}. {text}\n" for letter, text in zip(string.ascii_uppercase, options))
        prompt += "Please select the correct answer from the options above. \n"
    return prompt


def _mmstar_item(path: Path, row: dict) -> PromptItem:
    where = f"{path}: index {row['index']}"
    question, options = split_inline_options(str(row["question"]), where)
    answer = _letter(row["answer"], options, where)
    metadata = {key: row[key] for key in ("category", "l2_category") if row.get(key)}
    return benchmark_item("mmstar", str(row["index"]), vlmevalkit_prompt(question, options),
                          [image_bytes(row["image"], f"{where}, field 'image'")], answer, metadata, options)


def split_inline_options(question: str, where: str) -> tuple[str, list[str]]:
    """MMStar's `...\\nOptions: A: x, B: y, C: z` -> (question, [x, y, z]). Option texts may contain commas: an
    option ends only where `, <next letter>:` (or a newline and the next letter) begins."""
    head, marker, tail = question.rpartition("Options:")
    tail = tail.strip()
    if not marker or not tail.startswith("A:"):
        raise BenchmarkFormatError(f"{where}, field 'question': no inline 'Options: A: ..., B: ...' list")
    bounds = [(0, 2)]  # per option: (where its separator starts, where its text starts)
    for letter in string.ascii_uppercase[1:]:
        found = re.compile(rf"[,\n]\s*{letter}:").search(tail, bounds[-1][1])
        if found is None:
            break
        bounds.append(found.span())
    ends = [separator for separator, _ in bounds[1:]] + [len(tail)]
    return head.strip(), [tail[start:end].strip() for (_, start), end in zip(bounds, ends)]


def _ai2d_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path}: row {number}"
    options = [str(option) for option in row["options"] or []]
    answer = _letter_of_index(row["answer"], options, where)
    return benchmark_item("ai2d", number, vlmevalkit_prompt(str(row["question"]), options),
                          [image_bytes(row["image"], f"{where}, field 'image'")], answer, {}, options)


def _scienceqa_item(path: Path, number: int, row: dict) -> PromptItem:
    where = f"{path}: row {number}"
    options = [str(choice) for choice in row["choices"] or []]
    answer = _letter_of_index(row["answer"], options, where)
    prompt = vlmevalkit_prompt(str(row["question"]), options, row.get("hint") or None)
    return benchmark_item("scienceqa", number, prompt, [image_bytes(row["image"], f"{where}, field 'image'")], answer,
                          {}, options)


def _letter_of_index(index, options: list[str], where: str) -> str:
    """An answer given as the option's 0-based index (int, or its text) -> its letter."""
    if not options:
        raise BenchmarkFormatError(f"{where}, field 'options': no options")
    try:
        position = int(index)
    except (TypeError, ValueError):
        raise BenchmarkFormatError(f"{where}, field 'answer': {index!r} is not an option index") from None
    if not 0 <= position < len(options):
        raise BenchmarkFormatError(f"{where}, field 'answer': index {position} outside {len(options)} options")
    return string.ascii_uppercase[position]


def _letter(answer, options: list[str], where: str) -> str:
    letter = str(answer).strip()
    if letter not in list(string.ascii_uppercase[:len(options)]):
        raise BenchmarkFormatError(f"{where}, field 'answer': {answer!r} is not one of the {len(options)} "
                                   "option letters")
    return letter


def load_vlmevalkit_mcq(directory: Path, benchmark: str, skip_imageless: bool = False) -> list[PromptItem]:
    """Every row of the VLMEvalKit TSVs under `directory` as a multiple-choice item."""
    files = tsv_files(directory)
    if not files:
        raise BenchmarkFormatError(f"{directory}: no Parquet files of the Hugging Face release and no VLMEvalKit "
                                   f"TSV; expected one of them for {benchmark}")
    items = []
    for path in files:
        for row in vlmevalkit_rows(path, TSV_COLUMNS, skip_imageless):
            where = f"{path}: index {row['index']}"
            options = tsv_options(row)
            question = vlmevalkit_prompt(row["question"], options, row.get("hint") or None)
            metadata = {key: row[key] for key in ("category", "l2_category") if row.get(key)}
            items.append(benchmark_item(benchmark, row["index"], question, row["images"],
                                        _letter(row["answer"], options, where), metadata, options))
    return items


def tsv_options(row: dict) -> list[str]:
    """The option columns A, B, ... up to the first empty one (VLMEvalKit leaves unused letters empty)."""
    options = []
    for letter in string.ascii_uppercase:
        if not row.get(letter):
            break
        options.append(row[letter])
    return options


def vlmevalkit_rows(path: Path, required: tuple[str, ...], skip_imageless: bool = False) -> list[dict]:
    """The TSV's rows, each with `images` (decoded bytes) added; image cells that name another row's index
    share that row's image. Rows with an empty image cell are dropped when `skip_imageless`."""
    rows = list(read_tsv_rows(path, required))
    if skip_imageless:
        rows = [row for row in rows if row["image"]]
    cells = {row["index"]: row["image"] for row in rows}
    for row in rows:
        row["images"] = _tsv_images(row["image"], cells, f"{path}: index {row['index']}, field 'image'")
    return rows


def _tsv_images(cell: str, cells: dict[str, str], where: str) -> list[bytes]:
    if 0 < len(cell) <= IMAGE_REFERENCE_MAX_CHARS:
        shared = cells.get(cell, "")
        if len(shared) <= IMAGE_REFERENCE_MAX_CHARS:
            raise BenchmarkFormatError(f"{where}: refers to index {cell!r}, which holds no image")
        cell = shared
    if cell.startswith("[") and cell.endswith("]"):
        try:
            encoded = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            raise BenchmarkFormatError(f"{where}: neither base64 nor a list of base64 images") from None
        return [image_bytes(value, where) for value in encoded]
    return [image_bytes(cell, where)]
