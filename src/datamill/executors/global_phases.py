"""The phases of a global step, each a unit of work that can run in any worker:

    scan(p)     read partition p, call `op.scan`, spread rows with a `_key` into buckets on disk
    reduce(b)   read bucket b from every partition, call `op.reduce`; route its decisions by
                partition, or (ops with `resolves`) keep its output for the phase after
    components  only for ops with `resolves = "components"`: reduce returned edges; connected
                components in rounds of units over buckets of nodes, then decisions by
                partition (components.py: nothing is ever collected in one process)
    resolve     only for ops with `resolves = True`: stream every reduce output through
                `op.resolve` in one unit, route its decisions by partition
    apply(p)    read partition p's decisions, store the step's output like a filter/map would

Every unit reads files and writes files: it writes into a temp folder that it renames when
done, so a killed run resumes at the first unit not yet committed, and a distributed executor
can run each unit wherever its input files are reachable. Memory is bounded by one partition
or one bucket at a time; `resolve` holds what the operation keeps.

    shuffle/plan.json                        bucket count, fixed at the first attempt
    shuffle/scan-PPPPP/bucket-BBBBB.parquet  rows of partition P with a key in bucket B
    shuffle/reduce-BBBBB/part-PPPPP.parquet  decisions of bucket B about partition P
    shuffle/reduce-BBBBB/out.parquet         or: bucket B's output, input of resolve
    shuffle/reduce-BBBBB/edges.parquet       or: its edges, by node bucket (components.py)
    shuffle/resolve/part-PPPPP.parquet       decisions of resolve about partition P
    shuffle/decide-CCCCC/part-PPPPP.parquet  decisions of components about partition P
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..dataset import ID, Step
from ..errors import OperationError
from ..plan import stores_index
from ..reader import INDEX, read_columns, ref_name
from ..schema import normalize_columns
from ..storage import (
    StreamingParquetWriter,
    Workdir,
    atomic_write_json,
    committed_files,
    part_name,
    read_parquet,
    remove_tree,
    temp_path,
    write_parquet,
)
from .batches import columns_of, to_format
from .components import COMPONENTS, commit_unit, committed, write_reduced
from .workers import prepared

KEY, PART, POS, REASON, ROW = "_key", "_part", "_pos", "_reason", "_row"
ROWS_PER_BUCKET = 2_000_000
REDUCED = "out.parquet"


def shuffle_dir(workdir: Workdir, step: Step) -> Path:
    return workdir.step_dir(step.key) / "shuffle"


def bucket_count(workdir: Workdir, step: Step, workers: int, rows_hint: int) -> int:
    """Fixed at the first attempt (resume must reuse it)."""
    plan = shuffle_dir(workdir, step) / "plan.json"
    if plan.exists():
        return int(json.loads(plan.read_text())["buckets"])
    rows = step.op.shuffle_rows(rows_hint)
    buckets = max(workers, 8, -(-rows // ROWS_PER_BUCKET))
    atomic_write_json(plan, {"buckets": buckets})
    return buckets


def _by_partition(table: Any) -> Iterator[tuple[int, Any]]:
    """(partition, rows of `table` about it), in partition order."""
    import numpy as np
    import pyarrow as pa

    parts = table.column(PART).to_numpy()
    if len(parts) == 0:
        return
    order = np.argsort(parts, kind="stable")
    ordered = table.take(pa.array(order))
    sorted_parts = parts[order]
    starts = np.flatnonzero(np.r_[True, sorted_parts[1:] != sorted_parts[:-1]])
    ends = np.r_[starts[1:], len(parts)]
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        yield int(sorted_parts[lo]), ordered.slice(lo, hi - lo)


def _check_decisions(op: Any, step: Step, decisions: Any, phase: str) -> None:
    for needed in (PART, POS, ID):
        if needed not in decisions.schema.names:
            raise OperationError(f"global operation {op.name!r}: {phase} must keep the "
                                 f"{needed!r} column of the rows it returns", step=step.name)


def scan_partition(workdir: Workdir, step: Step, partition: int, buckets: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    final = shuffle_dir(workdir, step) / f"scan-{partition:05d}"
    done = committed(final)
    if done is not None:
        return done
    op = prepared(step)
    start = time.perf_counter()
    reads = step.op_reads()  # the operation's names -> dataset columns (remap.py)
    names = list(reads)
    refs = [step.parent.columns[c] for c in reads.values()] + [step.parent.columns[ID]]
    table = read_columns(workdir, step.parent, partition, refs)
    ids = table.column(ref_name(step.parent.columns[ID]))
    inp = table.select([ref_name(r) for r in refs[:-1]]).rename_columns(names)
    op.take_counters()
    cols = columns_of(op.scan(to_format(inp, op.batch_format)))
    if KEY not in cols:
        raise OperationError(f"global operation {op.name!r}: scan must return {KEY!r}",
                             step=step.name)
    rows = cols.pop(ROW, None)
    out = pa.table(cols)
    if rows is not None:
        pos = np.asarray(rows, dtype=np.int64)
        if len(pos) != out.num_rows or (len(pos) and (pos.min() < 0
                                                      or pos.max() >= table.num_rows)):
            raise OperationError(f"global operation {op.name!r}: scan returned {ROW!r} values "
                                 f"out of range for a batch of {table.num_rows} rows",
                                 step=step.name)
        ids = ids.take(pa.array(pos))
    elif out.num_rows != table.num_rows:
        raise OperationError(f"global operation {op.name!r}: scan returned {out.num_rows} rows "
                             f"for {table.num_rows} (one per input row; null {KEY} skips a row; "
                             f"return {ROW!r} to emit several)", step=step.name)
    else:
        pos = np.arange(out.num_rows, dtype=np.int64)
    out = out.append_column(ID, ids).append_column(
        PART, pa.array(np.full(out.num_rows, partition, np.int32))).append_column(
        POS, pa.array(pos))
    out = out.filter(pc.is_valid(out.column(KEY)))
    key = out.column(KEY).cast(pa.uint64()).to_numpy()
    bucket = (key % np.uint64(buckets)).astype(np.int64)
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    table_sorted = out.take(pa.array(order))
    for b in range(buckets):
        lo, hi = bounds[b], bounds[b + 1]
        if hi > lo:
            write_parquet(tmp / f"bucket-{b:05d}.parquet", table_sorted.slice(lo, hi - lo))
    stats = {"rows": table.num_rows, "emitted": out.num_rows,
             "seconds": time.perf_counter() - start, "counters": op.take_counters()}
    return commit_unit(tmp, final, stats)


def reduce_bucket(workdir: Workdir, step: Step, bucket: int, buckets: int) -> dict:
    import pyarrow as pa

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    root = shuffle_dir(workdir, step)
    final = root / f"reduce-{bucket:05d}"
    if step.op.resolves == COMPONENTS and (final / REDUCED).exists():
        remove_tree(final)  # the older single-process layout: reduce again
    done = committed(final)
    if done is not None:
        return done
    op = prepared(step)
    start = time.perf_counter()
    files = sorted(root.glob(f"scan-*/bucket-{bucket:05d}.parquet"))
    tables = [read_parquet(f) for f in files]
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    rows = sum(t.num_rows for t in tables)
    returned = 0
    op.take_counters()
    if rows:
        data = pa.concat_tables(tables, promote_options="default")
        del tables
        result = pa.table(columns_of(op.reduce(to_format(data, op.batch_format))))
        returned = result.num_rows
        if op.resolves == COMPONENTS:
            write_reduced(tmp, result, buckets, op.name, step.name)
        elif op.resolves:
            write_parquet(tmp / REDUCED, result)
        else:
            _check_decisions(op, step, result, "reduce")
            for p, subset in _by_partition(result):
                write_parquet(tmp / part_name("part", p), subset)
    stats = {"rows": rows, "returned": returned, "seconds": time.perf_counter() - start,
             "counters": op.take_counters()}
    return commit_unit(tmp, final, stats)


def reduced_tables(workdir: Workdir, step: Step) -> Iterator[Any]:
    """Every bucket's reduce output, in bucket order, one row group at a time."""
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    for path in sorted(shuffle_dir(workdir, step).glob(f"reduce-*/{REDUCED}")):
        reader = pq.ParquetFile(path)
        for group in range(reader.num_row_groups):
            yield reader.read_row_group(group)


