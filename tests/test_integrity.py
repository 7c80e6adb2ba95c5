"""A workdir that stays clean and checks itself: temp files of killed runs removed on resume,
one writer per output folder, checksums checked when a cached file is read, `datamill
verify`."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.cli import main
from datamill.storage import Workdir

from .conftest import make_rows, write_jsonl

# The run kills itself (SIGKILL, as `kill -9` would) in the middle of a partition, once
# its flag file exists: small parse chunks give each partition several batches, so the
# partition's temp files (workdir and output folder) are open when it dies.
KILLED = textwrap.dedent('''
    import os, signal, sys
    import datamill as dm
    import datamill.io.jsonl

    assert hasattr(datamill.io.jsonl, "PARSE_CHUNK")  # the reader's chunk size, made small:
    datamill.io.jsonl.PARSE_CHUNK = 2048
    calls = []

    def twice(batch):
        calls.append(1)
        if len(calls) == 12 and os.path.exists(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
        values = batch["n"].to_pylist()  # padded: each batch outgrows the writer's gathering
        return {"twice": [2 * v for v in values], "pad": ["x" * 70_000 for _ in values]}

    ds = (dm.Dataset.read(sys.argv[1], block_size=20_000)
          .map(twice, produces={"twice": "int64", "pad": "string"}, consumes=["n"])
          .write(sys.argv[2] + "/out"))
    ds.run(sys.argv[2] + "/work", workers=1, progress=False)
''')

# A run that holds its output folder while the file `argv[4]` exists.
HOLDING = textwrap.dedent('''
    import os, sys, time
    import datamill as dm

    def held(batch):
        while os.path.exists(sys.argv[4]):
            time.sleep(0.05)
        return {"twice": [2 * v for v in batch["n"].to_pylist()]}

    ds = (dm.Dataset.read(sys.argv[1], block_size=20_000)
          .map(held, produces={"twice": "int64"}, consumes=["n"])
          .write(sys.argv[3]))
    ds.run(sys.argv[2], workers=2, progress=False)
''')


def temp_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if ".tmp-" in p.name]


def output(folder: Path):
    return pq.read_table(sorted(folder.glob("*.parquet"))).sort_by("n")


def doubled(ds: dm.Dataset) -> dm.Dataset:
    return ds.map(lambda b: {"twice": [2 * v for v in b["n"].to_pylist()]},
                  produces={"twice": "int64"}, consumes=["n"])


def flip_bytes(path: Path) -> None:
    """Change bytes in the middle of the file, keeping its size (as bit rot would)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2 - 4, len(data) // 2 + 4):
        data[i] ^= 0xFF
    size = len(data)
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def step_folder(workdir: Path, name: str) -> Path:
    for record in (workdir / "steps").glob("*/_SUCCESS.json"):
        if json.loads(record.read_text())["name"] == name:
            return record.parent
    raise AssertionError(f"no step {name!r} in {workdir}")


def marker_times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("stats-*.json")}


