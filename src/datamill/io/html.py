"""HTML: main-content extraction (navigation, headers, footers, sidebars removed) with
trafilatura (`pip install 'datamill[html]'`).

`read_html` reads .html/.htm files, one row per file; `extract_html` extracts from an HTML
column (the `html` of `read_warc`, for instance). Malformed markup is repaired by the
parser and extracted best-effort; a fragment without <html> is wrapped in a document first.
A page with no main content gives a null `text` (`text_length_filter` drops it as
`null_text`). Input that does not parse as HTML at all is an error: per `errors` in
`read_html`, per the step's `on_error` in `extract_html`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import InputError
from ..operation import Arguments, MapOperation
from .documents import DocumentArgs, DocumentSource, require
from .files import FilePart

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


class ExtractionArgs(Arguments):
    favor: Literal["balanced", "precision", "recall"] = Field(
        "balanced", description="Trade-off of the extraction: 'precision' keeps less but "
                                "cleaner text, 'recall' keeps more of the page.")
    include_tables: bool = Field(True, description="Keep the text of tables (cells separated "
                                                   "by ' | ').")
    include_links: bool = Field(False, description="Keep link targets, as Markdown links.")
    include_comments: bool = Field(False, description="Keep the comments section of a page "
                                                      "(blog or forum comments).")
    fast: bool = Field(False, description="Skip the fallback extractors that run when the "
                                          "main pass finds little text: faster, lower "
                                          "recall on unusual layouts.")


class Extractor:
    """trafilatura with the step's settings, loaded once per worker."""

    def __init__(self, args: ExtractionArgs, operation: str, metadata: bool = True):
        trafilatura = require("trafilatura", "html", operation)
        from trafilatura.utils import load_html

        self._load = load_html
        self._extract = trafilatura.bare_extraction
        self._options = {
            "favor_precision": args.favor == "precision",
            "favor_recall": args.favor == "recall",
            "include_tables": args.include_tables, "include_links": args.include_links,
            "include_comments": args.include_comments, "fast": args.fast,
            "with_metadata": metadata}

    def __call__(self, content: str | bytes | None) -> dict | None:
        """{'text', 'title', 'url', 'date', 'language'} of a page; None when there is nothing
        to extract; ValueError when the input is not HTML at all."""
        if content is None or not content.strip():
            return None
        if (b"\x00" if isinstance(content, bytes) else "\x00") in content[:4096]:
            raise ValueError(f"binary data, not HTML (NUL bytes; starts {content[:16]!r})")
        tree = self._load(content)
        if tree is None:  # a fragment, or markup without an <html> near the start
            wrap = (b"<html><body>%s</body></html>" if isinstance(content, bytes)
                    else "<html><body>%s</body></html>")
            tree = self._load(wrap % content)
        if tree is None:
            head = content[:40]
            raise ValueError(f"not parseable as HTML ({len(content)} "
                             f"{'bytes' if isinstance(content, bytes) else 'characters'}, "
                             f"starting {head!r})")
        language = tree.get("lang") or None
        doc = self._extract(tree, **self._options)
        if doc is None:
            return {"text": None, "title": None, "url": None, "date": None,
                    "language": language}
        text = doc.text.strip() if doc.text else ""
        return {"text": text or None, "title": doc.title or None, "url": doc.url or None,
                "date": _date(doc.date), "language": (language or doc.language or None)}


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


class ReadHtmlArgs(DocumentArgs, ExtractionArgs):
    bytes_per_partition: int = Field(8 * 2**20, gt=0,
                                     description="Files are grouped into units of work of "
                                                 "about this many bytes.")


class ReadHtml(DocumentSource):
    """Read HTML files (.html, .htm, .xhtml), one row per file, keeping the main content:
    `path`, `url` (canonical URL if the page declares one), `title`, `text` (null when the
    page has no main content), `language` (the page's `lang`), `date` (publication date if
    found). Navigation, headers, footers and sidebars are removed by trafilatura
    (`pip install 'datamill[html]'`); the encoding is detected from the bytes. Read raw HTML
    with `format="text"` instead."""

    name = "read_html"
    Args = ReadHtmlArgs
    default_suffixes = HTML_SUFFIXES

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        require("trafilatura", "html", self.name)  # fail when the pipeline is built
        self._extractor: Extractor | None = None

    def columns(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "url": pa.string(), "title": pa.string(),
                "text": pa.string(), "language": pa.string(), "date": pa.date32()}

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        if self._extractor is None:
            self._extractor = Extractor(self.args, self.name)
        try:
            found = self._extractor(data)
        except Exception as exc:  # noqa: BLE001 - the parser's failure, named with the file
            raise InputError(f"{exc}" if isinstance(exc, ValueError)
                             else f"cannot extract ({type(exc).__name__}: {exc})",
                             path=part.path) from None
        yield 0, {"path": self.relative(part.path), **(found or {})}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_extractor"] = None
        return state


class ExtractHtmlArgs(ExtractionArgs):
    column: str = Field("html", description="Column holding HTML.")
    output: str = Field("text", description="Column for the extracted main text (null when "
                                            "the page has no main content).")
    title: str | None = Field("title", description="Column for the page title; None to "
                                                   "skip it.")


class ExtractHtml(MapOperation):
    """Extract the main text of HTML pages in a column (navigation, headers, footers and
    sidebars removed) with trafilatura (`pip install 'datamill[html]'`). Produces `text`
    (null when a page has no main content) and `title`. Malformed markup is extracted
    best-effort; a value that is not HTML at all fails its row (see the step's on_error)."""

    name = "extract_html"
    Args = ExtractHtmlArgs
    consumes = {"{column}": "string"}
    in_place = True  # output may be the column itself

    def resolve_produces(self, schema: dict) -> dict:
        produced = {"{output}": "string"}
        if self.args.title:
            produced["{title}"] = "string"
        return self._template(produced)

    def setup(self) -> None:
        self._extractor = Extractor(self.args, self.name, metadata=bool(self.args.title))

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        if not hasattr(self, "_extractor"):
            self.setup()
        texts, titles = [], []
        for value in batch.column(self.args.column).to_pylist():
            try:
                found = self._extractor(value) or {}
            except ValueError as exc:
                raise ValueError(f"column {self.args.column!r}: {exc}") from None
            texts.append(found.get("text"))
            titles.append(found.get("title"))
        out = {self.args.output: pa.array(texts, pa.string())}
        if self.args.title:
            out[self.args.title] = pa.array(titles, pa.string())
        return out
