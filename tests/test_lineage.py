"""Manifests and lineage: which step produced each column; steps store only what they make."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

import datamill as dm

from .test_executor import Upper, Words


def _pipeline(docs, out):
    return (dm.Dataset.read(docs)
            .apply("text_length_filter", min_words=3)
            .apply(Upper)
            .rename(upper="shout")
            .write(out))


def test_manifest_records_steps_and_columns(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest, default=str))
    (dataset,) = manifest["datasets"]
    columns = dataset["columns"]
    assert columns["shout"] == {"type": "string", "step": "test_upper", "stored": "upper"}
    assert columns["text"]["step"] == "read_jsonl"
    names = [s["name"] for s in dataset["steps"]]
    assert names == ["read_jsonl", "text_length_filter", "test_upper", "rename",
                     "write_parquet"]
    filt = dataset["steps"][1]
    assert filt["operation"] == "text_length_filter" and filt["version"] == "1"
    assert filt["arguments"]["min_words"] == 3 and filt["cache_key"] == ds.steps[1].key
    assert filt["inputs"] == [ds.steps[0].key]
    assert filt["rows_in"] == 500 and filt["rows_out"] + sum(filt["dropped"].values()) == 500
    assert filt["wall_seconds"] >= 0 and "errors" in filt
    # the written folder carries the same lineage, so the data explains itself
    lineage = json.loads((tmp_path / "out" / "_datamill_lineage.json").read_text())
    assert lineage["columns"] == columns
    runs = list((tmp_path / "w" / "runs").glob("*.json"))
    assert len(runs) == 1


def test_steps_store_only_what_they_produce(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    ds.run(tmp_path / "w", workers=1, progress=False)
    steps = tmp_path / "w" / "steps"

    def stored(i):
        files = sorted((steps / ds.steps[i].key).glob("part-*.parquet"))
        return [pq.read_schema(f).names for f in files]

    assert stored(1) == [["_index"]]          # the filter: positions of kept rows only
    assert stored(2) == [["upper"]]           # the map: its new column, no copy of `text`
    assert stored(3) == []                    # the rename stores nothing
    assert stored(0) == []                    # JSONL is read in place (no copy) by default


def test_expand_keeps_parent_ids(tmp_path, docs):
    ds = dm.Dataset.read(docs).apply(Words)
    table = ds.collect(tmp_path / "w", columns=["_id", "_parent_id", "text", "word"],
                       workers=1, progress=False)
    parents = dm.Dataset.read(docs).collect(tmp_path / "w", columns=["_id", "text"],
                                            progress=False)
    by_id = dict(zip(parents["_id"].to_pylist(), parents["text"].to_pylist()))
    for pid, text, word in zip(table["_parent_id"].to_pylist(), table["text"].to_pylist(),
                               table["word"].to_pylist()):
        assert by_id[pid] == text and word in text.split()


def test_row_ids_are_stable_across_runs(tmp_path, docs):
    a = dm.Dataset.read(docs).collect(tmp_path / "w1", columns=["_id"], progress=False)
    b = dm.Dataset.read(docs).collect(tmp_path / "w2", columns=["_id"], progress=False)
    assert a.equals(b) and len(set(a["_id"].to_pylist())) == 500


def test_dropped_rows_listed_with_reasons(tmp_path, docs):
    _pipeline(docs, tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    dropped = dm.dropped_rows(tmp_path / "w", "text_length_filter")
    kept = dm.Dataset.read(tmp_path / "out").collect(tmp_path / "w2", progress=False)
    assert dropped.num_rows + kept.num_rows == 500
    assert set(dropped["_reason"].to_pylist()) == {"too_few_words"}
