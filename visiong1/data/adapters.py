"""Source adapters: the formats users have, mapped by config (not code) onto Candidates; and verl export.

Formats: JSONL or Parquet rows (images as paths, bytes or Hugging Face `{bytes, path}` structs), a Hugging Face
`save_to_disk` directory (read as Arrow files, no `datasets` import), and the verl/Vision-G1 training Parquet
(`data_source`, `prompt` messages with `<image>` placeholders, `images`, `reward_model.ground_truth`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visiong1.config import SourceConfig
from visiong1.data.schema import Candidate, Rejected

IMAGE_PLACEHOLDER = "<image>"


def source_root(spec: SourceConfig) -> Path:
    """Directory that relative image paths of this source are resolved against."""
    if spec.image_root:
        return Path(spec.image_root)
    path = Path(spec.path)
    return path if path.is_dir() else path.parent


def hf_disk_files(path: str) -> list[Path]:
    """The Arrow shard files of a `save_to_disk` directory, in order (from its state.json)."""
    state = json.loads((Path(path) / "state.json").read_text())
    return [Path(path) / entry["filename"] for entry in state["_data_files"]]


def read_arrow_stream(path: Path) -> pa.Table:
    """One `save_to_disk` shard (Arrow IPC stream), memory-mapped."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


UNIT_ROWS = 256  # rows per unit of work for sources that can be cut by row (hf_disk); JSONL units are cut by bytes
JSONL_UNIT_BYTES = 1 << 20


def plan_units(spec: SourceConfig) -> list[dict]:
    """Independent units of work over a source: byte ranges of a JSONL file (line-aligned when read), row groups
    of a Parquet file, row ranges of a `save_to_disk` shard. Any worker can read any unit."""
    if spec.format == "jsonl":
        size = Path(spec.path).stat().st_size
        return [{"start": start, "stop": min(start + JSONL_UNIT_BYTES, size)}
                for start in range(0, size, JSONL_UNIT_BYTES)]
    if spec.format in ("parquet", "verl"):
        return [{"row_group": group} for group in range(pq.ParquetFile(spec.path).num_row_groups)]
    units = []
    for shard in hf_disk_files(spec.path):
        rows = read_arrow_stream(shard).num_rows
        units += [{"shard": str(shard), "start": start, "stop": min(start + UNIT_ROWS, rows)}
                  for start in range(0, rows, UNIT_ROWS)]
    return units


def _jsonl_lines(path: str, start: int, stop: int) -> Iterator[str]:
    """Lines that begin inside [start, stop): a line crossing `stop` belongs to this unit, one crossing `start`
    to the previous unit (so every line is read exactly once)."""
    with open(path, "rb") as handle:
        if start > 0:
            handle.seek(start - 1)
            handle.readline()  # finish the line that began before `start`
        while handle.tell() < stop:
            line = handle.readline()
            if not line:
                break
            yield line.decode("utf-8", errors="replace")


def read_unit(spec: SourceConfig, unit: dict, batch_rows: int = UNIT_ROWS) -> Iterator[list[dict]]:
    """The raw rows of one unit, in batches of at most `batch_rows`."""
    if spec.format == "jsonl":
        rows = ({"text": line} for line in _jsonl_lines(spec.path, unit["start"], unit["stop"]) if line.strip())
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == batch_rows:
                yield batch
                batch = []
        if batch:
            yield batch
    elif spec.format in ("parquet", "verl"):
        parquet = pq.ParquetFile(spec.path)
        for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[unit["row_group"]]):
            yield record_batch.to_pylist()
    else:
        table = read_arrow_stream(Path(unit["shard"])).slice(unit["start"], unit["stop"] - unit["start"])
        for record_batch in table.to_batches(max_chunksize=batch_rows):
            yield record_batch.to_pylist()


def _column(row: dict, spec: SourceConfig, name: str):
    return row.get(spec.columns.get(name, name))


def _as_list(value) -> list | None:
    if value is None:
        return None
    if isinstance(value, str):  # a JSON-encoded list, as CSV-born JSONL often has
        value = json.loads(value) if value.strip().startswith("[") else [value]
    return list(value)


