"""WARC archives (.warc, .warc.gz): one row per HTTP response, read with warcio
(`pip install 'datamill[warc]'`).

Each file is one unit of work, read as a stream. Bodies are decoded with the charset the
HTTP headers declare, else a byte-order mark, else a `<meta charset>` in the first 4 KiB,
else UTF-8 if valid, else charset-normalizer's guess, else cp1252 (with U+FFFD for what is
left). Damage is found, not trusted: a record whose header is incomplete, whose block is
shorter than its Content-Length (a file cut mid-record, a truncated .gz) or whose stream
cannot be decompressed stops the reading of that file; the records read before it are kept
and the damage is reported with the file and the record's byte offset, per `errors`. A
body whose Content-Encoding cannot be undone fails that record only.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError
from .documents import ERROR, BadInput, Batch, DocumentArgs, DocumentSource, errors_field, require
from .files import FilePart, open_file

WARC_SUFFIXES = (".warc", ".warc.gz")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)


class ReadWarcArgs(DocumentArgs):
    mime_types: list[str] = Field(
        default_factory=lambda: ["text/html", "application/xhtml+xml"],
        description="Keep responses whose Content-Type starts with one of these (e.g. "
                    "'text/' for every text type); [] keeps every response.")
    errors: BadInput = errors_field("a damaged record (truncated, undecodable)")


class ReadWarc(DocumentSource):
    """Read WARC files (.warc, .warc.gz), one row per `response` record (request, metadata,
    warcinfo, revisit records are skipped): `record_id`, `url`, `date` (WARC-Date, UTC),
    `status` (HTTP status), `content_type` (MIME type), `charset` (the encoding used) and
    `html` (the body decoded to text). Only HTML responses by default (`mime_types`). A
    truncated or corrupt record ends the reading of its file: the records before it are kept
    and the damage, with its byte offset, goes through `errors`."""

    name = "read_warc"
    Args = ReadWarcArgs
    default_suffixes = WARC_SUFFIXES

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        require("warcio", "warc", self.name)  # fail when the pipeline is built

    def columns(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "record_id": pa.string(), "url": pa.string(),
                "date": pa.timestamp("us", tz="UTC"), "status": pa.int32(),
                "content_type": pa.string(), "charset": pa.string(), "html": pa.string()}

    def partitions(self) -> list[Any]:
        fs, files = self._files()
        return [[FilePart(ordinal, f)] for ordinal, f in enumerate(files)]

    def finer_partitions(self, units: int) -> list[Any]:
        return self.partitions()  # already one file each; a (compressed) WARC file is not cut

    def read(self, partition: Any, columns: list[str] | None) -> Iterator[Any]:
        import pyarrow as pa

        schema = pa.schema(list(self.schema().items()))
        batch = Batch(schema, [c for c in (columns or schema.names) if c != "_id"])
        for part in partition:
            for offset, row in self._records(part):
                batch.add(part.ordinal, offset, row)
                if batch.full:
                    yield batch.flush()
        if batch.rows:
            yield batch.flush()

    def _records(self, part: FilePart) -> Iterator[tuple[int, dict]]:
        from warcio.archiveiterator import ArchiveIterator

        path = self.relative(part.path)
        wanted = tuple(m.lower() for m in self.args.mime_types)
        try:
            fh = open_file(part.path)
        except OSError as exc:
            error = InputError(f"cannot read ({exc})", path=part.path)
            if self.bad_input(error, part):
                yield 0, {"path": path, ERROR: str(error)}
            return
        with fh:
            records = ArchiveIterator(fh)
            offset = 0  # where the next record starts
            while True:
                try:
                    record = next(records)
                except StopIteration:  # warcio also stops on a header cut short: check
                    if _left_over(part.path, offset):
                        yield from self._damage(part, path, offset, None,
                                                "incomplete WARC record (the file ends "
                                                "inside its header)")
                    return
                except Exception as exc:  # noqa: BLE001 - framing or decompression failed
                    yield from self._damage(part, path, offset, None,
                                            f"corrupt WARC data ({type(exc).__name__}: {exc})")
                    return
                url = _strip_uri(record.rec_headers.get_header("WARC-Target-URI"))
                length = record.rec_headers.get_header("Content-Length")
                keep = record.rec_type == "response" and (
                    not wanted or _mime(record).startswith(wanted))
                body, problem = b"", None
                try:
                    if keep:
                        body = record.content_stream().read()
                except Exception as exc:  # noqa: BLE001 - content-encoding failures
                    problem = f"cannot decode the body ({type(exc).__name__}: {exc})"
                try:
                    while record.raw_stream.read(1 << 16):  # drain: count what is there
                        pass
                    left = getattr(record.raw_stream, "limit", None)
                    offset = records.get_record_offset()
                    end = offset + records.get_record_length()
                except Exception as exc:  # noqa: BLE001 - the stream broke inside the record
                    yield from self._damage(part, path, offset, url,
                                            f"corrupt WARC record ({type(exc).__name__}: "
                                            f"{exc})")
                    return
                if record.rec_type is None or left is None or not (length or "").isdigit():
                    yield from self._damage(part, path, offset, url,
                                            "incomplete WARC record header (no WARC-Type or "
                                            "Content-Length)")
                    return
                if left > 0:
                    yield from self._damage(part, path, offset, url,
                                            f"truncated WARC record: {int(length) - left} of "
                                            f"{length} bytes")
                    return
                if problem is not None:
                    error = InputError(f"record at byte {offset} ({url}): {problem}",
                                       path=part.path)
                    if self.bad_input(error, part, offset):
                        yield offset, {"path": path, "url": url, ERROR: str(error)}
                elif keep:
                    yield offset, self._row(record, path, url, body)
                offset = end

    def _damage(self, part: FilePart, path: str, offset: int, url: str | None,
                message: str) -> Iterator[tuple[int, dict]]:
        where = f"record at byte {offset}" + (f" ({url})" if url else "")
        error = InputError(f"{where}: {message}; the records before it are read",
                           path=part.path)
        if self.bad_input(error, part, offset):
            yield offset, {"path": path, "url": url, ERROR: str(error)}

    def _row(self, record: Any, path: str, url: str | None, body: bytes) -> dict:
        headers = record.http_headers
        status = None
        declared = None
        if headers is not None:
            try:
                status = int(headers.get_statuscode())
            except (TypeError, ValueError):
                status = None
            declared = _charset(headers.get_header("Content-Type"))
        text, charset = decode_body(body, declared)
        return {"path": path, "record_id": record.rec_headers.get_header("WARC-Record-ID"),
                "url": url, "date": _warc_date(record.rec_headers.get_header("WARC-Date")),
                "status": status, "content_type": _mime(record) or None, "charset": charset,
                "html": text}


def _left_over(path: str, offset: int) -> bool:
    """Is there more than blank lines after byte `offset` (the end of the last record)?"""
    with open_file(path) as fh:
        fh.seek(offset)
        while True:
            chunk = fh.read(1 << 16)
            if not chunk:
                return False
            if chunk.strip(b"\r\n\t "):
                return True


def _mime(record: Any) -> str:
    headers = record.http_headers
    value = headers.get_header("Content-Type") if headers is not None else \
        record.rec_headers.get_header("Content-Type")
    return (value or "").split(";", 1)[0].strip().lower()


def _strip_uri(value: str | None) -> str | None:
    return value.strip().strip("<>") if value else None


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    found = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", content_type, re.I)
    return found.group(1) if found else None


def _codec(name: str | None) -> str | None:
    """Python's name for a charset, or None when unknown."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode_body(body: bytes, declared: str | None) -> tuple[str, str]:
    """(text, encoding used): declared charset, BOM, <meta charset>, UTF-8, detection."""
    candidates = [_codec(declared)]
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            candidates.append(name)
    meta = _META_CHARSET.search(body[:4096])
    candidates += [_codec(meta.group(1).decode("ascii")) if meta else None, "utf-8"]
    for name in candidates:
        if name is None:
            continue
        try:
            text = body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        return text.removeprefix("\ufeff"), name
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        if best is not None:
            return str(best), _codec(best.encoding) or best.encoding
    except ImportError:
        pass
    name = _codec(declared) or "cp1252"
    return body.decode(name, errors="replace"), name


def _warc_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    match = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?Z?$",
                     value.strip())
    if not match:
        return None
    y, mo, d, h, mi, s, frac = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro,
                           tzinfo=dt.timezone.utc)
    except ValueError:
        return None
