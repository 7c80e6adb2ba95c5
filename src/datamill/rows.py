"""Rows a run set aside, with their content: quarantined, dropped, duplicates.

Quarantine files hold whole rows (every column of the step's input). Dropped rows are
recorded by id; their content is read back from the step's input in the workdir
(`reader.read_columns` composes the columns that earlier steps stored), one partition at a
time and only the columns asked for, so memory stays bounded by one partition of those.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dataset import ID, Step
from .errors import InputError, SchemaError, did_you_mean
from .integrity import check_step_file
from .manifest import SUCCESS, load_manifest
from .reader import read_columns
from .storage import Workdir, read_json

Columns = list[str] | bool | None  # names, True for every column, None for ids only


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


class _Steps:
    """The last run's steps as `Step`s that can read their rows back, built on demand."""

    def __init__(self, workdir: Workdir):
        self.workdir = workdir
        self._by_key: dict[str, Step] | None = None

    def get(self, key: str) -> Step:
        if self._by_key is None:
            from .io.dataset import ReadWorkdir

            self._by_key = {}
            manifest = load_manifest(self.workdir.root)
            for ds in manifest.get("datasets", []):
                reader = ReadWorkdir(path=str(self.workdir.root), dataset=ds["name"])
                for step in reader.chain():
                    self._by_key.setdefault(step.key, step)
        return self._by_key[key]

    def partition_count(self, step: Step) -> int:
        record = read_json(self.workdir.step_dir(step.chain()[0].key) / SUCCESS) or {}
        return int(record.get("partition_count", 0))


def _visible(step: Step) -> list[str]:
    return [c for c in step.columns if not c.startswith("_")]


def _chosen(step: Step, columns: Columns) -> list[str]:
    """The columns asked for that the rows at `step` have."""
    available = _visible(step)
    if columns is True:
        return available
    return [c for c in columns or [] if c in available]


def _check_known(columns: Columns, steps: list[Step], what: str) -> None:
    """Refuse a column name that none of the steps' rows have."""
    if columns is True or not columns or not steps:
        return
    available = list(dict.fromkeys(c for s in steps for c in _visible(s)))
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise SchemaError(f"no column {unknown[0]!r} in the rows {what}"
                          f"{did_you_mean(unknown[0], available)} "
                          f"(columns: {', '.join(available) or 'none'})")


def _content(workdir: Workdir, step: Step, partition: int, ids: Any, names: list[str]) -> Any:
    """Columns `names` of the rows `ids` (in that order) of `step`'s output, partition
    `partition` (null where a row is not found)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    refs = [step.columns[ID], *(step.columns[c] for c in names)]
    table = read_columns(workdir, step, partition, refs)
    where = pc.index_in(ids, value_set=table.column(0))
    return pa.table({c: table.column(i + 1).take(where) for i, c in enumerate(names)})


def _add_content(workdir: Workdir, step: Step, partition: int, table: Any,
                 columns: Columns) -> Any:
    content = _content(workdir, step, partition, table.column(ID), _chosen(step, columns))
    for c in content.column_names:
        table = table.append_column(c, content.column(c))
    return table


def _dropping(workdir: Workdir, step_name: str | None) -> list[dict]:
    """The last run's steps that dropped rows (a `dropped-*` file)."""
    return [s for s in _last_run_steps(workdir, step_name)
            if any(workdir.step_dir(s["cache_key"]).glob("dropped-*.parquet"))]


def _files(workdir: Workdir, kind: str, step_name: str | None) -> Iterator[tuple[dict, int, Path]]:
    for s in _last_run_steps(workdir, step_name):
        for f in sorted(workdir.step_dir(s["cache_key"]).glob(f"{kind}-*.parquet")):
            partition = int(f.stem.rsplit("-", 1)[1])
            check_step_file(workdir, s["cache_key"], s["name"], partition, f)
            yield s, partition, f


def _with_step(table: Any, name: str) -> Any:
    import pyarrow as pa

    return table.add_column(0, "_step", pa.array([name] * table.num_rows, pa.string()))


def _concat(tables: list[Any], empty: list[tuple[str, Any]]) -> Any:
    import pyarrow as pa

    if not tables:
        return pa.schema(empty).empty_table()
    return pa.concat_tables(tables, promote_options="default")


def quarantined_rows(workdir: str | Path, step_name: str | None = None,
                     columns: Columns = None, limit: int | None = None) -> Any:
    """Rows the last run quarantined (a pyarrow Table): `_step`, `_id`, `_error`, `_path`
    (the input file), `_line` and `_raw` (for input a reader could not read), then every
    column of the step's input row (only `columns`, if a list). At most `limit` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    files = list(_files(wd, "quarantine", step_name))
    if isinstance(columns, list):
        known = {c for _s, _p, f in files for c in pq.read_schema(f).names}
        unknown = [c for c in columns if c not in known]
        if unknown and files:
            available = sorted(c for c in known if not c.startswith("_"))
            raise SchemaError(f"no column {unknown[0]!r} in the quarantined rows"
                              f"{did_you_mean(unknown[0], available)} "
                              f"(columns: {', '.join(available) or 'none'})")
    tables: list[Any] = []
    left = limit
    for s, _p, f in files:
        if left is not None and left <= 0:
            break
        names = pq.read_schema(f).names
        t = pq.read_table(f, columns=[c for c in names if c.startswith("_")
                                      or not isinstance(columns, list) or c in columns])
        t = t.slice(0, left) if left is not None else t
        if t.num_rows:
            tables.append(_with_step(t, s["name"]))
            left = None if left is None else left - t.num_rows
    return _concat(tables, [("_step", pa.string()), ("_id", pa.int64()),
                            ("_error", pa.string()), ("_path", pa.string()),
                            ("_line", pa.int64()), ("_raw", pa.binary())])


def set_aside_count(workdir: str | Path, kind: str, step_name: str | None = None) -> int:
    """How many rows the last run dropped (`kind` "dropped") or quarantined ("quarantine"),
    read from the files' footers."""
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    return sum(pq.read_metadata(f).num_rows for _s, _p, f in _files(wd, kind, step_name))


