"""CSV: read streaming (one unit of work per file), write rolled files."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError
from .files import ROW_BITS, FilePart, cast_to, compression_of, open_file, with_ids
from .sink import FileSink, FileSinkArgs
from .source import FileSource, FileSourceArgs, RowErrors, row_errors_field

INFER_BLOCK = 8 << 20
LENIENT_ROWS = 8192  # records parsed together after a bad one was met


class ReadCsvArgs(FileSourceArgs):
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")
    errors: RowErrors = row_errors_field()


class ReadCsv(FileSource):
    """Read CSV files with a header row. Without `schema`, types are inferred from the first
    block (8 MiB) of the first non-empty file and every file is parsed with them."""

    name = "read_csv"
    Args = ReadCsvArgs
    suffixes = (".csv", ".csv.gz", ".tsv", ".csv.zst")

    def _options(self, schema: Any | None) -> dict:
        import pyarrow.csv as pc

        convert = pc.ConvertOptions(column_types=schema, strings_can_be_null=False) \
            if schema is not None else pc.ConvertOptions()
        return {"parse_options": pc.ParseOptions(delimiter=self.args.delimiter),
                "convert_options": convert,
                "read_options": pc.ReadOptions(block_size=INFER_BLOCK, use_threads=False)}

    def _reader(self, path: str, fh: Any, schema: Any | None) -> Any:
        import pyarrow.csv as pc

        options = self._options(schema)
        if schema is None and self.args.errors != "raise":  # infer from the rows that read
            options["parse_options"] = pc.ParseOptions(delimiter=self.args.delimiter,
                                                       invalid_row_handler=lambda _: "skip")
        return pc.open_csv(fh, **options)

    def _infer_schema(self) -> Any:
        import pyarrow as pa

        for path in self.files:
            try:
                with open_file(path, compression=compression_of(path)) as fh:
                    schema = self._reader(path, fh, None).schema
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):
                    continue
                line, problem = self._bad_line(path, exc, None)
                raise InputError(problem, path=path, line=line) from None
            except (OSError, EOFError) as exc:
                raise InputError(f"cannot read CSV ({exc})", path=path) from None
            self._sample_path = path
            return schema
        raise InputError("no header to infer columns from (the input is empty); pass schema=, "
                         "e.g. schema={'text': 'string'}, to read it as a dataset with no rows",
                         path=str(self.args.path))

    def _partitions_of(self, ordinal: int, path: str) -> list[FilePart]:
        return [FilePart(ordinal, path)]

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np
        import pyarrow as pa

        schema = self.arrow_schema()
        path = partition.path
        resume: Resume | None = None  # where Arrow goes on after records were set aside
        while True:
            base, row = (resume.index if resume else 0), 0
            try:
                with open_file(path, compression=compression_of(path)) as fh:
                    reader = self._reader(path, fh if resume is None else resume.stream(fh),
                                          schema)
                    header = reader.schema.names
                    missing = [c for c in schema.names if c not in header]
                    if missing:
                        raise InputError(f"header lacks column(s) {missing} (header: {header})",
                                         path=path, line=1)
                    for batch in reader:
                        table = cast_to(pa.Table.from_batches([batch]), schema, path)
                        if columns is not None:
                            table = table.select([c for c in columns if c != "_id"])
                        ids = np.arange(base + row, base + row + len(table))
                        yield with_ids(table, partition.ordinal, ids)
                        row += len(table)
                return
            except InputError:
                raise
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):
                    return
                if self.args.errors == "raise":
                    line, problem = self._bad_line(path, exc, schema)
                    raise InputError(problem, path=path, line=line) from None
            except (OSError, EOFError) as exc:
                raise InputError(f"cannot read CSV ({exc})", path=path) from None
            # from the record that failed, record by record until past what Arrow refused
            resume = yield from self._read_lenient(partition, schema, columns, resume, row)
            if resume is None:
                return

    # --- errors='skip' | 'quarantine' ---------------------------------------------------
    def _read_lenient(self, part: FilePart, schema: Any, columns: list[str] | None,
                      start: Resume | None, skip: int) -> Iterator[Any]:
        """Records from `start` (the file's start), past the `skip` that Arrow read, split
        by Python's csv module with their raw bytes and parsed by Arrow in groups; a group
        that fails is bisected down to the records that do not read, which go to `reject`.
        Once a record was set aside and a whole group read, returns where Arrow can go on
        (None at the end of the file)."""
        import csv
        import io

        path = part.path
        try:
            with open_file(path, compression=compression_of(path)) as raw:
                if start is not None:
                    raw.seek(start.offset)
                text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                                        newline="")
                consumed: list[str] = []

                def lines() -> Iterator[str]:
                    for physical in text:
                        consumed.append(physical)
                        yield physical

                records = csv.reader(lines(), delimiter=self.args.delimiter)
                if start is None:
                    header = next(records, None)
                    if header is None:
                        return None
                    at = Resume(_encode("".join(consumed)), header, 0, 0, 1 + len(consumed))
                    at.offset = len(at.head)
                    consumed.clear()
                else:
                    at = start.copy()
                group: list[tuple[int, int, bytes, int]] = []  # record, line, raw, fields
                rejected = 0
                for fields in records:
                    raw_bytes = _encode("".join(consumed))
                    line, at.line = at.line, at.line + len(consumed)
                    at.offset += len(raw_bytes)
                    consumed.clear()
                    if not fields:  # an empty line: Arrow skips it too
                        continue
                    if at.index >= (start.index if start else 0) + skip:
                        group.append((at.index, line, raw_bytes, len(fields)))
                    at.index += 1
                    if len(group) >= LENIENT_ROWS:
                        bad = yield from self._parse_group(part, schema, columns, at, group)
                        group = []
                        if rejected and not bad:
                            return at
                        rejected += bad
                if group:
                    yield from self._parse_group(part, schema, columns, at, group)
                return None
        except (OSError, EOFError, csv.Error) as exc:
            raise InputError(f"cannot read CSV ({exc})", path=path) from None

    def _parse_group(self, part: FilePart, schema: Any, columns: list[str] | None,
                     at: Resume, group: list[tuple[int, int, bytes, int]]) -> Iterator[Any]:
        """Yield the group's rows that read; reject the others; return how many."""
        import numpy as np

        def parse(records: list) -> tuple[Any, str | None]:
            body = b"".join(r[2] if r[2].endswith(b"\n") else r[2] + b"\n" for r in records)
            try:
                table = self._parse_bytes(at.head + body, schema)
            except Exception as exc:  # noqa: BLE001 - Arrow's reason for the record
                return None, str(exc)
            if table.num_rows != len(records):
                return None, f"{table.num_rows} rows from {len(records)} records"
            return table, None

        rejected = 0
        pending = [group]
        while pending:
            records = pending.pop(0)
            table, problem = parse(records)
            if table is not None:
                if columns is not None:
                    table = table.select([c for c in columns if c != "_id"])
                yield with_ids(table, part.ordinal, np.array([r[0] for r in records], np.int64))
            elif len(records) == 1:
                index, line, raw, fields = records[0]
                problem = _record_problem(raw, fields, at.header, problem or "")
                self.reject(problem, path=part.path, line=line, raw=raw.rstrip(b"\r\n"),
                            row_id=part.ordinal << ROW_BITS | index)
                rejected += 1
            else:
                mid = len(records) // 2
                pending[:0] = [records[:mid], records[mid:]]
        return rejected

    def _parse_bytes(self, data: bytes, schema: Any) -> Any:
        import io

        import pyarrow.csv as pc

        table = pc.read_csv(io.BytesIO(data), **self._options(schema))
        return cast_to(table, schema, "")

    def _origin(self) -> str:
        if self.args.schema_:
            return "declared with schema="
        sample = getattr(self, "_sample_path", None)
        return f"inferred from the first 8 MiB of {sample}" if sample else "inferred"

    def _bad_line(self, path: str, exc: Exception, schema: Any | None) -> tuple[int | None, str]:
        """Find the line Arrow stumbled on (Arrow does not say) with Python's csv module."""
        import csv
        import io

        message = str(exc)
        columns = re.search(r"Expected (\d+) columns?, got (\d+)", message)
        conversion = re.search(r"In CSV column #(\d+): .*?conversion error to (\S+): "
                               r"(invalid value '(.*)'|invalid UTF8 data)", message, re.S)
        try:
            with open_file(path, compression=compression_of(path)) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                                        newline="")
                reader = csv.reader(text, delimiter=self.args.delimiter)
                header = next(reader, [])
                for record in reader:
                    if columns and len(record) != len(header):
                        return reader.line_num, (
                            f"malformed CSV: {len(record)} fields where the header has "
                            f"{len(header)} ({message})")
                    if conversion:
                        i = int(conversion.group(1))
                        name = header[i] if i < len(header) else f"#{i}"
                        value = record[i] if i < len(record) else None
                        if conversion.group(4) is None:  # invalid UTF-8
                            if value is not None and any("\udc80" <= ch <= "\udcff"
                                                         for ch in value):
                                return reader.line_num, (
                                    f"column {name!r} is not valid UTF-8 ({message})")
                        elif value == conversion.group(4):
                            return reader.line_num, (
                                f"column {name!r} has {value!r}, which does not convert to "
                                f"{conversion.group(2)} ({self._origin()}); values of a column "
                                "must have one type in all rows and files: pass schema= to "
                                f"declare it, e.g. schema={{{name!r}: 'string'}}")
        except (OSError, EOFError, csv.Error, UnicodeError, ValueError):
            pass
        return None, f"cannot parse CSV ({message})"


