"""The phases of a global step, each a unit of work that can run in any worker:

    scan(p)    read partition p, call `op.scan`, spread rows with a `_key` into buckets on disk
    reduce(b)  read bucket b from every partition, call `op.reduce`, route decisions by partition
    apply(p)   read partition p's decisions, store the step's output like a filter/map would

Every unit writes into a temp folder that it renames when done, so a killed run resumes at the
first unit not yet committed. Memory is bounded by one partition or one bucket at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..dataset import ID, Step
from ..errors import OperationError
from ..plan import stores_index
from ..reader import INDEX, read_columns, ref_name
from ..storage import Workdir, atomic_write_json, part_name, remove_tree, temp_path, write_parquet
from .batches import columns_of, to_format
from .workers import prepared

KEY, PART, POS, REASON = "_key", "_part", "_pos", "_reason"
ROWS_PER_BUCKET = 2_000_000


def shuffle_dir(workdir: Workdir, step: Step) -> Path:
    return workdir.step_dir(step.key) / "shuffle"


def bucket_count(workdir: Workdir, step: Step, workers: int, rows_hint: int) -> int:
    """Fixed at the first attempt (resume must reuse it)."""
    plan = shuffle_dir(workdir, step) / "plan.json"
    if plan.exists():
        return int(json.loads(plan.read_text())["buckets"])
    buckets = max(workers, 8, -(-rows_hint // ROWS_PER_BUCKET))
    atomic_write_json(plan, {"buckets": buckets})
    return buckets


def _commit_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        remove_tree(final)
    os.replace(tmp, final)


def scan_partition(workdir: Workdir, step: Step, partition: int, buckets: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    final = shuffle_dir(workdir, step) / f"scan-{partition:05d}"
    if (final / "_done.json").exists():
        return json.loads((final / "_done.json").read_text())
    op = prepared(step)
    start = time.perf_counter()
    names = list(step.consumed)
    refs = [step.parent.columns[c] for c in names] + [step.parent.columns[ID]]
    table = read_columns(workdir, step.parent, partition, refs)
    ids = table.column(ref_name(step.parent.columns[ID]))
    inp = table.select([ref_name(r) for r in refs[:-1]]).rename_columns(names)
    out = op.scan(to_format(inp, op.batch_format))
    cols = columns_of(out)
    if KEY not in cols:
        raise OperationError(f"global operation {op.name!r}: scan must return {KEY!r}",
                             step=step.name)
    out = pa.table(cols)
    if out.num_rows != table.num_rows:
        raise OperationError(f"global operation {op.name!r}: scan returned {out.num_rows} rows "
                             f"for {table.num_rows} (one per input row; null {KEY} skips a row)",
                             step=step.name)
    out = out.append_column(ID, ids).append_column(
        PART, pa.array(np.full(out.num_rows, partition, np.int32))).append_column(
        POS, pa.array(np.arange(out.num_rows, dtype=np.int64)))
    out = out.filter(pc.is_valid(out.column(KEY)))
    key = out.column(KEY).cast(pa.uint64()).to_numpy()
    bucket = (key % np.uint64(buckets)).astype(np.int64)
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    order = np.argsort(bucket, kind="stable")
    sorted_b = bucket[order]
    bounds = np.searchsorted(sorted_b, np.arange(buckets + 1))
    table_sorted = out.take(pa.array(order))
    for b in range(buckets):
        lo, hi = bounds[b], bounds[b + 1]
        if hi > lo:
            write_parquet(tmp / f"bucket-{b:05d}.parquet", table_sorted.slice(lo, hi - lo))
    stats = {"rows": table.num_rows, "emitted": out.num_rows,
             "seconds": time.perf_counter() - start}
    atomic_write_json(tmp / "_done.json", stats)
    _commit_dir(tmp, final)
    return stats


def reduce_bucket(workdir: Workdir, step: Step, bucket: int) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = shuffle_dir(workdir, step)
    final = root / f"reduce-{bucket:05d}"
    if (final / "_done.json").exists():
        return json.loads((final / "_done.json").read_text())
    op = prepared(step)
    start = time.perf_counter()
    files = sorted(root.glob(f"scan-*/bucket-{bucket:05d}.parquet"))
    tables = [pq.read_table(f) for f in files]
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    rows = sum(t.num_rows for t in tables)
    if rows:
        data = pa.concat_tables(tables, promote_options="default")
        decisions = pa.table(columns_of(op.reduce(to_format(data, op.batch_format))))
        for needed in (PART, POS, ID):
            if needed not in decisions.schema.names:
                raise OperationError(f"global operation {op.name!r}: reduce must keep the "
                                     f"{needed!r} column of the rows it returns", step=step.name)
        parts = decisions.column(PART).to_numpy()
        for p in sorted(set(parts.tolist())):
            subset = decisions.filter(pc.equal(decisions.column(PART), p))
            write_parquet(tmp / part_name("part", p), subset)
    stats = {"rows": rows, "seconds": time.perf_counter() - start}
    atomic_write_json(tmp / "_done.json", stats)
    _commit_dir(tmp, final)
    return stats


def apply_partition(workdir: Workdir, step: Step, partition: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    op = step.op
    root = shuffle_dir(workdir, step)
    out_dir = workdir.step_dir(step.key)
    ids = read_columns(workdir, step.parent, partition, [step.parent.columns[ID]]).column(0)
    n = len(ids)
    files = sorted(root.glob(f"reduce-*/{part_name('part', partition)}"))
    decisions = [pq.read_table(f) for f in files]
    produced = step.produced
    listed = np.zeros(n, dtype=bool)
    reasons = np.full(n, None, dtype=object)
    values = {c: np.full(n, None, dtype=object) for c in produced}
    for d in decisions:
        pos = d.column(POS).to_numpy()
        listed[pos] = True
        if REASON in d.schema.names:
            reasons[pos] = np.asarray(d.column(REASON).to_pylist(), dtype=object)
        for c in produced:
            if c in d.schema.names:
                values[c][pos] = np.asarray(d.column(c).to_pylist(), dtype=object)
    if not getattr(op, "keep_unlisted", True):
        reasons[~listed & np.equal(reasons, None)] = op.reason()
    drop = ~np.equal(reasons, None) if stores_index(step) else np.zeros(n, dtype=bool)
    keep = ~drop
    stored: dict[str, Any] = {}
    if stores_index(step):
        stored[INDEX] = pa.array(np.flatnonzero(keep).astype(np.int64))
    for c, t in produced.items():
        stored[c] = pa.array(values[c][keep].tolist(), type=t)
    files_written = {}
    schema = pa.schema([(INDEX, pa.int64())] * stores_index(step) + list(produced.items()))
    size = write_parquet(out_dir / part_name("part", partition), pa.table(stored, schema=schema))
    files_written[part_name("part", partition)] = size
    dropped = Counter()
    if stores_index(step):
        why = reasons[drop].tolist()
        dropped.update(why)
        table = pa.table({ID: ids.filter(pa.array(drop)), "_reason": pa.array(why, pa.string())})
        name = part_name("dropped", partition)
        files_written[name] = write_parquet(out_dir / name, table)
    stats = {"rows_in": n, "rows_out": int(keep.sum()), "dropped": dict(dropped), "errors": 0,
             "seconds": round(time.perf_counter() - start, 6), "files": files_written}
    atomic_write_json(out_dir / part_name("stats", partition, "json"), stats)
    return stats
