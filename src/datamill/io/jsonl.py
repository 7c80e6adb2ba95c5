"""JSON Lines (plain, .gz, .zst): read in byte-range partitions, write rolled files.

A line belongs to the partition whose byte range holds its first byte, so a line that
straddles a boundary is read once, by the partition where it starts. Lines may end in LF or
CRLF; blank lines are skipped; the last line needs no newline. Row ids are the byte offsets
of lines, so they do not depend on `block_size`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import InputError
from .files import (
    ROW_BITS,
    FilePart,
    cast_to,
    compression_of,
    open_file,
    stable_block,
    with_ids,
)
from .sink import FileSink, FileSinkArgs
from .source import FileSource, FileSourceArgs, RowErrors, row_errors_field

BLOCK = 64 * 2**20
MIN_BLOCK = 16 * 2**10  # a file is cut finer for more workers, into ranges no smaller
PARSE_CHUNK = 2 * 2**20  # bytes parsed at once: bounds a worker's memory
SAMPLE = 1 * 2**20
MAX_SAMPLE = 64 * 2**20  # a first line longer than this cannot be used to infer types
BOM = b"\xef\xbb\xbf"
BLANK = b" \t\r\n"  # JSON whitespace: lines of only these hold no row
SPLIT = 16  # pieces a chunk with bad lines is cut into, and each failing piece again


class ReadJsonlArgs(FileSourceArgs):
    block_size: int = Field(BLOCK, gt=0, description="Bytes per unit of work (uncompressed "
                                                     "files are split at line boundaries).")
    invalid_utf8: Literal["error", "replace"] = Field(
        "error", description="On bytes that are not UTF-8: fail naming the line, or replace "
                             "them with U+FFFD.")
    errors: RowErrors = row_errors_field()
    materialize: bool = Field(
        False, description="Keep a Parquet copy of what was read in the workdir, so that the "
                           "workdir outlives the input files (by default the files are read "
                           "in place again when a later step needs their columns; the cache "
                           "key covers their sizes and modification times).")


class ReadJsonl(FileSource):
    """Read JSON Lines files, one object per line; .gz and .zst are decompressed on the fly.
    Without `schema`, column types are inferred from the first MiB of the first non-empty
    file (fields that first appear later are ignored; declare them with `schema=`)."""

    name = "read_jsonl"
    Args = ReadJsonlArgs

    @property
    def materialize(self) -> bool:  # type: ignore[override]
        return self.args.materialize
    suffixes = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.zst",
                ".ndjson.gz", ".ndjson.zst", ".jsonl.zstd", ".json.zst", ".ndjson.zstd",
                ".json.zstd")

    # --- parsing ----------------------------------------------------------------------
    def _parse(self, data: bytes, schema: Any | None, path: str, first_line: int | None,
               start_offset: int) -> Any:
        """Parse complete lines; on failure, name the first bad line and what is wrong."""
        import pyarrow as pa

        if start_offset == 0 and data.startswith(BOM):
            data = b"   " + data[len(BOM):]  # same length: byte offsets stay right
        if self.args.invalid_utf8 == "replace":
            data = data.decode("utf-8", errors="replace").encode("utf-8")
        try:
            table = _read_json(data, schema)
            if self.args.invalid_utf8 == "error":
                table.validate(full=True)  # Arrow's JSON parser does not check UTF-8
            return table
        except pa.ArrowInvalid as exc:
            line, problem = self._bad_line(data, schema, path, first_line, start_offset)
            detail = "" if line is not None else f" (arrow: {exc})"
            raise InputError(problem + detail, path=path, line=line) from None

    def _bad_line(self, data: bytes, schema: Any | None, path: str, first_line: int | None,
                  start_offset: int) -> tuple[int | None, str]:
        """(1-based line number, description) of the first line of `data` that fails."""
        lines = data.split(b"\n")

        def number(i: int) -> int:
            nonlocal first_line
            if first_line is None:
                first_line = self._count_lines(path, start_offset) + 1
            return first_line + i

        for i, raw in enumerate(lines):
            if not raw.strip(BLANK):
                continue
            problem = _syntax_problem(raw)
            if problem is not None:
                return number(i), problem
        # Every line is a JSON object on its own: a value does not fit its column's type.
        # Find the first line that fails together with the lines before it (bisection).
        solid = [i for i, raw in enumerate(lines) if raw.strip(BLANK)]
        lo, hi = 0, len(solid)  # the first failing prefix ends in (lo, hi]
        if schema is None:
            lo = 1 if solid else 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                _read_json(b"\n".join(lines[i] for i in solid[:mid]), schema)
                lo = mid
            except Exception:  # noqa: BLE001 - any failure narrows the search
                hi = mid
        if not solid or hi == 0:
            return None, "cannot parse JSON"
        i = solid[hi - 1]
        row = json.loads(lines[i])
        origin = self._origin()
        if schema is None:  # types inferred from the lines above in this chunk
            origin = "the type of the lines above"
            try:
                schema = _read_json(b"\n".join(lines[j] for j in solid[:hi - 1]), None).schema
            except Exception:  # noqa: BLE001
                return number(i), "a value's type differs from the lines above"
        return number(i), self._misfit(row, schema, origin)

    def _misfit(self, row: dict, schema: Any, origin: str) -> str:
        """Say which field of `row` does not fit `schema` (the first one that does not)."""
        import pyarrow as pa

        for field in schema:
            if field.name not in row:
                continue
            try:
                _read_json(json.dumps({field.name: row[field.name]}).encode(),
                           pa.schema([field]))
            except Exception:  # noqa: BLE001 - this is the field that does not fit
                value = json.dumps(row[field.name], ensure_ascii=False)
                value = value if len(value) <= 60 else value[:57] + "..."
                return (f"column {field.name!r} has {_json_kind(row[field.name])} {value}, "
                        f"which does not fit its type {field.type} ({origin}); "
                        "values of a column must have one type in all lines and files: "
                        "pass schema= to declare it, e.g. "
                        f"schema={{{field.name!r}: 'string'}}")
        return f"a value does not fit the schema ({origin})"

    def _origin(self) -> str:
        if self.args.schema_:
            return "declared with schema="
        sample = getattr(self, "_sample_path", None)
        return f"inferred from the first MiB of {sample}" if sample else "inferred"

    def _count_lines(self, path: str, end: int) -> int:
        count = 0
        with open_file(path, compression=compression_of(path)) as fh:
            left = end
            while left > 0:
                chunk = fh.read(min(left, 1 << 24))
                if not chunk:
                    break
                count += chunk.count(b"\n")
                left -= len(chunk)
        return count

    def _infer_schema(self) -> Any:
        for path in self.files:
            data = self._sample(path)
            if self.args.errors != "raise":
                data = _readable_prefix(data)
            if data.strip():
                self._sample_path = path
                return self._parse(data, None, path, 1, 0).schema
        raise InputError(
            "no data to infer column types from (the input is empty); pass schema=, e.g. "
            "schema={'text': 'string'}, to read it as a dataset with no rows",
            path=str(self.args.path))

    def _sample(self, path: str) -> bytes:
        """The first MiB of a file, cut at a line end (extended to finish the first line)."""
        try:
            with open_file(path, compression=compression_of(path)) as fh:
                data = fh.read(SAMPLE)
                while len(data) < MAX_SAMPLE and b"\n" not in data.lstrip():
                    more = fh.read(SAMPLE)
                    if not more:
                        return data
                    data += more
                extra = fh.read(1)
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read ({exc})", path=path) from None
        except Exception as exc:  # noqa: BLE001 - e.g. zstd/gzip errors on corrupt files
            raise InputError(f"cannot decompress ({type(exc).__name__}: {exc})",
                             path=path) from None
        if extra and b"\n" in data:  # the file goes on: drop the incomplete last line
            data = data[: data.rindex(b"\n") + 1]
        return data

    # --- partitions -------------------------------------------------------------------
    def _partitions_of(self, ordinal: int, path: str, block: int | None = None) -> list[FilePart]:
        size = self.fs.info(path)["size"]
        block = block or self.args.block_size
        if compression_of(path) or size <= block:
            return [FilePart(ordinal, path, 0, -1)]
        return [FilePart(ordinal, path, s, min(s + block, size)) for s in range(0, size, block)]

    def finer_partitions(self, units: int) -> list[FilePart]:
        """Byte ranges of at most 1/`units` of the uncompressed input (a power of two, no
        smaller than `MIN_BLOCK`); row ids are byte offsets: they do not depend on the cut."""
        parts = self.partitions()
        if len(parts) >= units:
            return parts
        plain = sum(self.fs.info(p)["size"] for p in self.files if not compression_of(p))
        block = min(self.args.block_size, stable_block(plain, units, MIN_BLOCK))
        return [part for ordinal, path in enumerate(self.files)
                for part in self._partitions_of(ordinal, path, block)]

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np

        if columns is not None and self.args.errors == "raise" \
                and not [c for c in columns if c != "_id"]:
            yield from self._ids_only(partition)
            return
        schema = self.arrow_schema()
        path = partition.path
        first_line = 1 if partition.start == 0 else None
        for offset, data in self._chunks(partition):
            starts, newlines = _line_starts(data)
            starts += offset
            if len(starts) and self.args.errors != "raise":
                numbering = [first_line]  # found when a line is rejected, if unknown
                table, starts = self._parse_lenient(data, offset, schema, partition, numbering)
                first_line = numbering[0]
            elif len(starts):
                table = self._parse(data, schema, path, first_line, offset)
                if table.num_rows != len(starts):
                    line, problem = self._bad_line(data, None, path, first_line, offset)
                    raise InputError(f"{problem} (JSON Lines holds one object per line)",
                                     path=path, line=line)
            if len(starts):
                table = cast_to(table, schema, path)
                if columns is not None:
                    table = table.select([c for c in columns if c != "_id"])
                yield with_ids(table, partition.ordinal, np.asarray(starts))
            if first_line is not None:
                first_line += newlines

    def _ids_only(self, partition: FilePart) -> Iterator[Any]:
        """Only `_id` asked for (a later step re-reading a source read in place): row ids
        are line offsets, so lines are found but not parsed. Only for errors='raise', where
        every non-blank line is a row (the first read checked that each one parses);
        `read_source_partition` still checks the row count against the step's record."""
        import pyarrow as pa

        for offset, data in self._chunks(partition):
            starts, _ = _line_starts(data)
            if len(starts):
                rows = pa.table({"_": pa.nulls(len(starts))}).drop_columns(["_"])
                yield with_ids(rows, partition.ordinal, starts + offset)

    # --- errors='skip' | 'quarantine' ---------------------------------------------------
    def _parses(self, data: bytes, offset: int, schema: Any, rows: int) -> Any:
        """`data` (complete lines starting at byte `offset`) as a Table of `rows` rows, or
        None when some line does not read."""
        import pyarrow as pa

        if offset == 0 and data.startswith(BOM):
            data = b"   " + data[len(BOM):]
        if self.args.invalid_utf8 == "replace":
            data = data.decode("utf-8", errors="replace").encode("utf-8")
        try:
            table = _read_json(data, schema)
            if self.args.invalid_utf8 == "error":
                table.validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        return table if table.num_rows == rows else None

    def _parse_lenient(self, data: bytes, offset: int, schema: Any, part: FilePart,
                       first_line: list[int | None]) -> tuple[Any, Any]:
        """Parse what reads; hand each line that does not to `reject`. A part that fails is
        cut into SPLIT pieces, and those that fail again likewise, so that a chunk with a
        few bad lines costs about twice its parse. Returns (table, line starts)."""
        import numpy as np
        import pyarrow as pa

        rel, _ = _line_starts(data)
        whole = self._parses(data, offset, schema, len(rel))
        if whole is not None:
            return whole, rel + offset
        ends = np.r_[rel[1:], len(data)]
        good: list[tuple[Any, int, int]] = []

        def split(i: int, j: int) -> None:  # solid lines [i, j)
            piece = data[rel[i]:ends[j - 1]]
            table = self._parses(piece, offset + int(rel[i]), schema, j - i)
            if table is not None:
                good.append((table, i, j))
            elif j - i == 1:
                self._reject_line(data, int(rel[i]), offset, schema, part, first_line)
            else:
                step = -(-(j - i) // SPLIT)
                for k in range(i, j, step):
                    split(k, min(k + step, j))

        split(0, len(rel))
        if not good:
            return pa.schema(schema).empty_table(), np.zeros(0, np.int64)
        starts = np.concatenate([rel[i:j] for _, i, j in good]) + offset
        return pa.concat_tables([t for t, _, _ in good]), starts

    def _reject_line(self, data: bytes, start: int, offset: int, schema: Any, part: FilePart,
                     first_line: list[int | None]) -> None:
        end = data.find(b"\n", start)
        raw = (data[start:] if end < 0 else data[start:end]).removesuffix(b"\r")
        body = raw.strip(BLANK)
        problem = _syntax_problem(body)
        if problem is None:
            problem = self._misfit(json.loads(body), schema, self._origin())
        if first_line[0] is None:  # the number of the chunk's first line
            first_line[0] = self._count_lines(part.path, offset) + 1
        self.reject(problem, path=part.path, line=first_line[0] + data.count(b"\n", 0, start),
                    raw=raw, row_id=part.ordinal << ROW_BITS | (offset + start))

    def _chunks(self, part: FilePart) -> Iterator[tuple[int, bytes]]:
        """The partition's lines (those starting in [start, end)), in chunks of complete
        lines, each with the byte offset where it starts."""
        try:
            yield from self._chunks_of(part)
        except InputError:
            raise
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read ({exc})", path=part.path) from None
        except Exception as exc:  # noqa: BLE001 - zstd/gzip errors on corrupt or cut files
            name = type(exc).__name__
            if name.startswith(("Zstd", "BadGzip")) or "zstd" in str(exc).lower():
                raise InputError(f"cannot decompress (truncated or corrupt file? {name}: "
                                 f"{exc})", path=part.path) from None
            raise

    def _chunks_of(self, part: FilePart) -> Iterator[tuple[int, bytes]]:
        with open_file(part.path, compression=compression_of(part.path)) as fh:
            pos = part.start
            if part.start > 0:  # the line holding byte start-1 belongs to the partition before
                fh.seek(part.start - 1)
                pos = part.start - 1 + len(fh.readline())
            end = part.end if part.end >= 0 else None
            if end is not None and pos >= end:
                return  # no line starts in this range
            carry = b""  # bytes read after pos (an incomplete line)
            size = min(PARSE_CHUNK, self.read_bytes or PARSE_CHUNK)  # the pass's steps ask
            while True:
                read_to = pos + len(carry)
                want = size if end is None else min(size, end - read_to)
                chunk = fh.read(want) if want > 0 else b""
                data = carry + chunk
                if end is not None and read_to + len(chunk) >= end:
                    if data and not data.endswith(b"\n"):
                        data += fh.readline()  # finish the line that straddles the end
                    if data:
                        yield pos, data
                    return
                if not chunk:  # end of file
                    if data:
                        yield pos, data
                    return
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                yield pos, data[:cut]
                pos += cut
                carry = data[cut:]


def _read_json(data: bytes, schema: Any | None) -> Any:
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") \
        if schema is not None else pj.ParseOptions()
    return pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(
        block_size=max(len(data), 1 << 20), use_threads=False), parse_options=opts)


