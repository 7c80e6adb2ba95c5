"""Reading a step's rows by position: the positions a step's output rows have in the files
of the steps that stored each column (composing the `_index` of the row-changing steps
between), and only the row groups holding the rows asked for. `read_at` reads chosen rows,
`column_batches` streams a column one row group at a time, `ids_of` gives a partition's row
ids. The `_index` arrays and row ids of recently used partitions stay in memory (LRUs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..dataset import ID, ColumnRef, Step
from ..integrity import check_step_file
from ..plan import stores_data, stores_index
from ..reader import INDEX, read_source_partition
from ..storage import part_name
from .lru import LRU
from .workdir import ExploreError, RunView


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


IDS_BYTES = 64 << 20  # partitions' row ids kept in memory (8 bytes a row)
_IDS = LRU(nbytes=IDS_BYTES, size=lambda a: a.nbytes)


def ids_of(run: RunView, step: Step, partition: int) -> Any:
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
