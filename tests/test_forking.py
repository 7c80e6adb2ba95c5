"""Memory around forking workers: the driver imports nothing for them, pyarrow in a worker
does not import pandas for numpy conversions, and a worker that imports pandas gets pyarrow's
full pandas support. Each case runs in a fresh interpreter (the test process has pandas)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pandas")

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(code: str, tmp_path: Path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_workers_convert_numpy_without_importing_pandas(tmp_path):
    """A two-worker run whose operations hand numpy arrays to pyarrow: pandas is imported
    neither in the driver nor in any worker."""
    result = _run("""
        import json, os, sys
        import numpy as np
        import datamill as dm

        rows = [{"n": i} for i in range(4000)]
        os.makedirs("in")
        for f in range(2):
            with open(f"in/{f}.jsonl", "w") as fh:
                fh.writelines(json.dumps(r) + "\\n" for r in rows)

        @dm.map_operation(consumes={"n": "int64"}, produces={"pid": "int64", "pandas": "bool"})
        def probe(batch):
            n = batch["n"].to_numpy()
            return {"pid": np.full(len(n), os.getpid()),
                    "pandas": np.full(len(n), "pandas" in sys.modules)}

        ds = dm.Dataset.read("in", block_size=20_000).apply(probe)
        t = ds.collect("work", workers=2, progress=False)
        print(json.dumps({"pids": len(set(t["pid"].to_pylist()) - {os.getpid()}),
                          "pandas_in_workers": any(t["pandas"].to_pylist()),
                          "rows": t.num_rows}))
    """, tmp_path)
    assert result["rows"] == 8000
    # the operation ran in forked workers (one may take both units: they start from the
    # driver's modules and finish fast)
    assert result["pids"] >= 1
    assert result["pandas_in_workers"] is False


def test_workers_read_step_files_without_pyarrow_dataset(tmp_path):
    """Workers read the step files of earlier steps (a shuffle's buckets, a global step's
    output) without importing pyarrow.dataset, which every forked worker would pay again."""
    result = _run("""
        import json, os, sys
        import numpy as np
        import datamill as dm

        os.makedirs("in")
        for f in range(2):
            with open(f"in/{f}.jsonl", "w") as fh:
                fh.writelines(json.dumps({"n": i}) + "\\n" for i in range(4000))

        @dm.map_operation(consumes={"n": "int64"}, produces={"pid": "int64", "ds": "bool"})
        def probe(batch):
            n = batch["n"].to_numpy()
            return {"pid": np.full(len(n), os.getpid()),
                    "ds": np.full(len(n), "pyarrow.dataset" in sys.modules)}

        ds = dm.Dataset.read("in", block_size=20_000).drop_duplicates(["n"]).apply(probe)
        t = ds.collect("work", workers=2, progress=False)
        print(json.dumps({"pids": len(set(t["pid"].to_pylist()) - {os.getpid()}),
                          "dataset_in_workers": any(t["ds"].to_pylist()),
                          "rows": t.num_rows}))
    """, tmp_path)
    assert result["rows"] == 4000
    assert result["pids"] >= 1  # forked workers (one may take both units on a busy machine)
    assert result["dataset_in_workers"] is False


def test_workers_inherit_the_modules_every_worker_imports(tmp_path):
    """pyarrow.parquet and pyarrow.compute are imported once, in the driver, before the fork:
    a worker's module is the driver's own object (same address), not a fresh import."""
    result = _run("""
        import json, os, sys
        import numpy as np
        import datamill as dm

        os.makedirs("in")
        for f in range(2):
            with open(f"in/{f}.jsonl", "w") as fh:
                fh.writelines(json.dumps({"n": i}) + "\\n" for i in range(4000))

        @dm.map_operation(consumes={"n": "int64"}, produces={"pid": "int64", "pq": "int64",
                                                               "pc": "int64"})
        def probe(batch):
            n = batch["n"].to_numpy()
            return {"pid": np.full(len(n), os.getpid()),
                    "pq": np.full(len(n), id(sys.modules["pyarrow.parquet"])),
                    "pc": np.full(len(n), id(sys.modules["pyarrow.compute"]))}

        t = dm.Dataset.read("in", block_size=20_000).apply(probe).collect(
            "work", workers=2, progress=False)
        print(json.dumps({"pids": len(set(t["pid"].to_pylist()) - {os.getpid()}),
                          "pq": set(t["pq"].to_pylist()) == {id(sys.modules["pyarrow.parquet"])},
                          "pc": set(t["pc"].to_pylist()) == {id(sys.modules["pyarrow.compute"])}}))
    """, tmp_path)
    assert result["pids"] >= 1  # forked workers (one may take both units on a busy machine)
    assert result["pq"] is True and result["pc"] is True


def test_pandas_imported_later_is_fully_supported(tmp_path):
    """After pyarrow settled its pandas check with pandas hidden, importing pandas restores
    pandas conversions (nulls from NaN, DataFrames) before the importer uses it."""
    result = _run("""
        import json, sys
        import numpy as np
        import pyarrow as pa
        from datamill.executors.forking import pyarrow_without_pandas

        hidden = pyarrow_without_pandas()
        pa.array(np.arange(3))
        before = "pandas" in sys.modules
        import pandas as pd

        s = pa.array(pd.Series([1.0, None, 3.0]), from_pandas=True)
        t = pa.table(pd.DataFrame({"x": [1, 2]}))
        print(json.dumps({"hidden": hidden, "before": before, "nulls": s.null_count,
                          "rows": t.num_rows, "again": pyarrow_without_pandas()}))
    """, tmp_path)
    assert result == {"hidden": True, "before": False, "nulls": 1, "rows": 2, "again": False}


def test_pandas_batches_in_workers(tmp_path):
    """An operation with batch_format='pandas' in a worker: to_pandas imports pandas there."""
    result = _run("""
        import json, os
        import datamill as dm
        from datamill import MapOperation

        os.makedirs("in")
        for f in range(2):
            with open(f"in/{f}.jsonl", "w") as fh:
                fh.writelines(json.dumps({"n": i, "x": None if i % 3 else 1.5}) + "\\n"
                              for i in range(3000))

        class Double(MapOperation):
            name = "double"
            consumes = {"x": "float64"}
            produces = {"y": "float64"}
            batch_format = "pandas"

            def process(self, df):
                return {"y": df["x"] * 2}

        ds = dm.Dataset.read("in", block_size=20_000).apply(Double())
        t = ds.collect("work", workers=2, progress=False)
        ys = t["y"].to_pylist()
        print(json.dumps({"rows": t.num_rows, "nulls": t["y"].null_count,
                          "three": sum(1 for y in ys if y == 3.0)}))
    """, tmp_path)
    assert result == {"rows": 6000, "nulls": 4000, "three": 2000}


def test_workers_run_torch_after_the_driver_did(tmp_path):
    """GNU OpenMP is not fork-safe: a worker forked after the driver ran a parallel torch op
    hung or crashed in libgomp at its first one ('a worker process died')."""
    pytest.importorskip("torch")
    out = _run("""
        import json, sys
        import pyarrow as pa, pyarrow.parquet as pq, torch
        import datamill as dm
        from datamill import map_operation

        @map_operation(consumes={"n": "int64"},
                       produces={"total": "float64", "threads": "int64"})
        def torch_work(batch):
            a = torch.ones(600, 600)
            total = float((a @ a).sum())  # a parallel region in the worker
            return {"total": [total] * batch.num_rows,
                    "threads": [torch.get_num_threads()] * batch.num_rows}

        torch.set_num_threads(2)
        a = torch.randn(1500, 1500)
        (a @ a).sum()  # the driver starts OpenMP's thread pool
        for part in range(4):
            pq.write_table(pa.table({"n": list(range(part * 10, part * 10 + 10))}),
                           f"in-{part}.parquet")
        out = dm.Dataset.read("in-*.parquet").apply(torch_work).collect(
            "work", workers=2, progress=False)
        print(json.dumps({"rows": out.num_rows, "totals": sorted(set(out["total"].to_pylist())),
                          "threads": sorted(set(out["threads"].to_pylist()))}))
    """, tmp_path)
    assert out == {"rows": 40, "totals": [600.0 ** 3], "threads": [1]}
