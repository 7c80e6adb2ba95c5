"""A directory or glob of text files: one row per file, with its path.

Markdown reads as it is written, or, with `markdown="strip"`, as plain text: markup, HTML
and YAML front matter removed; the text of headings, paragraphs, list items, table cells,
links, image descriptions and code kept, one block per paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import InputError
from .documents import DocumentArgs, DocumentSource
from .files import FilePart

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
_FRONT_MATTER = re.compile(r"\A(?:\ufeff)?---[ \t]*\r?\n.*?\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)",
                           re.S)


class ReadTextFilesArgs(DocumentArgs):
    encoding: str = Field("utf-8", description="Text encoding of the files.")
    invalid_text: Literal["error", "replace"] = Field(
        "error", description="Bytes not valid in `encoding`: fail naming the file, or "
                             "replace them with U+FFFD.")
    markdown: Literal["keep", "strip"] = Field(
        "keep", description="Markdown files (.md, .markdown): keep the markup, or strip it "
                            "to plain text (front matter and HTML removed, text kept).")


class ReadTextFiles(DocumentSource):
    """Read text files, one row per file: `path` (relative to the folder given) and `text`.
    Markdown is read as is, or as plain text with `markdown="strip"`."""

    name = "read_text_files"
    Args = ReadTextFilesArgs

    def columns(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "text": pa.string()}

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        a = self.args
        try:
            text = data.decode(a.encoding, errors="strict" if a.invalid_text == "error"
                               else "replace")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid {a.encoding} ({exc.reason} at byte {exc.start}); "
                             "pass invalid_text='replace' to keep it", path=part.path) from None
        if a.markdown == "strip" and part.path.lower().endswith(MARKDOWN_SUFFIXES):
            text = markdown_to_text(text)
        yield 0, {"path": self.relative(part.path), "text": text}


def markdown_to_text(source: str) -> str:
    """Plain text of a Markdown document (CommonMark with tables and strikethrough)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    source = _FRONT_MATTER.sub("", source, count=1)
    blocks: list[tuple[str, str | None]] = []  # (text, group): one group's lines stay together
    lists = 0
    row: list[str] | None = None
    for token in md.parse(source):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            blocks.append((" | ".join(row), "table"))
            row = None
        elif kind == "inline":
            text = _inline_text(token.children or [])
            if row is not None:
                row.append(text)
            elif text.strip():
                blocks.append((text, "list" if lists else None))
        elif kind in ("fence", "code_block"):
            blocks.append((token.content.rstrip("\n"), None))
    out: list[str] = []
    previous: str | None = None
    for text, group in blocks:
        if out:
            out.append("\n" if group is not None and group == previous else "\n\n")
        out.append(text)
        previous = group
    return "".join(out) + ("\n" if out else "")


def _inline_text(children: list[Any]) -> str:
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the image's description
    return "".join(parts)