def resolve_step(workdir: Workdir, step: Step) -> dict:
    """Phase 3 of an op with `resolves`: one unit over every reduce output."""
    import pyarrow as pa

    final = shuffle_dir(workdir, step) / "resolve"
    done = committed(final)
    if done is not None:
        return done
    op = prepared(step)
    start = time.perf_counter()
    op.take_counters()
    result = op.resolve(reduced_tables(workdir, step))
    pieces = [result] if isinstance(result, (pa.Table, pa.RecordBatch, dict)) else result
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    writers: dict[int, StreamingParquetWriter] = {}
    decided = 0
    try:
        for piece in pieces:
            table = pa.table(columns_of(piece))
            _check_decisions(op, step, table, "resolve")
            decided += table.num_rows
            for p, subset in _by_partition(table):
                if p not in writers:
                    writers[p] = StreamingParquetWriter(tmp / part_name("part", p),
                                                        subset.schema)
                writers[p].write(subset)
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        remove_tree(tmp)
        raise
    stats = {"decisions": decided, "seconds": time.perf_counter() - start,
             "counters": op.take_counters()}
    return commit_unit(tmp, final, stats)


def unit_counters(workdir: Workdir, step: Step, partition: int) -> dict[str, int]:
    """`Operation.count` totals to record with partition `partition`: those of its scan, and
    for partition 0 also those of every reduce unit, of resolve and of the components' label
    units (the step's record sums its partitions, so each unit is counted once)."""
    root = shuffle_dir(workdir, step)
    folders = [root / f"scan-{partition:05d}"]
    if partition == 0:
        folders += sorted(root.glob("reduce-*")) + [root / "resolve"]
        folders += sorted(root.glob("label-*"))
    total: Counter[str] = Counter()
    for folder in folders:
        total.update((committed(folder) or {}).get("counters", {}))
    return dict(total)


