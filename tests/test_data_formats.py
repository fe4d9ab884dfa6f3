"""Source formats on fixture files written here: LLaVA `conversations` JSON/JSONL, sharded Parquet directories and
globs, Hugging Face datasets in a local hub cache (layout written as huggingface_hub leaves it), DatasetDict
`save_to_disk` splits, and the config errors of a source that points at nothing."""

import json
import os
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_data_pool import QUESTIONS, build, hf_dataset, png
from visiong1.config import ConfigError, SourceConfig, load_config_tree
from visiong1.data.adapters import hub_cache_dir, plan_units

# Record "e" has non-ASCII text, so units that start after it only read right if they are cut at byte offsets.
LLAVA_RECORDS = [
    {"id": "a", "image": "img/0.png",
     "conversations": [{"from": "human", "value": "<image>\nHow many dots are there?"}, {"from": "gpt", "value": "3"}]},
    {"id": "e", "image": "img/1.png",
     "conversations": [{"from": "human", "value": "<image>Wie viele Äpfel liegen auf dem Tisch?"},
                       {"from": "gpt", "value": "7"}]},
    {"id": "b", "image": ["img/0.png", "img/1.png"],
     "conversations": [{"from": "human", "value": "<image>\n<image>\nWhich image is darker?"},
                       {"from": "gpt", "value": "the second"},
                       {"from": "human", "value": "What colour is the first one?"}, {"from": "gpt", "value": "blue"}]},
    {"id": "c", "image": "img/0.png"},
    {"id": "d", "image": "img/1.png",
     "conversations": [{"from": "human", "value": "Is it red?"}, {"from": "gpt", "value": "no"},
                       {"from": "human", "value": "And now?"}]},
    {"id": "f", "image": "img/0.png",
     "conversations": [{"from": "human", "value": "What shape is shown?"}, {"from": "gpt", "value": "circle"}]},
]
LLAVA_ITEMS = [("llava/a/0", "How many dots are there?", "3", 1),
               ("llava/e/0", "Wie viele Äpfel liegen auf dem Tisch?", "7", 1),
               ("llava/b/0", "Which image is darker?", "the second", 2),
               ("llava/b/1", "What colour is the first one?", "blue", 2),
               ("llava/d/0", "Is it red?", "no", 1),
               ("llava/f/0", "What shape is shown?", "circle", 1)]
LLAVA_REJECTS = [("missing_field", "record c: no conversations (no human turn)"),
                 ("missing_field", "record d human turn 1: no gpt reply")]


def write_llava_images(root: Path) -> None:
    (root / "img").mkdir()
    (root / "img" / "0.png").write_bytes(png((20, 60, 200)))
    (root / "img" / "1.png").write_bytes(png((5, 5, 5)))


def llava_source(path: Path, **extra) -> dict:
    return {"name": "llava", "format": "llava", "path": str(path), "domain": "common_sense", **extra}


def items_of(items: list[dict]) -> list[tuple]:
    return [(item["id"], item["question"], item["answer"], len(item["images"])) for item in items]


def test_llava_json_list_gives_one_item_per_human_gpt_pair_in_record_range_units(tmp_path, monkeypatch):
    monkeypatch.setattr("visiong1.data.adapters.UNIT_ROWS", 2)
    write_llava_images(tmp_path)
    (tmp_path / "llava.json").write_text(json.dumps(LLAVA_RECORDS, indent=1, ensure_ascii=False), encoding="utf-8")
    spec = SourceConfig.model_validate(llava_source(tmp_path / "llava.json"))
    assert [unit["layout"] for unit in plan_units(spec)] == ["list"] * 3
    manifest, items, rejects = build(tmp_path, [llava_source(tmp_path / "llava.json")])
    assert items_of(items) == LLAVA_ITEMS
    assert items[2]["images"][1] == (tmp_path / "img" / "1.png").read_bytes()
    assert [(r["reason"], r["detail"]) for r in rejects] == LLAVA_REJECTS
    assert manifest["counts"]["source"] == {"llava": 6} and manifest["rejected"] == {"missing_field": 2}


