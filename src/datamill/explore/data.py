"""Pages of rows for the explorer: a step's rows, filtered or not; the rows a step dropped
(with their content) or quarantined.

Memory stays bounded whatever the size of a step: a page reads only the row groups holding
its rows (reading.py); a filter streams its column one row group at a time and stops once its
page is full; the dropped and quarantined files are paged by DuckDB, which reads only what a
page needs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset import ID, Step
from ..integrity import check_step_file
from .reading import column_batches, ids_of, read_at
from .workdir import BadRequest, RunView, StepView


# --- pages of a step's rows -----------------------------------------------------------
@dataclass
class Filter:
    """Rows whose `column` equals `value` (compared as text for strings), contains it
    (`op` "contains"), or lies in [low, high]."""

    column: str
    op: str = "eq"  # eq | contains | range | null | notnull
    value: str = ""
    low: float | None = None
    high: float | None = None

    def mask(self, values: Any) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if self.op == "null":
            return values.is_null().to_numpy(zero_copy_only=False)
        if self.op == "notnull":
            return values.is_valid().to_numpy(zero_copy_only=False)
        t = values.type
        if pa.types.is_dictionary(t):
            values, t = values.cast(t.value_type), t.value_type
        if self.op == "range":
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise BadRequest(f"column {self.column!r} is not numeric: no range filter")
            m = pc.and_kleene(pc.greater_equal(values, self.low) if self.low is not None
                              else pa.scalar(True), pc.less_equal(values, self.high)
                              if self.high is not None else pa.scalar(True))
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            m = pc.match_substring(values, self.value) if self.op == "contains" \
                else pc.equal(values, self.value)
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            if self.op == "contains":
                raise BadRequest(f"column {self.column!r} is not text: no 'contains' filter")
            try:
                scalar = pa.scalar(self.value.strip().lower() in ("true", "1")) \
                    if pa.types.is_boolean(t) else pa.scalar(float(self.value))
            except ValueError:
                raise BadRequest(f"column {self.column!r} is numeric: {self.value!r} is "
                                   "not a number") from None
            m = pc.equal(values, scalar)
        else:
            raise BadRequest(f"column {self.column!r} ({t}) can only be filtered by "
                               "null / not null")
        return np.asarray(pc.fill_null(m, False).to_numpy(zero_copy_only=False), bool)


@dataclass
class Page:
    rows: list[dict]
    total: int  # rows matching (all rows without a filter)
    offset: int
    columns: list[str]
    capped: bool = False  # `total` is a lower bound: the scan stopped once the page was full


def rows_page(run: RunView, name: str, offset: int, limit: int,
              where: Filter | None = None, columns: list[str] | None = None,
              count_all: bool = False) -> Page:
    """Rows `offset` .. `offset + limit` of the step `name` (matching `where`), with `_id`,
    `_partition` and `_position` (where the row is) added. A filter scans its column only
    until the page is full (`Page.capped`: the total is then a lower bound), unless
    `count_all`."""
    import numpy as np

    view = run.step(name)
    step = run.chain_step(name)
    visible = [c for c in step.columns if not c.startswith("_")]
    cols = [c for c in (columns or visible) if c in step.columns]
    if where is not None and where.column not in step.columns:
        raise BadRequest(f"no column {where.column!r} in the rows of step {name!r}")
    counts = run.partition_rows(run.steps[step.name] if step.name in run.steps else view)
    wanted: list[tuple[int, Any]] = []  # (partition, positions) in output order
    total = 0
    capped = False
    for p, n in enumerate(counts):
        if where is None:
            lo, hi = max(offset - total, 0), min(offset + limit - total, n)
            if hi > lo:
                wanted.append((p, np.arange(lo, hi)))
            total += n
            continue
        hits, stopped = _matches(run, step, p, where,
                                 None if count_all else offset + limit - total)
        lo, hi = max(offset - total, 0), min(offset + limit - total, len(hits))
        if hi > lo:
            wanted.append((p, hits[lo:hi]))
        total += len(hits)
        if not count_all and total >= offset + limit:
            capped = stopped or p < len(counts) - 1
            break
    rows: list[dict] = []
    for p, positions in wanted:
        table = read_at(run, step, p, [ID, *cols], positions)
        for k, r in enumerate(table.to_pylist()):
            rows.append({"_partition": p, "_position": int(positions[k]), **r})
    return Page(rows, total, offset, cols, capped)


def _matches(run: RunView, step: Step, partition: int, where: Filter,
             enough: int | None) -> tuple[Any, bool]:
    """Output positions of the partition's rows matching `where`, sorted; with `enough`,
    the scan may stop once that many are found in output order (then True)."""
    import numpy as np

    matched = []
    found = 0
    ordered = True  # batches so far came in output order: a prefix of the matches is known
    last = -1
    for values, positions in column_batches(run, step, partition, where.column):
        if len(positions):
            ordered = ordered and positions[0] > last and bool(np.all(np.diff(positions) > 0))
            last = max(last, int(positions[-1]))
        hit = positions[where.mask(values)]
        matched.append(hit)
        found += len(hit)
        if enough is not None and ordered and found >= enough:
            return np.concatenate(matched), True
    hits = np.sort(np.concatenate(matched)) if matched else np.zeros(0, np.int64)
    return hits, False


# --- rows set aside: dropped, quarantined ----------------------------------------------
_DUCKDB: list[Any] = []
_DUCKDB_LOCK = threading.Lock()


def _duckdb() -> Any:
    """A cursor of the process's DuckDB connection (made once: opening one costs ~0.1 s);
    close it after use."""
    import duckdb

    from .stats import cache_dir

    with _DUCKDB_LOCK:
        if not _DUCKDB:  # spills, if any, go to the cache folder, never to the current one
            _DUCKDB.append(duckdb.connect(config={
                "threads": 2, "memory_limit": "256MB",
                "temp_directory": str(cache_dir() / "duckdb-tmp")}))
        return _DUCKDB[0].cursor()


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def set_aside_page(run: RunView, view: StepView, kind: str, offset: int, limit: int,
                   reason: str | None = None) -> Page:
    """A page of the rows the step dropped (`kind` "dropped", of `reason` if given) or
    quarantined ("quarantine"). Dropped rows come with their content, read from the step's
    input; quarantined rows hold it already."""
    files = run.files(view, kind)
    if not files:
        return Page([], 0, offset, [])
    for p, path in files:
        check_step_file(run.workdir, view.key, view.name, p, path)
    con = _duckdb()
    try:
        source = (f"read_parquet({_sql_list([f for _p, f in files])}, filename=true, "
                  "file_row_number=true, union_by_name=true)")
        cond, params = ("WHERE _reason = ?", [reason]) if reason and kind == "dropped" \
            else ("", [])
        total = con.sql(f"SELECT count(*) FROM {source} {cond}", params=params).fetchall()[0][0]
        table = con.sql(f"SELECT * FROM {source} {cond} ORDER BY filename, file_row_number "
                        f"LIMIT {int(limit)} OFFSET {int(offset)}", params=params
                        ).to_arrow_table()
    finally:
        con.close()
    partition_of = {str(f): p for p, f in files}
    parts = [partition_of.get(f, -1) for f in table.column("filename").to_pylist()]
    numbers = table.column("file_row_number").to_pylist()
    table = table.drop_columns(["filename", "file_row_number"])
    rows = [{"_partition": p, "_row": n, **r}
            for p, n, r in zip(parts, numbers, table.to_pylist())]
    columns = [c for c in table.column_names if not c.startswith("_")]
    if kind == "dropped" and rows:
        columns = _add_dropped_content(run, view, rows)
    return Page(rows, int(total), offset, columns)


def _add_dropped_content(run: RunView, view: StepView, rows: list[dict]) -> list[str]:
    """Fill each dropped row with its columns as the step received them."""
    import numpy as np

    step = run.chain_step(view.name)
    parent = step.parent
    if parent is None:
        return []
    columns = [c for c in parent.columns if not c.startswith("_")]
    by_part: dict[int, list[dict]] = {}
    for r in rows:
        by_part.setdefault(r["_partition"], []).append(r)
    for p, group in by_part.items():
        ids = ids_of(run, parent, p)
        found = np.nonzero(np.isin(ids, [r["_id"] for r in group]))[0]
        first: dict[int, int] = {}
        for position, row_id in zip(found.tolist(), ids[found].tolist()):
            first.setdefault(row_id, position)
        present = [r for r in group if r["_id"] in first]
        positions = [first[r["_id"]] for r in present]
        if not present:
            continue
        content = read_at(run, parent, p, columns, positions).to_pylist()
        for r, values, position in zip(present, content, positions):
            r.update({k: v for k, v in values.items() if k not in r})
            r["_position"] = position
    extra = [c for c in rows[0] if not c.startswith("_") and c not in columns]
    return [*extra, *columns]
