"""Readers and writers: round trips, row ids, units of work, fsspec paths, continuing runs."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import zstandard

import datamill as dm
from datamill.io import jsonl as jsonl_module

PART = re.compile(r"part-\d{5}-\d{4}\.(parquet|jsonl|jsonl\.gz|jsonl\.zst|csv)$")


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "Gamma", "délta", "ε", "zeta", "日本", "eta"]
    return [{"n": i,
             "score": round(rng.uniform(-10, 10), 3),
             "text": " ".join(rng.choice(words) for _ in range(rng.randint(0, 12))),
             "flag": rng.random() < 0.5,
             "maybe": None if i % 5 == 0 else rng.randint(0, 99)}
            for i in range(n)]


TYPES = {"n": pa.int64(), "score": pa.float64(), "text": pa.string(), "flag": pa.bool_(),
         "maybe": pa.int64()}


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema(list(TYPES.items())))


def _collect(ds: dm.Dataset, workdir: Path, columns=None, workers: int = 1) -> pa.Table:
    return ds.collect(workdir, columns=columns, workers=workers, progress=False)


def _run(ds: dm.Dataset, workdir: Path, workers: int = 1):
    return ds.run(workdir, workers=workers, progress=False)


def _visible(table: pa.Table) -> pa.Table:
    return table.select([c for c in table.column_names if not c.startswith("_")])


def _write_text_jsonl(path: Path, rows: list[dict], newline: str = "\n") -> Path:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + newline
                             for r in rows).encode())
    return path


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if PART.search(p.name))


# --- Parquet ------------------------------------------------------------------------------

@pytest.fixture
def parquet_dir(tmp_path: Path) -> Path:
    """Two Parquet files of 300 and 200 rows, row groups of 40 rows."""
    folder = tmp_path / "pq"
    folder.mkdir()
    rows = _rows(500, seed=1)
    pq.write_table(_table(rows[:300]), folder / "a.parquet", row_group_size=40)
    pq.write_table(_table(rows[300:]), folder / "b.parquet", row_group_size=40)
    return folder


def test_parquet_round_trip_partitioned(tmp_path, parquet_dir):
    expected = pa.concat_tables([pq.read_table(parquet_dir / "a.parquet"),
                                 pq.read_table(parquet_dir / "b.parquet")])
    out = tmp_path / "out"
    ds = dm.Dataset.read(parquet_dir, rows_per_partition=100).write(
        out, target_file_size=4_000)
    result = _run(ds, tmp_path / "w")
    assert result.step("read_parquet")["partition_count"] >= 5  # several units of work
    parts = _parts(out)
    assert len(parts) > 5, parts  # rolled at target_file_size
    assert len({p[:10] for p in parts}) >= 5  # files of several partitions
    assert (out / "_datamill_lineage.json").exists() and (out / "_SUCCESS").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    back = pq.read_table([out / p for p in parts])
    assert back.schema.equals(expected.schema)
    assert back.equals(expected)


def test_parquet_ids_unique_stable_and_order_independent_of_units(tmp_path, parquet_dir):
    def read(rows_per_partition, workdir, workers):
        ds = dm.Dataset.read(parquet_dir, rows_per_partition=rows_per_partition)
        return _collect(ds, tmp_path / workdir, columns=["_id", *TYPES], workers=workers)

    a = read(50, "w1", 1)
    b = read(50, "w2", 2)
    c = read(10**6, "w3", 2)
    assert a.num_rows == 500
    ids = a.column("_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids[:2] == [0, 1] and ids[300] == 1 << 40  # file ordinal << 40 | row
    assert a.equals(b) and a.equals(c)  # same rows, same order, same ids


def test_parquet_reads_only_ids(tmp_path, parquet_dir):
    table = _collect(dm.Dataset.read(parquet_dir, rows_per_partition=64), tmp_path / "w",
                     columns=["_id"])
    assert table.num_rows == 500


# --- JSONL --------------------------------------------------------------------------------

def test_jsonl_round_trip(tmp_path):
    rows = _rows(300, seed=2)
    src = _write_text_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    _run(dm.Dataset.read(src, block_size=2_000).write(out, format="jsonl",
                                                      target_file_size=3_000),
         tmp_path / "w", workers=2)
    parts = _parts(out)
    assert len(parts) > 3 and all(p.endswith(".jsonl") for p in parts)
    back = [json.loads(line) for p in parts for line in (out / p).read_text().splitlines()]
    assert back == rows
    table = _collect(dm.Dataset.read(out), tmp_path / "w2")
    assert table.to_pylist() == rows
    assert table.schema.equals(pa.schema(list(TYPES.items())))


def _messy_jsonl(path: Path) -> tuple[Path, list[tuple[int, dict]]]:
    """CRLF and LF lines, blank and whitespace-only lines, long lines, no final newline.
    Returns the file and the expected (byte offset, row) of each object."""
    rng = random.Random(7)
    pieces: list[bytes] = []
    expected = []
    offset = 0
    for i in range(150):
        kind = rng.random()
        if kind < 0.08:
            line = b""
        elif kind < 0.12:
            line = b" \t \r"
        else:
            row = {"n": i, "text": "x" * rng.choice([0, 3, 40, 300]) + "é"}
            line = json.dumps(row, ensure_ascii=False).encode()
            if rng.random() < 0.4:
                line += b"\r"
            expected.append((offset, row))
        pieces.append(line)
        offset += len(line) + 1
    path.write_bytes(b"\n".join(pieces))  # no newline after the last line
    return path, expected


@pytest.mark.parametrize("parse_chunk", [1, 97, 16 * 2**20])
def test_jsonl_block_splitting_edge_cases(tmp_path, monkeypatch, parse_chunk):
    monkeypatch.setattr(jsonl_module, "PARSE_CHUNK", parse_chunk)
    src, expected = _messy_jsonl(tmp_path / "messy.jsonl")
    schema = {"n": "int64", "text": "string"}
    for block_size in (1, 13, 500, 4096, 10**9):
        op = jsonl_module.ReadJsonl(path=str(src), block_size=block_size, schema=schema)
        got = []
        for part in op.partitions():
            for table in op.read(part, None):
                got += zip(table.column("_id").to_pylist(),
                           table.select(["n", "text"]).to_pylist())
        assert got == expected, f"block_size={block_size}"
    for block_size, workers in ((700, 2), (10**9, 1)):
        table = _collect(dm.Dataset.read(src, block_size=block_size, schema=schema),
                         tmp_path / f"w{block_size}", columns=["_id", "n", "text"],
                         workers=workers)
        assert table.column("_id").to_pylist() == [o for o, _ in expected]
        assert table.select(["n", "text"]).to_pylist() == [r for _, r in expected]


@pytest.mark.parametrize("parse_chunk, long_lines", [(1, 256), (97, 1), (16 * 2**20, 1),
                                                     (16 * 2**20, 10**9)])
def test_jsonl_reading_only_ids_finds_lines_without_parsing(tmp_path, monkeypatch,
                                                            parse_chunk, long_lines):
    """A later step re-reading only `_id` of a file read in place gets the ids a full read
    gives, without parsing JSON (errors='raise': every non-blank line is a row). Lines are
    found one by one (long lines) or with numpy (short ones): the same offsets."""
    monkeypatch.setattr(jsonl_module, "PARSE_CHUNK", parse_chunk)
    monkeypatch.setattr(jsonl_module, "LONG_LINES", long_lines)
    src, expected = _messy_jsonl(tmp_path / "messy.jsonl")
    parses = []
    real = jsonl_module._read_json
    monkeypatch.setattr(jsonl_module, "_read_json",
                        lambda data, schema: parses.append(1) or real(data, schema))
    for block_size in (1, 13, 500, 10**9):
        op = jsonl_module.ReadJsonl(path=str(src), block_size=block_size,
                                    schema={"n": "int64", "text": "string"})
        tables = [t for part in op.partitions() for t in op.read(part, ["_id"])]
        assert [c for t in tables for c in t.column_names] == ["_id"] * len(tables)
        assert [i for t in tables for i in t.column("_id").to_pylist()] == \
            [o for o, _ in expected], f"block_size={block_size}"
    assert not parses
    lenient = jsonl_module.ReadJsonl(path=str(src), errors="skip",
                                     schema={"n": "int64", "text": "string"})
    ids = [i for t in lenient.read(lenient.partitions()[0], ["_id"])
           for i in t.column("_id").to_pylist()]
    assert ids == [o for o, _ in expected] and parses  # skip/quarantine parse to know rows


def test_jsonl_ids_unique_stable_and_independent_of_block_size(tmp_path):
    files = [_write_text_jsonl(tmp_path / f"in{i}.jsonl", _rows(200, seed=i)) for i in range(3)]
    glob = str(tmp_path / "in*.jsonl")

    def read(block_size, workdir, workers):
        return _collect(dm.Dataset.read(glob, block_size=block_size), tmp_path / workdir,
                        columns=["_id", *TYPES], workers=workers)

    a = read(1_000, "w1", 1)
    b = read(1_000, "w2", 2)
    c = read(10**9, "w3", 2)
    assert a.num_rows == 600
    ids = a.column("_id").to_pylist()
    assert len(set(ids)) == 600
    assert a.equals(b) and a.equals(c)
    # the id is the line's byte offset in its file, with the file's ordinal on top
    second = files[1].read_bytes()
    offsets = [0] + [i + 1 for i, ch in enumerate(second) if ch == 10][:-1]
    assert ids[200:400] == [(1 << 40) + o for o in offsets]


@pytest.mark.parametrize("suffix, opener", [
    (".jsonl.gz", gzip.open),
    (".jsonl.zst", lambda p, mode: zstandard.open(p, mode)),
])
def test_jsonl_compressed(tmp_path, suffix, opener):
    rows = _rows(2_500, seed=3)
    src = tmp_path / f"in{suffix}"
    with opener(src, "wb") as fh:
        for r in rows:
            fh.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
    table = _collect(dm.Dataset.read(src, block_size=500), tmp_path / "w")
    assert table.to_pylist() == rows

    compression = "gzip" if suffix.endswith("gz") else "zstd"
    out = tmp_path / "out"
    _run(dm.Dataset.read(src).write(out, format="jsonl", compression=compression,
                                    target_file_size=2_000), tmp_path / "w2")
    parts = _parts(out)  # rolled by compressed bytes (the compressor buffers some)
    assert len(parts) > 1 and all(p.endswith(suffix) for p in parts)
    assert _collect(dm.Dataset.read(out), tmp_path / "w3").to_pylist() == rows


# --- CSV ----------------------------------------------------------------------------------

def test_csv_round_trip(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "maybe"} for r in _rows(300, seed=4)]
    schema = pa.schema([(k, t) for k, t in TYPES.items() if k != "maybe"])
    folder = tmp_path / "csv"
    folder.mkdir()
    pcsv.write_csv(pa.Table.from_pylist(rows[:120], schema=schema), folder / "a.csv")
    pcsv.write_csv(pa.Table.from_pylist(rows[120:], schema=schema), folder / "b.csv")

    a = _collect(dm.Dataset.read(folder), tmp_path / "w1", columns=["_id", *schema.names])
    b = _collect(dm.Dataset.read(str(folder / "*.csv")), tmp_path / "w2",
                 columns=["_id", *schema.names], workers=2)
    assert a.equals(b)
    assert _visible(a).to_pylist() == rows
    assert _visible(a).schema.equals(schema)
    assert a.column("_id").to_pylist()[119:121] == [119, 1 << 40]

    out = tmp_path / "out"
    _run(dm.Dataset.read(folder).write(out, format="csv", target_file_size=2_000),
         tmp_path / "w3")
    parts = _parts(out)
    assert len(parts) > 2 and all(p.endswith(".csv") for p in parts)
    back = _collect(dm.Dataset.read(out), tmp_path / "w4")
    assert back.to_pylist() == rows and back.schema.equals(schema)


def test_csv_with_declared_schema_and_delimiter(tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("id\tname\n001\tx\n002\ty\n")
    table = _collect(dm.Dataset.read(src, delimiter="\t", schema={"id": "string",
                                                                 "name": "string"}),
                     tmp_path / "w")
    assert table.to_pylist() == [{"id": "001", "name": "x"}, {"id": "002", "name": "y"}]


# --- text files ---------------------------------------------------------------------------

def test_text_files_directory(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("first file\n")
    (folder / "sub" / "b.md").write_text("# second\nwith é\n")
    (folder / "sub" / "c.txt").write_text("")
    (folder / ".hidden.txt").write_text("skipped")
    table = _collect(dm.Dataset.read(folder, bytes_per_partition=5), tmp_path / "w1",
                     columns=["_id", "path", "text"], workers=2)
    assert table.select(["path", "text"]).to_pylist() == [
        {"path": "a.txt", "text": "first file\n"},
        {"path": "sub/b.md", "text": "# second\nwith é\n"},
        {"path": "sub/c.txt", "text": ""}]
    assert table.column("_id").to_pylist() == [0, 1 << 40, 2 << 40]

    md = _collect(dm.Dataset.read(folder, format="text", suffixes=[".md"]), tmp_path / "w2")
    assert md.column("path").to_pylist() == ["sub/b.md"]
    globbed = _collect(dm.Dataset.read(str(folder / "sub" / "*.txt")), tmp_path / "w3")
    assert globbed.column("path").to_pylist() == ["c.txt"]


# --- fsspec memory:// ---------------------------------------------------------------------

@pytest.fixture
def memory_root():
    root = f"memory://datamill-test-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_memory_paths_read_and_write(tmp_path, memory_root):
    fs = fsspec.filesystem("memory")
    rows = _rows(120, seed=5)
    with fs.open(f"{memory_root}/in/a.jsonl", "wb") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    with fs.open(f"{memory_root}/in/b.parquet", "wb") as fh:
        pq.write_table(_table(rows), fh)

    js = _collect(dm.Dataset.read(f"{memory_root}/in/a.jsonl", block_size=700),
                  tmp_path / "w1", workers=2)  # forked workers see the parent's files
    assert js.to_pylist() == rows
    pqt = _collect(dm.Dataset.read(f"{memory_root}/in/*.parquet"), tmp_path / "w2")
    assert pqt.to_pylist() == rows
    fs.pipe(f"{memory_root}/texts/sub/a.txt", "héllo".encode())
    texts = _collect(dm.Dataset.read(f"{memory_root}/texts", format="text"), tmp_path / "w5")
    assert texts.to_pylist() == [{"path": "sub/a.txt", "text": "héllo"}]

    out = f"{memory_root}/out"
    _run(dm.Dataset.read(f"{memory_root}/in/a.jsonl", block_size=700)
         .write(out, format="jsonl", target_file_size=1_500), tmp_path / "w3", workers=1)
    names = sorted(f.rsplit("/", 1)[-1] for f in fs.ls(out, detail=False))
    assert "_datamill_lineage.json" in names and "_SUCCESS" in names
    assert len([n for n in names if PART.search(n)]) > 2
    back = _collect(dm.Dataset.read(out), tmp_path / "w4")  # format guessed from the folder
    assert back.to_pylist() == rows


def test_memory_sink_runs_in_the_driver(tmp_path, memory_root):
    """Forked workers cannot write into the driver's memory://: such a stage runs serially."""
    src = _write_text_jsonl(tmp_path / "in.jsonl", _rows(100))
    ds = dm.Dataset.read(src, block_size=500).write(f"{memory_root}/out", format="jsonl")
    assert len(ds.steps[0].op.partitions()) > 2
    _run(ds, tmp_path / "w", workers=2)
    assert _collect(dm.Dataset.read(f"{memory_root}/out"), tmp_path / "w2").num_rows == 100


