"""Sources read in place, mirrored once as Parquet in the explorer's cache folder.

A source the run did not copy into the workdir (a JSONL file read in place) has no step file:
its columns are read again from the input each time. Parsing a whole partition for every page
would be slow, so the first time a partition is needed it is streamed once into a Parquet
file under the cache folder (`cache_dir() / "sources"`), never into the workdir; later pages
read only the row groups they need. The mirror is named by the step's cache key (which covers
the input files' names, sizes and times) and checked against the row count the run recorded.
When the cache folder cannot be written, the partition is parsed as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..reader import source_partitions
from ..storage import part_name, read_json
from .workdir import RunView

ROW_GROUP_ROWS = 4_096  # small row groups: a page reads little around its rows
ROW_GROUP_BYTES = 8 << 20
_LOCK = threading.Lock()
MIRRORED: list[str] = []  # "key/partition" of each mirror written (tests count work with it)


def mirror_path(step: Any, partition: int) -> Path:
    from .stats import cache_dir

    return cache_dir() / "sources" / f"{step.key}-{partition:05d}.parquet"


def source_file(run: RunView, step: Any, partition: int) -> Path | None:
    """The Parquet mirror of the in-place source `step`'s partition (made on first use), or
    None when it cannot be written."""
    path = mirror_path(step, partition)
    if path.is_file():
        return path
    with _LOCK:
        if path.is_file():
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            rows = _write(run, step, partition, tmp)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        MIRRORED.append(f"{step.key}/{partition}")
        del rows
    return path


def _write(run: RunView, step: Any, partition: int, tmp: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type)

    part = source_partitions(run.workdir, step)[partition]
    writer = None
    buffered: list[Any] = []
    size = rows = 0

    def flush() -> None:
        nonlocal writer, buffered, size
        if not buffered:
            return
        table = pa.concat_tables(buffered, promote_options="default")
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="lz4")
        writer.write_table(table.cast(writer.schema) if table.schema != writer.schema
                           else table, row_group_size=max(table.num_rows, 1))
        buffered, size = [], 0

    try:
        for batch in step.op.read(part, None):
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            buffered.append(table)
            size += table.nbytes
            rows += table.num_rows
            if sum(t.num_rows for t in buffered) >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                flush()
        flush()
        if writer is None:
            names = [c for c in step.schema]
            writer = pq.ParquetWriter(tmp, pa.schema([(c, pa.null()) for c in names]))
    finally:
        if writer is not None:
            writer.close()
    stats = read_json(run.workdir.step_dir(step.key) / part_name("stats", partition, "json"))
    expected = stats.get("rows_out") if isinstance(stats, dict) else None
    if expected is not None and rows != expected:
        raise InputError(
            f"the input of step {step.name!r} changed since the run: unit {partition} reads "
            f"{rows} rows now, {expected} when the step ran (it is read in place)",
            path=str(getattr(step.op.args, "path", "") or run.root))
    return rows