def test_llava_jsonl_with_an_image_root_reads_the_same_items_and_logs_bad_lines(tmp_path, monkeypatch):
    monkeypatch.setattr("visiong1.data.adapters.JSONL_UNIT_BYTES", 200)
    write_llava_images(tmp_path)
    (tmp_path / "meta").mkdir()
    lines = [json.dumps(record, ensure_ascii=False) for record in LLAVA_RECORDS] + ["{not json", "[1, 2]"]
    (tmp_path / "meta" / "llava.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = llava_source(tmp_path / "meta" / "llava.jsonl", image_root=str(tmp_path))
    assert len(plan_units(SourceConfig.model_validate(source))) > 3
    _, items, rejects = build(tmp_path, [source])
    assert items_of(items) == LLAVA_ITEMS
    assert [(r["reason"], r["detail"]) for r in rejects] == LLAVA_REJECTS + [
        ("missing_field", "record is not a JSON object")] * 2


def test_llava_json_that_is_not_a_list_of_records_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text('[{"id": "a"}, {"id": ')
    with pytest.raises(ValueError, match=r"broken\.json: not a JSON list of records at byte 14"):
        plan_units(SourceConfig.model_validate(llava_source(tmp_path / "broken.json")))
    (tmp_path / "open.json").write_text('[{"id": "a"}, ')
    with pytest.raises(ValueError, match=r"open\.json: the JSON list is not closed"):
        plan_units(SourceConfig.model_validate(llava_source(tmp_path / "open.json")))


def write_shards(directory: Path, split: str, shards: int, first: int = 0) -> None:
    """`shards` files of two rows each, written with one row per row group (units are row groups)."""
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        numbers = [first + 2 * shard, first + 2 * shard + 1]
        table = pa.table({"question": [f"How many dots are in picture {n}?" for n in numbers],
                          "answer": [str(n) for n in numbers], "images": [[png((n, 0, 0))] for n in numbers]})
        pq.write_table(table, directory / f"{split}-{shard:05d}-of-{shards:05d}.parquet", row_group_size=1)


def answers(items: list[dict]) -> list[int]:
    return [int(item["answer"]) for item in items]


def test_parquet_directories_and_globs_read_every_matching_shard_in_sorted_order(tmp_path):
    write_shards(tmp_path / "data", "train", 3)
    write_shards(tmp_path / "data", "test", 1, first=100)
    write_shards(tmp_path / "data" / "extra", "train", 1, first=200)
    cases = [("dir", str(tmp_path / "data"), [100, 101, 0, 1, 2, 3, 4, 5]),
             ("glob", str(tmp_path / "data" / "train-*.parquet"), [0, 1, 2, 3, 4, 5]),
             ("deep", str(tmp_path / "**" / "train-*.parquet"), [200, 201, 0, 1, 2, 3, 4, 5])]  # data/extra/ first
    for name, path, expected in cases:
        source = {"name": name, "format": "parquet", "path": path, "domain": "science"}
        assert len(plan_units(SourceConfig.model_validate(source))) == len(expected)  # one unit per row group
        manifest, items, _ = build(tmp_path, [source], name=name)
        assert answers(items) == expected and manifest["items"] == len(expected)


def test_a_parquet_path_matching_nothing_is_a_config_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "nested").mkdir()
    write_shards(tmp_path / "empty" / "nested", "train", 1)
    for path, extra in [(tmp_path / "data" / "train-*.parquet", ""), (tmp_path / "missing.parquet", ""),
                        (tmp_path / "empty", "subdirectories are not searched")]:
        message = f"source 'pq': path '{re.escape(str(path))}' matches no Parquet file.*{extra}"
        with pytest.raises(ConfigError, match=message):
            build(tmp_path, [{"name": "pq", "format": "parquet", "path": str(path), "domain": "science"}])


def write_hub_file(repo: Path, snapshot: str, relative: str, table: pa.Table | datasets.Dataset) -> None:
    """A snapshot file as huggingface_hub stores it: the content in blobs/, a relative symlink in the snapshot."""
    blob = repo / "blobs" / f"{snapshot}-{relative.replace('/', '_')}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(table, datasets.Dataset):
        table.to_parquet(str(blob))
    else:
        pq.write_table(table, blob)
    link = repo / "snapshots" / snapshot / relative
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))


OLD, NEW = "0" * 40, "1" * 40


def write_hub_cache(cache: Path) -> None:
    """org/name: `main` -> NEW with data/train in two shards, data/test, and an `extra` subset in the Parquet
    conversion layout; tag v1.0 -> OLD, an older train split."""
    repo = cache / "datasets--org--name"
    dataset = hf_dataset()
    write_hub_file(repo, NEW, "data/train-00000-of-00002.parquet", dataset.select([0, 1]))
    write_hub_file(repo, NEW, "data/train-00001-of-00002.parquet", dataset.select([2]))
    write_hub_file(repo, NEW, "data/test-00000-of-00001.parquet", dataset.select([1]))
    write_hub_file(repo, NEW, "extra/train/0000.parquet", dataset.select([2]))
    write_hub_file(repo, OLD, "data/train-00000-of-00001.parquet", dataset.select([0]))
    (repo / "refs" / "main").parent.mkdir(parents=True)
    (repo / "refs" / "main").write_text(NEW)
    (repo / "refs" / "v1.0").write_text(OLD)


