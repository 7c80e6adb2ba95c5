"""HTML: main-content extraction (navigation, headers, footers, sidebars, cookie notices,
newsletter and ad boxes removed; see `boilerplate`) with trafilatura
(`pip install 'datamill[html]'`).

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
from .boilerplate import isolate, link_share, prune, render, text_length
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


KEPT = 0.7  # the main pass keeps less of the pruned main container's text: run the cascade
KEPT_OF_LINK_PAGE = 0.9  # or, when the container is a link page, render it whole
LINK_PAGE = 0.3  # a container whose text is at least this share link text is a link page
SHORT = 3000  # characters: a longer main pass is kept (trafilatura's bound for its retry)


class Extractor:
    """trafilatura with the step's settings, loaded once per worker.

    Per page: parse once; read the wanted metadata (`fields`: title, url, date) from the
    head; remove boilerplate (`boilerplate.prune`); run trafilatura's main pass without its
    fallback extractors. A container made mostly of links (an index or overview page) of
    which that pass keeps less than KEPT_OF_LINK_PAGE is rendered as it is; any other page of
    which it keeps less than KEPT, and less than SHORT characters, gets trafilatura's full
    cascade (readability, jusText), unless `fast`."""

    def __init__(self, args: ExtractionArgs, operation: str,
                 fields: tuple[str, ...] = ("title",)):
        trafilatura = require("trafilatura", "html", operation)
        from trafilatura.settings import Extractor as Options
        from trafilatura.utils import load_html

        self._load = load_html
        self._extract = trafilatura.bare_extraction
        self._fields = set(fields)
        self._fallbacks = not args.fast
        self._tables, self._links = args.include_tables, args.include_links
        # built once (trafilatura builds them per call otherwise): the main pass, the cascade
        self._options = {fast: Options(
            output_format="python", fast=fast, precision=args.favor == "precision",
            recall=args.favor == "recall", tables=args.include_tables,
            links=args.include_links, comments=args.include_comments) for fast in (True, False)}

    def __call__(self, content: str | bytes | None) -> dict | None:
        """{'text', 'language', and the wanted fields} of a page; None when there is nothing
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
        found = metadata(tree, self._fields)
        container = prune(tree)
        tree = isolate(tree, container)
        text = self._text(tree, container)
        found["text"] = text or None
        return found

    def _run(self, tree: Any, fast: bool) -> str:
        doc = self._extract(tree, options=self._options[fast])
        return doc.text.strip() if doc is not None and doc.text else ""

    def _text(self, tree: Any, container: Any) -> str:
        text = self._run(tree, fast=True)
        wanted = text_length(container)
        if len(text) >= KEPT_OF_LINK_PAGE * wanted:
            return text
        if link_share(container) >= LINK_PAGE:
            rendered = render(container, tables=self._tables, links=self._links)
            return rendered if len(rendered) > len(text) else text
        if len(text) < min(KEPT * wanted, SHORT) and self._fallbacks:
            full = self._run(tree, fast=False)
            return full if len(full) > len(text) else text
        return text


def metadata(tree: Any, fields: set[str]) -> dict:
    """The page's language, and of title, url and date those in `fields`."""
    from trafilatura.metadata import extract_title, extract_url

    language = tree.get("lang") or _meta(tree, "content-language", "http-equiv")
    found: dict = {"language": language or None}
    if "title" in fields:
        title = _meta(tree, "og:title", "property") or extract_title(tree)
        found["title"] = " ".join(title.split()) if title else None
    if "url" in fields or "date" in fields:
        found["url"] = extract_url(tree) or None
    if "date" in fields:
        from htmldate import find_date

        found["date"] = _date(find_date(tree, extensive_search=False, original_date=True,
                                        url=found["url"]))
    return found


def _meta(tree: Any, name: str, attribute: str) -> str | None:
    for element in tree.iterfind(f".//head/meta[@{attribute}]"):
        if element.get(attribute, "").lower() == name and element.get("content"):
            return element.get("content").strip() or None
    return None


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
    page has no main content), `language` (the page's `lang`), `date` (publication date
    declared in the page's metadata). Navigation, headers, footers, sidebars, cookie notices,
    newsletter and ad boxes are removed, then trafilatura extracts
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
            self._extractor = Extractor(self.args, self.name,
                                        fields=("title", "url", "date"))
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
    """Extract the main text of HTML pages in a column (navigation, headers, footers,
    sidebars, cookie notices, newsletter and ad boxes removed; index pages made of links
    kept) with trafilatura (`pip install 'datamill[html]'`). Produces `text`
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
        self._extractor = Extractor(self.args, self.name,
                                    fields=("title",) if self.args.title else ())

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