def test_memory_sink_refuses_a_worker_process(tmp_path, memory_root):
    import os

    from datamill.io.jsonl import WriteJsonl

    sink = WriteJsonl(path=f"{memory_root}/x")
    sink.prepare()
    sink._driver_pid = os.getpid() + 1  # as if this were a forked worker
    with pytest.raises(dm.StorageError, match=r"memory://.*workers=1"):
        sink.open_partition(0)


# --- continuing from a workdir or a written folder ----------------------------------------

def _upper(batch):
    import pyarrow.compute as pc

    return {"upper": pc.utf8_upper(batch["text"])}


def test_read_workdir_continues_and_survives_a_move(tmp_path):
    src = _write_text_jsonl(tmp_path / "in.jsonl", _rows(300, seed=6))
    first = (dm.Dataset.read(src, block_size=1_500, materialize=True)
             .filter(lambda b: [n % 3 != 0 for n in b["n"].to_pylist()])
             .map(_upper, produces={"upper": "string"}, consumes=["text"]))
    expected = _collect(first, tmp_path / "w1", columns=["_id", "n", "text", "upper"])
    assert expected.num_rows == 200

    cont = dm.Dataset.read(tmp_path / "w1")
    assert set(cont.schema) == {*TYPES, "upper"}
    got = _collect(cont.select("n", "text", "upper"), tmp_path / "w2",
                   columns=["_id", "n", "text", "upper"])
    assert got.equals(expected)  # same rows, same order, same ids

    # the workdir is self-contained when the source was materialized (materialize=True)
    shutil.copytree(tmp_path / "w1", tmp_path / "moved")
    shutil.rmtree(tmp_path / "w1")
    src.unlink()
    moved = _collect(dm.Dataset.read(tmp_path / "moved")
                     .map(lambda b: {"len": [len(t) for t in b["text"].to_pylist()]},
                          produces={"len": "int64"}, consumes=["text"]),
                     tmp_path / "w3", columns=["_id", "n", "text", "upper", "len"])
    assert moved.select(["_id", "n", "text", "upper"]).equals(expected)
    also = _collect(dm.Dataset.read(tmp_path / "moved" / "manifest.json"), tmp_path / "w4",
                    columns=["_id", "n"])
    assert also.equals(expected.select(["_id", "n"]))


