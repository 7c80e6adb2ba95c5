"""PDF: the text layer of PDF files, per document or per page, read with pypdf
(`pip install 'datamill[pdf]'`).

Only text that the PDF holds as text is read; scanned pages (images) give empty text, and no
OCR is attempted. A PDF encrypted with a user password opens only with `password=` (one
encrypted with an owner password alone opens as is). An encrypted, corrupt, empty or
truncated file is an error naming the file (and the page, when one page fails), handled
per `errors`: with 'skip' or 'keep' the other files are read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import InputError
from .documents import DocumentArgs, DocumentSource, require
from .files import FilePart


class ReadPdfArgs(DocumentArgs):
    per: Literal["document", "page"] = Field(
        "document", description="One row per file (pages joined with a blank line), or one "
                                "row per page with its `page` number (1-based).")
    password: str | None = Field(None, description="Password of encrypted PDFs.")
    bytes_per_partition: int = Field(32 * 2**20, gt=0,
                                     description="Files are grouped into units of work of "
                                                 "about this many bytes.")


class ReadPdf(DocumentSource):
    """Read the text of PDF files with pypdf (`pip install 'datamill[pdf]'`): with
    `per="document"` one row per file (`path`, `text`, `pages`, `title`), with `per="page"`
    one row per page (`path`, `page`, `text`). No OCR: image-only pages give empty text.
    Encrypted (without `password`), corrupt and empty files fail naming the file; see
    `errors` to skip them or keep them as rows with an `error`."""

    name = "read_pdf"
    Args = ReadPdfArgs
    default_suffixes = (".pdf",)

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        require("pypdf", "pdf", self.name)  # fail when the pipeline is built

    def columns(self) -> dict:
        import pyarrow as pa

        if self.args.per == "page":
            return {"path": pa.string(), "page": pa.int32(), "text": pa.string()}
        return {"path": pa.string(), "text": pa.string(), "pages": pa.int32(),
                "title": pa.string()}

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        path = self.relative(part.path)
        reader = self._open(part.path, data)
        try:
            count = len(reader.pages)
        except Exception as exc:  # noqa: BLE001 - a broken page tree
            raise InputError(f"corrupt PDF: cannot list its pages ({_why(exc)})",
                             path=part.path) from None
        texts = []
        for i in range(count):
            try:
                text = reader.pages[i].extract_text() or ""
            except Exception as exc:  # noqa: BLE001 - one page's content stream is broken
                error = InputError(f"corrupt PDF: cannot extract page {i + 1} of {count} "
                                   f"({_why(exc)})", path=part.path)
                error.n = i if self.args.per == "page" else 0  # earlier pages are kept
                raise error from None
            if self.args.per == "page":
                yield i, {"path": path, "page": i + 1, "text": text}
            else:
                texts.append(text.strip("\n"))
        if self.args.per == "document":
            yield 0, {"path": path, "text": "\n\n".join(t for t in texts if t),
                      "pages": count, "title": _title(reader)}

    def _open(self, name: str, data: bytes) -> Any:
        import pypdf

        if not data:
            raise InputError("empty file (0 bytes), not a PDF", path=name)
        if b"%PDF-" not in data[:1024]:
            raise InputError(f"not a PDF (starts with {data[:16]!r}, not '%PDF-')", path=name)
        try:
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        except Exception as exc:  # noqa: BLE001 - pypdf's errors for broken files
            raise InputError(f"corrupt PDF ({_why(exc)})", path=name) from None
        if reader.is_encrypted:
            try:
                opened = reader.decrypt(self.args.password or "")
            except Exception as exc:  # noqa: BLE001 - e.g. AES without a crypto library
                raise InputError(f"encrypted PDF that cannot be opened ({_why(exc)})",
                                 path=name) from None
            if not opened:
                what = "the password given is wrong" if self.args.password else \
                    "pass password= to read it"
                raise InputError(f"encrypted PDF: {what}", path=name)
        return reader


def _title(reader: Any) -> str | None:
    try:
        meta = reader.metadata
        return str(meta.title).strip() or None if meta is not None and meta.title else None
    except Exception:  # noqa: BLE001 - broken metadata is not worth failing a document
        return None


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
