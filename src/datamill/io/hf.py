"""Hugging Face datasets: a `save_to_disk` folder, a folder of Parquet files (a Hub Parquet
export), or a Hub dataset by name.

Folders are read without the `datasets` library: a `save_to_disk` folder is a list of Arrow
stream files (`state.json` names them), read memory-mapped, in place, in units of about
`rows_per_partition` rows (whole record batches); a Parquet folder is read like
`read_parquet`. A Hub name goes through `datasets.load_dataset(name, config, split=...)`
(`pip install 'datamill[hf]'`; it downloads once into the `datasets` cache, then the cache's
Arrow files are read the same way). Row ids: file ordinal << 40 | row within the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..errors import InputError, PipelineError
from ..operation import Arguments, SourceOperation
from .documents import require
from .files import FilePart, absolute, cast_to, expand_paths, fingerprint, open_file, with_ids

ROWS_PER_PARTITION = 250_000


class ReadHfArgs(Arguments):
    path: str | None = Field(None, description="A folder written by save_to_disk (a Dataset, "
                                               "or a DatasetDict with `split`), or a folder "
                                               "of Parquet files.")
    name: str | None = Field(None, description="A Hub dataset, e.g. 'stanfordnlp/imdb', "
                                               "loaded with datasets.load_dataset.")
    config: str | None = Field(None, description="The Hub dataset's configuration (subset).")
    split: str | None = Field(None, description="Split to read; needed when there are "
                                                "several (a Hub name defaults to 'train').")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    rows_per_partition: int = Field(ROWS_PER_PARTITION, gt=0,
                                    description="Rows per unit of work (whole record batches "
                                                "or row groups).")

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        return absolute(value) if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> ReadHfArgs:
        if (self.path is None) == (self.name is None):
            raise ValueError("give either path= (a local folder) or name= (a Hub dataset)")
        return self


class ReadHf(SourceOperation):
    """Read a Hugging Face dataset: a `save_to_disk` folder (Dataset or DatasetDict: pick
    `split`), a folder of Parquet files (a Hub Parquet export; `split` keeps the files of
    that split), or `name=` a Hub dataset via datasets.load_dataset
    (`pip install 'datamill[hf]'`). Columns and types are the dataset's own; files are read
    in place (memory-mapped), never loaded whole."""

    name = "read_hf"
    Args = ReadHfArgs
    materialize = False  # Arrow and Parquet files are read in place, like read_parquet

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        self._arrow: list[str] | None = None
        self._parquet: Any = None
        self._schema: Any = None

    # --- what to read -----------------------------------------------------------------
    def _resolve(self) -> None:
        if self._arrow is not None or self._parquet is not None:
            return
        if self.args.name is not None:
            self._arrow = self._from_hub()
            return
        folder = self.args.path.rstrip("/")
        fs, _ = expand_paths(folder)
        if fs.exists(f"{folder}/dataset_dict.json"):
            folder = f"{folder}/{self._pick_split(fs, folder)}"
        if fs.exists(f"{folder}/state.json"):
            with fs.open(f"{folder}/state.json", "rb") as fh:
                state = json.load(fh)
            names = [f["filename"] for f in state.get("_data_files", [])]
            if not names:
                raise InputError("state.json lists no data files", path=folder)
            self._arrow = [f"{folder}/{n}" for n in names]
            return
        _, files = expand_paths(folder, (".parquet",))
        parquet = [f for f in files if f.endswith(".parquet")]
        if self.args.split is not None:
            parquet = [f for f in parquet if _in_split(f[len(folder):], self.args.split)]
        if not parquet:
            split = f" of split {self.args.split!r}" if self.args.split else ""
            raise InputError(f"neither a save_to_disk folder (no state.json or "
                             f"dataset_dict.json) nor a folder of Parquet files{split}",
                             path=folder)
        from .parquet import ReadParquet

        self._parquet = ReadParquet(path=parquet,
                                    rows_per_partition=self.args.rows_per_partition)

    def _pick_split(self, fs: Any, folder: str) -> str:
        with fs.open(f"{folder}/dataset_dict.json", "rb") as fh:
            splits = json.load(fh).get("splits", [])
        split = self.args.split
        if split is None and len(splits) == 1:
            return splits[0]
        if split not in splits:
            raise InputError(f"a DatasetDict: pass split= one of {splits}", path=folder)
        return split

    def _from_hub(self) -> list[str]:
        datasets = require("datasets", "hf", self.name)
        a = self.args
        try:
            ds = datasets.load_dataset(a.name, a.config, split=a.split or "train",
                                       revision=a.revision)
        except Exception as exc:  # noqa: BLE001 - network, unknown name, unknown split
            raise InputError(f"cannot load from the Hub ({type(exc).__name__}: {exc})",
                             path=a.name) from None
        if getattr(ds, "_indices", None) is not None:
            ds = ds.flatten_indices()
        files = [f["filename"] for f in ds.cache_files]
        if not files:
            raise PipelineError(f"{a.name}: the dataset has no cache files to read in place",
                                operation=self.name)
        return files

    # --- spec -------------------------------------------------------------------------
    def arrow_schema(self) -> Any:
        self._resolve()
        if self._parquet is not None:
            return self._parquet.arrow_schema()
        if self._schema is None:
            with _Stream(self._arrow[0]) as reader:
                self._schema = reader.schema.remove_metadata()
        return self._schema

    def schema(self) -> dict:
        return {f.name: f.type for f in self.arrow_schema()}

    def fingerprint(self) -> str:
        self._resolve()
        if self._parquet is not None:
            return self._parquet.fingerprint()
        fs, _ = expand_paths(self._arrow[0])
        return fingerprint(fs, self._arrow)

    def partitions(self) -> list[Any]:
        self._resolve()
        if self._parquet is not None:
            return self._parquet.partitions()
        parts = []
        for ordinal, path in enumerate(self._arrow):
            group: list[int] = []
            rows = offset = 0
            with _Stream(path) as reader:
                for i, batch in _batches(reader, path):
                    if group and rows + batch.num_rows > self.args.rows_per_partition:
                        parts.append(FilePart(ordinal, path, row_groups=tuple(group),
                                              row_offset=offset))
                        offset += rows
                        group, rows = [], 0
                    group.append(i)
                    rows += batch.num_rows
            if group:
                parts.append(FilePart(ordinal, path, row_groups=tuple(group), row_offset=offset))
        return parts

    def finer_partitions(self, units: int) -> list[Any]:
        self._resolve()
        if self._parquet is not None:
            return self._parquet.finer_partitions(units)
        return self.partitions()

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np
        import pyarrow as pa

        self._resolve()
        if self._parquet is not None:
            yield from self._parquet.read(partition, columns)
            return
        schema = self.arrow_schema()
        wanted = [c for c in (columns or schema.names) if c != "_id"]
        target = pa.schema([schema.field(c) for c in wanted])
        chosen = set(partition.row_groups)
        last = max(chosen, default=-1)
        offset = partition.row_offset
        with _Stream(partition.path) as reader:
            for i, batch in _batches(reader, partition.path):
                if i > last:
                    break
                if i not in chosen:
                    continue
                present = [c for c in wanted if c in batch.schema.names]
                table = cast_to(pa.Table.from_batches([batch.select(present)]), target,
                                partition.path)
                yield with_ids(table, partition.ordinal,
                               np.arange(offset, offset + table.num_rows))
                offset += table.num_rows


def _in_split(relative: str, split: str) -> bool:
    """Does a Parquet file belong to `split`? Hub exports name it as a folder
    (`default/train/0000.parquet`) or as a file prefix (`data/train-00000-of-00002.parquet`)."""
    parts = relative.strip("/").split("/")
    return split in parts[:-1] or parts[-1].startswith((f"{split}-", f"{split}."))


def _batches(reader: Any, path: str) -> Iterator[tuple[int, Any]]:
    """(index, record batch) of an open Arrow file; a damaged file names itself."""
    import pyarrow as pa

    i = -1
    try:
        for i, batch in enumerate(reader):
            yield i, batch
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"damaged Arrow data after record batch {i} ({exc})",
                         path=path) from None


class _Stream:
    """An Arrow IPC file (stream or file format) opened for reading, memory-mapped if local."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> Any:
        import pyarrow as pa

        try:
            self._source = pa.memory_map(self.path) if "://" not in self.path \
                else open_file(self.path)
        except FileNotFoundError:
            raise InputError("the file is gone (Hugging Face Arrow files are read in place, "
                             "so they must stay where they were)", path=self.path) from None
        except OSError as exc:
            raise InputError(f"cannot open ({exc})", path=self.path) from None
        try:
            return pa.ipc.open_stream(self._source)
        except pa.ArrowInvalid:
            try:
                self._source.seek(0)
                return _Batches(pa.ipc.open_file(self._source))
            except pa.ArrowInvalid as exc:
                raise InputError(f"not an Arrow file ({exc})", path=self.path) from None

    def __exit__(self, *exc: Any) -> None:
        self._source.close()


class _Batches:
    """The record batches of an Arrow IPC file in file format, iterable like a stream."""

    def __init__(self, reader: Any):
        self.schema = reader.schema
        self._reader = reader

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._reader.num_record_batches):
            yield self._reader.get_batch(i)