def test_jsonl_is_read_in_place_and_a_changed_file_is_never_served_stale(tmp_path):
    src = _write_text_jsonl(tmp_path / "in.jsonl", _rows(300, seed=8))
    keep = lambda b: [n % 3 != 0 for n in b["n"].to_pylist()]  # noqa: E731

    def pipeline(**read_args):
        return dm.Dataset.read(src, block_size=1_500, **read_args).filter(keep, consumes=["n"])

    ds = pipeline()
    _run(ds, tmp_path / "w")
    source_dir = tmp_path / "w" / "steps" / ds.steps[0].key
    assert not list(source_dir.glob("part-*.parquet"))  # no copy of the input
    # a later pipeline reuses the cached filter and reads `text` from the file again
    upper = ds.map(_upper, produces={"upper": "string"}, consumes=["text"])
    got = _collect(upper, tmp_path / "w", columns=["n", "upper"])
    expected = [(r["n"], r["text"].upper()) for r in _rows(300, seed=8) if r["n"] % 3]
    assert list(zip(got["n"].to_pylist(), got["upper"].to_pylist())) == expected
    assert upper.run(tmp_path / "w", progress=False).step(ds.steps[-1].name)["cached"]

    # the file changes (its size and time do): nothing cached is served for it
    rows = _rows(301, seed=9)
    _write_text_jsonl(src, rows)
    again = pipeline().map(_upper, produces={"upper": "string"}, consumes=["text"])
    got = _collect(again, tmp_path / "w", columns=["n", "upper"])
    assert got["upper"].to_pylist() == [r["text"].upper() for r in rows if r["n"] % 3]

    kept = pipeline(materialize=True)  # the workdir keeps its own copy
    _run(kept, tmp_path / "w2")
    assert list((tmp_path / "w2" / "steps" / kept.steps[0].key).glob("part-*.parquet"))


