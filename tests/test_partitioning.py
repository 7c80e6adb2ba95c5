"""Parallel inside one file: a source is cut into at least 2 x workers units when its data
allows (byte ranges, row groups, smaller groups of files); the cut is pinned in the workdir,
so row ids, resumes and caches do not depend on --workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill import MapOperation
from datamill.manifest import load_record
from datamill.reader import PARTITIONING, read_table
from datamill.storage import Workdir

from .conftest import make_rows, write_jsonl

ROWS = 3000  # ~350 KB of JSON Lines: room for many byte ranges of at least 16 KiB


class Rendezvous(MapOperation):
    """Length of `text`; each unit first waits (up to 60 s) until two worker processes have
    shown up in `folder`, so that the test knows both workers took units."""

    name = "test_rendezvous"
    consumes = {"{column}": "string"}
    produces = {"chars": "int64"}

    class Args(dm.Arguments):
        folder: str
        column: str = "text"

    def process(self, batch):
        folder = Path(self.args.folder)
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"chars": [len(t) for t in batch[self.args.column].to_pylist()]}


def _source(result) -> dict:
    return next(s for s in result.steps if s["kind"] == "source")


def _partitions(workdir: Path, step) -> dict:
    """Per-partition stats from the step's record in `workdir`."""
    return load_record(Workdir(workdir), step)["partitions"]


