"""Adapters on fixture files made here, pool building (local and on Ray Data), manifest checks, verl round trips,
and the `visiong1 data` commands."""

import io
import json
import subprocess
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visiong1.config import DataConfig, load_config
from visiong1.data.pool import build_pool, export_verl, load_pool, read_pool_table, verify_pool

QUESTIONS = ["How many dots are there?", "What colour is the sky?", "Which shape is shown?"]


def png(colour=(10, 120, 200), size=(56, 56)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_config(sources, *overrides) -> DataConfig:
    config = load_config(None, ["data.num_items=0", *overrides]).data
    return DataConfig.model_validate({**config.model_dump(), "sources": sources})


def build(tmp_path, sources, *overrides, engine="local", name="pool"):
    config = data_config(sources, *overrides)
    manifest = build_pool(config, tmp_path / name, engine=engine, progress=False)
    rejects = [json.loads(line) for line in (tmp_path / name / "rejects.jsonl").read_text().splitlines()]
    return manifest, read_pool_table(tmp_path / name).to_pylist(), rejects


def test_jsonl_with_image_paths_and_a_column_mapping(tmp_path):
    (tmp_path / "img").mkdir()
    for index in range(3):
        (tmp_path / "img" / f"{index}.png").write_bytes(png((index * 80, 50, 50)))
    rows = [{"uid": f"q{i}", "query": QUESTIONS[i], "label": str(i + 1), "picture": f"img/{i}.png"} for i in range(3)]
    rows.append({"uid": "q3", "query": "Where is it?", "label": "1", "picture": "img/missing.png"})
    rows.append({"uid": "q4", "query": "", "label": "1", "picture": "img/0.png"})
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    source = {"name": "mine", "format": "jsonl", "path": str(tmp_path / "train.jsonl"), "domain": "science",
              "answer_type": "count", "columns": {"id": "uid", "question": "query", "answer": "label",
                                                  "image": "picture"}}
    manifest, items, rejects = build(tmp_path, [source])
    assert [item["id"] for item in items] == ["mine/q0", "mine/q1", "mine/q2"]
    assert items[1]["question"] == QUESTIONS[1] and items[1]["answer"] == "2" and items[1]["domain"] == "science"
    assert items[0]["images"] == [(tmp_path / "img" / "0.png").read_bytes()]
    assert sorted(r["reason"] for r in rejects) == ["image_unreadable", "missing_field", "missing_field"]
    assert manifest["rejected"] == {"image_unreadable": 1, "missing_field": 2}
    assert manifest["counts"]["source"] == {"mine": 3}


def test_jsonl_units_split_by_bytes_read_every_line_once(tmp_path, monkeypatch):
    monkeypatch.setattr("visiong1.data.adapters.JSONL_UNIT_BYTES", 300)
    (tmp_path / "a.png").write_bytes(png())
    rows = [{"question": f"How many dots are in picture {i}?", "answer": str(i), "image": "a.png"} for i in range(40)]
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest, items, _ = build(tmp_path, [{"name": "many", "format": "jsonl", "path": str(tmp_path / "many.jsonl"),
                                          "domain": "science"}])
    assert sorted(int(item["answer"]) for item in items) == list(range(40)) and manifest["items"] == 40


def test_parquet_with_bytes_and_choices(tmp_path):
    table = pa.table({"question": ["Which animal is a mammal?", "Which is bigger?"],
                      "answer": ["whale", "(A)"], "choices": [["A. shark", "B. whale"], ["the sun", "the moon"]],
                      "images": [[png()], [png((1, 2, 3)), png((3, 2, 1))]], "domain": ["science", "cross_image"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    _, items, _ = build(tmp_path, [{"name": "pq", "format": "parquet", "path": str(tmp_path / "rows.parquet")}])
    assert [(i["answer"], i["answer_type"], i["choices"], len(i["images"])) for i in items] == [
        ("B", "choice", ["shark", "whale"], 1), ("A", "choice", ["the sun", "the moon"], 2)]
    assert [i["domain"] for i in items] == ["science", "cross_image"]


def hf_dataset() -> datasets.Dataset:
    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "choices": datasets.Sequence(datasets.Value("string")),
                                  "image": datasets.Image()})
    return datasets.Dataset.from_dict(
        {"question": QUESTIONS, "answer": ["3", "blue", "A"], "choices": [[], [], ["circle", "square"]],
         "image": [Image.new("RGB", (60, 60), (i * 60, 0, 0)) for i in range(3)]}, features=features)


def test_hugging_face_save_to_disk_and_parquet_export(tmp_path):
    hf_dataset().save_to_disk(str(tmp_path / "hf"))
    hf_dataset().to_parquet(str(tmp_path / "hf.parquet"))
    for name, source in [("disk", {"name": "hf", "format": "hf_disk", "path": str(tmp_path / "hf")}),
                         ("parquet", {"name": "hf", "format": "parquet", "path": str(tmp_path / "hf.parquet")})]:
        _, items, rejects = build(tmp_path, [{**source, "domain": "common_sense"}], name=name)
        assert rejects == []
        assert [(i["question"], i["answer"], i["answer_type"]) for i in items] == [
            (QUESTIONS[0], "3", "math"), (QUESTIONS[1], "blue", "text"), (QUESTIONS[2], "A", "choice")]
        assert Image.open(io.BytesIO(items[1]["images"][0])).getpixel((0, 0)) == (60, 0, 0)


def verl_rows() -> list[dict]:
    """Rows as verl's data_preprocess scripts write them (geo3k layout)."""
    return [{"data_source": "hiyouga/geometry3k",
             "prompt": [{"role": "user", "content": f"<image>{q} Put the final answer in \\boxed{{}}."}],
             "images": [{"bytes": png((i, i, i)), "path": None}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": str(i + 2)},
             "extra_info": {"split": "train", "index": i, "answer": str(i + 2), "question": q}}
            for i, q in enumerate(QUESTIONS)]


def test_verl_import_then_export_preserves_every_field(tmp_path):
    pq.write_table(pa.Table.from_pylist(verl_rows()), tmp_path / "train.parquet")
    build(tmp_path, [{"name": "verl", "format": "verl", "path": str(tmp_path / "train.parquet"), "domain": "mathematical"}])
    export_verl(tmp_path / "pool", tmp_path / "back.parquet")
    back = pq.read_table(tmp_path / "back.parquet").to_pylist()
    for original, exported in zip(verl_rows(), back):
        assert json.loads(exported["extra_info"].pop("visiong1"))["domain"] == "mathematical"
        assert exported == original


def test_pool_to_verl_to_pool_is_exact(tmp_path):
    config = load_config(None, ["data.num_items=36", "data.domains=[gui,cross_image,medical,spatial]"]).data
    build_pool(config, tmp_path / "first", engine="local", progress=False)
    export_verl(tmp_path / "first", tmp_path / "verl.parquet")
    reimport = data_config([{"name": "verl", "format": "verl", "path": str(tmp_path / "verl.parquet")}])
    build_pool(reimport, tmp_path / "second", engine="local", progress=False)
    assert read_pool_table(tmp_path / "second").to_pylist() == read_pool_table(tmp_path / "first").to_pylist()


def test_duplicates_are_rejected_with_the_item_they_repeat(tmp_path):
    rows = [{"id": "a", "question": "How many?", "answer": "2", "image": "x.png"},
            {"id": "b", "question": "How many?", "answer": "2", "image": "x.png"},
            {"id": "a", "question": "How many now?", "answer": "3", "image": "x.png"}]
    (tmp_path / "x.png").write_bytes(png())
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    _, items, rejects = build(tmp_path, [{"name": "d", "format": "jsonl", "path": str(tmp_path / "d.jsonl"),
                                         "domain": "science"}])
    assert [i["id"] for i in items] == ["d/a"]
    assert [(r["id"], r["reason"]) for r in rejects] == [("d/b", "duplicate"), ("d/a", "duplicate")]
    assert "same content as d/a" in rejects[0]["detail"] and "already used" in rejects[1]["detail"]


def test_manifest_counts_hashes_and_tamper_detection(tmp_path):
    config = load_config(None, ["data.num_items=90", f"data.domains=[{','.join(['counting', 'gui', 'science'])}]",
                                "data.corrupt_fraction=0.2"]).data
    manifest = build_pool(config, tmp_path / "p", engine="local", progress=False)
    assert manifest["schema_version"] == 1 and manifest["config"]["num_items"] == 90
    assert manifest["items"] + sum(manifest["rejected"].values()) == 90
    assert sum(manifest["counts"]["domain"].values()) == manifest["items"] == len(load_pool(tmp_path / "p"))
    assert sum(manifest["counts"]["corrupted"].values()) > 0
    assert pq.read_schema(tmp_path / "p" / manifest["files"][0]["path"]).metadata[b"visiong1.pool_schema_version"] == b"1"
    with pytest.raises(FileExistsError):
        build_pool(config, tmp_path / "p", engine="local", progress=False)
    part = tmp_path / "p" / manifest["files"][0]["path"]
    part.write_bytes(part.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        verify_pool(tmp_path / "p")


@pytest.mark.slow
def test_ray_data_pipeline_builds_the_same_pool_as_the_local_loop(ray_cluster, tmp_path):
    (tmp_path / "x.png").write_bytes(png())
    rows = [{"question": f"How many dots are in row {i}?", "answer": str(i), "image": "x.png"} for i in range(300)]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    hf_dataset().save_to_disk(str(tmp_path / "hf"))
    sources = [{"name": "s", "format": "jsonl", "path": str(tmp_path / "s.jsonl"), "domain": "science"},
               {"name": "hf", "format": "hf_disk", "path": str(tmp_path / "hf"), "domain": "common_sense"}]
    overrides = ["data.num_items=600", "data.domains=[counting,infographic,cross_image]", "data.build_workers=2"]
    local, local_items, local_rejects = build(tmp_path, sources, *overrides, engine="local", name="local")
    remote, remote_items, remote_rejects = build(tmp_path, sources, *overrides, engine="ray", name="ray")
    assert sorted((i["id"], i["content_hash"]) for i in remote_items) == sorted((i["id"], i["content_hash"]) for i in local_items)
    assert remote["counts"] == local["counts"] and remote["rejected"] == local["rejected"]
    assert sorted(r["id"] for r in remote_rejects) == sorted(r["id"] for r in local_rejects)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "visiong1.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_builds_a_pool_prints_stats_and_draws_a_contact_sheet(tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  num_items: 72\n  domains: [infographic, mathematical, spatial, cross_image, gui, "
                      "medical, common_sense, science, counting]\n")
    built = run_cli("data", "build", "-c", str(config), "--out", str(tmp_path / "pool"), "--local", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["items"] > 0
    stats = run_cli("data", "stats", str(tmp_path / "pool"), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    for text in ("infographic", "synthetic/gui", "Rejected", "contact sheet"):
        assert text in stats.stdout
    sheet = Image.open(tmp_path / "pool" / "stats" / "contact_sheet.png")
    assert sheet.width > 1000 and sheet.height > 1000
    again = run_cli("data", "build", "-c", str(config), "--out", str(tmp_path / "pool"), "--local", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a pool" in again.stderr
    bad = run_cli("data", "build", "--out", str(tmp_path / "x"), "--local", "data.domains=[cooking]", cwd=tmp_path)
    assert bad.returncode == 2 and "data.domains" in bad.stderr