def row_to_candidate(row: dict, spec: SourceConfig) -> Candidate:
    """A raw row as a Candidate, through the column mapping; verl rows through their fixed layout."""
    if spec.format == "jsonl":
        try:
            row = json.loads(row["text"])
        except json.JSONDecodeError as error:
            raise Rejected("missing_field", f"line is not JSON: {error}") from None
    if spec.format == "verl":
        return verl_row_to_candidate(row, spec)
    images = _as_list(_column(row, spec, "images"))
    if images is None:
        single = _column(row, spec, "image")
        images = [] if single is None else [single]
    metadata = _column(row, spec, "metadata") or {}
    candidate = Candidate(
        source=spec.name, domain=spec.domain or _column(row, spec, "domain"),
        question=_column(row, spec, "question"), answer=_column(row, spec, "answer"),
        answer_type=spec.answer_type or _column(row, spec, "answer_type"), images=images,
        choices=_as_list(_column(row, spec, "choices")),
        dimension=spec.dimension or _column(row, spec, "dimension"),
        metadata=json.loads(metadata) if isinstance(metadata, str) else dict(metadata),
        key=None if _column(row, spec, "id") is None else f"{spec.name}/{_column(row, spec, 'id')}")
    return require_fields(candidate)


def require_fields(candidate: Candidate) -> Candidate:
    """Every pool item has a question, an answer, a domain and at least one image."""
    for name in ("question", "answer", "domain"):
        value = getattr(candidate, name)
        if value is None or not str(value).strip():
            raise Rejected("missing_field", f"no {name}")
    if not candidate.images:
        raise Rejected("missing_field", "no image")
    candidate.answer = str(candidate.answer).strip()
    return candidate


def verl_row_to_candidate(row: dict, spec: SourceConfig) -> Candidate:
    """A verl training row; fields this project has no column for are kept in metadata["verl"] for export. A
    file this project exported carries the pool row's own fields in extra_info["visiong1"]: they are restored."""
    extra = dict(row.get("extra_info") or {})
    ours = json.loads(extra.pop("visiong1", None) or "{}")  # present when the file was exported by this project
    messages = list(row.get("prompt") or [])
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    question = str(user.get("content", "")).replace(IMAGE_PLACEHOLDER, "").strip()
    verl_fields = {"prompt": messages, "ability": row.get("ability"), "extra_info": extra,
                   "reward_model_style": (row.get("reward_model") or {}).get("style")}
    candidate = Candidate(
        source=spec.name if spec.name != "verl" else (row.get("data_source") or spec.name),
        domain=spec.domain or ours.get("domain"), question=question,
        answer=(row.get("reward_model") or {}).get("ground_truth"),
        answer_type=spec.answer_type or ours.get("answer_type"), images=list(row.get("images") or []),
        choices=ours.get("choices"), dimension=spec.dimension or ours.get("dimension"),
        metadata=ours["metadata"] if ours else {"verl": verl_fields}, key=ours.get("id"))
    return require_fields(candidate)


def pool_row_to_verl(row: dict) -> dict:
    """A pool row as a verl training row. Our own fields travel in extra_info["visiong1"] so that importing
    the file back restores the pool row exactly; fields that came from a verl import are restored as they were."""
    metadata = json.loads(row["metadata"] or "{}")
    verl = metadata.get("verl") or {}
    prefix = IMAGE_PLACEHOLDER * len(row["images"])
    prompt = verl.get("prompt") or [{"role": "user", "content": prefix + row["question"]}]
    ours = {"id": row["id"], "domain": row["domain"], "answer_type": row["answer_type"], "choices": row["choices"],
            "dimension": row["dimension"], "metadata": metadata}
    extra = {**verl.get("extra_info", {}), "visiong1": json.dumps(ours, sort_keys=True)}
    return {"data_source": row["source"], "prompt": prompt,
            "images": [{"bytes": image, "path": None} for image in row["images"]],
            "ability": verl.get("ability") or row["domain"],
            "reward_model": {"style": verl.get("reward_model_style") or "rule", "ground_truth": row["answer"]},
            "extra_info": extra}
