"""One fused pass of a row-wise stage over one partition (runs inside a worker).

Columns travel through the pass keyed by their ColumnRef, so renames cost nothing and each
step reads exactly the columns its parent exposes under the names it consumes.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from ..dataset import ID, PARENT_ID, ColumnRef, Step
from ..errors import DatamillError, OperationError
from ..io.files import ROW_BITS
from ..plan import Stage, stores_data, stores_index
from ..reader import INDEX, read_columns, ref_name, source_partitions
from ..storage import (
    StreamingParquetWriter,
    Workdir,
    atomic_write_json,
    committed_files,
    part_name,
)
from .batches import PARENT_INDEX, filter_columns, filter_result, produced_table, to_format
from .workers import prepared

BATCH_ROWS = 65_536
BATCH_BYTES = 2 * 2**20  # in-memory bytes of the input columns of one batch
# a batch holding images (or other binary columns): bigger, so that a model sees a few
# hundred images per call, and cut row by row, so that one batch of large images is not
# gigabytes (the rows of a batch may differ a thousandfold in size)
IMAGE_BATCH_BYTES = 64 * 2**20
Report = Callable[[str, int], None]


def child_ids(parent_ids: Any, parent_index: Any) -> Any:
    """Stable ids for the children of an expand: mix(parent id, ordinal among siblings)."""
    import numpy as np

    pidx = np.asarray(parent_index, dtype=np.int64)
    n = len(pidx)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(pidx)) + 1]
    ordinal = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    with np.errstate(over="ignore"):
        x = np.asarray(parent_ids, dtype=np.int64).view(np.uint64)
        x = x * np.uint64(0x9E3779B97F4A7C15) + ordinal.astype(np.uint64) + np.uint64(1)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(1)).view(np.int64) * -1 - 1  # negative: derived, never a source id


class StepRun:
    """Writers and counters of one step for one partition."""

    def __init__(self, workdir: Workdir, step: Step, partition: int):
        import pyarrow as pa

        self.workdir = workdir
        self.step = step
        self.partition = partition
        self.dir = workdir.step_dir(step.key)
        self.offset = 0  # input rows seen so far in this partition
        self.rows_in = 0
        self.rows_out = 0
        self.dropped: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()  # Operation.count() totals
        self.errors = 0
        self.seconds = 0.0
        self.files: list[str] = []
        self.outputs: list[dict] = []  # files a sink committed
        self.part = self.dropped_writer = self.quarantine = self.sink_writer = None
        self.pending: deque = deque()  # (batch, handle) submitted to an overlapping operation
        fields = []
        if stores_index(step):
            fields.append((INDEX, pa.int64()))
        if step.kind == "expand":
            fields += [(ID, pa.int64()), (PARENT_ID, pa.int64())]
        if step.kind == "source":
            fields += list(step.schema.items())
        elif step.kind in ("map", "filter", "expand"):
            fields += list(step.produced.items())
        if stores_data(step) and step.kind != "sink":
            self.part = StreamingParquetWriter(self.dir / part_name("part", partition),
                                               pa.schema(fields))
        if step.kind == "filter":
            self.dropped_writer = StreamingParquetWriter(
                self.dir / part_name("dropped", partition),
                pa.schema([(ID, pa.int64()), ("_reason", pa.string())]))
        if step.on_error == "quarantine":
            self.quarantine = StreamingParquetWriter(
                self.dir / part_name("quarantine", partition), quarantine_schema(step))
        if step.kind == "sink":
            self.sink_writer = step.op.open_partition(partition)

    def commit(self) -> None:
        for writer in (self.part, self.dropped_writer, self.quarantine):
            if writer is not None:
                writer.commit()
                self.files.append(writer.path.name)
        if self.sink_writer is not None:
            self.outputs = self.sink_writer.close()

    def abort(self) -> None:
        for writer in (self.part, self.dropped_writer, self.quarantine):
            if writer is not None:
                writer.abort()
        if self.sink_writer is not None and hasattr(self.sink_writer, "abort"):
            self.sink_writer.abort()

    def stats(self) -> dict:
        out = {"rows_in": self.rows_in, "rows_out": self.rows_out,
               "dropped": dict(self.dropped), "errors": self.errors,
               "seconds": round(self.seconds, 6), **committed_files(self.dir, self.files),
               "worker": worker_name()}
        if self.counters:
            out["counters"] = dict(self.counters)
        if self.sink_writer is not None:
            out["outputs"] = self.outputs
        return out


def quarantine_schema(step: Step) -> Any:
    """`_id`, `_error`, where the row came from (`_path`; for input a reader could not read,
    `_line` and the `_raw` bytes), then every column of the step's input row."""
    import pyarrow as pa

    fields = [(ID, pa.int64()), ("_error", pa.string()), ("_path", pa.string()),
              ("_line", pa.int64()), ("_raw", pa.binary())]
    if step.parent is not None:
        fields += [(c, t) for c, t in step.parent.schema.items() if not c.startswith("_")]
    return pa.schema(fields)


