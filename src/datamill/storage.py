"""The workdir: layout, atomic writes, the run lock, and Parquet files of steps.

    WORKDIR/
      .lock                    held (flock) by the run using the workdir
      manifest.json            lineage of the datasets the last run produced
      runs/<run id>.json       one record per run
      history.json             per step name, the parts of its last completed keys (why a
                               step recomputes: cache_history.py)
      steps/<cache key>/       one materialized step, content-addressed by its cache key
        part-00000.parquet       produced columns (+ `_index` when the row set changed)
        dropped-00000.parquet    `_id`, `_reason` of rows a filter dropped
        quarantine-00000.parquet rows set aside: `_id`, `_error`, `_path`, `_line`, `_raw`,
                                 then every column of the step's input row
        stats-00000.json         partition commit marker, written last (sizes, checksums)
        _SUCCESS.json            step record, written once every partition is committed
        _DAMAGED.json            files found corrupt, until their partitions are recomputed

      llm-cache/               the LLM ops' response cache (one file per request, fanned out);
        .staging/                its writers' temp files (`staged_write_bytes`)

Temp files are named `.NAME.tmp-PID-RANDOM` beside their final name, except in the stores of
STAGED_STORES, whose temp files are all in their `.staging` folder; the run that holds the
lock removes those a killed run left (`Workdir.remove_temp_files`), without walking the
stores' (many) files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import StorageError, WorkdirBusyError

STEP_COMPRESSION = "lz4"
# what `temp_path` names, and the links executors/adopt.py stages
TEMP_NAME = re.compile(r"^\..+\.(tmp-\d+-[0-9a-f]{8}|adopt-\d+)$")
# workdir folders of many small files whose writers stage temp files in STAGING inside them
STAGED_STORES = ("llm-cache",)
STAGING = ".staging"


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


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write `data` under a temp name, then rename it into place. `durable` also syncs it
    to disk first (survives a power loss, not only a killed process)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def staged_write_bytes(store: str | Path, path: str | Path, data: bytes) -> None:
    """Write `data` to `path` inside `store` (a folder of STAGED_STORES) through a temp file
    in `store/.staging`, renamed into place (not synced: a cache entry)."""
    path = Path(path)
    staging = Path(store) / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(staging / path.name)
    try:
        tmp.write_bytes(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise StorageError(f"could not write {path}: {exc}") from exc
        raise


def atomic_write_json(path: str | Path, obj: Any, durable: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode(),
                       durable)


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
        self.root.mkdir(parents=True, exist_ok=True)

        def busy(holder: str) -> WorkdirBusyError:
            return WorkdirBusyError(
                f"workdir {self.root} is in use by another run"
                + (f" (pid {holder})" if holder else "")
                + "; wait for it to finish or choose another --workdir")

        with exclusive_lock(self.root / ".lock", str(os.getpid()), busy) as (fd, _):
            yield fd

    def remove_temp_files(self) -> tuple[int, int]:
        """Remove the temp files and folders that killed runs left (call with the lock
        held: no live writer has any then). Returns (entries removed, bytes freed)."""
        removed = freed = 0
        for store in STAGED_STORES:  # every entry of a staging folder is a temp file
            staging = self.root / store / STAGING
            for entry in (staging.iterdir() if staging.is_dir() else ()):
                freed += tree_size(entry)
                if entry.is_dir():
                    remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        for folder, dirs, files in os.walk(self.root):
            if folder == str(self.root):
                dirs[:] = [d for d in dirs if d not in STAGED_STORES]
            for name in [*files, *dirs]:
                if (".tmp-" not in name and ".adopt-" not in name) \
                        or not TEMP_NAME.match(name):
                    continue
                path = Path(folder) / name
                freed += tree_size(path)
                if name in dirs:
                    dirs.remove(name)
                    remove_tree(path)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
                removed += 1
        return removed, freed


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if not path.is_dir():
        with contextlib.suppress(OSError):
            return path.stat().st_size
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).stat().st_size
    return total


HELD_LOCKS: set[int] = set()  # fds of the locks this process holds (forked workers close them)


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str,
                   busy: Callable[[str], Exception]) -> Iterator[tuple[int, str]]:
    """Hold an exclusive `flock` on `path` for the block, the file's text set to `holder`.
    Yields (fd, the text an earlier holder left). If another process holds the lock, raises
    `busy(its holder text)`. The lock dies with the process that holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            text = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = Path(path).read_text().strip()
            raise busy(text) from None
        previous = os.pread(fd, 1 << 16, 0).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        HELD_LOCKS.add(fd)
        yield fd, previous
    finally:
        HELD_LOCKS.discard(fd)
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Does a live process hold the `flock` of `path` (a workdir's `.lock`)?"""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# --- checksums of committed files ---------------------------------------------------------
CHUNK = 4 << 20


def _hash(algorithm: str | None) -> tuple[str, Any]:
    """(name, hash object): xxh3 (64 bits) when xxhash is installed, else blake2b."""
    if algorithm in (None, "xxh3"):
        try:
            import xxhash

            return "xxh3", xxhash.xxh3_64()
        except ImportError:
            if algorithm == "xxh3":
                raise
    if algorithm not in (None, "blake2b"):
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    import hashlib

    return "blake2b", hashlib.blake2b(digest_size=8)


class Checksum:
    """An incremental checksum of a file's bytes, written `ALGORITHM:HEX`."""

    def __init__(self, algorithm: str | None = None):
        self.algorithm, self._h = _hash(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def value(self) -> str:
        return f"{self.algorithm}:{self._h.hexdigest()}"


def file_checksum(path: str | Path, algorithm: str | None = None) -> str:
    """The checksum of a local file's bytes (`ALGORITHM:HEX`)."""
    h = Checksum(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.value()


def checksum_matches(path: str | Path, expected: str) -> bool:
    """Do the file's bytes still have the checksum recorded when it was committed?"""
    try:
        return file_checksum(path, expected.split(":", 1)[0]) == expected
    except OSError:
        return False
    except (ValueError, ImportError):  # recorded with a hash this install lacks: unknowable
        return True


def write_parquet(path: Path, table: Any, compression: str = STEP_COMPRESSION) -> int:
    """Write one table atomically; returns the file size."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return path.stat().st_size


def read_parquet(path: str | Path, columns: list[str] | None = None) -> Any:
    """One Parquet file as a Table (all columns, or `columns` in that order). Reads the file
    directly: `pq.read_table` goes through pyarrow.dataset, whose import (~0.2 s, pandas
    included) every freshly forked worker would pay again."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as reader:
        return reader.read(columns=columns)


def committed_files(folder: Path, names: list[str]) -> dict[str, dict]:
    """What a partition's stats marker records of its committed files: size and checksum."""
    return {"files": {n: (folder / n).stat().st_size for n in names},
            "checksums": {n: file_checksum(folder / n) for n in names}}


class StreamingParquetWriter:
    """Appends batches to a temp file; `commit()` renames it into place atomically. Small
    batches (a filter's `_index` and dropped rows, a stats step's numbers) are gathered into
    one row group of up to PENDING_ROWS rows or PENDING_BYTES bytes: a row group per 1 MiB
    batch cost ~0.6 ms each, and a filter step writes two per batch. A batch of more bytes is
    written at once, as before (a full disk shows at the write that fills it)."""

    PENDING_ROWS = 1 << 16
    PENDING_BYTES = 1 << 16

    def __init__(self, path: Path, schema: Any, compression: str = STEP_COMPRESSION):
        self.path = path
        self.schema = schema
        self.compression = compression
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: Any = None
        self._pending: list = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def write(self, table: Any) -> None:
        table = table.cast(self.schema) if table.schema != self.schema else table
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        if self._pending_rows >= self.PENDING_ROWS or self._pending_bytes >= self.PENDING_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pending = self._pending
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        try:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = temp_path(self.path)
                self._writer = pq.ParquetWriter(self._tmp, self.schema,
                                                compression=self.compression)
            table = pending[0] if len(pending) == 1 else pa.concat_tables(pending)
            self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        except OSError as exc:
            self.abort()
            raise StorageError(f"could not write {self.path}: {exc}") from exc

    def commit(self) -> int:
        if self._pending or self._writer is None:
            if not self._pending:
                self._pending.append(self.schema.empty_table())
            self._flush()
        try:
            self._writer.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise StorageError(f"could not write {self.path}: {exc}") from exc
        self._writer = None
        return self.path.stat().st_size

    def abort(self) -> None:
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
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
