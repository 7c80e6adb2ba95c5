"""Where the Ray executor runs an operation's units: actor pools for operations that load in
`setup()`, resource requests and concurrency, and a worker process killed mid-task."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest

import datamill as dm
from datamill import Arguments, Field, MapOperation, Resources
from datamill.reader import read_table

from .conftest import make_rows, write_jsonl

PARTITIONS = 6


class FolderArgs(Arguments):
    folder: str = Field(description="Where the operation leaves files the test counts.")


class LoadsOnce(MapOperation):
    """Records each `setup()` (a model load) as a file named after the worker's pid."""

    name = "test_ray_loads_once"
    Args = FolderArgs
    consumes = {"n": "int64"}
    produces = {"pid": "int64"}

    def setup(self) -> None:
        (Path(self.args.folder) / f"setup-{os.getpid()}-{uuid.uuid4().hex}").write_text("")

    def process(self, batch):
        return {"pid": [os.getpid()] * batch.num_rows}


class HalfCpu(MapOperation):
    """Records the interval of each call, to measure how many ran at once."""

    name = "test_ray_half_cpu"
    Args = FolderArgs
    resources = Resources(cpus=0.5, concurrency=2)
    consumes = {"n": "int64"}
    produces = {"triple": "int64"}

    def process(self, batch):
        start = time.time()
        time.sleep(0.4)
        Path(self.args.folder, uuid.uuid4().hex).write_text(f"{start} {time.time()}")
        return {"triple": pc.multiply(batch["n"], 3)}


class DiesOnce(MapOperation):
    """Kills its own worker process the first time it sees a partition (a marker file per
    partition says it has); the retried unit then succeeds."""

    name = "test_ray_dies_once"
    Args = FolderArgs
    consumes = {"n": "int64"}
    produces = {"twice": "int64"}

    def process(self, batch):
        marker = Path(self.args.folder) / f"seen-{batch['n'][0].as_py()}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"twice": pc.multiply(batch["n"], 2)}


class DiesOnceInActor(DiesOnce):
    """The same, in an actor pool (it has a `setup()`): the actor is restarted."""

    name = "test_ray_dies_once_in_actor"

    def setup(self) -> None:
        self.loaded = True


def _input(tmp_path: Path, partitions: int = PARTITIONS) -> tuple[Path, int]:
    """300 rows, and the JSONL block size that cuts them into `partitions` units."""
    path = write_jsonl(tmp_path / "in.jsonl", make_rows(300, seed=5))
    return path, path.stat().st_size // partitions + 1


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_setup_runs_once_per_actor(tmp_path, ray_cluster):
    data, block = _input(tmp_path)
    folder = _folder(tmp_path, "setups")
    ds = dm.Dataset.read(data, block_size=block).apply(LoadsOnce, folder=str(folder))
    table = ds.collect(tmp_path / "w", executor="ray", address=ray_cluster.address,
                       workers=2, progress=False)
    setups = [f.name.split("-")[1] for f in folder.iterdir()]
    assert len(table) == 300
    # at most one load per actor of the pool (workers=2), never one per partition
    assert 0 < len(setups) <= 2 < PARTITIONS
    assert len(set(setups)) == len(setups)  # no actor loaded twice
    assert {str(p) for p in table["pid"].to_pylist()} <= set(setups)
    assert os.getpid() not in table["pid"].to_pylist()


def test_declared_resources_and_concurrency(tmp_path, ray_cluster):
    data, block = _input(tmp_path)
    folder = _folder(tmp_path, "calls")
    ds = dm.Dataset.read(data, block_size=block).apply(HalfCpu, folder=str(folder))
    table = ds.collect(tmp_path / "w", columns=["n", "triple"], executor="ray",
                       address=ray_cluster.address, progress=False)
    assert table["triple"].to_pylist() == [3 * n for n in table["n"].to_pylist()]
    assert sorted(table["n"].to_pylist()) == list(range(300))
    calls = [tuple(map(float, f.read_text().split())) for f in folder.iterdir()]
    assert len(calls) == PARTITIONS
    # 4 half-CPU slots on the cluster, but the operation asks for at most 2 calls at once
    overlap = max(sum(s <= t < e for s, e in calls) for t, _ in calls)
    assert 1 <= overlap <= 2


@pytest.mark.parametrize("op", [DiesOnce, DiesOnceInActor], ids=["task", "actor"])
def test_a_killed_worker_is_retried_and_the_output_is_unchanged(tmp_path, ray_cluster, op):
    data, block = _input(tmp_path, partitions=4)
    folder = _folder(tmp_path, "markers")
    ds = dm.Dataset.read(data, block_size=block).apply(op, folder=str(folder))
    # one worker: a pool of one actor, which must survive a death per partition (4 > the
    # executor's 3 retries, which are per unit, not per actor)
    result = ds.run(tmp_path / "ray", executor="ray", address=ray_cluster.address, workers=1,
                    progress=False)
    killed = sorted(int(f.read_text()) for f in folder.iterdir())
    assert len(killed) == 4  # every partition's first attempt died
    assert result.step(op.name)["rows_out"] == 300 and result.step(op.name)["errors"] == 0

    # the markers are all there now: the same pipeline runs undisturbed, locally
    undisturbed = ds.collect(tmp_path / "local", columns=["_id", "n", "twice"], workers=2,
                             progress=False)
    assert read_table(tmp_path / "ray", ds.step, ["_id", "n", "twice"]).equals(undisturbed)
    assert undisturbed["twice"].to_pylist() == [2 * n for n in range(300)]


class WaitsToBeSeen(MapOperation):
    """Copies `n`, 10 rows per call. After its first call it waits (up to 60 s) for the file
    `seen`, which the driver's log writes once a heartbeat shows rows of an unfinished unit."""

    name = "test_ray_waits_to_be_seen"
    Args = FolderArgs
    consumes = {"n": "int64"}
    produces = {"copy": "int64"}
    batch_size = 10

    def process(self, batch):
        seen = Path(self.args.folder) / "seen"
        deadline = time.monotonic() + 60
        if batch["n"][0].as_py() > 0:
            while not seen.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return {"copy": batch["n"]}


def test_rows_reach_the_heartbeat_while_a_unit_runs(tmp_path, ray_cluster, monkeypatch):
    """Ray units report rows batch by batch too (a counter actor the driver reads)."""
    import re

    from datamill.executors import progress as progress_module

    monkeypatch.setattr(progress_module, "HEARTBEAT_SECONDS", 0.05)
    write_jsonl(tmp_path / "one.jsonl", [{"n": i} for i in range(200)])  # one partition
    midway: list[str] = []

    def log(line: str) -> None:
        found = re.search(r"test_ray_waits_to_be_seen (\d+)", line)
        if line.startswith("datamill: ... ") and " 0/1 partition" in line and found \
                and 0 < int(found.group(1)) < 200:
            midway.append(line)
            (tmp_path / "seen").touch()

    ds = dm.Dataset.read(tmp_path / "one.jsonl").apply(WaitsToBeSeen, folder=str(tmp_path))
    result = ds.run(tmp_path / "w", executor="ray", address=ray_cluster.address,
                    progress=False, log=log)
    assert midway  # a heartbeat saw the unit half way (else the op waited out its 60 s)
    assert result.step("test_ray_waits_to_be_seen")["rows_out"] == 200
