"""A `datamill run --executor ray` driver killed mid-run resumes from its committed
partitions, and its output equals an undisturbed run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from .conftest import make_rows, write_jsonl

ROWS, PARTITIONS, FAST = 240, 6, 2  # partitions 0 and 1 are fast, the others sleep

PIPELINE = textwrap.dedent('''
    """Doubles `n`; leaves one file per call in ROOT/calls; sleeps on the later partitions
    while ROOT/slow exists."""
    import os, time, uuid
    from pathlib import Path

    import pyarrow.compute as pc

    import datamill as dm

    ROOT = Path({root!r})


    class SlowTwiceArgs(dm.Arguments):
        root: str
        fast_below: int


    class SlowTwice(dm.MapOperation):
        """`n` doubled, slowly."""

        name = "test_ray_slow_twice"
        Args = SlowTwiceArgs
        consumes = {{"n": "int64"}}
        produces = {{"twice": "int64"}}

        def process(self, batch):
            root, first = Path(self.args.root), batch["n"][0].as_py()
            (root / "calls" / f"{{first}}-{{uuid.uuid4().hex}}").write_text("")
            if first >= self.args.fast_below and (root / "slow").exists():
                time.sleep(30)
            return {{"twice": pc.multiply(batch["n"], 2)}}


    pipeline = (dm.Dataset.read(str(ROOT / "in.jsonl"), block_size={block})
                .apply(SlowTwice, root=str(ROOT), fast_below={fast_below})
                .write(os.environ.get("DM_TEST_OUT", str(ROOT / "out"))))
''')


def _cli(script: Path, workdir: Path, *extra: str, out: Path | None = None,
         wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "datamill.cli", "run", str(script), "--workdir", str(workdir),
           "--no-progress", *extra]
    env = {**os.environ, **({"DM_TEST_OUT": str(out)} if out else {})}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _map_folder(workdir: Path) -> Path | None:
    """The step folder of SlowTwice: the one whose part files hold `twice`."""
    for part in (workdir / "steps").glob("*/part-*.parquet"):
        if pq.read_schema(part).names == ["twice"]:
            return part.parent
    return None


def _first_n(folder: Path, stats: Path) -> int:
    """The first `n` of a committed partition (its first `twice`, halved)."""
    part = folder / stats.name.replace("stats-", "part-").replace(".json", ".parquet")
    return pq.read_table(part)["twice"][0].as_py() // 2


def _output(out: Path) -> list[dict]:
    return pq.read_table(sorted(out.glob("*.parquet"))).sort_by("n").to_pylist()


def test_killed_driver_resumes_from_committed_partitions(tmp_path, ray_cluster):
    root = tmp_path
    data = write_jsonl(root / "in.jsonl", make_rows(ROWS, seed=9))
    block = data.stat().st_size // PARTITIONS + 1
    (root / "calls").mkdir()
    script = root / "pipe.py"
    script.write_text(PIPELINE.format(root=str(root), block=block,
                                      fast_below=FAST * ROWS // PARTITIONS))
    ray = ("--executor", "ray", "--address", ray_cluster.address)

    (root / "slow").write_text("")
    driver = _cli(script, root / "work", *ray, wait=False)
    deadline = time.monotonic() + 60
    committed: dict[Path, int] = {}
    while time.monotonic() < deadline and driver.poll() is None:
        folder = _map_folder(root / "work")
        stats = sorted(folder.glob("stats-*.json")) if folder else []
        if len(stats) >= FAST:
            committed = {s: s.stat().st_mtime_ns for s in stats}
            break
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(committed) >= FAST, "the driver committed nothing before it was killed"
    assert not (root / "out" / "_datamill_lineage.json").exists()
    firsts = {_first_n(folder, s) for s in committed}

    (root / "slow").unlink()
    rerun = _cli(script, root / "work", *ray)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    calls = Counter(int(f.name.split("-")[0]) for f in (root / "calls").iterdir())
    assert all(calls[first] == 1 for first in firsts), calls  # committed: not recomputed
    assert all(s.stat().st_mtime_ns == t for s, t in committed.items())
    assert set(calls) == {_first_n(folder, s) for s in folder.glob("stats-*.json")}
    assert len(calls) == PARTITIONS

    undisturbed = _cli(script, root / "work-local", out=root / "out-local")
    assert undisturbed.returncode == 0, undisturbed.stderr[-3000:]
    assert _output(root / "out") == _output(root / "out-local")
    assert [r["twice"] for r in _output(root / "out")] == [2 * n for n in range(ROWS)]
