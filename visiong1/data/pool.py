"""Building, writing and reading pools.

A pool directory holds `items/part-NNNNN.parquet` (POOL_SCHEMA), `rejects.jsonl` (one line per rejected item with
its reason) and `manifest.json` (schema version, counts per domain/source/answer type, rejection counts, sha256 per
file, the creation config). Curation runs as a Ray Data pipeline (read -> map_batches(curate) -> streamed to the
writer) or, with `engine="local"`, as a plain loop over the same functions.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from visiong1.config import DataConfig, SourceConfig
from visiong1.data.adapters import plan_units, pool_row_to_verl, read_unit, source_rows
from visiong1.data.curate import curate_source_rows, curate_synthetic
from visiong1.data.schema import POOL_SCHEMA, SCHEMA_VERSION
from visiong1.types import PromptItem, table_to_items

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
BATCH_ROWS = 256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PoolWriter:
    """Streams curated tables into a pool directory: drops duplicates (by content hash, and by id), rolls Parquet
    files every `rows_per_file` rows, counts everything for the manifest. Memory: the seen hashes and ids only."""

    def __init__(self, out_dir: Path, rows_per_file: int = 10_000):
        if (out_dir / MANIFEST).exists():
            raise FileExistsError(f"{out_dir} already holds a pool (manifest.json); choose a new directory")
        (out_dir / "items").mkdir(parents=True, exist_ok=True)
        self.out_dir, self.rows_per_file = out_dir, rows_per_file
        self.seen_hashes: dict[str, str] = {}
        self.seen_ids: set[str] = set()
        self.counts = {key: Counter() for key in ("domain", "source", "answer_type", "dimension", "corrupted")}
        self.rejected, self.rejected_by_source = Counter(), Counter()
        self.files: list[dict] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows_in_file = 0
        self.kept = 0
        self.rejects = open(out_dir / REJECTS, "w", encoding="utf-8")

    def add(self, curated: pa.Table) -> None:
        """Write the accepted rows of one curated batch and log its rejected ones."""
        keep = []
        for index, row in enumerate(curated.select(["id", "source", "question", "content_hash", "reject_reason",
                                                    "reject_detail"]).to_pylist()):
            reason, detail = row["reject_reason"], row["reject_detail"]
            if reason is None and row["content_hash"] in self.seen_hashes:
                reason, detail = "duplicate", f"same content as {self.seen_hashes[row['content_hash']]}"
            elif reason is None and row["id"] in self.seen_ids:
                reason, detail = "duplicate", f"id {row['id']} already used by different content"
            if reason is not None:
                self._reject(row, reason, detail)
                continue
            self.seen_hashes[row["content_hash"]] = row["id"]
            self.seen_ids.add(row["id"])
            keep.append(index)
        if keep:
            self._write(curated.take(keep).select(POOL_SCHEMA.names).cast(POOL_SCHEMA))

    def _reject(self, row: dict, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.rejected_by_source[row["source"]] += 1
        record = {"id": row["id"], "source": row["source"], "reason": reason, "detail": detail,
                  "question": (row["question"] or "")[:200]}
        self.rejects.write(json.dumps(record) + "\n")

    def _write(self, table: pa.Table) -> None:
        self.kept += table.num_rows
        for name in ("domain", "source", "answer_type", "dimension"):
            self.counts[name].update(str(value) for value in table.column(name).to_pylist() if value is not None)
        for metadata in table.column("metadata").to_pylist():
            kind = json.loads(metadata).get("corrupted")
            if kind:
                self.counts["corrupted"][kind] += 1
        offset = 0
        while offset < table.num_rows:
            if self.writer is None:
                self._open_file()
            take = min(self.rows_per_file - self.rows_in_file, table.num_rows - offset)
            self.writer.write_table(table.slice(offset, take))
            self.rows_in_file += take
            offset += take
            if self.rows_in_file == self.rows_per_file:
                self._close_file()

    def _open_file(self) -> None:
        path = self.out_dir / "items" / f"part-{len(self.files):05d}.parquet"
        self.writer = pq.ParquetWriter(path, POOL_SCHEMA)
        self.files.append({"path": str(path.relative_to(self.out_dir)), "rows": 0})
        self.rows_in_file = 0

    def _close_file(self) -> None:
        self.writer.close()
        self.writer = None
        self.files[-1]["rows"] = self.rows_in_file
        self.files[-1]["sha256"] = sha256_file(self.out_dir / self.files[-1]["path"])

    def finish(self, config: DataConfig) -> dict:
        """Close the files and write manifest.json (last, so a pool with a manifest is complete)."""
        if self.writer is not None:
            self._close_file()
        self.rejects.close()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": config.model_dump(mode="json"),
            "items": self.kept,
            "counts": {name: dict(sorted(counter.items())) for name, counter in self.counts.items()},
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_by_source": dict(sorted(self.rejected_by_source.items())),
            "files": self.files,
            "rejects_file": {"path": REJECTS, "rows": sum(self.rejected.values()),
                             "sha256": sha256_file(self.out_dir / REJECTS)},
        }
        (self.out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def plan_work(config: DataConfig) -> list[dict]:
    """Every unit of a build: chunks of synthetic positions, then each source's units (tagged with its index)."""
    work = [{"synthetic": [start, min(start + BATCH_ROWS, config.num_items)]}
            for start in range(0, config.num_items, BATCH_ROWS)]
    for index, spec in enumerate(config.sources):
        work += [{"source": index, "unit": unit} for unit in plan_units(spec)]
    return work


