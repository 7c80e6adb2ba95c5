"""Chunking: split texts into pieces of bounded size for retrieval, with exact offsets.

Every chunk is a span of its parent: `parent[chunk_start:chunk_end] == chunk`. Spans come
from a recursive splitter (paragraphs, lines, sentences, words, characters), optionally
over whole sentences or within Markdown sections, and are packed greedily up to `size`.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import PipelineError
from ..operation import Arguments, ExpandOperation

DEFAULT_SEPARATORS = ["\n\n", "\n", ". ", " ", ""]
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"')\]\u201d\u2019]*\s+|\n[ \t]*\n\s*")
_WORD_START = re.compile(r"(?<=\s)\S")
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)[ \t]*(?:[ \t]#+[ \t]*)?$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class ChunkTextArgs(Arguments):
    column: str = Field("text", description="Text column to split.")
    output: str = Field("chunk", description="Column that receives each chunk's text.")
    size: int = Field(1000, gt=0, description="Largest chunk, in `unit`s.")
    overlap: int = Field(0, ge=0, description="Units a chunk may share with the previous one "
                                              "(starts at a word or sentence boundary).")
    unit: Literal["chars", "tokens"] = Field("chars", description="Measure size in characters "
                                                                  "or in tokens of `tokenizer`.")
    tokenizer: str | None = Field(None, description="Tokenizer for unit='tokens': a directory "
                                                    "or a name in the offline HF cache.")
    strategy: Literal["recursive", "sentences", "markdown"] = Field(
        "recursive", description="recursive: split on `separators`; sentences: pack whole "
                                 "sentences; markdown: split into heading sections first.")
    respect_sentences: bool = Field(False, description="Pack whole sentences (implied by "
                                                       "strategy='sentences'; combines with "
                                                       "markdown).")
    separators: list[str] = Field(default_factory=lambda: list(DEFAULT_SEPARATORS),
                                  description="Split on the first that occurs, recursively; a "
                                              "hard cut always comes last.")
    heading_column: str = Field("heading_path", description="markdown: column with the "
                                                            "section's headings, joined by ' > '.")

    @model_validator(mode="after")
    def _consistent(self) -> ChunkTextArgs:
        if self.overlap >= self.size:
            raise ValueError(f"overlap={self.overlap} must be smaller than size={self.size}")
        if self.unit == "tokens" and not self.tokenizer:
            raise ValueError("unit='tokens' needs tokenizer= (a directory or a cached HF name)")
        if self.unit == "chars" and self.tokenizer:
            raise ValueError("tokenizer= is only used with unit='tokens'")
        return self


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    heading: str = ""


class _Measure:
    """Length of text[s:e] in characters, or in tokens of the whole text's tokenization (a
    token belongs to the span its first character falls in)."""

    def __init__(self, text: str, tokenizer: Any = None):
        self.starts: list[int] | None = None
        if tokenizer is not None:
            offsets = tokenizer.encode(text, add_special_tokens=False).offsets
            self.starts = sorted(s for s, e in offsets if e > s)

    def __call__(self, s: int, e: int) -> int:
        if self.starts is None:
            return e - s
        return bisect_left(self.starts, e) - bisect_left(self.starts, s)

    def back(self, e: int, n: int) -> int:
        """The smallest position p with measure(p, e) <= n."""
        if self.starts is None:
            return e - n
        k = bisect_left(self.starts, e) - n
        return self.starts[k - 1] + 1 if k > 0 else 0

    def cuts(self, s: int, e: int, size: int) -> list[int]:
        """Positions that cut text[s:e] into pieces of at most `size`."""
        if self.starts is None:
            return list(range(s + size, e, size))
        lo, hi = bisect_left(self.starts, s), bisect_left(self.starts, e)
        points = sorted({self.starts[k] for k in range(lo + size, hi, size)} - {s})
        return [p for p in points if s < p < e]


class Chunker:
    """Splits one text into chunks (spans). Pure Python; the operation calls it per row."""

    def __init__(self, size: int, overlap: int = 0, separators: list[str] | None = None,
                 sentences: bool = False, markdown: bool = False, tokenizer: Any = None):
        self.size = size
        self.overlap = overlap
        self.separators = list(DEFAULT_SEPARATORS if separators is None else separators)
        self.sentences = sentences
        self.markdown = markdown
        self.tokenizer = tokenizer

    def chunks(self, text: str | None) -> list[Chunk]:
        if not text or text.isspace():
            return []
        self._text = text
        self._measure = _Measure(text, self.tokenizer)
        sections = markdown_sections(text) if self.markdown else [(0, len(text), "")]
        out: list[Chunk] = []
        for s, e, heading in sections:
            pieces = self._pieces(s, e)
            for cs, ce in self._merge(pieces):
                cs, ce = _trim(text, cs, ce)
                if cs < ce:
                    out.append(Chunk(cs, ce, heading))
        return out

    # --- splitting into pieces of at most `size` --------------------------------------
    def _pieces(self, s: int, e: int) -> list[tuple[int, int]]:
        if not self.sentences:
            return self._split(s, e, self.separators)
        out = []
        for ps, pe in _sentence_spans(self._text, s, e):
            out += self._split(ps, pe, self.separators)
        return out

    def _fits(self, s: int, e: int) -> bool:
        """Does text[s:e], once trimmed, hold at most `size` units?"""
        return self._measure(*_trim(self._text, s, e)) <= self.size

    def _split(self, s: int, e: int, separators: list[str]) -> list[tuple[int, int]]:
        if self._fits(s, e):
            return [(s, e)]
        text = self._text
        for k, sep in enumerate(separators):
            if sep == "":
                break
            pos = text.find(sep, s, e)
            if pos < 0:
                continue
            out, start = [], s
            while pos >= 0:
                cut = pos + len(sep)
                if start < cut < e:
                    out += self._split(start, cut, separators[k + 1:])
                    start = cut
                pos = text.find(sep, cut, e)
            return out + self._split(start, e, separators[k + 1:])
        bounds = [s, *self._measure.cuts(s, e, self.size), e]
        return list(zip(bounds, bounds[1:]))

    # --- packing pieces into chunks ---------------------------------------------------
    def _merge(self, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
        chunks: list[tuple[int, int]] = []
        i, start = 0, pieces[0][0] if pieces else 0
        while i < len(pieces):
            j = i
            while j + 1 < len(pieces) and self._fits(start, pieces[j + 1][1]):
                j += 1
            end = pieces[j][1]
            chunks.append((start, end))
            if j + 1 == len(pieces):
                break
            i = j + 1
            nxt = self._overlap_start(start, end, pieces[i][1], pieces) if self.overlap else None
            start = pieces[i][0] if nxt is None else nxt
        return chunks

    def _overlap_start(self, start: int, end: int, next_end: int,
                       pieces: list[tuple[int, int]]) -> int | None:
        """Where the next chunk starts so that it repeats at most `overlap` units of this one
        and still holds the next piece: the first word (sentence) start in reach."""
        m = self._measure
        first = _trim(self._text, start, end)[0]  # where this chunk starts once trimmed
        next_end = _trim(self._text, first, next_end)[1]
        lo = max(first + 1, m.back(end, self.overlap), m.back(next_end, self.size))
        if lo >= end:
            return None
        if self.sentences:
            k = bisect_left(pieces, (lo, -1))
            return pieces[k][0] if k < len(pieces) and pieces[k][0] < end else None
        found = _WORD_START.search(self._text, lo, end)
        return found.start() if found else None


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _sentence_spans(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """Sentences of text[s:e]: each ends after . ! ? (and closing quotes) plus whitespace,
    or at a blank line. A heuristic: abbreviations such as "e.g. " end a sentence too."""
    out, start = [], s
    for m in _SENTENCE_END.finditer(text, s, e):
        if m.end() > start:
            out.append((start, m.end()))
            start = m.end()
    if start < e:
        out.append((start, e))
    return out


def markdown_sections(text: str) -> list[tuple[int, int, str]]:
    """(start, end, heading path) of each section: ATX headings (`#` to `######`) outside
    fenced code blocks start one. A section holding only its heading line is left out; text
    before the first heading is a section with an empty path."""
    heads: list[tuple[int, int, int, str]] = []  # line start, body start, level, title
    fence = ""
    pos = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        line_end = len(text) if nl < 0 else nl + 1
        line = text[pos:line_end].rstrip("\r\n")
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
        elif opened:
            fence = opened.group(1)
        else:
            heading = _HEADING.match(line)
            if heading:
                heads.append((pos, line_end, len(heading.group(1)), heading.group(2).strip()))
        pos = line_end
    sections = []
    first = heads[0][0] if heads else len(text)
    if first > 0:
        sections.append((0, first, ""))
    path: list[tuple[int, str]] = []
    for n, (start, body, level, title) in enumerate(heads):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        end = heads[n + 1][0] if n + 1 < len(heads) else len(text)
        if text[body:end].strip():
            sections.append((start, end, " > ".join(t for _, t in path)))
    return sections


def load_tokenizer(name: str) -> Any:
    """A `tokenizers.Tokenizer` (no truncation, no padding) from a directory, a
    tokenizer.json file or a name in the offline HF cache. Never downloads."""
    from pathlib import Path

    from .embed import local_model_dir

    path = Path(name).expanduser()
    file = path if path.is_file() else local_model_dir(name) / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError("unit='tokens' needs the tokenizers package: "
                          "pip install 'datamill[embed]'") from None
    if file.is_file():
        tokenizer = Tokenizer.from_file(str(file))
    else:  # a slow tokenizer only: let transformers convert it
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(str(file.parent), local_files_only=True)
        if not getattr(auto, "is_fast", False):
            raise ValueError(f"no fast tokenizer (tokenizer.json) for {name!r}")
        tokenizer = auto.backend_tokenizer
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class ChunkText(ExpandOperation):
    """Split each text into chunks of at most `size` characters or tokens, for retrieval.

    Splits recursively on `separators` (paragraphs, lines, sentences, words, then a hard cut)
    and packs the pieces greedily; `overlap` repeats the end of a chunk at the start of the
    next, from a word (or sentence) boundary. strategy='sentences' never cuts inside a
    sentence unless the sentence alone exceeds `size`; strategy='markdown' splits on ATX
    headings first and keeps the heading path ("Install > From source"). Each chunk row keeps
    its parent's columns and `_parent_id`, plus `chunk_index` (0, 1, ... within the parent)
    and `chunk_start`/`chunk_end`: character offsets with parent[start:end] == chunk. Chunks
    are trimmed of surrounding whitespace; null, empty and blank texts give no chunk."""

    name = "chunk_text"
    Args = ChunkTextArgs
    consumes = {"{column}": "string"}
    produces = {"{output}": "string", "chunk_index": "int64", "chunk_start": "int64",
                "chunk_end": "int64"}

    def resolve_produces(self, schema: dict) -> dict:
        columns = dict(self.produces)
        if self.args.strategy == "markdown":
            columns["{heading_column}"] = "string"
        if self.args.unit == "tokens":
            import importlib.util

            from .embed import local_model_dir

            if importlib.util.find_spec("tokenizers") is None:
                raise PipelineError("unit='tokens' needs the tokenizers package: "
                                    "pip install 'datamill[embed]'", operation=self.name)
            try:
                local_model_dir(self.args.tokenizer or "")
            except (FileNotFoundError, ValueError) as exc:
                raise PipelineError(f"tokenizer: {exc}", operation=self.name) from None
        return self._template(columns)

    def setup(self) -> None:
        a = self.args
        tokenizer = load_tokenizer(a.tokenizer) if a.unit == "tokens" and a.tokenizer else None
        self._chunker = Chunker(a.size, a.overlap, a.separators,
                                sentences=a.strategy == "sentences" or a.respect_sentences,
                                markdown=a.strategy == "markdown", tokenizer=tokenizer)

    def process(self, batch: Any) -> Any:
        if not hasattr(self, "_chunker"):
            self.setup()
        a = self.args
        parents, texts, index, starts, ends, headings = [], [], [], [], [], []
        for row, text in enumerate(batch[a.column].to_pylist()):
            for k, c in enumerate(self._chunker.chunks(text)):
                parents.append(row)
                texts.append(text[c.start:c.end])
                index.append(k)
                starts.append(c.start)
                ends.append(c.end)
                headings.append(c.heading)
        out = {"_parent_index": parents, a.output: texts, "chunk_index": index,
               "chunk_start": starts, "chunk_end": ends}
        if a.strategy == "markdown":
            out[a.heading_column] = headings
        return out