def hub_source(cache: Path | None, **extra) -> dict:
    source = {"name": "hub", "format": "hf_hub", "path": "org/name", "domain": "common_sense", **extra}
    return source if cache is None else {**source, "cache_dir": str(cache)}


def test_hub_cache_datasets_by_name_revision_subset_and_split(tmp_path):
    write_hub_cache(tmp_path / "hub")
    cases = [("main", {}, QUESTIONS), ("test", {"split": "test"}, QUESTIONS[1:2]),
             ("tag", {"revision": "v1.0"}, QUESTIONS[:1]), ("commit", {"revision": OLD}, QUESTIONS[:1]),
             ("extra", {"subset": "extra", "revision": "main"}, QUESTIONS[2:])]
    for name, extra, questions in cases:
        _, items, rejects = build(tmp_path, [hub_source(tmp_path / "hub", **extra)], name=name)
        assert [item["question"] for item in items] == questions and rejects == []
    assert items[0]["answer"] == "A" and items[0]["choices"] == ["circle", "square"]


def test_hub_cache_directory_follows_huggingface_hub_environment(tmp_path, monkeypatch):
    for variable in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = SourceConfig.model_validate(hub_source(None))
    assert hub_cache_dir(spec) == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir(spec) == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir(spec) == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_cache_dir(spec) == tmp_path / "hub"
    write_hub_cache(tmp_path / "hub")
    _, items, _ = build(tmp_path, [hub_source(None)])
    assert [item["question"] for item in items] == QUESTIONS


def test_hub_dataset_not_found_names_what_was_searched_and_what_is_there(tmp_path):
    cache = tmp_path / "hub"
    write_hub_cache(cache)
    expected = [({"path": "org/other"}, (f"dataset org/other is not in the Hugging Face hub cache "
                                         f"{re.escape(str(cache))} " r"\(datasets cached there: org/name\)")),
                ({"revision": "v2"}, (r"revision 'v2' of dataset org/name .*\(refs: main, v1.0; snapshots: "
                                      f"{OLD}, {NEW}" r"\)")),
                ({"split": "validation"}, (r"no Parquet files for subset 'default', split 'validation' .*"
                                           r"\(subset/split available: default/test, default/train, extra/train\)"))]
    for extra, message in expected:
        with pytest.raises(ConfigError, match=message):
            build(tmp_path, [hub_source(cache, **extra)])


def test_save_to_disk_dataset_dicts_are_read_at_their_split(tmp_path):
    datasets.DatasetDict({"train": hf_dataset(), "test": hf_dataset().select([2])}).save_to_disk(str(tmp_path / "dd"))
    for name, extra, questions in [("train", {}, QUESTIONS), ("test", {"split": "test"}, QUESTIONS[2:])]:
        source = {"name": "dd", "format": "hf_disk", "path": str(tmp_path / "dd"), "domain": "common_sense", **extra}
        _, items, _ = build(tmp_path, [source], name=name)
        assert [item["question"] for item in items] == questions
    with pytest.raises(ConfigError, match=r"has no split 'dev' \(splits: train, test\)"):
        build(tmp_path, [{**source, "split": "dev"}])
    hf_dataset().save_to_disk(str(tmp_path / "single"))
    with pytest.raises(ConfigError, match="split 'test' given, but .* is a single dataset"):
        build(tmp_path, [{**source, "path": str(tmp_path / "single")}])


@pytest.mark.parametrize(("source", "message"), [
    ({"format": "jsonl", "split": "train"}, r"data\.sources\.0\.split: Value error, read by format hf_hub or hf_disk"),
    ({"format": "parquet", "revision": "main"}, r"data\.sources\.0\.revision: Value error, read by format hf_hub only"),
    ({"format": "hf_disk", "cache_dir": "x"}, r"data\.sources\.0\.cache_dir: Value error, read by format hf_hub only"),
    ({"format": "hf_hub", "path": "org/name/train"}, (r"data\.sources\.0\.path: Value error, format hf_hub takes a "
                                                     r"dataset name ORG/NAME, got 'org/name/train'")),
    ({"format": "csv"}, r"data\.sources\.0\.format: Input should be"),
])
def test_a_bad_source_config_names_the_field(source, message):
    with pytest.raises(ConfigError, match=message):
        load_config_tree({"data": {"sources": [{"name": "s", "path": "x", **source}]}})