def _write_rejected(run: StepRun, rows: list[dict]) -> None:
    """Count (and quarantine) the input a reader set aside."""
    import pyarrow as pa

    if not rows:
        return
    run.errors += len(rows)
    verb = "quarantined" if run.quarantine is not None else "skipped"
    run.counters[f"bad_input_{verb}"] += len(rows)
    if run.quarantine is not None:
        run.quarantine.write(pa.Table.from_pylist(rows, schema=run.quarantine.schema))


def _row_paths(workdir: Workdir, step: Step, partition: int,
               ids: list[int]) -> list[str | None]:
    """The input file each row came from, where the source's partition tells."""
    source = step.chain()[0]
    try:
        part = source_partitions(workdir, source)[partition]
    except Exception:  # noqa: BLE001 - a source without file partitions
        return [None] * len(ids)
    if hasattr(part, "path"):
        return [part.path] * len(ids)
    if isinstance(part, (list, tuple)):
        by_ordinal = {getattr(p, "ordinal", None): getattr(p, "path", None) for p in part}
        return [by_ordinal.get(i >> ROW_BITS) if i >= 0 else None for i in ids]
    return [None] * len(ids)


def _quarantine(run: StepRun, table: Any, ids: Any, bad: list[tuple[int, BaseException]]) -> None:
    """Keep the rows that raised, every column of the step's input, with their errors."""
    import pyarrow as pa

    step = run.step
    rows = pa.array([i for i, _ in bad], pa.int64())
    row_ids = [ids[i].as_py() for i, _ in bad]
    columns = {ID: pa.array(row_ids, pa.int64()),
               "_error": pa.array([_error_text(e) for _, e in bad], pa.string()),
               "_path": pa.array(_row_paths(run.workdir, step, run.partition, row_ids),
                                 pa.string()),
               "_line": pa.nulls(len(bad), pa.int64()), "_raw": pa.nulls(len(bad), pa.binary())}
    for name, ref in step.parent.columns.items():
        if not name.startswith("_"):
            columns[name] = table.column(ref_name(ref)).take(rows)
    run.quarantine.write(pa.table(columns, schema=run.quarantine.schema))


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def worker_name() -> str:
    """host:pid of the process running a unit (the step record shows who did what)."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _input_batches(workdir: Workdir, stage: Stage, partition: int,
                   declared: int = 0, smallest: int | None = None) -> Iterator[Any]:
    """The stage's input, in batches of at most BATCH_ROWS rows and the byte budget of
    `batch_budget` (whatever the source yields or the stored columns hold), so that memory
    is bounded by the batch whether rows are short or long. The source is told the smallest
    `batch_bytes` a step declares (`read_bytes`): a reader that parses in chunks parses no more
    than a step takes at once."""
    import pyarrow as pa

    first = stage.steps[0]
    if first.kind == "source":
        part = source_partitions(workdir, first)[partition]
        columns = None if stores_data(first) else [r.stored for r in stage.needed]
        first.op.read_bytes = smallest
        try:
            for batch in first.op.read(part, columns):
                table = (pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch)
                         else batch)
                yield from batch_slices(table.rename_columns(
                    [ref_name(ColumnRef(first.name, c)) for c in table.schema.names]),
                    batch_budget(table.schema, declared))
        finally:
            first.op.read_bytes = None
        return
    table = read_columns(workdir, stage.input_step, partition, stage.needed)
    if table.num_rows == 0:
        yield table
    yield from batch_slices(table, batch_budget(table.schema, declared))


def holds_binary(schema: Any) -> bool:
    """Does the schema have a column of images or other binary values?"""
    import pyarrow as pa

    for field in schema:
        t = field.type.storage_type if isinstance(field.type, pa.ExtensionType) else field.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return True
    return False


def batch_budget(schema: Any, declared: int = 0) -> int:
    """Bytes per batch of a pass: IMAGE_BATCH_BYTES when the batch holds images or other
    binary columns, else BATCH_BYTES; raised to the largest `batch_bytes` an operation of the
    pass declares."""
    return max(IMAGE_BATCH_BYTES if holds_binary(schema) else BATCH_BYTES, declared)


def row_bytes(table: Any) -> Any:
    """In-memory bytes of each row (values of variable-width columns exactly, the others at
    their average)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        t = column.type.storage_type if isinstance(column.type, pa.ExtensionType) else column.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t) \
                or pa.types.is_large_string(t):
            values = column.cast(t) if t != column.type else column
            if isinstance(values, pa.ChunkedArray) and isinstance(column.type, pa.ExtensionType):
                values = pa.chunked_array([c.storage for c in column.chunks], t)
            lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False)
            sizes += lengths.astype(np.int64) + (8 if "large" in str(t) else 4)
        elif table.num_rows:
            sizes += column.nbytes // table.num_rows
    return sizes