# --- temp files of killed runs ------------------------------------------------------------
def test_resume_after_kill_leaves_no_temp_file(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(1500, seed=5))
    script, flag = tmp_path / "pipe.py", tmp_path / "kill"
    script.write_text(KILLED)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run = [sys.executable, str(script), str(data)]
    subprocess.run([*run, str(clean), str(flag)], check=True, capture_output=True, timeout=300)

    flag.write_text("")
    proc = subprocess.run([*run, str(killed), str(flag)], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    committed = list((killed / "work" / "steps").glob("*/stats-*.json"))
    assert committed, "the run committed nothing before it died"
    left = temp_files(killed / "work"), temp_files(killed / "out")
    assert left[0] and left[1], "the kill should leave temp files in workdir and output"

    flag.unlink()
    subprocess.run([*run, str(killed), str(flag)], check=True, capture_output=True, timeout=300)
    assert temp_files(killed) == []
    assert output(killed / "out").equals(output(clean / "out"))


def test_verify_removes_temp_files_of_killed_runs(tmp_path: Path, capsys) -> None:
    doubled(dm.Dataset.read(write_jsonl(tmp_path / "in.jsonl", make_rows(50)))).run(
        tmp_path / "w", progress=False)
    folder = next((tmp_path / "w" / "steps").iterdir())
    stale = [folder / ".part-00000.parquet.tmp-99-0123abcd",
             folder / ".part-00001.parquet.adopt-99"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    assert main(["verify", str(tmp_path / "w")]) == 0
    assert "removed 2 temp files" in capsys.readouterr().out
    assert not any(path.exists() for path in stale)


def test_temp_file_cleanup_never_walks_the_response_cache(tmp_path: Path, monkeypatch) -> None:
    """The LLM response cache (many small files, fanned out) stages its temp files in
    llm-cache/.staging: the cleanup empties that folder and visits none of the cache's
    folders, however many replies it holds; temp files beside step files still go."""
    import os

    from datamill.ops.llm.cache import ResponseCache, request_key
    from datamill.storage import STAGING

    work = tmp_path / "w"
    doubled(dm.Dataset.read(write_jsonl(tmp_path / "in.jsonl", make_rows(20)))).run(
        work, progress=False)
    cache = ResponseCache(work / "llm-cache")
    for i in range(300):
        cache.put(request_key({"i": i}), {"text": str(i)})
    assert cache.get(request_key({"i": 7})) == {"text": "7"}
    assert list((work / "llm-cache" / STAGING).iterdir()) == []  # written, nothing left
    killed = [work / "llm-cache" / STAGING / ".ab.json.tmp-99-0123abcd",
              next((work / "steps").iterdir()) / ".part-00000.parquet.tmp-99-0123abcd"]
    for path in killed:
        path.write_bytes(b"x" * 100)
    visited = []
    walk = os.walk

    def counting_walk(top, *args, **kwargs):
        for entry in walk(top, *args, **kwargs):
            visited.append(entry[0])
            yield entry

    monkeypatch.setattr(os, "walk", counting_walk)
    assert Workdir(work).remove_temp_files() == (2, 200)
    assert not any(path.exists() for path in killed)
    assert not [v for v in visited if "llm-cache" in v]
    assert len(visited) < 10  # the root, runs/, steps/ and the step folders


# --- one writer per output folder ---------------------------------------------------------
def _start_holder(tmp_path: Path, workdir: Path, out: Path, hold: Path) -> subprocess.Popen:
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(600, seed=6))
    script = tmp_path / "hold.py"
    script.write_text(HOLDING)
    hold.write_text("")
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(workdir), str(out),
                             str(hold)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer = out / "_datamill_writer.json"
    deadline = time.monotonic() + 120
    while not (writer.exists() and str(workdir) in writer.read_text()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the holding run never claimed its output"
        time.sleep(0.05)
    return proc


def test_second_workdir_writing_the_same_output_is_refused_then_takes_over(
        tmp_path: Path) -> None:
    w1, w2, out, hold = tmp_path / "w1", tmp_path / "w2", tmp_path / "out", tmp_path / "hold"
    first = _start_holder(tmp_path, w1, out, hold)
    ds = doubled(dm.Dataset.read(tmp_path / "in.jsonl", block_size=20_000)).write(out)
    try:
        with pytest.raises(dm.OutputBusyError) as refused:
            ds.run(w2, workers=2, progress=False)
    finally:
        hold.unlink()
        assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    message = str(refused.value)
    assert str(out) in message and str(w1) in message and f"pid {first.pid}" in message
    expected = output(out)  # the first run's output survived the refused one intact
    assert expected.column("twice").to_pylist() == [2 * n for n in range(600)]

    # sequential: the first run finished, so another workdir may rewrite the folder
    second = ds.run(w2, workers=2, progress=False)
    assert json.loads((out / "_datamill_writer.json").read_text())["workdir"] == str(w2)
    assert output(out).equals(expected)
    assert ds.step.key not in second.cached
    # w1's sink step is complete in w1, but the folder is w2's now: w1 rewrites it
    again = ds.run(w1, workers=2, progress=False)
    assert ds.step.key not in again.cached
    assert json.loads((out / "_datamill_writer.json").read_text())["workdir"] == str(w1)
    assert output(out).equals(expected)
    assert ds.step.key in ds.run(w1, workers=2, progress=False).cached


def test_output_of_a_killed_writer_is_taken_over(tmp_path: Path) -> None:
    w1, w2, out, hold = tmp_path / "w1", tmp_path / "w2", tmp_path / "out", tmp_path / "hold"
    first = _start_holder(tmp_path, w1, out, hold)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    ds = doubled(dm.Dataset.read(tmp_path / "in.jsonl", block_size=20_000)).write(out)
    ds.run(w2, workers=2, progress=False)
    assert output(out).column("twice").to_pylist() == [2 * n for n in range(600)]
    assert temp_files(out) == []


def test_output_claim_without_file_locks(tmp_path: Path) -> None:
    """On a filesystem without locks (memory://, object stores), the folder's writer record
    and the writer's workdir lock decide."""
    import fsspec

    out = f"memory://claims-{uuid.uuid4().hex}/out"
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(100))
    ds = doubled(dm.Dataset.read(data)).write(out)
    ds.run(tmp_path / "w1", workers=1, progress=False)
    fs = fsspec.filesystem("memory")
    fs.rm(f"{out}/_SUCCESS")  # as if w1's run had not finished yet
    with Workdir(tmp_path / "w1").lock():  # ... and were still running
        with pytest.raises(dm.OutputBusyError, match=str(tmp_path / "w1")):
            ds.run(tmp_path / "w2", workers=1, progress=False)
    ds.run(tmp_path / "w2", workers=1, progress=False)  # w1's run is gone: taken over
    assert str(tmp_path / "w2") in fs.cat_file(f"{out}/_datamill_writer.json").decode()


# --- checksums, checked when a cached file is read ----------------------------------------
def test_corrupt_cached_file_is_recomputed_with_a_warning(tmp_path: Path, caplog) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(1500, seed=7))
    first = doubled(dm.Dataset.read(data, block_size=20_000))
    first.run(tmp_path / "w", workers=2, progress=False)
    folder = step_folder(tmp_path / "w", "python_map")
    stats = json.loads((folder / "stats-00002.json").read_text())
    assert stats["checksums"]["part-00002.parquet"].startswith(("xxh3:", "blake2b:"))
    flip_bytes(folder / "part-00002.parquet")
    before = marker_times(folder)

    second = first.map(lambda b: {"plus": [v + 1 for v in b["twice"].to_pylist()]},
                       produces={"plus": "int64"}, consumes=["twice"])
    caplog.set_level(logging.WARNING, logger="datamill")
    table = second.collect(tmp_path / "w", workers=2, progress=False)
    assert table.column("plus").to_pylist() == [2 * n + 1 for n in range(1500)]
    warned = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warned) == 1 and "part-00002.parquet" in warned[0]
    assert "partition 2" in warned[0] and "python_map" in warned[0]
    after = marker_times(folder)  # exactly the damaged partition was recomputed
    assert [name for name in before if after[name] != before[name]] == ["stats-00002.json"]
    record = json.loads((folder / "_SUCCESS.json").read_text())
    assert [(r["partition"], Path(r["file"]).name) for r in record["repaired"]] == \
        [(2, "part-00002.parquet")]