class Resume:
    """Where reading a CSV file goes on: the byte offset and number of the next record (and
    its line), with the file's header (bytes and names) to put before it."""

    def __init__(self, head: bytes, header: list[str], offset: int, index: int, line: int):
        self.head, self.header = head, header
        self.offset, self.index, self.line = offset, index, line

    def copy(self) -> Resume:
        return Resume(self.head, self.header, self.offset, self.index, self.line)

    def stream(self, fh: Any) -> Any:
        """The file from `offset` on, behind its header."""
        import io

        fh.seek(self.offset)
        return io.BufferedReader(_Prefixed(self.head, fh), buffer_size=1 << 20)


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, fh: Any):
        self._head = memoryview(head)
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(self._head):
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._fh.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _record_problem(raw: bytes, fields: int, header: list[str], arrow: str) -> str:
    """What is wrong with one record that Arrow does not read."""
    if fields != len(header):
        return f"malformed CSV: {fields} fields where the header has {len(header)}"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)"
    found = re.search(r"In CSV column #(\d+): .*?conversion error to (\S+): invalid value "
                      r"'(.*)'", arrow, re.S)
    if found:
        i = int(found.group(1))
        name = header[i] if i < len(header) else f"#{i}"
        return (f"column {name!r} has {found.group(3)!r}, which does not convert to "
                f"{found.group(2)}")
    return f"cannot parse CSV ({arrow})"


class WriteCsv(FileSink):
    """Write CSV files (with a header) of about `target_file_size` bytes each."""

    name = "write_csv"
    Args = FileSinkArgs
    extension = "csv"

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        from ..errors import SchemaError

        nested = [f"{c} ({t})" for c, t in schema.items() if isinstance(t, pa.DataType)
                  and pa.types.is_nested(t)]
        if nested:
            raise SchemaError(f"CSV cannot hold nested column(s) {', '.join(nested)}; write "
                              "Parquet or JSONL, or drop them first", operation=self.name)
        return dict(schema)

    def _open(self, fh: Any, schema: Any) -> Any:
        import pyarrow.csv as pc

        return pc.CSVWriter(fh, schema)

    def _write(self, writer: Any, table: Any) -> None:
        writer.write_table(table)

    def _close(self, writer: Any) -> None:
        writer.close()