def batch_slices(table: Any, max_bytes: int | None = None,
                 max_rows: int | None = None) -> Iterator[Any]:
    """Zero-copy slices of `table` of at most `max_rows` rows and about `max_bytes` bytes
    (default: BATCH_ROWS, BATCH_BYTES); a row larger than `max_bytes` is a batch alone.
    A table holding binary columns (images) is cut by the size of each row, others by the
    average row."""
    import numpy as np

    max_bytes = max_bytes or BATCH_BYTES
    max_rows = max_rows or BATCH_ROWS
    rows = table.num_rows
    if rows and holds_binary(table.schema) and table.nbytes > max_bytes:
        ends = np.cumsum(row_bytes(table))
        start = 0
        while start < rows:
            before = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, before + max_bytes, side="right"))
            stop = min(max(stop, start + 1), start + max_rows)
            yield table.slice(start, stop - start)
            start = stop
        return
    per_row = table.nbytes / rows if rows else 1.0
    step = max(1, min(max_rows, int(max_bytes / max(per_row, 1.0))))
    for start in range(0, rows, step):
        yield table.slice(start, step)


def _consumed_input(step: Step, table: Any) -> Any:
    """The columns the step consumes, under the names its operation declares (remap.py)."""
    reads = step.op_reads()
    refs = [ref_name(step.parent.columns[c]) for c in reads.values()]
    return table.select(refs).rename_columns(list(reads))


def _call(step: Step, op: Any, inp: Any, ids: Any, run: StepRun,
          handle: Any = None) -> tuple[Any, Any, list]:
    """Call the operation (or collect what it was submitted: `handle`); isolate failing rows
    per the step's on_error policy, row by row through `process`.

    Returns (result, ok, bad): ok is None (all rows fine) or a boolean mask of good rows;
    bad lists (position, exception) of the rows that raised."""
    import numpy as np

    fmt = op.batch_format
    op.take_counters()
    try:
        result = op.process(to_format(inp, fmt)) if handle is None else op.collect(handle)
        run.counters.update(op.take_counters())
        return result, None, []
    except DatamillError:
        raise
    except Exception as batch_exc:
        op.take_counters()  # partial counts of the failed batch
        bad: list[tuple[int, BaseException]] = []
        results = []
        for i in range(inp.num_rows):
            try:
                results.append(op.process(to_format(inp.slice(i, 1), fmt)))
                run.counters.update(op.take_counters())
            except Exception as exc:  # noqa: BLE001 - reported per row
                run.counters.update(op.take_counters())  # what the failing row counted
                bad.append((i, exc))
                if step.on_error == "raise":
                    break
        if not bad:  # fails as a batch but not row by row: report the batch error
            raise OperationError(f"{type(batch_exc).__name__}: {batch_exc}",
                                 step=step.name) from batch_exc
        if step.on_error == "raise":
            i, exc = bad[0]
            raise OperationError(
                f"{type(exc).__name__}: {exc} (set on_error='skip' or 'quarantine' to go on)",
                step=step.name, row_id=int(ids[i].as_py())) from exc
        ok = np.ones(inp.num_rows, dtype=bool)
        run.errors += len(bad)
        for i, _exc in bad:
            ok[i] = False
        return _merge_row_results(step, results), ok, bad


def _merge_row_results(step: Step, results: list[Any]) -> Any:
    import numpy as np
    import pyarrow as pa

    if step.kind == "filter":
        masks, reasons, columns = [], [], []
        for r in results:
            m, why = filter_result(step, r, 1)
            masks.append(m)
            reasons.append(why if isinstance(why, str) else why[0])
            columns.append(filter_columns(step, r, 1, stored=False))
        mask = np.concatenate(masks) if masks else np.zeros(0, bool)
        if not step.produced:
            return mask, reasons
        return mask, reasons, pa.concat_tables([_declared_schema(step).empty_table(),
                                                *columns])
    tables = [produced_table(step, r, 1 if step.kind == "map" else None, stored=False)
              for r in results]
    tables = [t for t in tables if t is not None]
    if step.kind == "expand":
        fixed = []
        for k, t in enumerate(tables):  # per-row calls index their own one-row batch
            fixed.append(t.set_column(0, PARENT_INDEX, pa.array(np.full(t.num_rows, k))))
        tables = fixed
    if not tables:
        fields = list(_declared_schema(step))
        if step.kind == "expand":
            fields = [pa.field(PARENT_INDEX, pa.int64()), *fields]
        return pa.schema(fields).empty_table()
    return pa.concat_tables(tables)


