"""C4's line rules (which lines of a document C4 keeps), in two equal implementations: the
compiled scan of kernels.c4_lines, which settles most lines over the UTF-8 bytes of the
batch and leaves the few with citations or a phrase of the rules to Python, and
`python_rules`, the reference loop over `str.splitlines()` used without the kernels.
Tests compare the two."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
# last characters of a line that can end in terminal punctuation once citations are cut
_MAY_END = frozenset(".?!\"']")
PHRASES = ("lorem ipsum", "javascript", *POLICY_SUBSTRINGS)  # what the line rules look for


@dataclass
class KeptLines:
    """The outcome of the line rules on a batch of texts: per text its line count and
    whether a kept line mentions lorem ipsum / holds '{'; per kept line (in text order) its
    text and its span (start, end characters in the text; -1, -1 where the line is not a
    slice of the text or a line break was not one character), and the lines themselves
    (`line(i)`, `lines()`) and each text's kept lines joined (`cleaned()`)."""

    n_lines: Any
    lorem: Any
    curly: Any
    doc: Any
    spans: Any
    texts: list[str]
    kept: list[str] | None = None  # the lines (Python rules); else made on demand from:
    where: Any = None  # (start, end) of each line in its text, in characters
    replaced: dict[int, str] | None = None  # the lines that are not slices of their text
    utf8: tuple[Any, Any] | None = None  # (UTF-8 bytes, rows for kernels.join_lines)

    def line(self, i: int) -> str:
        if self.kept is not None:
            return self.kept[i]
        if i in self.replaced:
            return self.replaced[i]
        start, end = self.where[i].tolist()
        return self.texts[int(self.doc[i])][start:end]

    def lines(self) -> list[str]:
        if self.kept is None:
            doc, (start, end) = self.doc.tolist(), self.where.T.tolist()
            texts = self.texts
            self.kept = [texts[d][s:e] for d, s, e in zip(doc, start, end)]
            for i, line in self.replaced.items():
                self.kept[i] = line
        return self.kept

    def cleaned(self) -> Any:
        """Per text, its kept lines joined by newlines and stripped (what C4 keeps of it):
        an Arrow string array when the kernels joined them, else a numpy array of str."""
        import numpy as np
        import pyarrow as pa

        from . import kernels

        n = len(self.texts)
        if self.utf8 is not None:
            joined = kernels.join_lines(*self.utf8, n)
            if joined is not None:
                data, offsets = joined
                kind = pa.string() if offsets[-1] < 2**31 else pa.large_string()
                offsets = offsets.astype(np.int32 if kind == pa.string() else np.int64)
                return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets),
                                                       pa.py_buffer(data)])
        lines = self.lines()
        bounds = np.searchsorted(self.doc, np.arange(n + 1))
        return np.array(["\n".join(lines[bounds[i]:bounds[i + 1]]).strip() for i in range(n)],
                        dtype=object)


def line_rules(texts: list[str], column: Any, args: Any) -> KeptLines:
    """C4's line rules (`args`: C4StatsArgs) on `texts` (`column`: the same as Arrow, or
    None): compiled when the kernels are built, else `python_rules`."""
    return _compiled_rules(texts, column, args) or python_rules(texts, column, args)


def _finish(stripped: str, args: Any, phrases: bool) -> tuple[str | None, bool, bool]:
    """The rules of a stripped line from citations on, as `python_rules` applies them: (the
    kept line or None, lorem ipsum seen, '{' seen). `phrases` False: the line mentions none
    of PHRASES."""
    line = stripped
    if args.remove_citations and "[" in line:
        line = CITATION.sub("", line)
    if args.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION)
                                          or line.endswith("...")):
        return None, False, False
    min_words = args.min_words_per_line
    if min_words > 0 and len(stripped.split(None, max(min_words - 1, 0))) < min_words:
        return None, False, False  # (words before citations are removed)
    lorem = curly = False
    if phrases:
        low = line.lower()
        lorem = "lorem ipsum" in low
        if args.filter_javascript and "javascript" in low:
            return None, lorem, False
        curly = "{" in line
        if args.filter_policy and any(p in low for p in POLICY_SUBSTRINGS):
            return None, lorem, curly
    else:
        curly = "{" in line
    return line, lorem, curly


