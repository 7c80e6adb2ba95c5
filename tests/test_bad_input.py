"""Bad input and failing storage: clear errors (file, line, column), and nothing done is lost."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.io import jsonl as jsonl_module


def _collect(ds: dm.Dataset, workdir: Path, workers: int = 1, **options) -> pa.Table:
    return ds.collect(workdir, workers=workers, progress=False, **options)


def _lines(n: int) -> list[str]:
    return [json.dumps({"n": i, "text": f"row {i} " + "x" * 40}) for i in range(n)]


def _write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_text("\n".join(lines) + end)
    return path


def _error(exc_info) -> str:
    return str(exc_info.value)


# --- Parquet ------------------------------------------------------------------------------

def test_truncated_parquet_file_is_named(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"n": list(range(1000))}), folder / "a.parquet")
    data = (folder / "a.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(dm.InputError, match="not a readable Parquet file") as info:
        dm.Dataset.read(folder)
    assert info.value.path == str(folder / "b.parquet")
    assert str(folder / "b.parquet") in _error(info)


def test_corrupt_parquet_data_fails_naming_the_file_and_keeps_earlier_files(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"n": [str(i) for i in range(1000)]}), folder / "a.parquet")
    pq.write_table(pa.table({"n": [str(i) * 20 for i in range(5000)]}), folder / "b.parquet",
                   compression="zstd")
    data = bytearray((folder / "b.parquet").read_bytes())
    data[200:2000] = b"\xab" * 1800  # the footer is intact, the compressed pages are not
    (folder / "b.parquet").write_bytes(bytes(data))
    ds = dm.Dataset.read(folder).write(tmp_path / "out", format="jsonl")
    with pytest.raises(dm.InputError, match="cannot read Parquet data") as info:
        ds.run(tmp_path / "w", workers=1, progress=False)
    assert info.value.path == str(folder / "b.parquet")
    sink = tmp_path / "w" / "steps" / ds.step.key
    assert (sink / "stats-00000.json").exists()  # a.parquet's partition stays committed
    assert not (sink / "_SUCCESS.json").exists()
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_mixed_types_across_parquet_files(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"n": [1, 2], "s": ["a", "b"]}), folder / "a.parquet")
    pq.write_table(pa.table({"s": ["c"]}), folder / "b.parquet")
    pq.write_table(pa.table({"n": ["x"], "s": ["d"]}), folder / "c.parquet")
    with pytest.raises(dm.InputError) as info:
        dm.Dataset.read(folder)
    message = _error(info)
    assert "'n'" in message and "a.parquet" in message and "c.parquet" in message
    assert "schema=" in message
    # with a declared schema, files are cast to it
    table = _collect(dm.Dataset.read(folder, schema={"n": "string", "s": "string"}),
                     tmp_path / "w")
    assert table.to_pylist() == [{"n": "1", "s": "a"}, {"n": "2", "s": "b"},
                                 {"n": None, "s": "c"}, {"n": "x", "s": "d"}]


# --- JSONL --------------------------------------------------------------------------------

def test_malformed_jsonl_line_is_named(tmp_path):
    lines = _lines(100)
    lines[76] = '{"n": 76, "text": oops}'
    src = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(dm.InputError, match=r"bad\.jsonl, line 77: invalid JSON") as info:
        _collect(dm.Dataset.read(src), tmp_path / "w")
    assert info.value.line == 77 and info.value.path == str(src)


@pytest.mark.parametrize("block_size", [700, 1_000, 10**9])
def test_bad_jsonl_line_in_a_later_block_has_its_file_line_number(tmp_path, block_size):
    lines = _lines(100)  # ~60 bytes a line: with 700-byte blocks, line 77 is in block 7
    lines[76] = '{"n": 76, "text": "cut here'
    src = _write_lines(tmp_path / "bad.jsonl", lines, end="\r\n")
    ds = dm.Dataset.read(src, block_size=block_size, schema={"n": "int64", "text": "string"})
    with pytest.raises(dm.InputError, match=r"bad\.jsonl, line 77: truncated line") as info:
        _collect(ds, tmp_path / "w", workers=2)
    assert info.value.line == 77


def test_bad_jsonl_line_in_a_later_parse_chunk_and_in_gzip(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl_module, "PARSE_CHUNK", 256)  # many chunks in one partition
    lines = _lines(100)
    lines[90] = "[1, 2, 3]"
    src = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(dm.InputError, match=r"line 91: expected a JSON object, got an array"):
        _collect(dm.Dataset.read(src), tmp_path / "w1")
    gz = tmp_path / "bad.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(dm.InputError, match=r"bad\.jsonl\.gz, line 91: expected a JSON obj"):
        _collect(dm.Dataset.read(gz), tmp_path / "w2")


def test_truncated_jsonl_file_without_final_newline(tmp_path):
    text = "\n".join(_lines(50))
    src = tmp_path / "cut.jsonl"
    src.write_text(text[:-12])  # the last object is cut short
    with pytest.raises(dm.InputError, match=r"cut\.jsonl, line 50: truncated line"):
        _collect(dm.Dataset.read(src, block_size=500), tmp_path / "w")


def test_two_objects_on_one_line(tmp_path):
    lines = _lines(20)
    lines[5] = '{"n": 5, "text": "a"} {"n": 6, "text": "b"}'
    src = _write_lines(tmp_path / "two.jsonl", lines)
    with pytest.raises(dm.InputError, match=r"two\.jsonl, line 6: .*one object per line"):
        _collect(dm.Dataset.read(src), tmp_path / "w")


def test_mixed_types_across_jsonl_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _write_lines(folder / "a.jsonl", _lines(10))
    later = _lines(10)
    later[3] = json.dumps({"n": 3.5, "text": "x"})
    _write_lines(folder / "b.jsonl", later)
    with pytest.raises(dm.InputError) as info:
        _collect(dm.Dataset.read(folder, block_size=200), tmp_path / "w", workers=2)
    message = _error(info)
    assert message.startswith(f"{folder / 'b.jsonl'}, line 4: column 'n'")
    assert str(folder / "a.jsonl") in message  # where the type was inferred from
    assert "int64" in message and "schema=" in message
    # declaring the type reads both files
    table = _collect(dm.Dataset.read(folder, schema={"n": "float64", "text": "string"}),
                     tmp_path / "w2")
    assert table.column("n").to_pylist()[10:14] == [0.0, 1.0, 2.0, 3.5]


def test_invalid_utf8_in_jsonl(tmp_path):
    src = tmp_path / "u.jsonl"
    src.write_bytes(b'{"t": "ok"}\n{"t": "caf\xe9"}\n{"t": "fine"}\n')
    with pytest.raises(dm.InputError, match=r"u\.jsonl, line 2: not valid UTF-8") as info:
        _collect(dm.Dataset.read(src), tmp_path / "w1")
    assert "invalid_utf8='replace'" in _error(info)
    table = _collect(dm.Dataset.read(src, invalid_utf8="replace"), tmp_path / "w2")
    assert table.column("t").to_pylist() == ["ok", "caf\ufffd", "fine"]


def test_invalid_utf8_in_text_files(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    (folder / "b.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(dm.InputError, match=r"b\.txt: not valid utf-8") as info:
        _collect(dm.Dataset.read(folder), tmp_path / "w1")
    assert "invalid_text='replace'" in _error(info)
    table = _collect(dm.Dataset.read(folder, invalid_text="replace"), tmp_path / "w2")
    assert table.to_pylist() == [{"path": "a.txt", "text": "fine"},
                                 {"path": "b.txt", "text": "caf\ufffd au lait"}]


# --- CSV ----------------------------------------------------------------------------------

def test_csv_with_a_wrong_column_count(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(dm.InputError, match=r"c\.csv, line 4: malformed CSV: 3 fields where "
                                            r"the header has 2"):
        _collect(dm.Dataset.read(src), tmp_path / "w")


def test_mixed_types_across_csv_files(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "a.csv").write_text("a,b\n1,x\n2,y\n")
    (folder / "b.csv").write_text("a,b\n3,z\nfour,w\n")
    with pytest.raises(dm.InputError) as info:
        _collect(dm.Dataset.read(folder), tmp_path / "w")
    message = _error(info)
    assert message.startswith(f"{folder / 'b.csv'}, line 3: column 'a' has 'four'")
    assert str(folder / "a.csv") in message and "int64" in message


# --- empty input --------------------------------------------------------------------------

def test_empty_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(dm.InputError, match="empty: matches no files"):
        dm.Dataset.read(tmp_path / "empty")
    with pytest.raises(dm.InputError, match="matches no files"):
        dm.Dataset.read(str(tmp_path / "nothing-*.jsonl"))
    with pytest.raises(dm.InputError, match="no such file"):
        dm.Dataset.read(tmp_path / "missing.jsonl")

    for name in ("e.jsonl", "e.csv"):
        (tmp_path / name).write_text("")
        with pytest.raises(dm.InputError, match=rf"{name}: no .* infer .*pass schema="):
            dm.Dataset.read(tmp_path / name)
        table = _collect(dm.Dataset.read(tmp_path / name, schema={"a": "int64", "b": "string"}),
                         tmp_path / f"w-{name}")
        assert table.num_rows == 0
        assert table.schema == pa.schema([("a", pa.int64()), ("b", pa.string())])
        out = tmp_path / f"out-{name}"
        result = (dm.Dataset.read(tmp_path / name, schema={"a": "int64"})
                  .write(out).run(tmp_path / f"v-{name}", workers=1, progress=False))
        assert result.steps[-1]["rows_out"] == 0 and (out / "_SUCCESS").exists()

    # an empty file among others: types come from the first file with data
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "a.jsonl").write_text("\n\n")
    _write_lines(tmp_path / "mix" / "b.jsonl", _lines(3))
    assert _collect(dm.Dataset.read(tmp_path / "mix"), tmp_path / "w-mix").num_rows == 3


# --- a busy workdir -----------------------------------------------------------------------

BUSY = textwrap.dedent('''
    import pathlib, sys, time
    import datamill as dm

    def slow(batch):
        pathlib.Path(sys.argv[3]).touch()
        release = pathlib.Path(sys.argv[3] + ".release")
        for _ in range(2400):  # holds the workdir until the test releases it (at most 2 min)
            if release.exists():
                break
            time.sleep(0.05)
        return {"m": batch["n"]}

    (dm.Dataset.read(sys.argv[1], block_size=600)
       .map(slow, produces={"m": "int64"}, consumes=["n"])
       .write(sys.argv[2] + "/out")
       .run(sys.argv[2] + "/work", workers=1, progress=False))
''')


def test_second_run_on_a_busy_workdir_is_refused(tmp_path):
    src = _write_lines(tmp_path / "in.jsonl", _lines(60))
    script = tmp_path / "busy.py"
    script.write_text(BUSY)
    started = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(tmp_path),
                             str(started)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not started.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate()[1].decode()[-2000:]
        with pytest.raises(dm.WorkdirBusyError, match="in use by another run") as info:
            dm.Dataset.read(src).run(tmp_path / "work", workers=1, progress=False)
        # refused, not queued: the holder cannot finish before it is released below
        assert proc.poll() is None
        assert str(proc.pid) in _error(info)
        (tmp_path / "started.release").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    out = pq.read_table(sorted((tmp_path / "out").glob("part-*.parquet")))
    assert out.column("m").to_pylist() == list(range(60))
    assert (tmp_path / "out" / "_SUCCESS").exists()


# --- a full disk --------------------------------------------------------------------------

FULL_DISK = textwrap.dedent('''
    import json, resource, signal, sys
    import datamill as dm

    src, out, work, limit, fmt = sys.argv[1:6]
    if src.endswith(".parquet"):
        ds = dm.Dataset.read(src, rows_per_partition=100)
    else:
        ds = dm.Dataset.read(src, block_size=6_000, materialize=True)  # a workdir copy
    ds = ds.write(out, format=fmt, target_file_size=20_000)
    limit = int(limit)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        ds.run(work, workers=1, progress=False)
    except dm.StorageError as exc:
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        sys.exit(3)
''')


def _full_disk_input(tmp_path: Path, kind: str) -> Path:
    """Rows of ~300 bytes (~30 KB per 100 rows), and a last row too big for the limit."""
    import random

    rng = random.Random(0)
    rows = [{"n": i, "text": "".join(rng.choice("abcdefghij") for _ in range(300))}
            for i in range(500)]
    rows[499]["text"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                for _ in range(150_000))
    if kind == "parquet":
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    else:
        path = _write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.name.startswith("part-")}


@pytest.mark.parametrize("kind, fmt, failing", [
    ("parquet", "jsonl", "out"),    # the sink's file hits the limit
    ("jsonl", "parquet", "work"),   # the workdir's copy of the JSONL input hits it
])
def test_full_disk_fails_cleanly_and_rerun_completes(tmp_path, kind, fmt, failing):
    src = _full_disk_input(tmp_path, kind)
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)

    def run(name: str, limit: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(src), str(tmp_path / name /
                               "out"), str(tmp_path / name / "work"), str(limit), fmt],
                              capture_output=True, timeout=120)

    clean = run("clean", 0)
    assert clean.returncode == 0, clean.stderr.decode()[-2000:]
    expected = _snapshot(tmp_path / "clean" / "out")

    failed = run("full", 100_000)
    assert failed.returncode == 3, failed.stderr.decode()[-3000:]
    report = json.loads(failed.stdout.decode().strip().splitlines()[-1])
    assert report["type"] == "StorageError"
    assert re.search(r"File too large|Errno 27", report["error"]), report
    assert str(tmp_path / "full" / failing) in report["error"]
    if failing == "out":  # partition 4 had committed its first file, then failed
        assert "part-00004-0001.jsonl" in report["error"]

    root = tmp_path / "full"
    # nothing half-written: no temp files, no step record, no success marker
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert not leftovers
    assert not list((root / "work" / "steps").glob("*/_SUCCESS.json"))
    assert not (root / "out" / "_SUCCESS").exists()
    # only committed files in the output: those its partitions' markers list
    markers = sorted((root / "work" / "steps").glob("*/stats-*.json"))
    committed = {o["file"] for m in markers for o in json.loads(m.read_text()).get("outputs", [])}
    assert set(_snapshot(root / "out")) == committed
    # the partitions before the failing one were committed (in each step of the stage)
    done = sorted({int(m.name[6:11]) for m in markers})
    assert len(done) >= 2 and done == list(range(len(done))), done
    assert {name[:10] for name in committed} == {f"part-{p:05d}" for p in done}
    before = {m: m.stat().st_mtime_ns for m in markers}

    time.sleep(0.05)
    again = run("full", 0)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert _snapshot(root / "out") == expected
    assert (root / "out" / "_SUCCESS").exists()
    assert all(m.stat().st_mtime_ns == t for m, t in before.items())  # reused, not redone