def _declared_schema(step: Step) -> Any:
    """The produced columns as the operation names them (before they are stored)."""
    import pyarrow as pa

    return pa.schema([(name, step.produced[column])
                      for name, column in step.op_writes().items()])


def _apply_step(run: StepRun, op: Any, table: Any, report: Report | None,
                handle: Any = None) -> Any:
    """Run one step on the in-flight batch; write what it stores; return the next batch.
    `handle`: what `op.submit` returned for this batch (an overlapping operation)."""
    import numpy as np
    import pyarrow as pa

    step = run.step
    n = table.num_rows
    run.rows_in += n
    start = time.perf_counter()
    id_col = table.column(ref_name(step.parent.columns[ID])) if step.parent else None

    if step.kind == "source":
        if run.part is not None:  # materialized: keep a Parquet copy of what was read
            run.part.write(table.rename_columns([c.split("\x1f", 1)[1]
                                                 for c in table.schema.names]))
        out = table
    elif step.kind == "project":
        out = table
    elif step.kind == "sink":
        cols = {name: ref for name, ref in step.columns.items()
                if not name.startswith("_") or name in op.private_columns}
        run.sink_writer.write(table.select([ref_name(r) for r in cols.values()])
                              .rename_columns(list(cols)))
        out = table
    else:
        result, ok, bad = _call(step, op, _consumed_input(step, table), id_col, run, handle)
        positions = np.arange(run.offset, run.offset + n, dtype=np.int64)
        if bad and run.quarantine is not None:
            _quarantine(run, table, id_col, bad)
        if ok is not None:
            table = table.filter(pa.array(ok))
            positions = positions[ok]
            id_col = id_col.filter(pa.array(ok))
        if step.kind == "map":
            produced = produced_table(step, result, table.num_rows)
            stored = produced
            if stores_index(step):
                stored = produced.add_column(0, INDEX, pa.array(positions))
            run.part.write(stored)
            out = table
            for c in produced.schema.names:
                out = _set(out, ref_name(ColumnRef(step.name, c)), produced.column(c))
        elif step.kind == "filter":
            mask, reasons = filter_result(step, result, table.num_rows)
            dropped = ~mask
            if dropped.any():
                dropped_ids = id_col.filter(pa.array(dropped))
                if isinstance(reasons, str):
                    why = pa.array([reasons] * int(dropped.sum()), pa.string())
                    run.dropped[reasons] += int(dropped.sum())
                else:
                    picked = [reasons[i] or step.op.reason() for i in np.flatnonzero(dropped)]
                    why = pa.array(picked, pa.string())
                    run.dropped.update(picked)
                run.dropped_writer.write(pa.table({ID: dropped_ids, "_reason": why}))
            kept = pa.array(mask)
            out = table.filter(kept)
            stored = {INDEX: pa.array(positions[mask])}
            produced = filter_columns(step, result, table.num_rows)
            if produced is not None:  # columns of the kept rows
                produced = produced.filter(kept)
                for c in produced.schema.names:
                    stored[c] = produced.column(c)
                    out = _set(out, ref_name(ColumnRef(step.name, c)), produced.column(c))
            run.part.write(pa.table(stored))
        else:  # expand
            produced = produced_table(step, result, None)
            pidx = produced.column(PARENT_INDEX).to_numpy()
            if len(pidx) and (pidx.min() < 0 or pidx.max() >= table.num_rows
                              or (np.diff(pidx) < 0).any()):
                raise OperationError(f"expand {step.op.name!r} returned _parent_index values "
                                     "that are out of range or not ascending", step=step.name)
            parent_ids = id_col.to_numpy()[pidx] if len(pidx) else np.zeros(0, np.int64)
            ids = child_ids(parent_ids, pidx)
            children = produced.drop_columns([PARENT_INDEX])
            run.part.write(pa.table({
                INDEX: pa.array(positions[pidx] if len(pidx) else positions[:0]),
                ID: pa.array(ids), PARENT_ID: pa.array(parent_ids, pa.int64()),
                **{c: children.column(c) for c in children.schema.names}}))
            out = table.take(pa.array(pidx, pa.int64()))
            out = _set(out, ref_name(ColumnRef(step.name, ID)), pa.array(ids))
            out = _set(out, ref_name(ColumnRef(step.name, PARENT_ID)),
                       pa.array(parent_ids, pa.int64()))
            for c in children.schema.names:
                out = _set(out, ref_name(ColumnRef(step.name, c)), children.column(c))
    run.offset += n
    run.rows_out += out.num_rows
    run.seconds += time.perf_counter() - start
    if report is not None:
        report(step.name, n)
    return out


