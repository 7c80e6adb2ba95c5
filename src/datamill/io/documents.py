"""Sources of documents: one row per file (or per page, per archive record).

Shared by `read_text_files`, `read_html`, `read_pdf` and `read_warc`: listing the files,
grouping them into units of work by size, stable row ids, paths relative to the folder
given, and the `errors` policy for input that cannot be read.

Why `errors` and not only the step's `on_error`: the engine applies `on_error` to the rows
an operation processes, and a source has no rows yet when a file is unreadable. So document
sources take their own policy: `raise` (stop, naming the file and, for archives, the record's
byte offset), `skip` (leave it out, logged as a warning on the `datamill` logger, counted as
an error of the read step), `quarantine` (also listed, with the file and the reason, in the
read step's quarantine file) or `keep` (emit a row whose `error` column says what went wrong,
content columns null), so that a bad file never vanishes silently.
`Dataset.read(..., on_error="skip" | "quarantine")` sets `errors` to the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InputError, PipelineError
from ..operation import Arguments, SourceOperation
from . import files
from .files import (
    ROW_BITS,
    FilePart,
    absolute,
    compression_of,
    expand_paths,
    fingerprint,
    open_file,
    stable_block,
    with_ids,
)

BadInput = Literal["raise", "skip", "quarantine", "keep"]
ERROR = "error"
BATCH_ROWS = 1024
logger = logging.getLogger("datamill")


def errors_field(what: str = "a file that cannot be read") -> Any:
    return Field("raise", description=(
        f"On {what}: 'raise' stops the run naming it; 'skip' leaves it out (logged as a "
        "warning, counted); 'quarantine' also lists it in the step's quarantine file; 'keep' "
        "emits a row with the reason in an `error` column (content null)."))


def require(module: str, extra: str, operation: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"needs {module} ({exc}): pip install 'datamill[{extra}]'",
                            operation=operation) from None


class DocumentArgs(Arguments):
    path: str | list[str] = Field(description="File, directory, glob, or a list of them "
                                              "(any fsspec URL: local, memory://, s3://, ...).")
    suffixes: list[str] = Field(default_factory=list,
                                description="Keep files ending so (e.g. ['.md', '.txt']); "
                                            "empty keeps the reader's usual suffixes.")
    bytes_per_partition: int = Field(64 * 2**20, gt=0,
                                     description="Files are grouped into units of work of "
                                                 "about this many bytes.")
    errors: BadInput = errors_field()

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        return absolute(value)


class InPlaceArgs(DocumentArgs):
    """The arguments of a document source that is cheap to read again (no parsing): its
    files are read in place by default instead of copied into the workdir."""

    materialize: bool = Field(
        False, description="Keep a Parquet copy of what was read in the workdir, so that the "
                           "workdir outlives the input files and a later step never reads "
                           "them again (worth it for slow remote filesystems); by default the "
                           "files are read in place again when a later step needs their "
                           "columns, and the cache key covers their sizes and modification "
                           "times.")


class DocumentSource(SourceOperation):
    """A folder, glob or list of files read whole; subclasses give `columns()` and `rows()`.

    Row ids: `file ordinal << 40 | n`, where n is what `rows()` yields with each row (0 for
    one row per file, the page index, a record's byte offset)."""

    Args = DocumentArgs
    default_suffixes: tuple[str, ...] = ()  # what a directory listing keeps by default

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        self._listing: tuple[Any, list[str]] | None = None

    @property
    def materialize(self) -> bool:  # type: ignore[override]
        """Copied into the workdir, unless the arguments say otherwise (`InPlaceArgs`)."""
        return bool(getattr(self.args, "materialize", True))

    # --- spec -------------------------------------------------------------------------
    def columns(self) -> dict:
        """Column name -> Arrow type of a good row."""
        raise NotImplementedError

    def schema(self) -> dict:
        import pyarrow as pa

        columns = dict(self.columns())
        if self.args.errors == "keep":
            columns[ERROR] = pa.string()
        return columns

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        """(n, row) for each row of one file; raise InputError for a bad file (after some
        rows: set its `n` attribute to the n of the damaged row, so ids stay unique)."""
        raise NotImplementedError

    # --- files ------------------------------------------------------------------------
    @property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(self.args.suffixes) or self.default_suffixes

    def _files(self) -> tuple[Any, list[str]]:
        if self._listing is None:
            fs, files = expand_paths(self.args.path, self.suffixes)
            if self.args.suffixes:  # also applies to globs and explicit lists
                files = [f for f in files if f.endswith(tuple(self.args.suffixes))]
            if not files:
                raise InputError("matches no files", path=str(self.args.path))
            self._listing = (fs, files)
        return self._listing

    def fingerprint(self) -> str:
        fs, files = self._files()
        return fingerprint(fs, files)

    def partition_fingerprint(self, partition: Any) -> str | None:
        import json

        if getattr(self, "_entries", None) is None:
            self._entries = {e[0]: e for e in json.loads(self.fingerprint())}
        entries = [self._entries.get(p.path) for p in partition]
        if any(e is None for e in entries):
            return None
        return json.dumps([[p.ordinal, *e] for p, e in zip(partition, entries)])

    def partitions(self) -> list[Any]:
        return self._file_groups(self.args.bytes_per_partition)

    def _file_groups(self, limit: int) -> list[Any]:
        """The files in order, grouped up to `limit` bytes (a file larger than it alone)."""
        fs, files = self._files()
        parts, group, size = [], [], 0
        for ordinal, f in enumerate(files):
            n = fs.info(f)["size"]
            if group and size + n > limit:
                parts.append(group)
                group, size = [], 0
            group.append(FilePart(ordinal, f))
            size += n
        if group:
            parts.append(group)
        return parts

    def finer_partitions(self, units: int) -> list[Any]:
        """Groups of fewer files (at most 1/`units` of the bytes each, a power of two, or
        one file); a file is never cut."""
        parts = self.partitions()
        if len(parts) >= units or type(self).partitions is not DocumentSource.partitions:
            return parts  # enough, or a reader that partitions its own way
        fs, files = self._files()
        total = sum(fs.info(f)["size"] for f in files)
        return self._file_groups(min(self.args.bytes_per_partition, stable_block(total, units)))

    def relative(self, path: str) -> str:
        """`path` relative to the folder given (for a glob: the folder before its first
        wildcard); the full path when several paths were given or it lies elsewhere."""
        base = self.args.path if isinstance(self.args.path, str) else ""
        if not base:
            return path
        magic = [i for i, ch in enumerate(base) if ch in "*?["]
        if magic:
            base = base[: magic[0]].rsplit("/", 1)[0]
        base_clean = base.split("://", 1)[-1].rstrip("/")
        plain = path.split("://", 1)[-1]
        for prefix in (base_clean, base_clean.lstrip("/")):
            if prefix and plain.startswith(prefix + "/"):
                return plain[len(prefix) + 1:]
        return path

    # --- reading ----------------------------------------------------------------------
    def bad_input(self, error: InputError, part: FilePart | None = None, n: int = 0) -> bool:
        """Apply the `errors` policy to input of `part` (row `n`, e.g. a record's offset);
        True when an error row should be kept."""
        policy = self.args.errors
        if policy == "raise":
            message = str(error).removeprefix(f"{error.path}: ")
            raise InputError(f"{message} [{self.name}; errors='skip', 'quarantine' or 'keep' "
                             "reads on]", path=error.path, line=error.line) from None
        done = {"keep": "kept as an error row", "skip": "skipped"}.get(policy, "quarantined")
        logger.warning("%s: %s (%s)", self.name, error, done)
        if policy == "keep":
            self.count("bad_input_kept")
            return True
        ordinal = part.ordinal if part is not None else 0
        self.reject(str(error), path=error.path, line=error.line,
                    row_id=ordinal << ROW_BITS | n)
        return False

    def error_row(self, part: FilePart, error: InputError) -> dict:
        """The row that stands for a bad file under errors='keep' (override to add columns)."""
        return {"path": self.relative(part.path), ERROR: str(error)}

    def read(self, partition: Any, columns: list[str] | None) -> Iterator[Any]:
        import pyarrow as pa

        schema = pa.schema(list(self.schema().items()))
        wanted = [c for c in (columns or schema.names) if c != "_id"]
        batch = Batch(schema, wanted)
        for part in partition:
            try:
                with open_file(part.path, compression=compression_of(part.path)) as fh:
                    data = fh.read()
            except (OSError, EOFError) as exc:
                error = InputError(f"cannot read ({exc})", path=part.path)
                if self.bad_input(error, part):
                    batch.add(part.ordinal, 0, self.error_row(part, error))
                continue
            try:
                for n, row in self.rows(part, data):
                    batch.add(part.ordinal, n, row)
                    if batch.full:
                        yield batch.flush()
            except InputError as error:  # rows read before it are kept
                if self.bad_input(error, part, getattr(error, "n", 0)):
                    batch.add(part.ordinal, getattr(error, "n", 0), self.error_row(part, error))
            if batch.full:
                yield batch.flush()
        if batch.rows:
            yield batch.flush()


class Batch:
    """Rows gathered as dicts, turned into one Arrow table with `_id` first."""

    def __init__(self, schema: Any, wanted: list[str]):
        self.schema = schema
        self.wanted = wanted
        self.rows: list[dict] = []
        self.ids: list[int] = []
        self.bytes = 0

    def add(self, ordinal: int, n: int, row: dict) -> None:
        self.rows.append(row)
        self.ids.append(ordinal << ROW_BITS | n)
        self.bytes += sum(len(v) for v in row.values() if isinstance(v, (bytes, str)))

    @property
    def full(self) -> bool:
        """BATCH_ROWS rows, or READ_BATCH_BYTES of text and bytes (large files, images)."""
        return len(self.rows) >= BATCH_ROWS or self.bytes >= files.READ_BATCH_BYTES

    def flush(self) -> Any:
        import pyarrow as pa

        table = pa.Table.from_pylist(self.rows, schema=self.schema).select(self.wanted)
        out = with_ids(table, 0, self.ids)
        self.rows, self.ids, self.bytes = [], [], 0
        return out
