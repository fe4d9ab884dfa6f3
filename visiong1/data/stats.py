"""What is in a pool: per-domain/per-source table, answer-type mix, rejection reasons, image sizes, and a contact
sheet PNG of sample items per domain so a person can look at the data."""

from __future__ import annotations

import io
import json
import textwrap
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from visiong1.data.pool import read_pool_table, verify_pool  # noqa: E402

SAMPLES_PER_DOMAIN = 6


def image_sizes(table: pa.Table) -> list[tuple[int, int]]:
    """(width, height) of every image in the pool, read from the headers only."""
    return [Image.open(io.BytesIO(data)).size for images in table.column("images").to_pylist() for data in images]


def summary_tables(table: pa.Table, manifest: dict) -> list[Table]:
    """Rich tables: items per domain and source with answer-type mix, then rejection reasons."""
    rows = table.select(["domain", "source", "answer_type"]).to_pylist()
    by_group = Counter((row["domain"], row["source"]) for row in rows)
    types = {key: Counter() for key in by_group}
    for row in rows:
        types[row["domain"], row["source"]][row["answer_type"]] += 1
    items = Table(title=f"Pool: {len(rows)} items (schema v{manifest['schema_version']}, built "
                        f"{manifest['created_at']})")
    for column in ("domain", "source", "items", "answer types"):
        items.add_column(column, justify="right" if column == "items" else "left")
    for (domain, source), count in sorted(by_group.items()):
        mix = ", ".join(f"{name} {n}" for name, n in types[domain, source].most_common())
        items.add_row(domain, source, str(count), mix)
    rejects = Table(title=f"Rejected: {sum(manifest['rejected'].values())} items")
    rejects.add_column("reason")
    rejects.add_column("items", justify="right")
    for reason, count in sorted(manifest["rejected"].items(), key=lambda kv: -kv[1]):
        rejects.add_row(reason, str(count))
    return [items, rejects]


def plot_image_sizes(sizes: list[tuple[int, int]], path: Path) -> Path:
    """Histogram of image pixel counts (log scale) beside a width/height scatter."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist([w * h for w, h in sizes], bins=40, log=True)
    left.set(xlabel="pixels per image", ylabel="images", title="Image size")
    right.scatter([w for w, _ in sizes], [h for _, h in sizes], s=4, alpha=0.4)
    right.set(xlabel="width", ylabel="height", title="Image shapes")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def contact_sheet(table: pa.Table, path: Path, per_domain: int = SAMPLES_PER_DOMAIN) -> Path:
    """One row per domain: the first `per_domain` items' images (side by side for multi-image items), each
    captioned with its question and answer."""
    domains = sorted(set(table.column("domain").to_pylist()))
    figure, axes = plt.subplots(len(domains), per_domain, figsize=(2.6 * per_domain, 2.9 * len(domains)),
                                squeeze=False)
    for row, domain in enumerate(domains):
        items = table.filter(pa.compute.equal(table.column("domain"), domain)).slice(0, per_domain).to_pylist()
        for col in range(per_domain):
            axis = axes[row][col]
            axis.axis("off")
            if col >= len(items):
                continue
            item = items[col]
            images = [Image.open(io.BytesIO(data)).convert("RGB") for data in item["images"]]
            strip = Image.new("RGB", (sum(i.width for i in images) + 4 * (len(images) - 1),
                                      max(i.height for i in images)), (255, 255, 255))
            offset = 0
            for image in images:
                strip.paste(image, (offset, 0))
                offset += image.width + 4
            axis.imshow(strip, interpolation="nearest")
            corrupted = json.loads(item["metadata"] or "{}").get("corrupted")
            question = textwrap.shorten(item["question"], 80, placeholder="...")
            caption = "\n".join(textwrap.wrap(question, 40)) + f"\n= {item['answer'][:30]}"
            axis.set_title(caption + (f"  [{corrupted}]" if corrupted else ""), fontsize=6)
        axes[row][0].text(-0.1, 0.5, domain, transform=axes[row][0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=9, fontweight="bold")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pool_stats(pool_dir: str | Path, out_dir: str | Path | None = None, console: Console | None = None) -> dict:
    """Print the pool's tables and write contact_sheet.png and image_sizes.png (into `out_dir`, default
    `<pool>/stats`). Returns the figures as a dict."""
    console = console or Console()
    manifest = verify_pool(pool_dir)
    table = read_pool_table(pool_dir)
    for rich_table in summary_tables(table, manifest):
        console.print(rich_table)
    out = Path(out_dir) if out_dir else Path(pool_dir) / "stats"
    out.mkdir(parents=True, exist_ok=True)
    sizes = image_sizes(table)
    pixels = sorted(w * h for w, h in sizes)
    figures = {"items": table.num_rows, "images": len(sizes), "rejected": manifest["rejected"],
               "pixels_min": pixels[0] if pixels else None, "pixels_median": pixels[len(pixels) // 2] if pixels else None,
               "pixels_max": pixels[-1] if pixels else None,
               "contact_sheet": str(contact_sheet(table, out / "contact_sheet.png")) if table.num_rows else None,
               "image_sizes": str(plot_image_sizes(sizes, out / "image_sizes.png")) if sizes else None}
    console.print(f"images: {figures['images']} (pixels min {figures['pixels_min']}, median "
                  f"{figures['pixels_median']}, max {figures['pixels_max']}); contact sheet: {figures['contact_sheet']}")
    return figures