def test_read_workdir_of_parquet_source_needs_its_files(tmp_path, parquet_dir):
    single = parquet_dir / "a.parquet"
    ds = dm.Dataset.read(single, rows_per_partition=64).filter(
        lambda b: [n % 2 == 0 for n in b["n"].to_pylist()])
    expected = _collect(ds, tmp_path / "w1", columns=["_id", "n"])
    shutil.copytree(tmp_path / "w1", tmp_path / "moved")
    shutil.rmtree(tmp_path / "w1")
    got = _collect(dm.Dataset.read(tmp_path / "moved"), tmp_path / "w2", columns=["_id", "n"])
    assert got.equals(expected)  # the source is still there: fine

    single.unlink()
    with pytest.raises(dm.InputError, match=re.escape(str(single))) as info:
        dm.Dataset.read(tmp_path / "moved")
    assert "read in place" in str(info.value)

    # a folder source that lost one of its files: the input changed, say so
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copy(parquet_dir / "b.parquet", folder / "b.parquet")
    shutil.copy(parquet_dir / "b.parquet", folder / "c.parquet")
    _run(dm.Dataset.read(folder), tmp_path / "w3")
    (folder / "c.parquet").unlink()
    with pytest.raises(dm.InputError, match="changed since the run") as info:
        dm.Dataset.read(tmp_path / "w3")
    assert str(folder) in str(info.value)
    (folder / "b.parquet").unlink()
    with pytest.raises(dm.InputError, match=f"{re.escape(str(folder))}.*matches no files"):
        dm.Dataset.read(tmp_path / "w3")