def steps_with(workdir: str | Path, kind: str, step_name: str | None = None) -> list[str]:
    """The last run's steps (or the one named) that dropped (`kind` "dropped") or
    quarantined ("quarantine") rows."""
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    names = [s["name"] for s, _p, f in _files(wd, kind, step_name)
             if pq.read_metadata(f).num_rows]
    return list(dict.fromkeys(names))


def dropped_rows(workdir: str | Path, step_name: str | None = None, *,
                 columns: Columns = None, limit: int | None = None) -> Any:
    """The rows each filter (and deduplication) of the last run dropped, with their reasons
    (a pyarrow Table: `_id`, `_reason`, `_step`, dedup lineage). With `columns` (names, or
    True for all), also those columns of each row, read from the step's input. At most
    `limit` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    steps = _Steps(wd)
    if columns:
        _check_known(columns, [steps.get(s["cache_key"]).parent for s in _dropping(wd,
                                                                                 step_name)],
                     "these steps dropped")
    tables: list[Any] = []
    left = limit
    for s, p, f in _files(wd, "dropped", step_name):
        if left is not None and left <= 0:
            break
        t = pq.read_table(f)
        t = t.slice(0, left) if left is not None else t
        if not t.num_rows:
            continue
        t = t.append_column("_step", pa.array([s["name"]] * t.num_rows, pa.string()))
        if columns:
            t = _add_content(wd, steps.get(s["cache_key"]).parent, p, t, columns)
        tables.append(t)
        left = None if left is None else left - t.num_rows
    return _concat(tables, [("_id", pa.int64()), ("_reason", pa.string()),
                            ("_step", pa.string())])


def duplicates(workdir: str | Path, row_id: int, step_name: str | None = None, *,
               columns: Columns = None) -> Any:
    """The rows dropped as duplicates of the kept row `row_id` (by `drop_duplicates`,
    `minhash_dedup`, ..., or only by step `step_name`): `_id`, `_reason`, `cluster_id`
    (= `row_id`), `cluster_size`, `_step`, and `columns` of each row if asked. Empty when
    the row was kept with no duplicate (`find_row` tells whether it exists at all)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    steps = _Steps(wd)
    if columns:
        _check_known(columns, [steps.get(s["cache_key"]).parent for s in _last_run_steps(wd, None)
                               if s["name"] in dedup_steps(workdir, step_name)],
                     "these steps dropped")
    tables = []
    for s, p, f in _files(wd, "dropped", step_name):
        if "cluster_id" not in pq.read_schema(f).names:
            continue
        t = pq.read_table(f)
        t = t.filter(pc.equal(t.column("cluster_id"), pa.scalar(row_id, pa.int64())))
        if not t.num_rows:
            continue
        t = t.append_column("_step", pa.array([s["name"]] * t.num_rows, pa.string()))
        if columns:
            t = _add_content(wd, steps.get(s["cache_key"]).parent, p, t, columns)
        tables.append(t)
    return _concat(tables, [("_id", pa.int64()), ("_reason", pa.string()),
                            ("cluster_id", pa.int64()), ("cluster_size", pa.int64()),
                            ("_step", pa.string())])


def dedup_steps(workdir: str | Path, step_name: str | None = None) -> list[str]:
    """Names of the last run's steps that record duplicate clusters."""
    import pyarrow.parquet as pq

    from . import image_type  # noqa: F401  (registers the image type for reading)

    wd = Workdir(workdir)
    names = [s["name"] for s, _p, f in _files(wd, "dropped", step_name)
             if "cluster_id" in pq.read_schema(f).names]
    return list(dict.fromkeys(names))


def find_row(workdir: str | Path, row_id: int, step_name: str, *,
             columns: Columns = True) -> Any | None:
    """The row `row_id` as step `step_name` received it (a one-row Table with `_id` and
    `columns`), or None when no such row reached that step. Scans the `_id` column
    partition by partition."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wd = Workdir(workdir)
    records = _last_run_steps(wd, step_name)
    if not records:
        raise InputError(f"no step named {step_name!r} in the last run", path=str(wd.root))
    steps = _Steps(wd)
    step = steps.get(records[0]["cache_key"])
    parent = step.parent or step
    _check_known(columns, [parent], f"step {step_name!r} reads")
    names = _chosen(parent, columns)
    for p in range(steps.partition_count(parent)):
        ids = read_columns(wd, parent, p, [parent.columns[ID]]).column(0)
        if pc.any(pc.equal(ids, pa.scalar(row_id, pa.int64()))).as_py():
            content = _content(wd, parent, p, pa.array([row_id], pa.int64()), names)
            return content.add_column(0, ID, pa.array([row_id], pa.int64()))
    return None