def apply_partition(workdir: Workdir, step: Step, partition: int) -> dict:
    import numpy as np
    import pyarrow as pa

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    start = time.perf_counter()
    op = step.op
    root = shuffle_dir(workdir, step)
    out_dir = workdir.step_dir(step.key)
    ids = read_columns(workdir, step.parent, partition, [step.parent.columns[ID]]).column(0)
    n = len(ids)
    name = part_name("part", partition)
    files = sorted(root.glob(f"reduce-*/{name}")) + sorted(root.glob(f"resolve/{name}")) \
        + sorted(root.glob(f"decide-*/{name}"))
    produced = step.produced
    writes = step.op_writes()  # decisions name columns as the operation does (remap.py)
    declared = {name: produced[column] for name, column in writes.items()}
    lineage = normalize_columns(op.lineage)
    listed = np.zeros(n, dtype=bool)
    reasons = np.full(n, None, dtype=object)
    values = {c: np.full(n, None, dtype=object) for c in {**declared, **lineage}}
    for f in files:
        d = read_parquet(f)
        pos = d.column(POS).to_numpy()
        listed[pos] = True
        if REASON in d.schema.names:
            reasons[pos] = np.asarray(d.column(REASON).to_pylist(), dtype=object)
        for c in values:
            if c in d.schema.names:
                values[c][pos] = np.asarray(d.column(c).to_pylist(), dtype=object)
    if not op.keep_unlisted:
        reasons[~listed & np.equal(reasons, None)] = op.reason()
    drop = ~np.equal(reasons, None) if stores_index(step) else np.zeros(n, dtype=bool)
    keep = ~drop
    stored: dict[str, Any] = {}
    if stores_index(step):
        stored[INDEX] = pa.array(np.flatnonzero(keep).astype(np.int64))
    for c, t in declared.items():
        stored[writes[c]] = pa.array(values[c][keep].tolist(), type=t)
    schema = pa.schema([(INDEX, pa.int64())] * stores_index(step) + list(produced.items()))
    write_parquet(out_dir / name, pa.table(stored, schema=schema))
    written = [name]
    dropped = Counter()
    if stores_index(step):
        why = reasons[drop].tolist()
        dropped.update(why)
        table = pa.table({ID: ids.filter(pa.array(drop)), REASON: pa.array(why, pa.string()),
                          **{c: pa.array(values[c][drop].tolist(), type=t)
                             for c, t in lineage.items()}})
        dropped_name = part_name("dropped", partition)
        write_parquet(out_dir / dropped_name, table)
        written.append(dropped_name)
    stats = {"rows_in": n, "rows_out": int(keep.sum()), "dropped": dict(dropped), "errors": 0,
             "seconds": round(time.perf_counter() - start, 6),
             **committed_files(out_dir, written)}
    counters = unit_counters(workdir, step, partition)
    if counters:
        stats["counters"] = counters
    atomic_write_json(out_dir / part_name("stats", partition, "json"), stats)
    return stats
