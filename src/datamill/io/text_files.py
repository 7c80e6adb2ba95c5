"""A directory or glob of text files: one row per file, with its path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InputError
from ..operation import Arguments, SourceOperation
from .files import (
    ROW_BITS,
    FilePart,
    absolute,
    expand_paths,
    fingerprint,
    open_file,
    with_ids,
)

FILES_BYTES_PER_PARTITION = 64 * 2**20


class ReadTextFilesArgs(Arguments):
    path: str | list[str] = Field(description="Directory, glob or list of files.")
    suffixes: list[str] = Field(default_factory=list,
                                description="Keep files ending so (e.g. ['.md', '.txt']); "
                                            "empty keeps all.")
    encoding: str = Field("utf-8", description="Text encoding of the files.")
    invalid_text: Literal["error", "replace"] = Field(
        "error", description="Bytes not valid in `encoding`: fail naming the file, or "
                             "replace them with U+FFFD.")
    bytes_per_partition: int = Field(FILES_BYTES_PER_PARTITION, gt=0)

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        return absolute(value)


class ReadTextFiles(SourceOperation):
    """Read text files, one row per file: `path` (relative to the folder given) and `text`."""

    name = "read_text_files"
    Args = ReadTextFilesArgs

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        self._listing: tuple[Any, list[str]] | None = None

    def _files(self) -> tuple[Any, list[str]]:
        if self._listing is None:
            fs, files = expand_paths(self.args.path, tuple(self.args.suffixes))
            if self.args.suffixes:
                files = [f for f in files if f.endswith(tuple(self.args.suffixes))]
            if not files:
                raise InputError("matches no files", path=str(self.args.path))
            self._listing = (fs, files)
        return self._listing

    def schema(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "text": pa.string()}

    def fingerprint(self) -> str:
        fs, files = self._files()
        return fingerprint(fs, files)

    def _relative(self, path: str) -> str:
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

    def partitions(self) -> list[FilePart]:
        fs, files = self._files()
        parts, group, size = [], [], 0
        for ordinal, f in enumerate(files):
            n = fs.info(f)["size"]
            if group and size + n > self.args.bytes_per_partition:
                parts.append(group)
                group, size = [], 0
            group.append(FilePart(ordinal, f))
            size += n
        if group:
            parts.append(group)
        return parts

    def read(self, partition: Any, columns: list[str] | None) -> Iterator[Any]:
        import pyarrow as pa

        paths: list[str] = []
        texts: list[str] = []
        ordinals: list[int] = []

        def flush() -> Any:
            table = pa.table({"path": paths, "text": texts})
            if columns is not None:
                table = table.select([c for c in columns if c != "_id"])
            ids = [o << ROW_BITS for o in ordinals]
            return with_ids(table, 0, ids)

        for part in partition:
            try:
                with open_file(part.path) as fh:
                    data = fh.read()
            except OSError as exc:
                raise InputError(f"cannot read ({exc})", path=part.path) from None
            try:
                text = data.decode(self.args.encoding, errors="strict"
                                   if self.args.invalid_text == "error" else "replace")
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid {self.args.encoding} ({exc.reason} at byte "
                                 f"{exc.start}); pass invalid_text='replace' to keep it",
                                 path=part.path) from None
            paths.append(self._relative(part.path))
            texts.append(text)
            ordinals.append(part.ordinal)
            if len(paths) >= 1024:
                yield flush()
                paths, texts, ordinals = [], [], []
        if paths:
            yield flush()
