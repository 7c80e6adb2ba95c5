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
    whether a kept line mentions lorem ipsum / holds '{'; per kept line (in text order) the
    line, its text and its span (start, end characters in the text; -1, -1 where the line
    is not a slice of the text or a line break was not one character)."""

    n_lines: Any
    lorem: Any
    curly: Any
    lines: list[str]
    doc: Any
    spans: Any


def line_rules(texts: list[str], column: Any, args: Any) -> KeptLines:
    """C4's line rules (`args`: C4StatsArgs) on `texts` (`column`: the same as Arrow, or
    None): compiled when the kernels are built, else `python_rules`."""
    return _compiled_rules(texts, column, args) or python_rules(texts, column, args)


def _finish(stripped: str, args: Any, phrases: bool) -> tuple[str | None, bool, bool]:
    """The rules of a stripped line from citations on: (the kept line or None, lorem ipsum
    seen, '{' seen). `phrases` False: the line mentions none of PHRASES."""
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
    punct = args.filter_no_terminal_punct
    mentions = _mentions(texts, column, args.remove_citations)
    for i, text in enumerate(texts):
        raws = text.splitlines()
        n_lines[i] = len(raws)
        # offsets are exact when every line break is one character
        ends = list(accumulate(map(len, raws)))  # characters up to each line's end
        exact = (ends[-1] if ends else 0) + len(raws) - (not text.endswith("\n")) == len(text)
        phrases = mentions[i]
        for j, raw in enumerate(raws):
            stripped = raw.strip()
            if punct and stripped[-1:] not in _MAY_END:  # dropped for its end (most lines)
                continue
            if max_len != -1 and len(stripped) > max_len and any(
                    len(w) > max_len for w in stripped.split()):
                continue
            line, seen_lorem, seen_curly = _finish(stripped, args, phrases)
            lorem[i] |= seen_lorem
            curly[i] |= seen_curly
            if line is None:
                continue
            lines.append(line)
            doc.append(i)
            if exact and line == stripped:
                # line j ends after j one-character breaks; skip its indent
                lo = ends[j] + j - len(raw.lstrip())
                spans += (lo, lo + len(line))
            else:
                spans += (-1, -1)
    return KeptLines(n_lines, lorem, curly, lines, np.array(doc, dtype=np.int64),
                     np.array(spans, dtype=np.int64).reshape(-1, 2))


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
    doc, start, end, flags = found.T
    lines = [texts[d][s:e] for d, s, e in zip(doc.tolist(), start.tolist(), end.tolist())]
    keep = np.ones(len(lines), bool)
    changed = ~exact[doc]
    n = len(texts)
    lorem = np.zeros(n, bool)
    curly = np.zeros(n, bool)
    ask = (flags & 1) != 0
    curly[doc[~ask & ((flags & 2) != 0)]] = True  # (lines not asked about are kept)
    for k in np.flatnonzero(ask).tolist():  # the rare lines Python finishes
        d = int(doc[k])
        line, seen_lorem, seen_curly = _finish(lines[k], args, True)
        lorem[d] |= seen_lorem
        curly[d] |= seen_curly
        if line is None:
            keep[k] = False
        elif line != lines[k]:
            lines[k] = line
            changed[k] = True
    spans = np.where(changed[:, None], -1, found[:, 1:3])
    if not keep.all():
        lines = [line for line, k in zip(lines, keep.tolist()) if k]
        doc, spans = doc[keep], spans[keep]
    return KeptLines(n_lines, lorem, curly, lines, np.ascontiguousarray(doc),
                     np.ascontiguousarray(spans))