def curate_work(work: dict, config: DataConfig) -> Iterator[pa.Table]:
    """Curated tables of one unit of work (a source unit may yield several batches)."""
    if "synthetic" in work:
        yield curate_synthetic(list(range(*work["synthetic"])), config)
        return
    spec = config.sources[work["source"]]
    for rows in read_unit(spec, work["unit"], BATCH_ROWS):
        yield curate_source_rows(rows, spec, config)


class Curator:
    """Ray Data map_batches callable: one per actor of the pool, fed one unit of work per call. An actor pool
    rather than tasks: on 2 CPUs, Ray Data's task launches left a CPU idle ~30% of the time (benchmarks/curation.py)."""

    def __init__(self, config: DataConfig):
        self.config = config

    def __call__(self, works: dict) -> Iterator[pa.Table]:
        for work in works["work"]:
            yield from curate_work(json.loads(work), self.config)


def local_curated_tables(config: DataConfig) -> Iterator[pa.Table]:
    """Curated batches from one process: the reference the Ray pipeline is measured against."""
    for work in plan_work(config):
        yield from curate_work(work, config)


def ray_curated_tables(config: DataConfig) -> Iterator[pa.Table]:
    """Curated batches from a Ray Data pipeline (units -> map_batches(Curator) on an actor pool of
    `config.build_workers`, default one per cluster CPU), streamed with bounded memory. Needs ray.init()."""
    import ray
    import ray.data

    work = [{"work": json.dumps(unit)} for unit in plan_work(config)]
    if not work:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # build_pool shows one bar for the whole build
    # In input order, so "the first of two duplicates is kept" means the same item as in the single-process loop.
    context.execution_options.preserve_order = True
    workers = config.build_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    pool = ray.data.ActorPoolStrategy(size=min(workers, len(work)), max_tasks_in_flight_per_actor=2)
    dataset = ray.data.from_items(work, override_num_blocks=len(work)).map_batches(
        Curator, fn_constructor_kwargs={"config": config}, batch_size=1, batch_format="numpy", compute=pool,
        num_cpus=1)
    yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


def expected_rows(config: DataConfig) -> int | None:
    """Rows the build will see, where cheap to know (None if a JSONL or LLaVA source would have to be read)."""
    counts = [source_rows(spec) for spec in config.sources]
    return None if None in counts else config.num_items + sum(counts)


def build_pool(config: DataConfig, out_dir: str | Path, engine: Literal["ray", "local"] = "ray",
               progress: bool = True) -> dict:
    """Curate the configured sources and synthetic items into a pool at `out_dir`; returns the manifest."""
    writer = PoolWriter(Path(out_dir))
    tables = ray_curated_tables(config) if engine == "ray" else local_curated_tables(config)
    with tqdm(total=expected_rows(config), unit="item", desc=f"curating ({engine})", disable=not progress) as bar:
        for table in tables:
            writer.add(table)
            bar.update(table.num_rows)
            bar.set_postfix(kept=writer.kept, rejected=sum(writer.rejected.values()))
    return writer.finish(config)


def read_manifest(pool_dir: str | Path) -> dict:
    path = Path(pool_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{pool_dir}: no {MANIFEST}, so not a complete pool (build one with "
                                f"`visiong1 data build`)")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{pool_dir}: pool schema version {manifest.get('schema_version')}, this visiong1 reads "
                         f"version {SCHEMA_VERSION}")
    return manifest


def verify_pool(pool_dir: str | Path) -> dict:
    """The manifest, after checking every file's sha256 against it (raises ValueError on a mismatch)."""
    manifest = read_manifest(pool_dir)
    for entry in [*manifest["files"], manifest["rejects_file"]]:
        actual = sha256_file(Path(pool_dir) / entry["path"])
        if actual != entry["sha256"]:
            raise ValueError(f"{pool_dir}/{entry['path']}: sha256 {actual[:12]} differs from the manifest's "
                             f"{entry['sha256'][:12]} (file changed after the build)")
    return manifest


def read_pool_table(pool_dir: str | Path) -> pa.Table:
    """The pool's items as one Arrow table (POOL_SCHEMA), files checked against the manifest."""
    manifest = verify_pool(pool_dir)
    tables = [pq.read_table(Path(pool_dir) / entry["path"], schema=POOL_SCHEMA) for entry in manifest["files"]]
    return pa.concat_tables(tables) if tables else POOL_SCHEMA.empty_table()


def load_pool(pool_dir: str | Path) -> list[PromptItem]:
    """The pool's items as PromptItems (what the coordinator samples from)."""
    return table_to_items(read_pool_table(pool_dir))


def export_verl(pool_dir: str | Path, out_path: str | Path) -> int:
    """Write the pool as a verl/Vision-G1 training Parquet (importable back with `format: verl`); returns rows."""
    rows = [pool_row_to_verl(row) for row in read_pool_table(pool_dir).to_pylist()]
    pq.write_table(pa.Table.from_pylist(rows), out_path)
    return len(rows)
