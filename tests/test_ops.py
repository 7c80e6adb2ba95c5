"""The built-in plain operations."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import datamill as dm

from .conftest import make_rows, write_jsonl


def test_select_rename_drop(tmp_path, docs):
    table = (dm.Dataset.read(docs).rename(text="body").drop("group").select("n", "body")
             .collect(tmp_path / "w", workers=1, progress=False))
    assert table.schema.names == ["n", "body"]
    assert table["body"].to_pylist() == [r["text"] for r in make_rows(500)]


def test_text_length_filter_chars_and_words(tmp_path):
    rows = [{"text": t} for t in ["", "   ", "one", "one two three", "x" * 50, None]]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    ds = dm.Dataset.read(path, schema={"text": "string"})
    chars = ds.apply("text_length_filter", min_chars=3, max_chars=20)
    out = chars.collect(tmp_path / "w", workers=1, progress=False)
    assert out["text"].to_pylist() == ["   ", "one", "one two three"]
    words = ds.apply("text_length_filter", min_words=1, max_words=2)
    result = words.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("text_length_filter")["dropped"] == {
        "too_few_words": 2, "too_many_words": 1, "null_text": 1}
    assert words.collect(tmp_path / "w")["text"].to_pylist() == ["one", "x" * 50]


def test_python_map_and_filter_rows_and_batches(tmp_path, docs):
    ds = (dm.Dataset.read(docs)
          .map(lambda r: {"twice": r["n"] * 2}, produces={"twice": "int64"}, row=True,
               consumes=["n"])
          .filter(lambda b: pc.greater(b["twice"], 100), consumes=["twice"], reason="small")
          .filter(lambda r: (r["group"] != 3, "group3"), row=True, consumes=["group"]))
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    table = ds.collect(tmp_path / "w")
    expected = [r["n"] for r in make_rows(500) if r["n"] * 2 > 100 and r["group"] != 3]
    assert table["n"].to_pylist() == expected
    assert result.step("python_filter")["dropped"] == {"small": 51}
    assert result.step("python_filter_2")["dropped"] == {
        "group3": sum(1 for r in make_rows(500) if r["n"] * 2 > 100 and r["group"] == 3)}


def test_sample_is_deterministic_and_near_fraction(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", make_rows(5000))
    a = dm.Dataset.read(path).sample(0.3, seed=1).collect(tmp_path / "w1", workers=1,
                                                          progress=False)
    b = dm.Dataset.read(path).sample(0.3, seed=1).collect(tmp_path / "w2", workers=2,
                                                          progress=False)
    c = dm.Dataset.read(path).sample(0.3, seed=2).collect(tmp_path / "w3", workers=1,
                                                          progress=False)
    assert a.equals(b) and not a.equals(c)
    assert 1300 < a.num_rows < 1700


def test_limit_keeps_first_rows_in_order(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", make_rows(3000))
    ds = dm.Dataset.read(path, block_size=10_000).limit(1234)
    assert len(ds.steps[0].op.partitions()) > 3
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    table = ds.collect(tmp_path / "w")
    assert table["n"].to_pylist() == list(range(1234))
    assert result.step("limit")["dropped"] == {"over_limit": 3000 - 1234}


def _dup_input(tmp_path):
    rows = make_rows(2000, seed=5)
    for i, r in enumerate(rows):
        r["text"] = f"doc {i % 600}"
    return write_jsonl(tmp_path / "d.jsonl", rows), rows


def test_drop_duplicates_keeps_first_occurrence(tmp_path):
    path, rows = _dup_input(tmp_path)
    ds = dm.Dataset.read(path, block_size=8_000).drop_duplicates(["text"])
    one = ds.collect(tmp_path / "w1", workers=1, progress=False)
    two = ds.collect(tmp_path / "w2", workers=2, progress=False)
    assert one.equals(two)
    assert one["n"].to_pylist() == list(range(600))
    result = ds.run(tmp_path / "w1", workers=1, progress=False)
    assert result.step("drop_duplicates")["dropped"] == {"duplicate": 1400}


def test_drop_duplicates_on_several_columns_and_all(tmp_path):
    path, rows = _dup_input(tmp_path)
    ds = dm.Dataset.read(path).drop_duplicates(["text", "group"])
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    expected, seen = [], set()
    for r in rows:
        if (r["text"], r["group"]) not in seen:
            seen.add((r["text"], r["group"]))
            expected.append(r["n"])
    assert table["n"].to_pylist() == expected
    everything = dm.Dataset.read(path).drop("n").drop_duplicates()
    assert everything.collect(tmp_path / "w", progress=False).num_rows == len(seen)


def test_drop_duplicates_spreads_over_buckets(tmp_path, monkeypatch):
    from datamill.executors import global_phases

    monkeypatch.setattr(global_phases, "ROWS_PER_BUCKET", 100)
    path, _ = _dup_input(tmp_path)
    ds = dm.Dataset.read(path).drop_duplicates(["text"])
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table.num_rows == 600
    assert not (tmp_path / "w" / "steps" / ds.step.key / "shuffle").exists()


def test_write_formats(tmp_path, docs):
    ds = dm.Dataset.read(docs).apply("text_length_filter", min_words=3)
    ds.write(tmp_path / "p", target_file_size=2000).run(tmp_path / "w", workers=1,
                                                        progress=False)
    files = sorted((tmp_path / "p").glob("*.parquet"))
    assert len(files) > 1
    table = pq.read_table(files)
    assert table.num_rows == ds.collect(tmp_path / "w").num_rows
    assert table.schema.field("n").type == pa.int64()


def test_count_words_matches_regex_on_random_text():
    import random

    from datamill.ops.text import count_words

    rng = random.Random(7)
    alphabet = " \t\n\r\x0b\x0cab\u00e9\u00a0\u3000x."
    values = [None if i % 53 == 0 else "".join(rng.choice(alphabet)
                                               for _ in range(rng.randint(0, 40)))
              for i in range(5000)]
    array = pa.chunked_array([pa.array(values[:2000]), pa.array(values[2000:]).slice(3)])
    expected = pc.count_substring_regex(array, pattern=r"[^\t\n\x0b\x0c\r ]+").fill_null(0)
    assert count_words(array).tolist() == expected.to_pylist()
