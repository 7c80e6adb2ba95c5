"""The base of file sources: path globs, schema (declared or inferred), partitions, ids."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from ..operation import Arguments, SourceOperation
from ..schema import to_arrow_type
from .files import absolute, expand_paths, fingerprint

RowErrors = Literal["raise", "skip", "quarantine"]


def row_errors_field() -> Any:
    return Field("raise", description=(
        "On a line that cannot be read (broken syntax, a value of the wrong type, bad "
        "UTF-8): 'raise' stops the run naming the file and line; 'skip' leaves it out and "
        "counts it; 'quarantine' also keeps the file, line number and raw bytes in the "
        "step's quarantine file. Dataset.read(..., on_error=...) sets it."))


class FileSourceArgs(Arguments):
    model_config = ConfigDict(populate_by_name=True)
    path: str | list[str] = Field(description="File, directory, glob, or a list of them "
                                              "(any fsspec URL: local, memory://, s3://, ...).")
    schema_: dict[str, str] | None = Field(
        None, alias="schema",
        description="Column types, e.g. {'text': 'string'}; inferred from the data when omitted.")

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        return absolute(value)


class FileSource(SourceOperation):
    """Shared machinery; subclasses implement `_infer_schema`, `_partitions_of`, `read`."""

    suffixes: tuple[str, ...] = ()

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        self._files: list[str] | None = None
        self._fs: Any = None
        self._schema: Any = None

    @property
    def files(self) -> list[str]:
        if self._files is None:
            from ..errors import InputError

            self._fs, self._files = expand_paths(self.args.path, self.suffixes)
            if not self._files:
                raise InputError("matches no files", path=str(self.args.path))
        return self._files

    @property
    def fs(self) -> Any:
        self.files  # noqa: B018 - resolves the filesystem
        return self._fs

    def arrow_schema(self) -> Any:
        import pyarrow as pa

        if self._schema is None:
            declared = self.args.schema_
            if declared:
                self._schema = pa.schema([(c, to_arrow_type(t)) for c, t in declared.items()])
            else:
                self._schema = self._infer_schema()
        return self._schema

    def schema(self) -> dict:
        return {f.name: f.type for f in self.arrow_schema()}

    def fingerprint(self) -> str:
        return fingerprint(self.fs, self.files)

    def partitions(self) -> list[Any]:
        parts: list[Any] = []
        for ordinal, path in enumerate(self.files):
            parts.extend(self._partitions_of(ordinal, path))
        return parts

    def partition_fingerprint(self, partition: Any) -> str | None:
        import json

        entry = self._file_entries().get(partition.path)
        if entry is None:
            return None
        return json.dumps([partition.ordinal, partition.path, partition.start, partition.end,
                           list(partition.row_groups), partition.row_offset, *entry[1:]])

    def _file_entries(self) -> dict[str, list]:
        import json

        if getattr(self, "_entries", None) is None:
            self._entries = {e[0]: e for e in json.loads(self.fingerprint())}
        return self._entries

    def _infer_schema(self) -> Any:
        raise NotImplementedError

    def _partitions_of(self, ordinal: int, path: str) -> list[Any]:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fs"] = None
        state["_files"] = None
        return state
