"""Read a materialized dataset back, joining columns stored by different steps.

Steps store only what they produce. A filter or expand stores `_index`: for each of its output
rows, the position of its input row in the partition. Reading column C (produced by step S)
at step K composes the `_index` maps of the row-changing steps between S and K, then takes.
"""

from __future__ import annotations

from typing import Any

from .dataset import ColumnRef, Step
from .integrity import check_step_file, corrupt
from .manifest import SUCCESS
from .plan import stores_data, stores_index
from .storage import Workdir, atomic_write_json, part_name, read_json, read_parquet

INDEX = "_index"


def ref_name(ref: ColumnRef) -> str:
    return f"{ref.step}\x1f{ref.stored}"


PARTITIONING = "partitioning.json"  # in a source step's folder: how finely it is cut


def source_partitions(workdir: Workdir, step: Step) -> list:
    """The source step's partitions, cut as pinned in `workdir` (see `pin_partitioning`)."""
    units = pinned_units(workdir, step)
    cuts = step.op.__dict__.setdefault("_datamill_cuts", {})
    if units not in cuts:
        cuts[units] = step.op.partitions() if units <= 1 else step.op.finer_partitions(units)
    return cuts[units]


def pinned_units(workdir: Workdir, step: Step) -> int:
    pin = read_json(workdir.step_dir(step.key) / PARTITIONING)
    return int(pin.get("units", 1)) if isinstance(pin, dict) else 1


def pin_partitioning(workdir: Workdir, step: Step, units: int) -> int:
    """Fix, on a source step's first run in `workdir`, how many units its data is cut into
    at least (files cut finer when the data allows: byte ranges, row groups), and return the
    pinned value. Later runs keep it whatever their worker count, so that committed
    partitions, resumes and caches stay valid. A step folder written before pins existed
    keeps the one-cut-per-file partitioning it was written with."""
    folder = workdir.step_dir(step.key)
    pinned = read_json(folder / PARTITIONING)
    if isinstance(pinned, dict):
        return int(pinned.get("units", 1))
    if (folder / SUCCESS).exists() or any(folder.glob("stats-*.json")):
        units = 1
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / PARTITIONING, {"units": units})
    return units


def read_step_file(workdir: Workdir, step: Step, partition: int, columns: list[str]):
    """Columns of a step's committed file, checked first against its commit (size and
    checksum): a damaged or unreadable file raises CorruptFileError."""
    from . import image_type  # noqa: F401  (registers the image type for reading)

    path = workdir.step_dir(step.key) / part_name("part", partition)
    check_step_file(workdir, step.key, step.name, partition, path)
    try:
        return read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:
        raise corrupt(workdir, step.key, step.name, partition, path,
                      f"unreadable: {exc}") from exc


def read_columns(workdir: Workdir, step: Step, partition: int, refs: list[ColumnRef]):
    """The columns `refs` of the dataset at `step`, partition `partition`, as one Table whose
    column names are `ref_name(ref)`."""
    import numpy as np
    import pyarrow as pa

    chain = step.chain()
    position = {s.name: i for i, s in enumerate(chain)}
    by_producer: dict[int, list[ColumnRef]] = {}
    for ref in refs:
        by_producer.setdefault(position[ref.step], []).append(ref)

    index_cache: dict[int, Any] = {}

    def index_of(i: int):
        if i not in index_cache:
            table = read_step_file(workdir, chain[i], partition, [INDEX])
            index_cache[i] = table.column(INDEX).to_numpy()
        return index_cache[i]

    # positions[i]: for each output row, its position in the row space after step i
    target = len(chain) - 1
    positions: dict[int, Any] = {target: None}  # None = identity
    current = None
    lowest = min(by_producer, default=target)
    for i in range(target, -1, -1):
        positions[i] = current
        if i == lowest:
            break
        if stores_index(chain[i]):
            idx = index_of(i)
            current = idx if current is None else idx[current]

    arrays: dict[str, Any] = {}
    for i, group in by_producer.items():
        producer = chain[i]
        stored = [r.stored for r in group]
        if producer.kind == "source" and not stores_data(producer):
            table = read_source_partition(workdir, producer, partition, stored)
        else:
            table = read_step_file(workdir, producer, partition, stored)
        pos = positions[i]
        if pos is not None:
            table = table.take(pa.array(pos, type=pa.int64()) if isinstance(pos, np.ndarray)
                               else pos)
        for ref in group:
            arrays[ref_name(ref)] = table.column(ref.stored)
    return pa.table({ref_name(r): arrays[ref_name(r)] for r in refs})


def read_source_partition(workdir: Workdir, step: Step, partition: int,
                          columns: list[str] | None):
    """A partition of a source read in place (not copied into the workdir), read again.
    Its rows must be those the step read when it ran (the count its stats recorded): the
    stored columns of later steps are positions into them, so a file that has vanished or
    become unreadable since (skipped under `errors='skip'`) must stop the read, not shift
    every row after it."""
    import pyarrow as pa

    from .errors import InputError

    part = source_partitions(workdir, step)[partition]
    tables = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b])
              for b in step.op.read(part, columns)]
    rows = sum(t.num_rows for t in tables)
    stats = read_json(workdir.step_dir(step.key) / part_name("stats", partition, "json"))
    expected = stats.get("rows_out") if isinstance(stats, dict) else None
    if expected is not None and rows != expected:
        raise InputError(
            f"the input of step {step.name!r} ({step.op.name}) changed while its workdir used "
            f"it: unit {partition} reads {rows} rows now, {expected} when the step ran (its "
            "files are read in place, not copied into the workdir: restore them, or run again "
            "after changing them, since a new size or modification time makes a new input; "
            "materialize=True keeps a copy instead)",
            path=str(getattr(step.op.args, "path", "") or workdir.root))
    if not tables:
        return pa.schema([(c, step.schema[c]) for c in columns or step.schema]).empty_table()
    return pa.concat_tables(tables)


def partition_count(workdir: Workdir, step: Step) -> int:
    return len(source_partitions(workdir, step.chain()[0]))


def read_table(workdir: Workdir | str, step: Step, columns: list[str] | None = None):
    """Every partition of the dataset at `step`, with its visible columns (or `columns`)."""
    import pyarrow as pa

    if not isinstance(workdir, Workdir):
        workdir = Workdir(workdir)
    names = columns or [c for c in step.columns if not c.startswith("_")]
    refs = [step.columns[c] for c in names]
    tables = []
    for p in range(partition_count(workdir, step)):
        t = read_columns(workdir, step, p, refs)
        tables.append(t.rename_columns(names))
    if not tables:
        return pa.schema([(c, step.schema[c]) for c in names]).empty_table()
    return pa.concat_tables(tables)