def _set(table: Any, name: str, column: Any) -> Any:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, column) if i >= 0 else table.append_column(name, column)


def _push(runs: list[StepRun], ops: list[Any], i: int, batch: Any,
          report: Report | None) -> None:
    """Pass `batch` through steps i.. of the fused pass, depth first. A step whose operation
    declares `batch_size` gets slices of at most that many rows, one that declares
    `batch_bytes` slices of at most that many bytes (rows reach later steps, and the progress
    report, slice by slice, in the same order)."""
    if i == len(runs):
        return
    rowwise = runs[i].step.kind in ("map", "filter", "expand")
    limit = ops[i].batch_size if rowwise else None
    byte_limit = getattr(ops[i], "batch_bytes", None) if rowwise else None
    if byte_limit and batch.num_rows > 1 and batch.nbytes > byte_limit:
        pieces = list(batch_slices(batch, byte_limit, limit))
        if len(pieces) > 1:
            for piece in pieces:
                _push(runs, ops, i, piece, report)
            return
    if limit and batch.num_rows > limit:
        for start in range(0, batch.num_rows, limit):
            _push(runs, ops, i, batch.slice(start, limit), report)
        return
    in_flight = getattr(ops[i], "batches_in_flight", 1) if rowwise else 1
    if in_flight > 1:  # submit now, collect (and pass on) the oldest once too many wait
        run = runs[i]
        run.pending.append((batch, ops[i].submit(to_format(_consumed_input(run.step, batch),
                                                           ops[i].batch_format))))
        if len(run.pending) >= in_flight:
            _collect_oldest(runs, ops, i, report)
        return
    _push(runs, ops, i + 1, _apply_step(runs[i], ops[i], batch, report), report)


def _collect_oldest(runs: list[StepRun], ops: list[Any], i: int,
                    report: Report | None) -> None:
    batch, handle = runs[i].pending.popleft()
    _push(runs, ops, i + 1, _apply_step(runs[i], ops[i], batch, report, handle), report)


def _flush(runs: list[StepRun], ops: list[Any], report: Report | None) -> None:
    """Collect the batches still submitted, step after step, in order."""
    for i, run in enumerate(runs):
        while run.pending:
            _collect_oldest(runs, ops, i, report)


def run_partition(workdir: Workdir, stage: Stage, partition: int,
                  report: Report | None = None) -> dict[str, dict]:
    """Run the stage's fused pass over one partition; commit every step's output, then each
    step's stats marker (the partition's commit point). Returns stats per step name."""
    runs = [StepRun(workdir, step, partition) for step in stage.steps]
    ops = [prepared(step) for step in stage.steps]
    try:
        reads = stage.steps[0].kind == "source"
        if reads:  # a fresh count for this partition
            ops[0].take_counters()
            ops[0].take_rejected()
        declared = max((getattr(op, "batch_bytes", None) or 0 for op in ops), default=0)
        smallest = min((b for op in ops[1:] if (b := getattr(op, "batch_bytes", None))),
                       default=None)
        for batch in _input_batches(workdir, stage, partition, declared, smallest):
            if reads:  # input the reader set aside before this batch
                _write_rejected(runs[0], ops[0].take_rejected())
            _push(runs, ops, 0, batch, report)
        _flush(runs, ops, report)
        if reads:
            _write_rejected(runs[0], ops[0].take_rejected())
            runs[0].counters.update(ops[0].take_counters())
        for run in runs:
            run.commit()
    except BaseException:
        for run, op in zip(runs, ops):
            for _batch, handle in run.pending:  # submitted, never to be collected
                getattr(op, "cancel", lambda h: None)(handle)
            run.abort()
        raise
    stats = {}
    for run in runs:
        s = run.stats()
        # not synced: the step's data files are not either (a killed process loses
        # neither; after a power loss, size and magic checks catch a torn data file)
        atomic_write_json(run.dir / part_name("stats", partition, "json"), s, durable=False)
        stats[run.step.name] = s
    return stats