def _readable_prefix(data: bytes) -> bytes:
    """The lines of a sample to infer types from when bad lines are set aside: the JSON
    objects, up to the first whose types conflict with those before it."""
    lines = [line for line in data.split(b"\n")
             if line.strip(BLANK) and _syntax_problem(line.strip(BLANK)) is None]
    lo, hi = 0, len(lines) + 1  # the longest prefix that parses has lo lines, < hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            _read_json(b"\n".join(lines[:mid]), None)
            lo = mid
        except Exception:  # noqa: BLE001 - a type conflict: a shorter prefix
            hi = mid
    return b"\n".join(lines[:lo])


def _syntax_problem(raw: bytes) -> str | None:
    """What makes one line not a JSON object (None when it is one)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line); pass "
                "invalid_utf8='replace' to read it anyway")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        body = text.strip()
        cut = body.startswith("{") and not body.endswith("}") and exc.msg != "Extra data"
        what = "truncated line (incomplete JSON object)" if cut else "invalid JSON"
        return f"{what}: {exc.msg} (column {exc.colno})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {_json_kind(value)}"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


LONG_LINES = 256  # bytes per line on average from which lines are found one by one


def _line_starts(data: bytes) -> tuple[Any, int]:
    """Offsets of the lines that hold something other than whitespace, and the number of
    newlines in `data`. Long lines (documents) are found with `bytes.find`, which skips to
    the next newline at memchr's speed; short ones with numpy over every byte."""
    import numpy as np

    count = data.count(b"\n")
    if len(data) >= LONG_LINES * (count + 1):
        starts, pos, find, size = [], 0, data.find, len(data)
        while pos < size:
            end = find(b"\n", pos)
            end = size if end < 0 else end
            if end > pos and (data[pos] not in BLANK or data[pos:end].strip(BLANK)):
                starts.append(pos)
            pos = end + 1
        return np.array(starts, dtype=np.int64), count
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.r_[0, newlines + 1]
    ends = np.r_[newlines, len(buf)]
    nonempty = ends > starts
    starts, ends = starts[nonempty], ends[nonempty]
    keep = np.ones(len(starts), dtype=bool)
    # a line is blank only if it starts with whitespace: check those few one by one
    for i in np.flatnonzero(np.isin(buf[starts], (9, 13, 32))).tolist():
        keep[i] = bool(data[starts[i]:ends[i]].strip(BLANK))
    return starts[keep].astype(np.int64), len(newlines)


class WriteJsonlArgs(FileSinkArgs):
    compression: Literal["none", "gzip", "zstd"] = Field("none", description="File compression.")


class WriteJsonl(FileSink):
    """Write JSON Lines files of about `target_file_size` bytes each."""

    name = "write_jsonl"
    Args = WriteJsonlArgs

    @property
    def extension(self) -> str:  # type: ignore[override]
        return {"none": "jsonl", "gzip": "jsonl.gz", "zstd": "jsonl.zst"}[self.args.compression]

    def _open(self, fh: Any, schema: Any) -> Any:
        if self.args.compression == "gzip":
            import gzip

            return gzip.GzipFile(fileobj=fh, mode="wb")
        if self.args.compression == "zstd":
            import zstandard

            return zstandard.ZstdCompressor().stream_writer(fh, closefd=False)
        return fh

    def _write(self, writer: Any, table: Any) -> None:
        lines = [json.dumps(row, ensure_ascii=False, default=_json_default)
                 for row in table.to_pylist()]
        if lines:
            writer.write(("\n".join(lines) + "\n").encode("utf-8"))

    def _close(self, writer: Any) -> None:
        if self.args.compression != "none":
            writer.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)
