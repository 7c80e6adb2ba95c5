"""Bad input for the Ray executor: an unreachable cluster, resources no node has, and a
workdir the workers cannot see. Each is a clear error, quickly, before any step runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import datamill as dm
from datamill import Arguments, MapOperation, Resources
from datamill.errors import DatamillError, PipelineError

from .conftest import make_rows, write_jsonl
from .ray_cluster import free_port


class MarkerArgs(Arguments):
    marker: str


class NeedsGpu(MapOperation):
    """Asks for a GPU, which the test cluster does not have."""

    name = "test_ray_needs_gpu"
    Args = MarkerArgs
    resources = Resources(gpus=1)
    consumes = {"n": "int64"}
    produces = {"twice": "int64"}

    def process(self, batch):
        Path(self.args.marker).write_text("ran")
        return {"twice": [2 * n for n in batch["n"].to_pylist()]}


class NeedsMemory(NeedsGpu):
    """Asks for a petabyte of memory per worker."""

    name = "test_ray_needs_memory"
    resources = Resources(memory=10**15)


class NeedsCpus(NeedsGpu):
    """Asks for more CPUs than any node has (each has 1)."""

    name = "test_ray_needs_cpus"
    resources = Resources(cpus=4)


def test_unreachable_address_is_refused(tmp_path, docs):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    ds = dm.Dataset.read(docs).apply("text_length_filter", min_words=2)
    with pytest.raises(DatamillError, match=address):  # no hang: the suite's timeout guards
        ds.run(tmp_path / "w", executor="ray", address=address, progress=False)


@pytest.mark.parametrize(("op", "wanted"), [(NeedsGpu, "gpus=1"),
                                             (NeedsMemory, "memory=931,322.6 GiB"),
                                             (NeedsCpus, "cpus=4")], ids=["gpus", "memory", "cpus"])
def test_resources_no_node_has_are_named(tmp_path, docs, ray_cluster, op, wanted):
    marker = tmp_path / "ran"
    ds = dm.Dataset.read(docs).apply(op, marker=str(marker))
    with pytest.raises(PipelineError, match=re.escape(wanted)) as info:
        ds.run(tmp_path / "w", executor="ray", address=ray_cluster.address, progress=False)
    assert op.name in str(info.value)
    assert not marker.exists()
    assert not list((tmp_path / "w").glob("steps/*/stats-*.json"))  # not even the source ran


PIPELINE = textwrap.dedent('''
    import sys
    from pathlib import Path

    import datamill as dm


    def mark(batch):
        Path({marker!r}).write_text("ran")
        return {{"twice": [2 * n for n in batch["n"].to_pylist()]}}


    pipeline = dm.Dataset.read({data!r}).map(mark, produces={{"twice": "int64"}},
                                           consumes=["n"])
''')


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs unshare(1) and root for a private mount namespace")
def test_workdir_the_workers_cannot_see_is_refused_before_the_run(tmp_path, ray_cluster):
    data = write_jsonl(tmp_path / "in.jsonl", make_rows(50))
    marker = tmp_path / "ran"
    script = tmp_path / "pipe.py"
    script.write_text(PIPELINE.format(marker=str(marker), data=str(data)))
    private = tmp_path / "private"  # a tmpfs here, only in the driver's mount namespace
    private.mkdir()
    workdir = private / "work"
    run = (f"mount -t tmpfs none {private} && exec {sys.executable} -m datamill.cli run "
           f"{script} --workdir {workdir} --executor ray --no-progress")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address}  # the address from the env
    proc = subprocess.run(["unshare", "-m", "sh", "-c", run], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode != 0
    message = proc.stderr
    assert str(workdir) in message and "node" in message, message[-3000:]
    assert "Traceback" not in message, message[-3000:]
    assert not marker.exists()
    assert not list(private.iterdir())  # the workers' view: nothing was ever written there
