"""The base of file sinks: one writer per partition, files rolled at a target size, each
committed atomically (temp name, then rename) with its checksum; lineage written beside the
data. A run claims the output folder (`_datamill_writer.json`, locked while it writes): a
run of another workdir is refused meanwhile, and takes the folder over after it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import OutputBusyError, StorageError
from ..operation import Arguments, SinkOperation
from ..storage import Checksum, exclusive_lock, is_locked

LINEAGE = "_datamill_lineage.json"
WRITER = "_datamill_writer.json"  # the run writing the folder, or the last one that did
PART_FILE = re.compile(r"part-\d{5}-\d{4}\.(parquet|csv|jsonl|jsonl\.gz|jsonl\.zst)$")
TEMP_FILE = re.compile(r"\.part-\d{5}-\d{4}\.[\w.]+\.tmp-[0-9a-f]{8}$")
PART_OF_ANY = re.compile(r"part-\d{5}-\d{4}\.")


class FileSinkArgs(Arguments):
    path: str = Field(description="Output directory (any fsspec URL).")
    target_file_size: int = Field(256 * 2**20, gt=0,
                                  description="Start a new file past this many bytes.")


class FileSink(SinkOperation):
    """Shared machinery; subclasses implement `_open`, `_write`, `_close`."""

    extension = ""
    consumes: dict = {}

    def resolve_consumes(self, schema: dict) -> dict:
        return dict(schema)  # a sink writes every visible column

    @property
    def fs(self) -> Any:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(self.args.path)
        self._root = root
        return fs

    def _files_matching(self, prefix: str) -> list[str]:
        """Part files (of any datamill format) and temp files of killed attempts whose
        names start with `prefix` (`part-` or `part-PPPPP-`)."""
        fs = self.fs
        if not fs.exists(self._root):
            return []
        found = []
        for f in fs.ls(self._root, detail=False):
            name = f.rsplit("/", 1)[-1]
            own = PART_OF_ANY.match(name) and name.endswith(f".{self.extension}")
            if (PART_FILE.match(name) or own) and name.startswith(prefix):
                found.append(f)
            elif TEMP_FILE.match(name) and name[1:].startswith(prefix):
                found.append(f)
        return found

    @property
    def location(self) -> str:
        """The output folder as an absolute URL (a relative path resolved when it was
        written)."""
        fs = self.fs
        return fs.unstrip_protocol(self._root)

    def _protocol(self) -> str:
        protocol = self.fs.protocol
        return protocol[0] if isinstance(protocol, (tuple, list)) else protocol

    @property
    def driver_only(self) -> bool:
        """Must partitions be written by the driver process? True for memory://, whose
        files a forked worker would write into its own copy of memory."""
        return self._protocol() == "memory"

    def prepare(self, fresh: bool = True) -> None:
        self._driver_pid = os.getpid()
        fs = self.fs
        fs.makedirs(self._root, exist_ok=True)
        if fresh:  # a new write replaces what an earlier pipeline left in the folder,
            # in whatever format it was written
            for f in self._files_matching("part-"):
                fs.rm(f)
            for name in (LINEAGE, "_SUCCESS"):
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(f"{self._root}/{name}")
        else:  # resuming: the temp files of the killed run go (the folder is claimed)
            for f in self._files_matching("part-"):
                if TEMP_FILE.match(f.rsplit("/", 1)[-1]):
                    fs.rm(f)

    # --- the claim on the output folder -------------------------------------------------
    def claim(self, workdir: Path) -> contextlib.AbstractContextManager[bool]:
        return claim_folder(self.fs, self._root, self.args.path, workdir)

    def written_from(self, workdir: Any) -> bool:
        previous = last_writer(self.fs, self._root)
        return previous is None or previous.get("workdir") == str(workdir)

    def open_partition(self, index: int) -> PartitionWriter:
        driver = getattr(self, "_driver_pid", None)
        if driver is not None and driver != os.getpid() and self.driver_only:
            raise StorageError(
                f"cannot write {self.args.path} from a worker process: the memory:// "
                "filesystem lives in each process's memory, so files written by workers would "
                "be lost. Run with workers=1, or write to a real filesystem")
        for stale in self._files_matching(f"part-{index:05d}-"):
            self.fs.rm(stale)  # left by an attempt that was killed before committing
        return PartitionWriter(self, index)

    def finalize(self, record: dict, lineage: dict) -> None:
        fs = self.fs
        try:
            with fs.open(f"{self._root}/{LINEAGE}", "w") as fh:
                fh.write(json.dumps(lineage, indent=1, default=str))
            with fs.open(f"{self._root}/_SUCCESS", "w") as fh:
                fh.write("")
        except OSError as exc:
            raise StorageError(f"cannot write {self._root}/{LINEAGE}: {exc}") from exc

    def outputs_ok(self, record: dict) -> bool:
        fs = self.fs
        for out in record.get("outputs", []):
            try:
                if fs.info(f"{self._root}/{out['file']}")["size"] != out["size"]:
                    return False
            except FileNotFoundError:
                return False
        return True

    def _open(self, fh: Any, schema: Any) -> Any:
        raise NotImplementedError

    def _write(self, writer: Any, table: Any) -> None:
        raise NotImplementedError

    def _close(self, writer: Any) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def claim_folder(fs: Any, root: str, shown: str, workdir: Path) -> Iterator[bool]:
    """Hold the folder `root` (on `fs`; `shown` in messages) for the run of `workdir` until
    the run ends; refused (OutputBusyError) while a run of another workdir holds it. Yields
    True when the folder was last written from another workdir: nothing in it is ours to
    resume."""
    fs.makedirs(root, exist_ok=True)
    me = {"workdir": str(workdir), "pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if protocol in ("file", "local"):  # a lock that dies with its process
        with exclusive_lock(Path(root) / WRITER, json.dumps(me),
                            lambda held: _busy(_parse(held), shown, root, workdir)) \
                as (_, before):
            previous = _parse(before)
            yield previous is not None and previous.get("workdir") != str(workdir)
        return
    previous = last_writer(fs, root)  # elsewhere: a record, and the holder's workdir lock
    if previous is not None and previous.get("workdir") != str(workdir) \
            and not fs.exists(f"{root}/_SUCCESS") and _alive(previous):
        raise _busy(previous, shown, root, workdir)
    with fs.open(f"{root}/{WRITER}", "w") as fh:
        fh.write(json.dumps(me))
    yield previous is not None and previous.get("workdir") != str(workdir)


def last_writer(fs: Any, root: str) -> dict | None:
    """Who holds, or last held, the folder (its `_datamill_writer.json`)."""
    try:
        return _parse(fs.cat_file(f"{root}/{WRITER}").decode())
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _busy(holder: dict | None, shown: str, root: str, workdir: Path) -> OutputBusyError:
    if holder and (holder.get("pid"), holder.get("workdir")) == (os.getpid(), str(workdir)):
        return OutputBusyError(f"two sinks of this run write the same output folder {shown}; "
                               "give each its own folder")
    who = ""
    if holder:
        who = (f" (pid {holder.get('pid')} on {holder.get('host')}, workdir "
               f"{holder.get('workdir')}, since {holder.get('started')})")
    return OutputBusyError(
        f"output folder {shown} is being written by another run{who}; wait for it to finish "
        "or write elsewhere (two runs writing one folder would destroy each other's files). "
        f"If that run is dead, delete {root}/{WRITER}")


def _parse(text: str) -> dict | None:
    try:
        value = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return {"workdir": "?"}  # unreadable: never taken for ours
    return value if isinstance(value, dict) else None


def _alive(holder: dict) -> bool:
    """Is the run named by `holder` still running? Known on its own host only (its
    workdir's lock); a run on another host counts as alive."""
    if holder.get("host") != socket.gethostname():
        return True
    return is_locked(Path(str(holder.get("workdir"))) / ".lock")


class ChecksummedFile:
    """A file being written, checksummed on the way (no second read of what it wrote)."""

    def __init__(self, fh: Any):
        self._fh = fh
        self.checksum = Checksum()

    def write(self, data: Any) -> int:
        self.checksum.update(data)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class PartitionWriter:
    """Writes one partition's rows into one or more files, each renamed into place on close."""

    def __init__(self, sink: FileSink, index: int):
        self.sink = sink
        self.fs = sink.fs
        self.root = sink._root
        self.index = index
        self.seq = 0
        self.done: list[dict] = []
        self._fh = self._writer = self._tmp = self._final = None

    def _start(self, schema: Any) -> None:
        name = f"part-{self.index:05d}-{self.seq:04d}.{self.sink.extension}"
        self._final = f"{self.root}/{name}"
        self._tmp = f"{self.root}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
        self._fh = ChecksummedFile(self._open_file(self._tmp))
        self._writer = self.sink._open(self._fh, schema)
        self.seq += 1

    def _open_file(self, path: str) -> Any:
        """A local file is opened by Arrow itself (not through fsspec's Python layers);
        other filesystems go through fsspec."""
        if self.sink._protocol() in ("file", "local"):
            import pyarrow as pa

            return pa.OSFile(path, "wb")
        return self.fs.open(path, "wb")

    def write(self, table: Any) -> None:
        """Write rows, in slices of about a tenth of the target size (by in-memory bytes),
        starting a new file whenever the current one has reached the target."""
        target = self.sink.args.target_file_size
        step = max(1, int(table.num_rows * target / 10 / max(table.nbytes, 1)))
        try:
            for start in range(0, max(table.num_rows, 1), step):
                if self._writer is None:
                    self._start(table.schema)
                self.sink._write(self._writer, table.slice(start, step))
                if self._fh.tell() >= target:
                    self._finish()
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self._final or self.root}: {exc}") from exc

    def _finish(self) -> None:
        self.sink._close(self._writer)
        self._fh.close()
        self.fs.mv(self._tmp, self._final)
        size = self.fs.info(self._final)["size"]
        self.done.append({"file": self._final.rsplit("/", 1)[-1], "size": size,
                          "checksum": self._fh.checksum.value()})
        self._fh = self._writer = None

    def close(self) -> list[dict]:
        if self._writer is None and not self.done:
            return []
        if self._writer is not None:
            try:
                self._finish()
            except OSError as exc:
                self.abort()
                raise StorageError(f"cannot write {self._final}: {exc}") from exc
        return self.done

    def abort(self) -> None:
        """Drop what this partition wrote: the open temp file and the files already renamed
        into place (the partition is not committed until its stats marker is written)."""
        with contextlib.suppress(Exception):
            if self._fh is not None:
                self._fh.close()
        with contextlib.suppress(Exception):
            if self._tmp is not None and self.fs.exists(self._tmp):
                self.fs.rm(self._tmp)
        for done in self.done:
            with contextlib.suppress(Exception):
                self.fs.rm(f"{self.root}/{done['file']}")
        self.done = []
        self._fh = self._writer = None