def test_relative_paths_still_resolve_from_another_directory(tmp_path, monkeypatch,
                                                            parquet_dir):
    monkeypatch.chdir(tmp_path)
    ds = dm.Dataset.read("pq/a.parquet")
    assert ds.step.op.args.path == str(parquet_dir / "a.parquet")
    expected = _collect(ds, tmp_path / "w1", columns=["_id", "n"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    got = _collect(dm.Dataset.read(tmp_path / "w1"), tmp_path / "w2", columns=["_id", "n"])
    assert got.equals(expected)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_read_the_folder_a_write_produced(tmp_path, fmt):
    rows = [{k: v for k, v in r.items() if k != "maybe"} for r in _rows(150, seed=8)]
    src = _write_text_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    _run(dm.Dataset.read(src, block_size=1_000).write(out, format=fmt,
                                                      target_file_size=1_500),
         tmp_path / "w1")
    lineage = json.loads((out / "_datamill_lineage.json").read_text())
    assert [s["operation"] for s in lineage["steps"]] == ["read_jsonl", f"write_{fmt}"]
    back = dm.Dataset.read(out)
    assert back.step.op.name == f"read_{fmt}"
    table = _collect(back, tmp_path / "w2")
    assert table.to_pylist() == rows

    # writing again into the same folder replaces what was there
    _run(dm.Dataset.read(src).limit(10).write(out, format=fmt), tmp_path / "w3")
    assert _collect(dm.Dataset.read(out), tmp_path / "w4").num_rows == 10


def test_format_guessing_and_sink_defaults(tmp_path):
    from datamill.formats import guess_format, resolve_sink

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "steps").mkdir()
    (tmp_path / "w" / "manifest.json").write_text("{}")
    assert guess_format(str(tmp_path / "w")) == "workdir"
    assert guess_format(str(tmp_path / "w" / "manifest.json")) == "workdir"
    assert guess_format("x/data.jsonl.zst") == "jsonl"
    assert guess_format("x/data.TSV") == "csv"
    assert resolve_sink(str(tmp_path / "w"), None, {}).name == "write_parquet"
    assert resolve_sink(str(tmp_path / "o.jsonl"), None, {}).name == "write_jsonl"
    assert os.path.isabs(resolve_sink("rel/out", None, {}).fs._strip_protocol("rel/out"))


def test_a_fresh_write_replaces_parts_of_any_format_and_stale_temp_files(tmp_path):
    rows = _rows(60, seed=9)
    src = _write_text_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    _run(dm.Dataset.read(src).write(out, format="jsonl", target_file_size=500),
         tmp_path / "w1")
    assert _parts(out)[0].endswith(".jsonl")
    (out / ".part-00000-0003.parquet.tmp-0123abcd").write_bytes(b"left by a killed run")
    (out / "notes.txt").write_text("not ours: kept")
    _run(dm.Dataset.read(src).write(out, format="parquet"), tmp_path / "w2")
    assert _parts(out) == ["part-00000-0000.parquet"]
    assert sorted(p.name for p in out.iterdir()) == [
        "_SUCCESS", "_datamill_lineage.json", "_datamill_writer.json", "notes.txt",
        "part-00000-0000.parquet"]
    assert _collect(dm.Dataset.read(out, format="parquet"), tmp_path / "w3").to_pylist() == rows


def test_csv_sink_refuses_nested_columns_when_the_pipeline_is_built(tmp_path):
    src = _write_text_jsonl(tmp_path / "in.jsonl", [{"tags": [1, 2], "text": "a"}])
    with pytest.raises(dm.SchemaError, match=r"CSV cannot hold nested column\(s\) tags"):
        dm.Dataset.read(src).write(tmp_path / "out", format="csv")
    table = _collect(dm.Dataset.read(src).drop("tags").write(tmp_path / "out", format="csv"),
                     tmp_path / "w")
    assert table.to_pylist() == [{"text": "a"}]


def test_a_workdir_read_from_a_workdir(tmp_path, monkeypatch):
    src = _write_text_jsonl(tmp_path / "in.jsonl", _rows(80, seed=10))
    _run(dm.Dataset.read(src, block_size=900), tmp_path / "w1")
    monkeypatch.chdir(tmp_path)
    second = dm.Dataset.read("w1").map(lambda b: {"twice": [2 * n for n in b["n"].to_pylist()]},
                                       produces={"twice": "int64"}, consumes=["n"])
    expected = _collect(second, tmp_path / "w2", columns=["_id", "n", "twice"])
    monkeypatch.chdir(tmp_path / "w1")  # the recorded path of w1 is absolute
    got = _collect(dm.Dataset.read(tmp_path / "w2"), tmp_path / "w3",
                   columns=["_id", "n", "twice"])
    assert got.equals(expected)
    assert got.column("twice").to_pylist() == [2 * n for n in range(80)]


def test_parquet_sink_gathers_small_batches_into_row_groups(tmp_path, monkeypatch):
    from datamill.executors import rowwise

    rows = _rows(3000, seed=11)
    src = _write_text_jsonl(tmp_path / "in.jsonl", rows)
    monkeypatch.setattr(rowwise, "BATCH_BYTES", 4_000)  # ~100 batches
    calls = []
    ds = dm.Dataset.read(src).map(lambda b: calls.append(b.num_rows) or {"k": [1] * b.num_rows},
                                  produces={"k": "int64"}, consumes=["n"])
    _run(ds.write(tmp_path / "out"), tmp_path / "w")
    files = sorted((tmp_path / "out").glob("part-*.parquet"))
    meta = [pq.ParquetFile(f).metadata for f in files]
    assert len(calls) > 50  # small batches went through the pass
    assert sum(m.num_row_groups for m in meta) < 5  # ... and were written in a few row groups
    got = pa.concat_tables(pq.read_table(f) for f in files)
    assert got["n"].to_pylist() == [r["n"] for r in rows]
