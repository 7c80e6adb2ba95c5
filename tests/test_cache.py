"""The cache: unchanged steps are never recomputed; changed ones and what follows are."""

from __future__ import annotations

import pyarrow.compute as pc

import datamill as dm
from datamill import MapOperation

CALLS = {"n": 0}


class Counted(MapOperation):
    """Counts its calls (in-process runs only)."""

    name = "test_counted"
    consumes = {"text": "string"}
    produces = {"length": "int64"}

    def process(self, batch):
        CALLS["n"] += 1
        return {"length": pc.utf8_length(batch["text"])}


def _pipeline(docs, out, min_words=3, max_chars=None):
    return (dm.Dataset.read(docs)
            .apply("text_length_filter", min_words=min_words)
            .apply(Counted)
            .apply("text_length_filter", max_chars=max_chars, step_name="short_only")
            .write(out))


def _cached(result):
    return {s["name"]: s["cached"] for s in result.steps}


def test_rerun_recomputes_nothing(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    first = ds.run(tmp_path / "w", workers=1, progress=False)
    assert not any(_cached(first).values())
    CALLS["n"] = 0
    second = ds.run(tmp_path / "w", workers=1, progress=False)
    assert all(_cached(second).values()) and CALLS["n"] == 0


def test_changing_step_k_reruns_k_and_after_only(tmp_path, docs):
    _pipeline(docs, tmp_path / "out", max_chars=100).run(tmp_path / "w", workers=1,
                                                         progress=False)
    CALLS["n"] = 0
    result = _pipeline(docs, tmp_path / "out", max_chars=50).run(tmp_path / "w", workers=1,
                                                                progress=False)
    assert _cached(result) == {"read_jsonl": True, "text_length_filter": True,
                               "test_counted": True, "short_only": False,
                               "write_parquet": False}
    assert CALLS["n"] == 0
    table = dm.Dataset.read(tmp_path / "out").collect(tmp_path / "w2", workers=1,
                                                      progress=False)
    assert max(table["length"].to_pylist()) <= 50


def test_changing_early_step_reruns_everything_after(tmp_path, docs):
    _pipeline(docs, tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    result = _pipeline(docs, tmp_path / "out", min_words=4).run(tmp_path / "w", workers=1,
                                                               progress=False)
    assert _cached(result) == {"read_jsonl": True, "text_length_filter": False,
                               "test_counted": False, "short_only": False,
                               "write_parquet": False}


def test_no_cache_recomputes(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    ds.run(tmp_path / "w", workers=1, progress=False)
    CALLS["n"] = 0
    result = ds.run(tmp_path / "w", workers=1, cache=False, progress=False)
    assert not any(_cached(result).values()) and CALLS["n"] > 0


def test_missing_or_corrupt_entry_is_recomputed(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    ds.run(tmp_path / "w", workers=1, progress=False)
    expected = ds.collect(tmp_path / "w", progress=False)
    counted = ds.steps[2]
    part = next((tmp_path / "w" / "steps" / counted.key).glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:-20])  # truncated: size and footer no longer match
    CALLS["n"] = 0
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert _cached(result)["test_counted"] is False and CALLS["n"] > 0
    assert _cached(result)["text_length_filter"] is True
    part.unlink()
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert _cached(result)["test_counted"] is False
    assert ds.collect(tmp_path / "w", progress=False).equals(expected)


def test_deleted_output_is_rewritten(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    ds.run(tmp_path / "w", workers=1, progress=False)
    for f in (tmp_path / "out").glob("*.parquet"):
        f.unlink()
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert _cached(result)["write_parquet"] is False and _cached(result)["short_only"] is True
    assert list((tmp_path / "out").glob("*.parquet"))


def test_changed_input_invalidates(tmp_path, docs):
    ds = _pipeline(docs, tmp_path / "out")
    ds.run(tmp_path / "w", workers=1, progress=False)
    with open(docs, "a") as fh:
        fh.write('{"text": "one more row of words", "group": 1, "n": 9999}\n')
    result = _pipeline(docs, tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    assert not any(_cached(result).values())
    assert result.step("read_jsonl")["rows_out"] == 501


def test_python_function_identity_in_key(tmp_path, docs):
    def f1(batch):
        return {"x": pc.utf8_length(batch["text"])}

    def f2(batch):
        return {"x": pc.utf8_upper(batch["text"])}

    base = dm.Dataset.read(docs)
    a = base.map(f1, produces={"x": "int64"}, consumes=["text"])
    b = base.map(f2, produces={"x": "int64"}, consumes=["text"])
    assert a.step.key != b.step.key
