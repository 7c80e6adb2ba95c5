"""CSV: read streaming (one unit of work per file), write rolled files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError
from .files import FilePart, cast_to, compression_of, open_file, with_ids
from .sink import FileSink, FileSinkArgs
from .source import FileSource, FileSourceArgs


class ReadCsvArgs(FileSourceArgs):
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")


class ReadCsv(FileSource):
    """Read CSV files with a header row. Without `schema`, types are inferred from the first
    block of the first file and every file is parsed with them."""

    name = "read_csv"
    Args = ReadCsvArgs
    suffixes = (".csv", ".csv.gz", ".tsv", ".csv.zst")

    def _reader(self, path: str, fh: Any, schema: Any | None) -> Any:
        import pyarrow.csv as pc

        convert = pc.ConvertOptions(column_types=schema, strings_can_be_null=False) \
            if schema is not None else pc.ConvertOptions()
        return pc.open_csv(fh, parse_options=pc.ParseOptions(delimiter=self.args.delimiter),
                           convert_options=convert,
                           read_options=pc.ReadOptions(block_size=8 << 20, use_threads=False))

    def _infer_schema(self) -> Any:
        import pyarrow as pa

        path = self.files[0]
        try:
            with open_file(path, compression=compression_of(path)) as fh:
                return self._reader(path, fh, None).schema
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return pa.schema([])
            raise InputError(f"cannot read CSV ({exc})", path=path) from None

    def _partitions_of(self, ordinal: int, path: str) -> list[FilePart]:
        return [FilePart(ordinal, path)]

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np
        import pyarrow as pa

        schema = self.arrow_schema()
        path = partition.path
        row = 0
        try:
            with open_file(path, compression=compression_of(path)) as fh:
                reader = self._reader(path, fh, schema)
                header = reader.schema.names
                missing = [c for c in schema.names if c not in header]
                if missing:
                    raise InputError(f"header lacks column(s) {missing} (header: {header})",
                                     path=path)
                for batch in reader:
                    table = cast_to(pa.Table.from_batches([batch]), schema, path)
                    if columns is not None:
                        table = table.select([c for c in columns if c != "_id"])
                    yield with_ids(table, partition.ordinal, np.arange(row, row + len(table)))
                    row += len(table)
        except InputError:
            raise
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise InputError(f"cannot parse CSV after data row {row} ({exc})",
                             path=path) from None
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read CSV ({exc})", path=path) from None


class WriteCsv(FileSink):
    """Write CSV files (with a header) of about `target_file_size` bytes each."""

    name = "write_csv"
    Args = FileSinkArgs
    extension = "csv"

    def _open(self, fh: Any, schema: Any) -> Any:
        import pyarrow.csv as pc

        return pc.CSVWriter(fh, schema)

    def _write(self, writer: Any, table: Any) -> None:
        writer.write_table(table)

    def _close(self, writer: Any) -> None:
        writer.close()
