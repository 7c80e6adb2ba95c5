"""Reading rows for the explorer: pages of a step's rows, filtered or not; pages of the rows a
step dropped (with their content) or quarantined; a row's lineage.

Memory stays bounded whatever the size of a step: a page reads only the row groups holding
its rows; a filter streams its column one row group at a time (`column_batches`); the
dropped and quarantined files are paged by DuckDB, which reads only what a page needs. A
step's rows are read as `reader.read_columns` composes them (columns stored by earlier steps,
through the `_index` of the row-changing steps between), here for chosen positions only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset import ID, ColumnRef, Step
from ..integrity import check_step_file
from ..plan import stores_data, stores_index
from ..reader import INDEX, read_source_partition
from ..storage import part_name
from .lru import LRU
from .workdir import BadRequest, ExploreError, RunView, StepView


# --- positions: which stored row each output row of a step is --------------------------
def _step_file(run: RunView, step: Step, partition: int) -> Path:
    path = run.workdir.step_dir(step.key) / part_name("part", partition)
    resolved = path.resolve()
    if not resolved.is_relative_to(run.root / "steps"):
        raise ExploreError(f"step {step.name!r}: its files lead outside the workdir")
    check_step_file(run.workdir, step.key, step.name, partition, path)
    return resolved


def _stored_file(run: RunView, producer: Step, partition: int) -> Path | None:
    """The Parquet file holding the producer's stored columns: its step file, or for a
    source read in place its mirror in the cache folder (None when there is none)."""
    if producer.kind == "source" and not stores_data(producer):
        from .mirror import source_file

        return source_file(run, producer, partition)
    return _step_file(run, producer, partition)


INDEX_BYTES = 64 << 20  # `_index` arrays kept in memory
_INDEXES = LRU(nbytes=INDEX_BYTES, size=lambda a: a.nbytes)


def _index(run: RunView, step: Step, partition: int) -> Any:
    """The step's `_index` column (positions into its input), as numpy (an LRU keeps the
    last ones, up to INDEX_BYTES)."""
    import pyarrow.parquet as pq

    def read() -> Any:
        with pq.ParquetFile(_step_file(run, step, partition)) as f:
            return f.read(columns=[INDEX]).column(0).to_numpy()

    return _INDEXES.get_or_make((str(run.root), step.key, partition), read)


def producer_positions(run: RunView, step: Step, partition: int,
                       producers: set[int]) -> dict[int, Any]:
    """For each chain position in `producers`: an array mapping the step's output rows to
    that producer's stored rows (None: the identity)."""
    chain = step.chain()
    out: dict[int, Any] = {}
    current = None
    lowest = min(producers, default=len(chain) - 1)
    for i in range(len(chain) - 1, lowest - 1, -1):
        out[i] = current
        if i > lowest and stores_index(chain[i]):
            idx = _index(run, chain[i], partition)
            current = idx if current is None else idx[current]
    return {i: out[i] for i in producers}


def _group(step: Step, refs: list[ColumnRef]) -> dict[int, list[ColumnRef]]:
    position = {s.name: i for i, s in enumerate(step.chain())}
    by: dict[int, list[ColumnRef]] = {}
    for ref in refs:
        by.setdefault(position[ref.step], []).append(ref)
    return by


def _take_stored(run: RunView, producer: Step, partition: int, stored: list[str],
                 rows: Any) -> Any:
    """Columns `stored` of the producer's rows at positions `rows` (numpy int64)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _stored_file(run, producer, partition)
    if path is None:  # a source read in place, with no mirror
        table = read_source_partition(run.workdir, producer, partition, stored)
        return table.take(pa.array(rows, pa.int64()))
    with pq.ParquetFile(path) as f:
        sizes = [f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
        if len(groups) == 0:
            return f.schema_arrow.empty_table().select(stored)
        table = f.read_row_groups(list(groups), columns=stored)
    base = np.zeros(len(starts), np.int64)  # where each read group starts in `table`
    base[groups] = np.concatenate([[0], np.cumsum([sizes[g] for g in groups])[:-1]])
    g_of = np.searchsorted(starts, rows, side="right") - 1
    return table.take(pa.array(base[g_of] + rows - starts[g_of], pa.int64()))


def read_at(run: RunView, step: Step, partition: int, columns: list[str], rows: Any) -> Any:
    """Columns (visible names, `_id` allowed) of the step's output rows at positions `rows`
    of partition `partition`, in that order (a pyarrow Table)."""
    import numpy as np
    import pyarrow as pa

    rows = np.asarray(rows, np.int64)
    refs = [step.columns[c] for c in columns]
    by = _group(step, refs)
    positions = producer_positions(run, step, partition, set(by))
    arrays: dict[tuple[str, str], Any] = {}
    for i, group in by.items():
        pos = positions[i]
        stored = list(dict.fromkeys(r.stored for r in group))
        table = _take_stored(run, step.chain()[i], partition, stored,
                             rows if pos is None else pos[rows])
        for r in group:
            arrays[(r.step, r.stored)] = table.column(r.stored)
    return pa.table({c: arrays[(r.step, r.stored)] for c, r in zip(columns, refs)})


def column_batches(run: RunView, step: Step, partition: int, column: str,
                   ) -> Iterator[tuple[Any, Any]]:
    """The column at the step, partition `partition`, one stored row group at a time:
    (values, the output positions they are at). Memory: one row group of the column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = step.columns[column]
    i = _group(step, [ref]).popitem()[0]
    pos = producer_positions(run, step, partition, {i})[i]
    producer = step.chain()[i]
    path = _stored_file(run, producer, partition)
    if path is None:
        table = read_source_partition(run.workdir, producer, partition, [ref.stored])
        values = table.column(ref.stored)
        if pos is None:
            yield values, np.arange(len(values))
        else:
            yield values.take(pa.array(pos, pa.int64())), np.arange(len(pos))
        return
    order = None
    if pos is not None:
        order = np.argsort(pos, kind="stable")
        sorted_pos = pos[order]
    with pq.ParquetFile(path) as f:
        start = 0
        for g in range(f.metadata.num_row_groups):
            n = f.metadata.row_group(g).num_rows
            if pos is None:
                values = f.read_row_group(g, columns=[ref.stored]).column(0)
                yield values, np.arange(start, start + n)
            else:
                lo, hi = np.searchsorted(sorted_pos, [start, start + n])
                if hi > lo:
                    values = f.read_row_group(g, columns=[ref.stored]).column(0)
                    yield (values.take(pa.array(sorted_pos[lo:hi] - start, pa.int64())),
                           order[lo:hi])
            start += n


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
        ids = _ids_of(run, parent, p)
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


IDS_BYTES = 64 << 20  # partitions' row ids kept in memory (8 bytes a row)
_IDS = LRU(nbytes=IDS_BYTES, size=lambda a: a.nbytes)


def _ids_of(run: RunView, step: Step, partition: int) -> Any:
    """The `_id` of every output row of the step in one partition (numpy; an LRU keeps the
    last ones, up to IDS_BYTES)."""
    return _IDS.get_or_make((str(run.root), step.key, partition),
                            lambda: _read_ids(run, step, partition))


def _read_ids(run: RunView, step: Step, partition: int) -> Any:
    import numpy as np

    parts = [(np.asarray(v.to_numpy(zero_copy_only=False) if hasattr(v, "to_numpy") else v),
              pos) for v, pos in column_batches(run, step, partition, ID)]
    ids = np.zeros(sum(len(pos) for _v, pos in parts), np.int64)
    for values, pos in parts:
        ids[pos] = values
    return ids