def python_rules(texts: list[str], column: Any, args: Any) -> KeptLines:
    """The line rules line by line: each line of `text.splitlines()`, stripped, is dropped
    when it does not end in terminal punctuation, has a word over `max_word_length`
    characters, does not end in terminal punctuation once its citations are cut (or ends in
    "..."), has too few words, or mentions javascript or a cookie / terms-of-use policy."""
    import numpy as np

    n = len(texts)
    n_lines = np.zeros(n, np.int64)
    lorem = np.zeros(n, bool)
    curly = np.zeros(n, bool)
    lines: list[str] = []
    doc: list[int] = []
    spans: list[int] = []
    max_len = args.max_word_length
    cut_citations = args.remove_citations
    punct = args.filter_no_terminal_punct
    min_words = args.min_words_per_line
    few_words = max(min_words - 1, 0)  # split only that far: fewer words are all we ask
    mentions = _mentions(texts, column, cut_citations)
    for i, text in enumerate(texts):
        raws = text.splitlines()
        n_lines[i] = len(raws)
        # offsets are exact when every line break is one character
        ends = list(accumulate(map(len, raws)))  # characters up to each line's end
        exact = (ends[-1] if ends else 0) + len(raws) - (not text.endswith("\n")) == len(text)
        phrases = mentions[i]
        for j, raw in enumerate(raws):
            line = stripped = raw.strip()
            if punct and line[-1:] not in _MAY_END:  # dropped for its end (most lines)
                continue
            if max_len != -1 and len(line) > max_len and any(
                    len(w) > max_len for w in line.split()):
                continue
            if cut_citations and "[" in line:
                line = CITATION.sub("", line)
            if punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                continue
            if min_words > 0 and len(stripped.split(None, few_words)) < min_words:
                continue  # (words before citations are removed)
            if phrases:
                low = line.lower()
                if "lorem ipsum" in low:
                    lorem[i] = True
                if args.filter_javascript and "javascript" in low:
                    continue
                if "{" in line:
                    curly[i] = True
                if args.filter_policy and any(p in low for p in POLICY_SUBSTRINGS):
                    continue
            elif "{" in line:
                curly[i] = True
            lines.append(line)
            doc.append(i)
            if exact and line == stripped:
                # line j ends after j one-character breaks; skip its indent
                lo = ends[j] + j - len(raw.lstrip())
                spans += (lo, lo + len(line))
            else:
                spans += (-1, -1)
    return KeptLines(n_lines, lorem, curly, np.array(doc, dtype=np.int64),
                     np.array(spans, dtype=np.int64).reshape(-1, 2), texts, kept=lines)


def _mentions(texts: list[str], column: Any, cut_citations: bool) -> list[bool]:
    """Which texts may have a line that mentions a phrase of the line rules: the text, its
    citations cut, lowercased by Arrow (which lowercases to ASCII wherever Python does), holds
    one. Lines of the others need no lowercasing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None:
        column = pa.array(texts, pa.string())
    if cut_citations:  # as CITATION (Python's \d is Unicode's Nd)
        column = pc.replace_substring_regex(
            column, r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]", "")
    found = pc.match_substring_regex(pc.utf8_lower(column),
                                     "|".join(re.escape(p) for p in PHRASES))
    return found.fill_null(False).to_pylist()


def _compiled_rules(texts: list[str], column: Any, args: Any) -> KeptLines | None:
    """The line rules by kernels.c4_lines; the candidate lines it asks about (a '[' to
    cut, a phrase of the rules, or a letter whose lowercase is ASCII) are finished by
    `_finish`. None without kernels (or texts Arrow cannot hold)."""
    import numpy as np
    import pyarrow as pa

    from . import kernels
    from .gopher import _utf8

    if kernels.library() is None:
        return None
    if column is None:
        try:
            column = pa.array(texts, pa.string())
        except (pa.ArrowException, UnicodeEncodeError):  # lone surrogates
            return None
    data, offsets = _utf8(column)
    n_lines, exact, found = kernels.c4_lines(
        data, offsets, args.max_word_length, args.min_words_per_line,
        args.filter_no_terminal_punct, args.remove_citations, PHRASES)
    doc, flags = found[:, 0], found[:, 5]
    where = found[:, 1:3]
    n = len(texts)
    lorem = np.zeros(n, bool)
    curly = np.zeros(n, bool)
    ask = (flags & 1) != 0
    curly[doc[~ask & ((flags & 2) != 0)]] = True  # (lines not asked about are kept)
    keep = np.ones(len(found), bool)
    changed = ~exact[doc]
    replaced: dict[int, str] = {}
    side: list[bytes] = []  # the UTF-8 of the replaced lines
    rows = np.stack([doc, np.zeros_like(doc), found[:, 3], found[:, 4]], axis=1)
    at = 0
    for k in np.flatnonzero(ask).tolist():  # the rare lines Python finishes
        d = int(doc[k])
        stripped = texts[d][int(where[k, 0]):int(where[k, 1])]
        line, seen_lorem, seen_curly = _finish(stripped, args, True)
        lorem[d] |= seen_lorem
        curly[d] |= seen_curly
        if line is None:
            keep[k] = False
        elif line != stripped:
            replaced[k] = line
            changed[k] = True
            encoded = line.encode()
            side.append(encoded)
            rows[k, 1:] = (1, at, at + len(encoded))
            at += len(encoded)
    spans = np.where(changed[:, None], -1, where)
    if not keep.all():
        index = np.flatnonzero(keep)
        renumber = np.cumsum(keep) - 1
        replaced = {int(renumber[k]): line for k, line in replaced.items()}
        doc, spans, where, rows = doc[index], spans[index], where[index], rows[index]
    side_bytes = np.frombuffer(b"".join(side) or b"\0", np.uint8)
    return KeptLines(n_lines, lorem, curly, np.ascontiguousarray(doc),
                     np.ascontiguousarray(spans), texts, where=where, replaced=replaced,
                     utf8=(data, side_bytes, rows))