def test_one_file_is_cut_for_every_worker(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "one.jsonl", make_rows(ROWS))
    (tmp_path / "pids").mkdir()
    ds = dm.Dataset.read(data).apply(Rendezvous, folder=str(tmp_path / "pids"))
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    assert _source(result)["partition_count"] >= 4  # 2 x workers
    parts = _partitions(tmp_path / "w", ds.step)
    assert len(parts) >= 4
    assert len({p["worker"] for p in parts.values()}) == 2  # both workers ran units
    assert sum(p["rows_in"] for p in parts.values()) == ROWS
    assert len(result.step("test_rendezvous")["workers"]) == 2  # in the manifest too
    out = subprocess.run([sys.executable, "-m", "datamill.cli", "inspect", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=120).stdout
    units = result.step("test_rendezvous")["units"]
    assert f"read_jsonl -> test_rendezvous: {units} partitions run by 2 worker processes" in out
    assert max(map(len, out.splitlines())) <= 100

    one = dm.Dataset.read(data).apply(Rendezvous, folder=str(tmp_path / "pids"))
    single = one.run(tmp_path / "w1", workers=1, progress=False)
    assert _source(single)["partition_count"] == 1  # one worker: the file stays whole
    same = [ds.collect(tmp_path / "w", workers=2, progress=False),
            one.collect(tmp_path / "w1", workers=1, progress=False)]
    assert same[0].equals(same[1])  # same rows, same order
    ids = [read_table(Workdir(tmp_path / w), d.step, ["_id"]) for w, d in (("w", ds), ("w1", one))]
    assert ids[0].equals(ids[1])


def test_row_ids_do_not_depend_on_the_cut(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "one.jsonl", make_rows(ROWS))
    tables = []
    for workers in (1, 3):
        ds = dm.Dataset.read(data).apply("text_length_filter", min_words=5)
        sink = ds.write(str(tmp_path / f"out{workers}"), format="jsonl")
        result = sink.run(tmp_path / f"w{workers}", workers=workers, progress=False)
        assert _source(result)["partition_count"] == 1 if workers == 1 else \
            _source(result)["partition_count"] >= 6
        tables.append(read_table(Workdir(tmp_path / f"w{workers}"), ds.step, ["_id", "text"]))
    assert tables[0].equals(tables[1])
    assert [r["_id"] for r in dm.dropped_rows(tmp_path / "w1").to_pylist()] == \
        [r["_id"] for r in dm.dropped_rows(tmp_path / "w3").to_pylist()]


def test_the_cut_is_pinned_across_worker_counts(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "one.jsonl", make_rows(ROWS))
    base = dm.Dataset.read(data).apply("text_length_filter", min_words=5)
    first = base.run(tmp_path / "w", workers=2, progress=False)
    cut = _source(first)["partition_count"]
    assert cut >= 4
    again = base.run(tmp_path / "w", workers=4, progress=False)  # cached: nothing recut
    assert again.cached == {s.key for s in base.steps}
    longer = base.apply("text_length_filter", min_words=8, step_name="longer")
    more = longer.run(tmp_path / "w", workers=4, progress=False)  # a new step: same cut
    assert len(_partitions(tmp_path / "w", longer.step)) == cut
    assert longer.collect(tmp_path / "w", workers=3, progress=False).equals(
        longer.collect(tmp_path / "fresh", workers=1, progress=False))

    # a workdir written before cuts were pinned keeps the partitioning it was written with
    old = tmp_path / "old"
    base.run(old, workers=1, progress=False)
    pins = list(old.glob(f"steps/*/{PARTITIONING}"))
    assert len(pins) == 1
    pins[0].unlink()
    resumed = base.run(old, workers=2, progress=False)
    assert resumed.cached == {s.key for s in base.steps}
    assert _source(resumed)["partition_count"] == 1
    assert longer.run(old, workers=2, progress=False).step("longer")["rows_in"] == \
        more.step("longer")["rows_in"]


def test_parquet_row_groups_and_text_files_are_cut_too(tmp_path: Path) -> None:
    rows = make_rows(1200)
    table = pa.table({"text": [r["text"] for r in rows], "n": [r["n"] for r in rows]})
    pq.write_table(table, tmp_path / "one.parquet", row_group_size=100)  # 12 row groups
    ds = dm.Dataset.read(tmp_path / "one.parquet")
    result = ds.run(tmp_path / "w", workers=3, progress=False)
    assert _source(result)["partition_count"] >= 6
    assert ds.collect(tmp_path / "w", workers=3, progress=False).column("n").to_pylist() == \
        list(range(1200))

    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(10):
        (folder / f"doc{i}.txt").write_text(f"document {i} " * 50)
    texts = dm.Dataset.read(folder)
    result = texts.run(tmp_path / "wt", workers=2, progress=False)
    assert _source(result)["partition_count"] >= 4
    assert texts.collect(tmp_path / "wt", workers=2, progress=False).column("path").to_pylist() \
        == [f"doc{i}.txt" for i in range(10)]


@pytest.mark.parametrize("workers", [2, 8])
def test_a_small_file_is_not_cut_into_slivers(tmp_path: Path, workers: int) -> None:
    data = write_jsonl(tmp_path / "small.jsonl", make_rows(120))  # ~14 KB: under 16 KiB
    result = dm.Dataset.read(data).run(tmp_path / "w", workers=workers, progress=False)
    assert _source(result)["partition_count"] == 1


class Logged(MapOperation):
    """Copies `n`; appends the first `n` of each batch it sees to a log file."""

    name = "test_partitioning_logged"
    consumes = {"n": "int64"}
    produces = {"m": "int64"}

    class Args(dm.Arguments):
        log: str

    def process(self, batch):
        with open(self.args.log, "a") as fh:
            fh.write(f"{batch['n'][0].as_py()}\n")
        return {"m": batch["n"]}


def test_a_changed_file_leaves_the_cut_of_the_others_alone(tmp_path: Path) -> None:
    """Cuts are powers of two: editing one file keeps the other file's byte ranges, so its
    committed partitions are kept (adopted) instead of computed again."""
    folder = tmp_path / "in"
    write_jsonl(folder / "a.jsonl", [{"n": i, "text": "x" * 40} for i in range(2000)])
    write_jsonl(folder / "b.jsonl", [{"n": 10_000 + i, "text": "y" * 40} for i in range(2000)])
    log = tmp_path / "log"
    ds = dm.Dataset.read(folder).apply(Logged, log=str(log))
    first = ds.run(tmp_path / "w", workers=2, progress=False)
    assert _source(first)["partition_count"] >= 4
    log.unlink()
    with open(folder / "b.jsonl", "a") as fh:
        fh.write('{"n": 99999, "text": "z"}\n')
    changed = dm.Dataset.read(folder).apply(Logged, log=str(log))
    second = changed.run(tmp_path / "w", workers=2, progress=False)
    assert _source(second)["partition_count"] == _source(first)["partition_count"]
    assert second.step("test_partitioning_logged")["rows_out"] == 4001
    recomputed = [int(x) for x in log.read_text().split()]
    assert recomputed and all(n >= 10_000 for n in recomputed)  # file a was not read again


def test_the_rag_example_keeps_both_workers_busy(tmp_path: Path) -> None:
    """The RAG example reads one JSON Lines file; its chunks reach both workers."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "python_docs_rag.py"
    spec = importlib.util.spec_from_file_location("python_docs_rag_partitions", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    corpus = example.python_docs(tmp_path / "docs.jsonl", limit=150)
    (tmp_path / "pids").mkdir()
    ds = (dm.Dataset.read(corpus).apply("chunk_text", size=512, overlap=64)
          .apply(Rendezvous, folder=str(tmp_path / "pids"), column="chunk"))
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    assert _source(result)["partition_count"] >= 4
    parts = _partitions(tmp_path / "w", ds.step)
    assert len({p["worker"] for p in parts.values()}) == 2
    assert sum(p["rows_in"] for p in parts.values()) == result.step("chunk_text")["rows_out"]
