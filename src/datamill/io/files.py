"""fsspec helpers shared by file sources and sinks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

ROW_BITS = 40  # row id = file ordinal << 40 | row (or byte offset) within the file
# what a reader yields at once, at most (besides a row cap): a batch of images or other
# large values is bounded by its bytes, not by a row count that could be gigabytes
READ_BATCH_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FilePart:
    """A unit of work of a file source: a file, or a byte/row-group range of one."""

    ordinal: int
    path: str
    start: int = 0
    end: int = -1
    row_groups: tuple[int, ...] = ()
    row_offset: int = 0


def stable_block(total: int, units: int, floor: int = 1) -> int:
    """A cut size for `units` pieces of `total`: the largest power of two no larger than
    total/units (and no smaller than `floor`). Powers of two keep the cut of an unchanged
    file the same when another file of the input changes a little, so that its committed
    partitions can be kept (executors/adopt.py)."""
    target = max(floor, total // max(units, 1), 1)
    return max(floor, 1 << (target.bit_length() - 1))


def expand_paths(path: Any, suffixes: tuple[str, ...] = ()) -> tuple[Any, list[str]]:
    """Resolve a path, directory, glob or list of them to a sorted list of files."""
    import fsspec
    from fsspec.core import url_to_fs

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    fs = None
    found: list[str] = []
    for p in paths:
        fs_p, root = url_to_fs(p)
        fs = fs or fs_p
        if any(ch in root for ch in "*?["):
            matches = fs_p.glob(root)
        elif fs_p.isdir(root):
            matches = [f for f in fs_p.find(root) if not _hidden(f, root)]
            if suffixes:
                matches = [f for f in matches if f.lower().endswith(suffixes)]
        elif fs_p.exists(root):
            matches = [root]
        else:
            raise InputError("no such file or directory", path=p)
        found.extend(sorted(m for m in matches if not fs_p.isdir(m)))
    if fs is None:
        fs = fsspec.filesystem("file")
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if protocol not in ("file", "local"):
        found = [m if "://" in m else f"{protocol}://{m.lstrip('/')}" if protocol == "memory"
                 else f"{protocol}://{m}" for m in found]
    return fs, sorted(dict.fromkeys(found))


def absolute(path: Any) -> Any:
    """Make local paths absolute (URLs are left alone), so that the path recorded in a
    workdir's manifest still points at the same files when read from another directory."""
    import os

    if isinstance(path, (list, tuple)):
        return [absolute(p) for p in path]
    text = os.fspath(path) if hasattr(path, "__fspath__") else path
    if not isinstance(text, str) or "://" in text or "::" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def _hidden(path: str, root: str) -> bool:
    rel = path[len(root):].lstrip("/")
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def fingerprint(fs: Any, files: list[str]) -> str:
    """Names, sizes and modification times: changes whenever the input does."""
    entries = []
    for f in files:
        try:
            info = fs.info(f)
        except FileNotFoundError:
            raise InputError("no such file: it was listed as input and has gone since (files "
                             "must stay while a run reads them)", path=f) from None
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
        entries.append([f, info.get("size"), str(mtime)])
    return json.dumps(entries)


def open_file(path: str, mode: str = "rb", compression: str | None = None) -> Any:
    import fsspec

    return fsspec.open(path, mode, compression=compression).open()


def compression_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(".gz"):
        return "gzip"
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        return "zstd"
    if lower.endswith(".bz2"):
        return "bz2"
    return None


def with_ids(batch: Any, ordinal: int, rows: Any) -> Any:
    """Prepend the `_id` column: file ordinal << 40 | row (or byte offset)."""
    import numpy as np
    import pyarrow as pa

    ids = (np.int64(ordinal) << np.int64(ROW_BITS)) + np.asarray(rows, dtype=np.int64)
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.add_column(0, "_id", pa.array(ids, pa.int64()))


def cast_to(table: Any, schema: Any, path: str) -> Any:
    """Cast a file's columns to the dataset schema; name the file and column if impossible."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name not in table.schema.names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise InputError(
                    f"column {field.name!r} is {col.type} here but {field.type} in the dataset "
                    f"schema (mixed types across files): {exc}", path=path) from None
        columns.append(col)
    if not columns:
        return table.select([])  # keeps the row count
    return pa.table(columns, schema=schema)
