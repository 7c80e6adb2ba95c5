"""Progress without a terminal: the heartbeat of a long step (rows done, rows/s, ETA), fed
by rows that workers report batch by batch, inside a unit."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest

import datamill as dm
from datamill import MapOperation
from datamill.executors import progress as progress_module
from datamill.executors.progress import Progress

from .conftest import write_jsonl

ROWS = 240


class SlowDouble(MapOperation):
    """Twice `n`, slowly: 20 rows per call, a few milliseconds each."""

    name = "test_slow_double"
    consumes = {"n": "int64"}
    produces = {"twice": "int64"}
    batch_size = 20

    def process(self, batch):
        time.sleep(0.03)
        return {"twice": [2 * v for v in batch["n"].to_pylist()]}


def beats(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("datamill: ... ")]


def slow_rows(line: str) -> int:
    return int(re.search(r"test_slow_double (\d+)", line).group(1))


@pytest.mark.parametrize("workers", [1, 2])
def test_heartbeat_moves_inside_a_single_unit(tmp_path, monkeypatch, workers: int) -> None:
    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 0.01)
    rows = [{"n": i} for i in range(ROWS)]
    write_jsonl(tmp_path / "a.jsonl", rows[: ROWS // 2])
    write_jsonl(tmp_path / "b.jsonl", rows[ROWS // 2:])
    files = [str(tmp_path / "a.jsonl")] if workers == 1 else \
        [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    log: list[str] = []
    ds = dm.Dataset.read(files).apply(SlowDouble)
    result = ds.run(tmp_path / "w", workers=workers, progress=False, log=log.append)
    total = result.step("test_slow_double")["rows_in"]
    lines = beats(log)
    assert len(lines) >= 3, log  # ~12 calls of 30 ms each against a 10 ms heartbeat
    for line in lines:
        assert "rows done:" in line and "rows/s" in line and "ETA " in line
        assert re.search(r"\d+/\d+ partition\(s\) done", line)
    # rows arrive batch by batch: some beat saw a unit half way, none of it committed yet
    midway = [line for line in lines if " 0/" in line and 0 < slow_rows(line) < total]
    assert midway, lines
    assert [slow_rows(line) for line in lines] == sorted(slow_rows(line) for line in lines)


def test_no_heartbeat_when_quiet(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 0.01)
    quiet = Progress([], mode=False)  # --no-progress: nothing at all
    stage = SimpleNamespace(names=["x"])
    quiet.stage_started(stage, 1)
    assert quiet._beat is None


def test_heartbeat_content_with_a_fake_clock() -> None:
    now = [100.0]
    lines: list[str] = []
    p = Progress([], mode=None, log=lines.append, clock=lambda: now[0])
    p.interactive = False
    stage = SimpleNamespace(names=["read", "embed", "sink"])
    p.stage_started(stage, 4)
    p._stop_heartbeat()  # beats are driven by hand here
    p.expect_rows(None)
    p.rows("read", 500)
    p.rows("embed", 200)
    now[0] += 20
    line = p.heartbeat()
    assert "read -> embed -> sink: 0/4 partition(s) done" in line
    assert "rows done: read 500, embed 200, sink 0" in line
    assert "10 rows/s (embed)" in line and "20s elapsed" in line
    p.rows("sink", 30)
    assert "1.5 rows/s (sink)" in p.heartbeat()
    assert "ETA unknown until a unit completes" in line
    p.unit_done(None, {"read": {"rows_in": 500}})
    now[0] += 20  # one of four units in 40 s: three more take 2 minutes
    assert "1/4 partition(s) done" in p.heartbeat() and "ETA 2m00s" in p.heartbeat()

    p.stage_started(SimpleNamespace(names=["read", "embed"]), 10)  # resumed: 6 committed
    p._stop_heartbeat()
    p.skip(SimpleNamespace(names=["read", "embed"]), 6)
    p.unit_done(None, {})
    now[0] += 30  # one unit in 30 s here: the three left take 90 s, skipped ones cost nothing
    assert "7/10 partition(s) done" in p.heartbeat() and "ETA 1m30s" in p.heartbeat()

    p.stage_started(SimpleNamespace(names=["map"]), 2)  # input rows known: ETA at once
    p._stop_heartbeat()
    p.expect_rows(1000)
    p.rows("map", 250)
    now[0] += 5
    assert "ETA 15s" in p.heartbeat()
