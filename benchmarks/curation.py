"""Pool curation throughput and memory: the Ray Data pipeline versus a plain single-process loop.

Builds pools of synthetic items over all eight domains plus counting (generate -> conversion rules -> image
validation -> content hash -> dedup -> Parquet) at two sizes with both engines. Throughput is items curated per
second of build wall time (the Ray cluster is started and warmed before timing). Memory: a sampling thread records,
every 0.5 s, the summed RSS of this process and all its descendants (Ray's GCS, raylet and workers) plus the object
store's used bytes; the peak of that sum is the figure (shared pages count once per process that maps them, the
same way in every run). Flat memory means peak(20,000) <= 1.2 x peak(5,000).

Run: python -m benchmarks.curation [--items 5000 20000] [--image-size 224] [--cpus 2]
Writes benchmarks/results/curation.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import PeakMemory, write_result
from visiong1.config import load_config
from visiong1.data.pool import build_pool
from visiong1.data.synthetic import GENERATORS


def measure(engine: str, items: int, image_size: int, work_dir: Path) -> dict:
    overrides = [f"data.domains=[{','.join(GENERATORS)}]", f"data.num_items={items}", f"data.image_size={image_size}",
                 "data.difficulty=3", f"data.images.max_pixels={image_size * image_size}", "data.corrupt_fraction=0.05"]
    config = load_config(None, overrides).data
    out_dir = work_dir / f"{engine}-{items}"
    with PeakMemory(with_ray=engine == "ray") as memory:
        start = time.perf_counter()
        manifest = build_pool(config, out_dir, engine=engine, progress=False)
        seconds = time.perf_counter() - start
    shutil.rmtree(out_dir)
    return {"engine": engine, "items": items, "seconds": round(seconds, 2), "items_per_s": round(items / seconds, 1),
            "kept": manifest["items"], "rejected": sum(manifest["rejected"].values()),
            "peak_memory_mb": round(memory.peak / 2**20, 1), "memory_samples": memory.samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    work_dir = Path(tempfile.mkdtemp(prefix="vg1-curation-"))
    measure("ray", 512, args.image_size, work_dir)  # warm-up: worker processes and imports
    rows = [measure(engine, items, args.image_size, work_dir) for engine in ("local", "ray") for items in args.items]
    ray.shutdown()
    shutil.rmtree(work_dir)

    by = {(row["engine"], row["items"]): row for row in rows}
    largest, smallest = max(args.items), min(args.items)
    figures = {"runs": rows,
               "ray_speedup_at_largest": round(by["ray", largest]["items_per_s"] / by["local", largest]["items_per_s"], 2),
               "ray_memory_growth": round(by["ray", largest]["peak_memory_mb"] / by["ray", smallest]["peak_memory_mb"], 3),
               "local_memory_growth": round(by["local", largest]["peak_memory_mb"] / by["local", smallest]["peak_memory_mb"], 3)}
    table = Table(title=f"Pool curation, {args.image_size}-px synthetic items, {args.cpus} Ray CPUs")
    for column in ("engine", "items", "seconds", "items/s", "kept", "rejected", "peak MB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["engine"], str(row["items"]), str(row["seconds"]), str(row["items_per_s"]),
                      str(row["kept"]), str(row["rejected"]), str(row["peak_memory_mb"]))
    console = Console()
    console.print(table)
    console.print({key: value for key, value in figures.items() if key != "runs"})
    path = write_result("curation", figures, vars(args))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
