"""The workdir: layout, atomic writes, the run lock, and Parquet files of steps.

    WORKDIR/
      .lock                    held (flock) by the run using the workdir
      manifest.json            lineage of the datasets the last run produced
      runs/<run id>.json       one record per run
      steps/<cache key>/       one materialized step, content-addressed by its cache key
        part-00000.parquet       produced columns (+ `_index` when the row set changed)
        dropped-00000.parquet    `_id`, `_reason` of rows a filter dropped
        quarantine-00000.parquet rows set aside: `_id`, `_error`, `_path`, `_line`, `_raw`,
                                 then every column of the step's input row
        stats-00000.json         partition commit marker, written last
        _SUCCESS.json            step record, written once every partition is committed
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StorageError, WorkdirBusyError

STEP_COMPRESSION = "lz4"


def part_name(kind: str, partition: int, ext: str = "parquet") -> str:
    return f"{kind}-{partition:05d}.{ext}"


def temp_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it into place if the block succeeds, remove it
    otherwise. OS errors (full disk, permissions) become a StorageError naming `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise StorageError(f"could not write {path}: {exc}") from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def read_json(path: str | Path) -> Any | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a torn or corrupt marker counts as absent


class Workdir:
    """A run's working directory; paths inside it are always stored relative to it."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path).expanduser().resolve()

    def step_dir(self, key: str) -> Path:
        return self.root / "steps" / key

    @contextlib.contextmanager
    def lock(self) -> Iterator[int]:
        """Hold the workdir exclusively for one run; a second run is refused, not queued."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = ""
                with contextlib.suppress(OSError):
                    holder = Path(lock_path).read_text().strip()
                raise WorkdirBusyError(
                    f"workdir {self.root} is in use by another run"
                    + (f" (pid {holder})" if holder else "")
                    + "; wait for it to finish or choose another --workdir") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield fd
        finally:
            os.close(fd)


def write_parquet(path: Path, table: Any, compression: str = STEP_COMPRESSION) -> int:
    """Write one table atomically; returns the file size."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return path.stat().st_size


class StreamingParquetWriter:
    """Appends batches to a temp file; `commit()` renames it into place atomically."""

    def __init__(self, path: Path, schema: Any, compression: str = STEP_COMPRESSION):
        self.path = path
        self.schema = schema
        self.compression = compression
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: Any = None

    def write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        try:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = temp_path(self.path)
                self._writer = pq.ParquetWriter(self._tmp, self.schema,
                                                compression=self.compression)
            self._writer.write_table(table.cast(self.schema) if table.schema != self.schema
                                     else table)
        except OSError as exc:
            self.abort()
            raise StorageError(f"could not write {self.path}: {exc}") from exc
        self.rows += table.num_rows

    def commit(self) -> int:
        if self._writer is None:
            self.write(self.schema.empty_table())
        try:
            self._writer.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise StorageError(f"could not write {self.path}: {exc}") from exc
        self._writer = None
        return self.path.stat().st_size

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


def parquet_file_ok(path: Path, size: int | None = None) -> bool:
    """Cheap integrity check: present, expected size, Parquet magic at both ends."""
    try:
        st = path.stat()
        if size is not None and st.st_size != size:
            return False
        if st.st_size < 12:
            return False
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
        return head == b"PAR1" and tail == b"PAR1"
    except OSError:
        return False


def remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
