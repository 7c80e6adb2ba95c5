"""Rows a run set aside, with their content: quarantined, dropped, duplicates.

Quarantine files hold whole rows (every column of the step's input). Dropped rows are
recorded by id; their content is found by reading the step's input back from the workdir
(`reader.read_columns` composes the columns stored by earlier steps), a partition at a time,
so memory stays bounded by one partition of the columns asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .manifest import load_manifest
from .storage import Workdir

META = ("_step", "_id", "_error", "_path", "_line", "_raw")


def _last_run_steps(workdir: Workdir, step_name: str | None) -> list[dict]:
    """The step records of the last run, once each (those named `step_name`, if given)."""
    manifest = load_manifest(workdir.root)
    seen: set[str] = set()
    out = []
    for ds in manifest.get("datasets", []):
        for s in ds["steps"]:
            if (step_name and s["name"] != step_name) or s["cache_key"] in seen:
                continue
            seen.add(s["cache_key"])
            out.append(s)
    return out


def quarantined_rows(workdir: str | Path, step_name: str | None = None,
                     columns: list[str] | None = None, limit: int | None = None) -> Any:
    """Rows the last run quarantined (a pyarrow Table): `_step`, `_id`, `_error`, `_path`
    (the input file), `_line` and `_raw` (input a reader could not read), then every column
    of the step's input row (only `columns`, if given). At most `limit` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wd = Workdir(workdir)
    tables: list[Any] = []
    total = 0
    for s in _last_run_steps(wd, step_name):
        for f in sorted(wd.step_dir(s["cache_key"]).glob("quarantine-*.parquet")):
            names = pq.read_schema(f).names
            wanted = [c for c in names if c.startswith("_") or columns is None or c in columns]
            t = pq.read_table(f, columns=wanted)
            if limit is not None:
                t = t.slice(0, max(0, limit - total))
            if t.num_rows:
                tables.append(t.add_column(0, "_step", pa.array([s["name"]] * t.num_rows,
                                                                pa.string())))
                total += t.num_rows
    if not tables:
        return pa.schema([("_step", pa.string()), ("_id", pa.int64()), ("_error", pa.string()),
                          ("_path", pa.string()), ("_line", pa.int64()),
                          ("_raw", pa.binary())]).empty_table()
    return pa.concat_tables(tables, promote_options="default")


def quarantine_count(workdir: str | Path, step_name: str | None = None) -> int:
    """How many rows the last run quarantined (from the files' footers)."""
    import pyarrow.parquet as pq

    wd = Workdir(workdir)
    return sum(pq.read_metadata(f).num_rows for s in _last_run_steps(wd, step_name)
               for f in wd.step_dir(s["cache_key"]).glob("quarantine-*.parquet"))
