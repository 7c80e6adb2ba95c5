"""JSON Lines (plain, .gz, .zst): read in byte-range partitions, write rolled files."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import InputError
from .files import FilePart, cast_to, compression_of, open_file, with_ids
from .sink import FileSink, FileSinkArgs
from .source import FileSource, FileSourceArgs

BLOCK = 64 * 2**20
PARSE_CHUNK = 16 * 2**20
SAMPLE = 1 * 2**20


class ReadJsonlArgs(FileSourceArgs):
    block_size: int = Field(BLOCK, gt=0, description="Bytes per unit of work (uncompressed "
                                                     "files are split at line boundaries).")
    invalid_utf8: Literal["error", "replace"] = Field(
        "error", description="On bytes that are not UTF-8: fail naming the line, or replace "
                             "them with U+FFFD.")


class ReadJsonl(FileSource):
    """Read JSON Lines files, one object per line; .gz and .zst are decompressed on the fly.
    Without `schema`, column types are inferred from the first MiB of the first file."""

    name = "read_jsonl"
    Args = ReadJsonlArgs
    suffixes = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.zst",
                ".ndjson.gz", ".ndjson.zst", ".jsonl.zstd")

    def _parse(self, data: bytes, schema: Any | None, path: str, first_line: int | None,
               start_offset: int) -> Any:
        import pyarrow as pa
        import pyarrow.json as pj

        if self.args.invalid_utf8 == "replace":
            data = data.decode("utf-8", errors="replace").encode("utf-8")
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") \
            if schema is not None else pj.ParseOptions()
        try:
            return pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(
                block_size=max(len(data), 1 << 20), use_threads=False), parse_options=opts)
        except pa.ArrowInvalid as exc:
            line = self._bad_line(data, path, first_line, start_offset)
            raise InputError(f"{line[1]} (arrow: {exc})", path=path, line=line[0]) from None

    def _bad_line(self, data: bytes, path: str, first_line: int | None,
                  start_offset: int) -> tuple[int | None, str]:
        if first_line is None:
            first_line = self._count_lines(path, start_offset) + 1
        for i, raw in enumerate(data.split(b"\n")):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return first_line + i, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                return first_line + i, f"invalid JSON ({exc.msg}, column {exc.colno})"
            if not isinstance(value, dict):
                return first_line + i, f"expected a JSON object, got {type(value).__name__}"
        return None, "cannot parse JSON (truncated file or value of an unexpected type)"

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
        path = self.files[0]
        with open_file(path, compression=compression_of(path)) as fh:
            data = fh.read(SAMPLE)
        if len(data) == SAMPLE and b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]
        if not data.strip():
            import pyarrow as pa

            return pa.schema([])
        return self._parse(data, None, path, 1, 0).schema

    def _partitions_of(self, ordinal: int, path: str) -> list[FilePart]:
        size = self.fs.info(path)["size"]
        if compression_of(path) or size <= self.args.block_size:
            return [FilePart(ordinal, path, 0, -1)]
        return [FilePart(ordinal, path, s, min(s + self.args.block_size, size))
                for s in range(0, size, self.args.block_size)]

    def read(self, partition: FilePart, columns: list[str] | None) -> Iterator[Any]:
        import numpy as np

        schema = self.arrow_schema()
        path = partition.path
        first_line = 1 if partition.start == 0 else None
        for offset, data in self._chunks(partition):
            starts = _line_starts(data) + offset
            if not len(starts):
                continue
            table = self._parse(data, schema, path, first_line, offset)
            if table.num_rows != len(starts):
                raise InputError(f"parsed {table.num_rows} rows from {len(starts)} lines near "
                                 f"byte {offset}", path=path)
            table = cast_to(table, schema, path)
            if columns is not None:
                table = table.select([c for c in columns if c != "_id"])
            yield with_ids(table, partition.ordinal, np.asarray(starts))
            if first_line is not None:
                first_line += data.count(b"\n")

    def _chunks(self, part: FilePart) -> Iterator[tuple[int, bytes]]:
        """Complete lines of the partition, in chunks, each with its byte offset."""
        compression = compression_of(part.path)
        with open_file(part.path, compression=compression) as fh:
            pos = part.start
            if part.start > 0:  # skip the line that started in the previous partition
                fh.seek(part.start - 1)
                pos = part.start - 1 + len(fh.readline())
            end = part.end if part.end >= 0 else None
            carry = b""
            while end is None or pos + len(carry) < end or carry:
                want = PARSE_CHUNK if end is None else min(PARSE_CHUNK, max(end - pos, 0))
                chunk = fh.read(want) if want > 0 else b""
                if not chunk:
                    if carry:
                        yield pos, carry
                    return
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                if end is not None and pos + len(data) >= end:
                    # finish the line that straddles the end of the range
                    tail = fh.readline() if not data.endswith(b"\n") else b""
                    yield pos, data + tail
                    return
                if cut == 0:
                    carry = data
                    continue
                yield pos, data[:cut]
                pos += cut
                carry = data[cut:]


def _line_starts(data: bytes) -> Any:
    """Offsets of the lines that hold something other than whitespace."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.r_[0, newlines + 1]
    ends = np.r_[newlines, len(buf)]
    solid = np.r_[0, np.cumsum(~np.isin(buf, (9, 10, 13, 32)), dtype=np.int64)]
    return starts[solid[ends] - solid[starts] > 0].astype(np.int64)


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
