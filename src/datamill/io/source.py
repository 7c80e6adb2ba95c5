"""The base of file sources: path globs, schema (declared or inferred), partitions, ids."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ..operation import Arguments, SourceOperation
from ..schema import to_arrow_type
from .files import absolute, expand_paths, fingerprint


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

    def _infer_schema(self) -> Any:
        raise NotImplementedError

    def _partitions_of(self, ordinal: int, path: str) -> list[Any]:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fs"] = None
        state["_files"] = None
        return state
