"""The row-error policy of readers: broken JSONL and CSV lines are skipped and counted, or
quarantined with their file, line number and raw bytes; a policy a reader cannot honour is
refused when the pipeline is built."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.io import jsonl as jsonl_module

SCHEMA = {"n": "int64", "text": "string"}


def _broken_jsonl(path, end=b"\n"):
    """100 lines, five of them broken in different ways; returns {line number: raw bytes}."""
    lines = [json.dumps({"n": i, "text": f"row {i} " + "x" * 40}).encode() for i in range(100)]
    lines[30] = b'{"n": 30, "text": "cut here'
    lines[49] = b'{"n": 49, "text": oops}'
    lines[59] = b"[1, 2, 3]"
    lines[76] = b'{"n": "seventy-six", "text": "wrong type"}'
    lines[87] = b'{"n": 87, "text": "caf\xe9"}'
    path.write_bytes(end.join(lines) + end)
    return {i + 1: lines[i] for i in (30, 49, 59, 76, 87)}, lines


@pytest.mark.parametrize("block_size", [700, 10**9])
def test_broken_jsonl_lines_are_skipped_and_counted(tmp_path, block_size):
    bad, _ = _broken_jsonl(tmp_path / "x.jsonl", end=b"\r\n")
    ds = dm.Dataset.read(tmp_path / "x.jsonl", on_error="skip", block_size=block_size,
                         schema=SCHEMA)
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    read = result.steps[0]
    assert read["errors"] == 5 and read["counters"] == {"bad_input_skipped": 5}
    assert read["rows_out"] == 95
    table = ds.collect(tmp_path / "w", progress=False)
    assert table["n"].to_pylist() == [i for i in range(100) if i + 1 not in bad]


@pytest.mark.parametrize("block_size", [700, 10**9])
def test_broken_jsonl_lines_are_quarantined_with_file_line_and_bytes(tmp_path, block_size,
                                                                     monkeypatch):
    monkeypatch.setattr(jsonl_module, "PARSE_CHUNK", 1024)  # several chunks per partition
    src = tmp_path / "x.jsonl"
    bad, lines = _broken_jsonl(src, end=b"\r\n")
    ds = dm.Dataset.read(src, on_error="quarantine", block_size=block_size)
    table = ds.collect(tmp_path / "w", workers=2, progress=False)
    assert table.num_rows == 95
    q = dm.quarantined_rows(tmp_path / "w").sort_by("_line")
    assert q["_line"].to_pylist() == sorted(bad)
    assert q["_raw"].to_pylist() == [bad[line] for line in sorted(bad)]
    assert set(q["_path"].to_pylist()) == {str(src)} and set(q["_step"].to_pylist()) == {
        "read_jsonl"}
    offsets = [sum(len(x) + 2 for x in lines[:line - 1]) for line in sorted(bad)]
    assert q["_id"].to_pylist() == offsets  # the id the line would have had (file 0)
    errors = dict(zip(q["_line"].to_pylist(), q["_error"].to_pylist()))
    assert errors[31].startswith("truncated line") and errors[50].startswith("invalid JSON")
    assert errors[60] == "expected a JSON object, got an array"
    assert errors[77].startswith("column 'n' has a string \"seventy-six\"")
    assert errors[88].startswith("not valid UTF-8")


def test_jsonl_with_a_broken_first_line_infers_types_from_the_rest(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text('{"n": 1, "text": \n{"n": 2, "text": "b"}\n{"n": 3, "text": "c"}\n')
    with pytest.raises(dm.InputError, match="line 1: truncated line"):
        dm.Dataset.read(src)
    ds = dm.Dataset.read(src, errors="quarantine")  # the reader's own argument works too
    assert ds.step.on_error == "quarantine"
    assert ds.collect(tmp_path / "w", workers=1, progress=False).to_pylist() == [
        {"n": 2, "text": "b"}, {"n": 3, "text": "c"}]
    assert dm.quarantined_rows(tmp_path / "w")["_line"].to_pylist() == [1]


def test_gzipped_jsonl_skips_broken_lines(tmp_path):
    bad, lines = _broken_jsonl(tmp_path / "plain.jsonl")
    with gzip.open(tmp_path / "x.jsonl.gz", "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    ds = dm.Dataset.read(tmp_path / "x.jsonl.gz", on_error="quarantine", schema=SCHEMA)
    assert ds.collect(tmp_path / "w", workers=1, progress=False).num_rows == 95
    assert sorted(dm.quarantined_rows(tmp_path / "w")["_line"].to_pylist()) == sorted(bad)


def test_broken_csv_records_are_skipped_or_quarantined(tmp_path):
    src = tmp_path / "c.csv"
    rows = [f"{i},text {i}" for i in range(2000)]
    rows[3] = "3,three,extra"             # a field too many
    rows[1500] = "fifteen hundred,text"   # does not convert to int64
    rows[1700] = '1700,"a quoted\nvalue"'  # good: a newline inside quotes
    rows[1900] = "1900"                    # a field too few, after the two-line record
    src.write_bytes(("a,b\n" + "\n".join(rows) + "\n").encode())
    types = {"a": "int64", "b": "string"}
    with pytest.raises(dm.InputError, match=r"c\.csv, line 5: malformed CSV"):
        dm.Dataset.read(src, schema=types).collect(tmp_path / "w0", workers=1, progress=False)
    skip = dm.Dataset.read(src, on_error="skip", schema=types)
    table = skip.collect(tmp_path / "w1", workers=1, progress=False)
    assert table["a"].to_pylist() == [i for i in range(2000) if i not in (3, 1500, 1900)]
    assert "a quoted\nvalue" in table["b"].to_pylist()
    assert skip.run(tmp_path / "w1", progress=False).steps[0]["errors"] == 3

    quarantine = dm.Dataset.read(src, on_error="quarantine", schema=types)
    assert quarantine.collect(tmp_path / "w2", workers=1, progress=False).num_rows == 1997
    q = dm.quarantined_rows(tmp_path / "w2").sort_by("_line")
    assert q["_line"].to_pylist() == [5, 1502, 1903]
    assert q["_id"].to_pylist() == [3, 1500, 1900]  # record numbers, as good rows have
    assert q["_raw"].to_pylist() == [b"3,three,extra", b"fifteen hundred,text", b"1900"]
    errors = q["_error"].to_pylist()
    assert errors[0] == "malformed CSV: 3 fields where the header has 2"
    assert errors[1] == "column 'a' has 'fifteen hundred', which does not convert to int64"
    assert errors[2] == "malformed CSV: 1 fields where the header has 2"
    # without a schema, types are inferred from the rows that read
    (tmp_path / "d.csv").write_text("a,b\n1,x\n2,y,z\n3,w\n")
    inferred = dm.Dataset.read(tmp_path / "d.csv", on_error="skip")
    assert inferred.schema == {"a": pa.int64(), "b": pa.string()}
    assert inferred.collect(tmp_path / "w3", progress=False)["a"].to_pylist() == [1, 3]


def test_gzipped_csv_with_invalid_utf8_is_quarantined(tmp_path):
    src = tmp_path / "c.csv.gz"
    with gzip.open(src, "wb") as fh:
        fh.write(b"a,b\n1,ok\n2,caf\xe9\n3,fine\n")
    ds = dm.Dataset.read(src, on_error="quarantine", schema={"a": "int64", "b": "string"})
    assert ds.collect(tmp_path / "w", workers=1, progress=False)["a"].to_pylist() == [1, 3]
    q = dm.quarantined_rows(tmp_path / "w")
    assert q["_line"].to_pylist() == [3] and q["_raw"].to_pylist() == [b"2,caf\xe9"]
    assert q["_error"][0].as_py().startswith("not valid UTF-8")


def test_a_policy_a_reader_cannot_honour_is_refused_when_built(tmp_path):
    pq.write_table(pa.table({"n": [1, 2]}), tmp_path / "a.parquet")
    with pytest.raises(dm.PipelineError) as info:
        dm.Dataset.read(tmp_path / "a.parquet", on_error="skip")
    assert "read_parquet" in str(info.value) and "on_error='skip'" in str(info.value)

    class Numbers(dm.SourceOperation):
        name = "test_numbers_source"

        def schema(self):
            return {"n": pa.int64()}

    with pytest.raises(dm.PipelineError, match="test_numbers_source.*on_error='quarantine'"):
        dm.Dataset.read(Numbers(), on_error="quarantine")
    (tmp_path / "x.jsonl").write_text('{"n": 1}\n')
    with pytest.raises(dm.PipelineError, match="contradicts"):
        dm.Dataset.read(tmp_path / "x.jsonl", on_error="quarantine", errors="skip")
    with pytest.raises(dm.PipelineError, match="on_error must be"):
        dm.Dataset.read(tmp_path / "x.jsonl", on_error="ignore")
    with pytest.raises(dm.PipelineError, match="drop_duplicates.*on_error='skip'"):
        dm.Dataset.read(tmp_path / "x.jsonl").apply("drop_duplicates", on_error="skip")
    same = dm.Dataset.read(tmp_path / "x.jsonl", on_error="skip", errors="skip")
    assert same.step.op.args.errors == "skip" and same.step.on_error == "skip"
    # the policy is part of the read step's identity (and so of its cache key)
    assert same.step.key != dm.Dataset.read(tmp_path / "x.jsonl").step.key


class LoggedDouble(dm.MapOperation):
    """Doubles `n`; appends the files (n // 100) of the rows it sees to a log."""

    name = "test_logged_double"
    consumes = {"n": "int64"}
    produces = {"double": "int64"}

    class Args(dm.Arguments):
        log: str

    def process(self, batch):
        values = batch["n"].to_pylist()
        with open(self.args.log, "a") as fh:
            fh.write("".join(f"{k}\n" for k in sorted({v // 100 for v in values})))
        return {"double": [2 * v for v in values]}


def _files_seen(log) -> list[int]:
    seen = sorted(int(x) for x in log.read_text().split()) if log.exists() else []
    log.unlink(missing_ok=True)
    return seen


def test_fixing_a_bad_file_recomputes_only_its_partitions(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate("abcd"):
        rows = [json.dumps({"n": 100 * k + i, "text": f"{name}{i}"}) for i in range(30)]
        if name == "b":
            rows[12] = '{"n": 112, "text": '
        (folder / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    log = tmp_path / "log"

    def pipeline(**read):
        return (dm.Dataset.read(folder, block_size=400, **read)  # two partitions a file
                .apply(LoggedDouble, log=str(log))
                .write(tmp_path / "out", format="jsonl"))

    with pytest.raises(dm.InputError, match=r"b\.jsonl, line 13"):
        pipeline().run(tmp_path / "w", workers=1, progress=False)
    assert _files_seen(log)[0] == 0  # file a went through before b failed
    (folder / "b.jsonl").write_text((folder / "b.jsonl").read_text().replace(
        '{"n": 112, "text": \n', '{"n": 112, "text": "fixed"}\n'))
    fixed = pipeline().run(tmp_path / "w", workers=1, progress=False)
    assert _files_seen(log) == [1, 1, 2, 2, 3, 3]  # two partitions a file; not file a again
    read, double = fixed.step("read_jsonl"), fixed.step("test_logged_double")
    assert read["rows_out"] == double["rows_out"] == 120
    out = sorted(json.loads(line)["double"] for f in (tmp_path / "out").glob("*.jsonl")
                 for line in f.read_text().splitlines())
    assert out == sorted(2 * (100 * k + i) for k in range(4) for i in range(30))

    # skipping the bad line, then fixing it: only file b's partitions are computed again
    (folder / "b.jsonl").write_text((folder / "b.jsonl").read_text().replace(
        '"fixed"}', ''))
    skipped = pipeline(on_error="skip").run(tmp_path / "w2", workers=2, progress=False)
    assert skipped.step("read_jsonl")["errors"] == 1 and len(_files_seen(log)) == 8
    (folder / "b.jsonl").write_text((folder / "b.jsonl").read_text().replace(
        '{"n": 112, "text": \n', '{"n": 112, "text": "again"}\n'))
    again = pipeline(on_error="skip").run(tmp_path / "w2", workers=2, progress=False)
    assert _files_seen(log) == [1, 1]
    assert again.step("read_jsonl")["errors"] == 0
    assert again.step("test_logged_double")["rows_out"] == 120
    table = pipeline(on_error="skip").collect(tmp_path / "w2", progress=False)
    assert sorted(table["double"].to_pylist()) == out and table.num_rows == 120
    assert _files_seen(log) == []  # collecting a cached run computes nothing


class Fragile(dm.MapOperation):
    """Fails on rows whose n is a multiple of 10."""

    name = "test_row_errors_fragile"
    consumes = {"n": "int64"}
    produces = {"inv": "float64"}

    def process(self, batch):
        values = batch["n"].to_pylist()
        if any(v % 10 == 0 for v in values):
            raise ValueError(f"cannot handle {[v for v in values if v % 10 == 0][0]}")
        return {"inv": [1 / v for v in values]}


def test_quarantine_keeps_the_whole_row_after_a_global_step(tmp_path):
    """The fused pass after a global step reads only what it needs, yet a quarantining
    step keeps every column of its input, typed, as a table that can be read again."""
    rows = [{"n": i, "text": f"text {i}", "meta": {"k": i % 3}} for i in range(60)]
    rows += [dict(rows[5])]  # a duplicate
    src = tmp_path / "x.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = (dm.Dataset.read(src).apply("drop_duplicates", columns=["text"])
          .apply(Fragile, on_error="quarantine"))
    assert ds.collect(tmp_path / "w", workers=1, progress=False).num_rows == 54
    q = dm.quarantined_rows(tmp_path / "w", "test_row_errors_fragile").sort_by("n")
    assert q["n"].to_pylist() == list(range(0, 60, 10))
    assert q["text"].to_pylist() == [f"text {i}" for i in range(0, 60, 10)]
    assert q.schema.field("meta").type == pa.struct([("k", pa.int64())])
    assert q["_error"].to_pylist() == [f"ValueError: cannot handle {i}" for i in range(0, 60, 10)]
    assert set(q["_path"].to_pylist()) == {str(src)}
    pq.write_table(q.select(["n", "text", "meta"]), tmp_path / "replay.parquet")
    replay = dm.Dataset.read(tmp_path / "replay.parquet")  # the rows, as they came
    assert replay.schema == {"n": pa.int64(), "text": pa.string(),
                             "meta": pa.struct([("k", pa.int64())])}
    assert replay.collect(tmp_path / "w2", progress=False).num_rows == 6


def test_csv_reading_goes_back_to_arrow_after_a_bad_record(tmp_path, monkeypatch):
    from datamill.io import csv as csv_module

    monkeypatch.setattr(csv_module, "LENIENT_ROWS", 200)  # small groups: Arrow resumes often
    monkeypatch.setattr(csv_module, "INFER_BLOCK", 4096)
    parsed = []
    real = csv_module.ReadCsv._parse_bytes
    monkeypatch.setattr(csv_module.ReadCsv, "_parse_bytes",
                        lambda self, data, schema: parsed.append(len(data)) or real(
                            self, data, schema))
    rows = [f"{i},row {i}" for i in range(20_000)]
    bad = [7, 5_000, 5_001, 12_345, 19_999]
    for i in bad:
        rows[i] = f"{i},row {i},extra"
    rows[9_000] = '9000,"two\nlines"'
    src = tmp_path / "c.csv"
    src.write_text("a,b\n" + "\n".join(rows) + "\n")
    ds = dm.Dataset.read(src, on_error="quarantine", schema={"a": "int64", "b": "string"})
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table["a"].to_pylist() == [i for i in range(20_000) if i not in bad]
    assert table["b"][table["a"].to_pylist().index(9000)].as_py() == "two\nlines"
    q = dm.quarantined_rows(tmp_path / "w").sort_by("_id")
    assert q["_id"].to_pylist() == bad
    assert q["_line"].to_pylist() == [i + 2 + (i > 9_000) for i in bad]
    assert q["_raw"].to_pylist() == [f"{i},row {i},extra".encode() for i in bad]
    op = ds.step.op  # ids are record numbers, whichever path read the record
    ids = [i for part in op.partitions() for t in op.read(part, None)
           for i in t["_id"].to_pylist()]
    assert ids == table["a"].to_pylist()
    # the record-by-record path covered only the groups around bad records
    assert sum(parsed) < 0.5 * src.stat().st_size
