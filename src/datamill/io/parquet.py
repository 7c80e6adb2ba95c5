"""Parquet: read (referenced in place, never copied into the workdir) and write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError
from .files import FilePart, cast_to, open_file, stable_block, with_ids
from .sink import FileSink, FileSinkArgs
from .source import FileSource, FileSourceArgs

ROWS_PER_PARTITION = 250_000


BYTES_PER_PARTITION = 512 * 2**20
READ_BATCH_ROWS = 65_536


class ReadParquetArgs(FileSourceArgs):
    rows_per_partition: int = Field(ROWS_PER_PARTITION, gt=0,
                                    description="Row groups are grouped into units of work of "
                                                "about this many rows.")
    bytes_per_partition: int = Field(
        BYTES_PER_PARTITION, gt=0,
        description="... and of about this many bytes (uncompressed, from the footer), so "
                    "that a unit of images or other large values stays bounded.")
    image_columns: list[str] = Field(
        default_factory=list,
        description="Binary columns holding encoded images, read as the `image` type.")


class ReadParquet(FileSource):
    """Read Parquet files. Columns are read in place (only those the pipeline consumes);
    the workdir references the files instead of copying them."""

    name = "read_parquet"
    Args = ReadParquetArgs
    materialize = False
    suffixes = (".parquet", ".pq")

    def _metadata(self, path: str) -> Any:
        import pyarrow.parquet as pq

        from .. import image_type  # noqa: F401  (registers the image type for reading)

        try:
            with open_file(path) as fh:
                return pq.ParquetFile(fh).metadata
        except FileNotFoundError:
            raise InputError("no such file (Parquet inputs are read in place, so they must "
                             "stay where they were)", path=path) from None
        except Exception as exc:  # noqa: BLE001 - any footer failure means unreadable
            raise InputError(f"not a readable Parquet file ({exc})", path=path) from None

    def _infer_schema(self) -> Any:
        import pyarrow as pa

        fields: dict[str, tuple[Any, str]] = {}  # column -> (type, first file that has it)
        for path in self.files:
            schema = self._metadata(path).schema.to_arrow_schema().remove_metadata()
            for field in schema:
                if field.name not in fields:
                    fields[field.name] = (field.type, path)
                    continue
                other, where = fields[field.name]
                if other != field.type and not _same_kind(other, field.type):
                    raise InputError(
                        f"column {field.name!r} is {field.type} here but {other} in {where} "
                        f"(mixed types across files; pass schema= to cast, e.g. "
                        f"schema={{{field.name!r}: 'string'}})", path=path)
        return self._mark_images(pa.schema([(name, typ) for name, (typ, _) in fields.items()]))

    def arrow_schema(self) -> Any:
        if self._schema is None and self.args.schema_:
            self._schema = self._mark_images(super().arrow_schema())
        return super().arrow_schema()

    def _mark_images(self, schema: Any) -> Any:
        """The `image_columns` as the image type; each must be a binary column."""
        import pyarrow as pa

        from ..image_type import ImageType, is_image

        for name in self.args.image_columns:
            if name not in schema.names:
                raise InputError(f"image_columns names {name!r}, which the files lack "
                                 f"(columns: {schema.names})", path=str(self.args.path))
            field = schema.field(name)
            if is_image(field.type):
                continue
            if field.type not in (pa.binary(), pa.large_binary()):
                raise InputError(f"image_columns: column {name!r} is {field.type}, not binary "
                                 "(encoded image bytes)", path=str(self.args.path))
            schema = schema.set(schema.get_field_index(name),
                                field.with_type(ImageType(field.type)))
        return schema

    def finer_partitions(self, units: int) -> list[FilePart]:
        """Groups of row groups of at most 1/`units` of the rows (a power of two; a row
        group is never cut); row ids are row numbers in their file: they do not depend on
        the cut."""
        parts = self.partitions()
        if len(parts) >= units:
            return parts
        total = sum(self._metadata(p).num_rows for p in self.files)
        limit = min(self.args.rows_per_partition, stable_block(total, units))
        return [part for ordinal, path in enumerate(self.files)
                for part in self._partitions_of(ordinal, path, limit)]

    def _partitions_of(self, ordinal: int, path: str, limit: int | None = None
                       ) -> list[FilePart]:
        meta = self._metadata(path)
        parts, group, rows, size, offset = [], [], 0, 0, 0
        limit = limit or self.args.rows_per_partition
        byte_limit = self.args.bytes_per_partition
        for i in range(meta.num_row_groups):
            n, b = meta.row_group(i).num_rows, meta.row_group(i).total_byte_size
            if group and (rows + n > limit or size + b > byte_limit):
                parts.append(FilePart(ordinal, path, row_groups=tuple(group), row_offset=offset))
                offset += rows
                group, rows, size = [], 0, 0
            group.append(i)
            rows += n
            size += b
        if group or not parts:
            parts.append(FilePart(ordinal, path, row_groups=tuple(group), row_offset=offset))
        return parts

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .. import image_type  # noqa: F401  (registers the image type for reading)

        schema = self.arrow_schema()
        wanted = [c for c in (columns or schema.names) if c != "_id"]
        target = pa.schema([schema.field(c) for c in wanted])
        offset = partition.row_offset
        try:
            with _open_native(partition.path) as fh:
                pf = pq.ParquetFile(fh)
                present = [c for c in wanted if c in pf.schema_arrow.names]
                if not partition.row_groups:
                    return
                if not present:  # only row ids wanted: count rows from the footer
                    for i in partition.row_groups:
                        n = pf.metadata.row_group(i).num_rows
                        empty = pa.table({"_": pa.nulls(n)}).drop_columns(["_"])
                        yield with_ids(cast_to(empty, target, partition.path), partition.ordinal,
                                       np.arange(offset, offset + n))
                        offset += n
                    return
                for chunk in _chunks(pf.metadata, partition.row_groups):
                    groups = [pf.metadata.row_group(i) for i in chunk]
                    for batch in pf.iter_batches(row_groups=chunk, columns=present,
                                                 batch_size=_batch_rows(groups)):
                        table = cast_to(pa.Table.from_batches([batch]), target, partition.path)
                        yield with_ids(table, partition.ordinal,
                                       np.arange(offset, offset + table.num_rows))
                        offset += table.num_rows
        except InputError:
            raise
        except FileNotFoundError:
            raise InputError("the file is gone (Parquet inputs are read in place, not copied "
                             "into the workdir, so they must stay where they were)",
                             path=partition.path) from None
        except Exception as exc:  # noqa: BLE001 - corrupt pages, truncated files, I/O errors
            raise InputError(f"cannot read Parquet data ({type(exc).__name__}: {exc})",
                             path=partition.path) from None


def _open_native(path: str) -> Any:
    """A local file opened by Arrow itself (its reads never pass through Python objects,
    which would leave the process's heap as large as the largest column chunk read); other
    filesystems through fsspec."""
    import pyarrow as pa

    if "://" not in path or path.startswith("file://"):
        return pa.OSFile(path.removeprefix("file://"), "rb")
    return open_file(path)


def _chunks(meta: Any, row_groups: tuple[int, ...]) -> list[list[int]]:
    """Runs of consecutive row groups of up to READ_BATCH_BYTES (uncompressed; a larger group
    alone): Arrow reads the row groups it is given ahead of the batches it yields, so giving
    it all of a partition's groups at once would hold them all in memory."""
    from . import files

    chunks: list[list[int]] = []
    size = 0
    for i in row_groups:
        n = meta.row_group(i).total_byte_size
        if chunks and size + n <= files.READ_BATCH_BYTES:
            chunks[-1].append(i)
            size += n
        else:
            chunks.append([i])
            size = n
    return chunks


def _batch_rows(groups: list[Any]) -> int:
    """Rows per batch read: READ_BATCH_ROWS, fewer when rows are large (images), so that a
    batch holds about READ_BATCH_BYTES (uncompressed, from the footer's row group sizes)."""
    from . import files

    rows = sum(g.num_rows for g in groups)
    size = sum(g.total_byte_size for g in groups)
    if not rows or not size:
        return READ_BATCH_ROWS
    return max(1, min(READ_BATCH_ROWS, int(files.READ_BATCH_BYTES * rows / size)))


def _same_kind(a: Any, b: Any) -> bool:
    """Types that differ only in offset width (string/large_string...): cast, don't refuse."""
    pairs = ({"string", "large_string"}, {"binary", "large_binary"})
    return {str(a), str(b)} in pairs


class WriteParquetArgs(FileSinkArgs):
    compression: str = Field("zstd", description="Parquet codec: zstd, snappy, lz4, gzip, none.")


ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 16 * 2**20  # batches are gathered up to this size into one row group


class _BufferedWriter:
    """A ParquetWriter that gathers the small batches of the row-wise pass into row groups of
    up to ROW_GROUP_ROWS rows or ROW_GROUP_BYTES bytes (one row group per batch would make
    files slow to read)."""

    def __init__(self, fh: Any, schema: Any, compression: str, max_bytes: int):
        import pyarrow.parquet as pq

        from .. import image_type  # noqa: F401  (registers the image type for reading)

        self.writer = pq.ParquetWriter(fh, schema, compression=compression)
        self.max_bytes = max_bytes
        self.pending: list[Any] = []
        self.rows = self.bytes = 0

    def write(self, table: Any) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        self.bytes += table.nbytes
        if self.rows >= ROW_GROUP_ROWS or self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            table = self.pending[0] if len(self.pending) == 1 else pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.pending, self.rows, self.bytes = [], 0, 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


class WriteParquet(FileSink):
    """Write Parquet files of about `target_file_size` bytes each (part-PPPPP-NNNN.parquet)."""

    name = "write_parquet"
    Args = WriteParquetArgs
    extension = "parquet"

    def _open(self, fh: Any, schema: Any) -> Any:
        # files roll at target_file_size: gather no more than a tenth of it
        limit = min(ROW_GROUP_BYTES, self.args.target_file_size // 10)
        return _BufferedWriter(fh, schema, self.args.compression, limit)

    def _write(self, writer: Any, table: Any) -> None:
        writer.write(table)

    def _close(self, writer: Any) -> None:
        writer.close()
