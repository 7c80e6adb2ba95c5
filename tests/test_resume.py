"""A run killed with SIGKILL resumes from its committed partitions, with identical output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq

from .conftest import make_rows, write_jsonl

PIPELINE = textwrap.dedent('''
    import sys, time
    import pyarrow.compute as pc
    import datamill as dm

    def slow_upper(batch):
        time.sleep(float(sys.argv[3]))
        return {"upper": pc.utf8_upper(batch["text"])}

    ds = (dm.Dataset.read(sys.argv[1], block_size=4000)
          .apply("text_length_filter", min_words=2)
          .map(slow_upper, produces={"upper": "string"}, consumes=["text"])
          .drop_duplicates(["text"])
          .write(sys.argv[2] + "/out"))
    ds.run(sys.argv[2] + "/work", workers=2, progress=False)
''')


def _run(script, data, root, delay, wait=True):
    cmd = [sys.executable, str(script), str(data), str(root), str(delay)]
    if wait:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        return None
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _output(root):
    files = sorted((root / "out").glob("*.parquet"))
    return pq.read_table(files).sort_by("text") if files else None


def test_sigkill_then_rerun_resumes_identically(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(1500, seed=3))
    script = tmp_path / "pipe.py"
    script.write_text(PIPELINE)

    _run(script, data, tmp_path / "clean", 0.0)
    expected = _output(tmp_path / "clean")

    killed = tmp_path / "killed"
    proc = _run(script, data, killed, 0.3, wait=False)
    deadline = time.time() + 120
    markers = []
    while time.time() < deadline:
        markers = list((killed / "work" / "steps").glob("*/stats-*.json"))
        if len(markers) >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert markers, "the run committed nothing before it was killed"
    assert not (killed / "out" / "_SUCCESS").exists()
    before = {p: p.stat().st_mtime_ns for p in (killed / "work" / "steps").glob("*/stats-*.json")}

    time.sleep(0.2)
    _run(script, data, killed, 0.0)
    after = _output(killed)
    assert after.equals(expected)
    assert [p for p in killed.rglob("*") if ".tmp-" in p.name] == []  # the kill's temp files
    kept = [p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns == t]
    assert len(kept) >= len(markers) - 2  # committed partitions were reused, not recomputed


def test_worker_killed_mid_run_is_reported_and_resumable(tmp_path):
    import pytest

    import datamill as dm

    data = write_jsonl(tmp_path / "in.jsonl", make_rows(1500, seed=4))
    flag = tmp_path / "kill-once"
    flag.write_text("")

    def fragile(batch):
        if flag.exists() and 600 in batch["n"].to_pylist():
            flag.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"twice": [v * 2 for v in batch["n"].to_pylist()]}

    ds = dm.Dataset.read(data, block_size=4000).map(fragile, produces={"twice": "int64"},
                                                    consumes=["n"])
    with pytest.raises(dm.DatamillError, match="worker process died"):
        ds.run(tmp_path / "w", workers=2, progress=False)
    table = ds.collect(tmp_path / "w", workers=2, progress=False)
    assert table["twice"].to_pylist() == [2 * i for i in range(1500)]