def test_corrupt_file_read_back_by_collect_is_recomputed(tmp_path: Path, caplog) -> None:
    ds = doubled(dm.Dataset.read(write_jsonl(tmp_path / "in.jsonl", make_rows(300))))
    expected = ds.collect(tmp_path / "w", workers=1, progress=False)
    flip_bytes(step_folder(tmp_path / "w", "python_map") / "part-00000.parquet")
    caplog.set_level(logging.WARNING, logger="datamill")
    assert ds.collect(tmp_path / "w", workers=1, progress=False).equals(expected)
    assert any("checksum mismatch" in r.getMessage() for r in caplog.records)


def test_corrupt_file_of_another_workdir_read_as_source_is_reported(tmp_path: Path) -> None:
    doubled(dm.Dataset.read(write_jsonl(tmp_path / "in.jsonl", make_rows(300)))).run(
        tmp_path / "w", progress=False)
    flip_bytes(step_folder(tmp_path / "w", "python_map") / "part-00000.parquet")
    with pytest.raises(dm.CorruptFileError, match="datamill verify"):
        dm.Dataset.read(tmp_path / "w").collect(tmp_path / "other", progress=False)


# --- datamill verify ----------------------------------------------------------------------
def test_verify_reports_marks_and_the_next_run_recomputes_exactly_those(
        tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(1500, seed=8))
    wd, out = tmp_path / "w", tmp_path / "out"
    ds = (doubled(dm.Dataset.read(data, block_size=20_000))
          .apply("text_length_filter", min_words=3).write(out))
    ds.run(wd, workers=2, progress=False)
    expected = output(out)
    assert main(["verify", str(wd)]) == 0
    assert "intact" in capsys.readouterr().out

    mapped, filtered = step_folder(wd, "python_map"), step_folder(wd, "text_length_filter")
    flip_bytes(mapped / "part-00001.parquet")
    (filtered / "dropped-00003.parquet").unlink()
    flip_bytes(sorted(out.glob("part-00005-*.parquet"))[0])
    before = {f: marker_times(f) for f in (mapped, filtered)}

    assert main(["verify", str(wd), "--dry-run"]) == 1
    capsys.readouterr()
    assert main(["verify", str(wd), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["damaged"]
    assert sorted((d["step"], d["partition"], Path(d["file"]).name, d["problem"][:8])
                  for d in found) == [
        ("python_map", 1, "part-00001.parquet", "checksum"),
        ("text_length_filter", 3, "dropped-00003.parquet", "missing"),
        ("write_parquet", 5, "part-00005-0000.parquet", "checksum")]
    assert main(["verify", str(wd)]) == 0  # marked: nothing committed is damaged now
    assert "3 damaged files found earlier await recompute" in capsys.readouterr().out

    ds.run(wd, workers=2, progress=False)
    # a partition resumes from its first damaged step: the steps before it keep theirs
    recomputed = {mapped: {"stats-00001.json"},
                  filtered: {"stats-00001.json", "stats-00003.json"}}
    for folder, times in before.items():
        after = marker_times(folder)
        assert {n for n in times if after[n] != times[n]} == recomputed[folder]
    assert output(out).equals(expected)
    assert main(["verify", str(wd)]) == 0
    assert "await" not in capsys.readouterr().out


def test_verify_of_a_folder_that_is_no_workdir(tmp_path: Path, capsys) -> None:
    assert main(["verify", str(tmp_path)]) == 1
    assert "is not a datamill workdir" in capsys.readouterr().err


def test_inspect_of_a_damaged_dropped_file_names_it(tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(300))
    dm.Dataset.read(data).apply("text_length_filter", min_words=5).run(tmp_path / "w",
                                                                        progress=False)
    flip_bytes(step_folder(tmp_path / "w", "text_length_filter") / "dropped-00000.parquet")
    assert main(["inspect", str(tmp_path / "w"), "--dropped"]) == 1
    err = capsys.readouterr().err
    assert "dropped-00000.parquet is damaged (checksum mismatch" in err
    assert "datamill verify" in err


def test_two_sinks_of_one_run_writing_one_folder_are_refused(tmp_path: Path) -> None:
    from datamill.running import run

    base = dm.Dataset.read(write_jsonl(tmp_path / "in.jsonl", make_rows(50)))
    with pytest.raises(dm.OutputBusyError, match="two sinks of this run"):
        run([base.write(tmp_path / "out"), doubled(base).write(tmp_path / "out")],
            tmp_path / "w", workers=1, progress=False)


def test_verify_finds_an_output_written_to_a_relative_path(tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", make_rows(50))
    dm.Dataset.read("in.jsonl").write("out/").run("w", progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["verify", str(tmp_path / "w")]) == 0
    flip_bytes(next((tmp_path / "out").glob("part-*.parquet")))
    assert main(["verify", str(tmp_path / "w"), "--dry-run"]) == 1
    assert str(tmp_path / "out" / "part-00000-0000.parquet") in capsys.readouterr().out


def test_step_files_gather_small_batches_into_few_row_groups(tmp_path) -> None:
    """A step file's small batches become one row group (they cost ~0.6 ms each); a batch
    of more than PENDING_BYTES is written at once; the rows and their order are kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datamill.storage import StreamingParquetWriter

    schema = pa.schema([("_index", pa.int64()), ("s", pa.string())])
    writer = StreamingParquetWriter(tmp_path / "part.parquet", schema)
    for start in range(0, 1000, 10):  # 100 small batches
        writer.write(pa.table({"_index": pa.array(range(start, start + 10), pa.int64()),
                               "s": pa.array(["x"] * 10)}))
    assert writer._writer is None  # nothing written yet: one row group at the end
    big = "y" * (StreamingParquetWriter.PENDING_BYTES + 1)
    writer.write(pa.table({"_index": pa.array([1000], pa.int64()), "s": pa.array([big])}))
    assert writer._writer is not None  # the large batch went out at once (with the others)
    writer.write(pa.table({"_index": pa.array([1001], pa.int64()), "s": pa.array(["z"])}))
    writer.commit()
    reader = pq.ParquetFile(tmp_path / "part.parquet")
    assert reader.metadata.num_row_groups == 2
    table = reader.read()
    assert table.column("_index").to_pylist() == list(range(1002))
    assert table.column("s").to_pylist()[-3:] == ["x", big, "z"]
