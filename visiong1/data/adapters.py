"""Source adapters: the formats users have, mapped by config (not code) onto Candidates; and verl export.

Formats: JSONL or Parquet rows (images as paths, bytes or Hugging Face `{bytes, path}` structs; Parquet also as
sharded directories and globs), a Hugging Face `save_to_disk` directory (read as Arrow files), a Hugging Face dataset
in the local hub cache found by name (its Parquet files; no `datasets`/`huggingface_hub` import, never a download),
LLaVA `conversations` records, and the verl/Vision-G1 training Parquet (`data_source`, `prompt` messages with
`<image>` placeholders, `images`, `reward_model.ground_truth`).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visiong1.config import ConfigError, SourceConfig
from visiong1.data.schema import Candidate, Rejected

IMAGE_PLACEHOLDER = "<image>"
UNIT_ROWS = 256  # rows (records, for a LLaVA JSON list) per unit of work where a source is cut by row
JSONL_UNIT_BYTES = 1 << 20  # JSONL sources are cut by bytes: no scan needed to plan them


def source_root(spec: SourceConfig) -> Path:
    """Directory that relative image paths of this source are resolved against."""
    if spec.image_root:
        return Path(spec.image_root)
    if spec.format == "hf_hub":
        return hub_snapshot(spec)
    if spec.format in ("parquet", "verl") and _has_wildcard(spec.path):
        return Path(*itertools.takewhile(lambda part: not _has_wildcard(part), Path(spec.path).parts))
    path = Path(spec.path)
    return path if path.is_dir() else path.parent


def _has_wildcard(path: str) -> bool:
    return any(char in path for char in "*?[")


def plan_units(spec: SourceConfig) -> list[dict]:
    """Independent units of work over a source: byte ranges of a JSONL file (line-aligned when read), record ranges
    of a LLaVA JSON list, row groups of every Parquet file, row ranges of a `save_to_disk` shard. Any worker can
    read any unit."""
    if spec.format == "llava" and _is_json_list(Path(spec.path)):
        spans = json_list_spans(Path(spec.path))
        return [{"start": spans[first][0], "stop": spans[min(first + UNIT_ROWS, len(spans)) - 1][1], "layout": "list"}
                for first in range(0, len(spans), UNIT_ROWS)]
    if spec.format in ("jsonl", "llava"):
        size = Path(spec.path).stat().st_size
        return [{"start": start, "stop": min(start + JSONL_UNIT_BYTES, size), "layout": "lines"}
                for start in range(0, size, JSONL_UNIT_BYTES)]
    if spec.format == "hf_disk":
        return [unit for shard in hf_disk_files(spec) for unit in _row_range_units(shard)]
    return [{"file": str(file), "row_group": group}
            for file in parquet_files(spec) for group in range(pq.ParquetFile(file).num_row_groups)]


def read_unit(spec: SourceConfig, unit: dict, batch_rows: int = UNIT_ROWS) -> Iterator[list[dict]]:
    """The raw rows of one unit, in batches of at most `batch_rows`; a LLaVA record yields one row per human turn."""
    if spec.format == "jsonl":
        lines = _jsonl_lines(spec.path, unit["start"], unit["stop"])
        yield from _batches(({"text": line} for line in lines if line.strip()), batch_rows)
    elif spec.format == "llava":
        yield from _batches(itertools.chain.from_iterable(map(llava_rows, _llava_records(spec, unit))), batch_rows)
    elif spec.format == "hf_disk":
        table = read_arrow_stream(Path(unit["shard"])).slice(unit["start"], unit["stop"] - unit["start"])
        for record_batch in table.to_batches(max_chunksize=batch_rows):
            yield record_batch.to_pylist()
    else:
        parquet = pq.ParquetFile(unit["file"])
        for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[unit["row_group"]]):
            yield record_batch.to_pylist()


def _row_range_units(shard: Path) -> list[dict]:
    rows = read_arrow_stream(shard).num_rows
    return [{"shard": str(shard), "start": start, "stop": min(start + UNIT_ROWS, rows)}
            for start in range(0, rows, UNIT_ROWS)]


def source_rows(spec: SourceConfig) -> int | None:
    """Rows a source will yield, where known without reading it (None for JSONL and LLaVA: one pass to count)."""
    if spec.format in ("jsonl", "llava"):
        return None
    if spec.format == "hf_disk":
        return sum(read_arrow_stream(shard).num_rows for shard in hf_disk_files(spec))
    return sum(pq.ParquetFile(file).metadata.num_rows for file in parquet_files(spec))


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


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


def parquet_files(spec: SourceConfig) -> list[Path]:
    """The Parquet files of a `parquet`/`verl`/`hf_hub` source, sorted: a file; every `*.parquet` directly in a
    directory; every match of a glob. Matching nothing raises ConfigError naming the path."""
    if spec.format == "hf_hub":
        return hub_split_files(spec)
    path = Path(spec.path)
    if _has_wildcard(spec.path):
        files = [Path(match) for match in glob.glob(spec.path, recursive=True) if Path(match).is_file()]
    elif path.is_dir():
        files = list(path.glob("*.parquet"))
    else:
        files = [path] if path.is_file() else []
    if not files:
        hint = " (subdirectories are not searched: use a glob such as DIR/**/*.parquet)" if path.is_dir() else ""
        raise ConfigError(f"source {spec.name!r}: path {spec.path!r} matches no Parquet file{hint}")
    return sorted(files)


def hub_cache_dir(spec: SourceConfig) -> Path:
    """The hub cache a `hf_hub` source is looked up in: `cache_dir`, else the one huggingface_hub would use."""
    if spec.cache_dir:
        return Path(spec.cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache_home / "huggingface" / "hub"


def hub_snapshot(spec: SourceConfig) -> Path:
    """The snapshot directory of a `hf_hub` source: `datasets--ORG--NAME/snapshots/<commit>` in the cache, the commit
    read from `refs/<revision>` (default `main`) or given as `revision` itself. Raises ConfigError naming what was
    searched and what is there."""
    cache = hub_cache_dir(spec)
    repo = cache / f"datasets--{spec.path.replace('/', '--')}"
    if not repo.is_dir():
        cached = sorted(entry.name.removeprefix("datasets--").replace("--", "/") for entry in cache.glob("datasets--*"))
        raise ConfigError(f"source {spec.name!r}: dataset {spec.path} is not in the Hugging Face hub cache {cache} "
                          f"(datasets cached there: {', '.join(cached) or 'none'}); download it there first, or "
                          f"set cache_dir")
    revision = spec.revision or "main"
    ref = repo / "refs" / revision
    snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)
    if not snapshot.is_dir():
        refs = sorted(str(path.relative_to(repo / "refs")) for path in (repo / "refs").rglob("*") if path.is_file())
        commits = sorted(path.name for path in (repo / "snapshots").glob("*"))
        raise ConfigError(f"source {spec.name!r}: revision {revision!r} of dataset {spec.path} is not in {repo} "
                          f"(refs: {', '.join(refs) or 'none'}; snapshots: {', '.join(commits) or 'none'})")
    return snapshot


def hub_parquet_splits(snapshot: Path) -> dict[tuple[str, str], list[Path]]:
    """A snapshot's Parquet files by (subset, split), from the layouts the hub writes: `data/<split>-*.parquet`
    (subset `default`), `<subset>/<split>-*.parquet`, `<subset>/<split>/*.parquet` (the hub's Parquet conversion),
    `<split>.parquet` at the top. Files sorted within each split."""
    splits: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for file in sorted(snapshot.rglob("*.parquet")):
        parts = file.relative_to(snapshot).parts
        subset = "default" if len(parts) == 1 or parts[0] == "data" else parts[0]
        split = parts[-2] if len(parts) >= 3 else parts[-1].removesuffix(".parquet").split("-")[0]
        splits[subset, split].append(file)
    return splits


def hub_split_files(spec: SourceConfig) -> list[Path]:
    """The Parquet files of the configured subset and split of a `hf_hub` source; ConfigError listing the subsets and
    splits the snapshot has when they are not there."""
    snapshot = hub_snapshot(spec)
    splits = hub_parquet_splits(snapshot)
    subsets = sorted({subset for subset, _ in splits})
    subset = spec.subset or (subsets[0] if len(subsets) == 1 else "default")
    split = spec.split or "train"
    if (subset, split) not in splits:
        available = ", ".join(f"{name}/{split_name}" for name, split_name in sorted(splits))
        raise ConfigError(f"source {spec.name!r}: dataset {spec.path} has no Parquet files for subset {subset!r}, "
                          f"split {split!r} in {snapshot} (subset/split available: {available or 'none'})")
    return splits[subset, split]


def hf_disk_files(spec: SourceConfig) -> list[Path]:
    """The Arrow shard files of a `save_to_disk` directory, in order (from its state.json); of a DatasetDict
    directory (`dataset_dict.json`), those of its `split` (default `train`)."""
    root, split = Path(spec.path), spec.split or "train"
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text())["splits"]
        if split not in splits:
            raise ConfigError(f"source {spec.name!r}: {spec.path} has no split {split!r} (splits: {', '.join(splits)})")
        root = root / split
    elif spec.split is not None:
        raise ConfigError(f"source {spec.name!r}: split {spec.split!r} given, but {spec.path} is a single dataset, "
                          f"not a DatasetDict directory")
    state = json.loads((root / "state.json").read_text())
    return [root / entry["filename"] for entry in state["_data_files"]]


def read_arrow_stream(path: Path) -> pa.Table:
    """One `save_to_disk` shard (Arrow IPC stream), memory-mapped."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


_SEPARATORS = re.compile(r"[\s,]*")  # between the records of a JSON list


def _is_json_list(path: Path) -> bool:
    """Whether a LLaVA file is one JSON list (else JSONL): its first non-blank byte is `[`."""
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith(b"[")
    return False


def json_list_spans(path: Path) -> list[tuple[int, int]]:
    """Byte offsets (start, stop) of every record of a JSON list file, from one parse of the file; ValueError naming
    the file if it is not a JSON list."""
    # Latin-1 maps each byte to one character, so offsets into this text are offsets into the file (UTF-8 text
    # inside strings decodes to other characters, which only the spans' readers see correctly).
    text = path.read_bytes().decode("latin-1")
    decoder, spans = json.JSONDecoder(), []
    position = _SEPARATORS.match(text, text.index("[") + 1).end()
    while position < len(text) and text[position] != "]":
        try:
            _, stop = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a JSON list of records at byte {position} ({error.msg})") from None
        spans.append((position, stop))
        position = _SEPARATORS.match(text, stop).end()
    if position == len(text):
        raise ValueError(f"{path}: the JSON list is not closed (no `]`)")
    return spans


def _llava_records(spec: SourceConfig, unit: dict) -> Iterator[dict | str]:
    """The records of a LLaVA unit; a JSONL line that is not JSON comes as its text (rejected by llava_rows)."""
    if unit["layout"] == "lines":
        for line in _jsonl_lines(spec.path, unit["start"], unit["stop"]):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield line
        return
    with open(spec.path, "rb") as handle:
        handle.seek(unit["start"])
        text = handle.read(unit["stop"] - unit["start"]).decode("utf-8", errors="replace")
    decoder, position = json.JSONDecoder(), 0
    while position < len(text):
        record, stop = decoder.raw_decode(text, position)
        yield record
        position = _SEPARATORS.match(text, stop).end()


def llava_rows(record: dict | str) -> list[dict]:
    """One row per human turn of a LLaVA record: `question` the turn without `<image>` placeholders, `answer` the
    gpt turn right after it, `images` the record's `image` (a path or a list), `id` `<record id>/<n>` for the n-th
    human turn (from 0; a record without id gets content-hash ids). Every pair is its own item, not only the first:
    multi-turn records are mostly independent questions on one image (LLaVA's VQA mixtures), and a turn that leans on
    an earlier answer usually fails the answer rules anyway. A human turn without a gpt reply, a record without
    conversations and a record that is not a JSON object become one row each with `reject` set, so they are logged,
    not lost."""
    if not isinstance(record, dict):
        return [{"question": str(record)[:200], "reject": "record is not a JSON object"}]
    name = record.get("id")
    label = "a record without id" if name is None else f"record {name}"
    turns = [turn for turn in record.get("conversations") or [] if isinstance(turn, dict)]
    asked = [index for index, turn in enumerate(turns) if turn.get("from") == "human"]
    if not asked:
        return [{"question": "", "reject": f"{label}: no conversations (no human turn)"}]
    image = record.get("image")
    images = [] if image is None else [image] if isinstance(image, str) else list(image)
    rows = []
    for number, index in enumerate(asked):
        question = str(turns[index].get("value") or "").replace(IMAGE_PLACEHOLDER, "").strip()
        reply = turns[index + 1] if index + 1 < len(turns) and turns[index + 1].get("from") == "gpt" else None
        rows.append({"id": None if name is None else f"{name}/{number}", "question": question,
                     "answer": None if reply is None else reply.get("value"), "images": list(images),
                     "domain": record.get("domain"),
                     "reject": None if reply is not None else f"{label} human turn {number}: no gpt reply"})
    return rows


def llava_row_to_candidate(row: dict, spec: SourceConfig) -> Candidate:
    """A LLaVA turn row (see llava_rows) as a Candidate; rows flagged there are rejected as `missing_field`."""
    if row["reject"]:
        raise Rejected("missing_field", row["reject"])
    candidate = Candidate(
        source=spec.name, domain=spec.domain or row["domain"], question=row["question"], answer=row["answer"],
        answer_type=spec.answer_type, images=row["images"], choices=None, dimension=spec.dimension, metadata={},
        key=None if row["id"] is None else f"{spec.name}/{row['id']}")
    return require_fields(candidate)


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
    if spec.format == "llava":
        return llava_row_to_candidate(row, spec)
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
