"""FineWeb's quality rules (Penedo et al. 2024, "The FineWeb Datasets"), as stat columns plus
a threshold filter. Definitions and defaults follow datatrove 0.10.1's FineWebQualityFilter;
see docs/quality.md."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import FilterArgs, StatsArgs, StatsOperation, ThresholdFilter, above, below, ratio
from .tokenize import TERMINAL_PUNCTUATION, features_of


class FineWebStatsArgs(StatsArgs):
    prefix: str = Field("fineweb_", description="Prefix of the produced stat columns.")
    short_line_length: int = Field(30, description="A line of at most this many characters "
                                                   "is short.")
    stop_chars: str | None = Field(None, description="Characters that end a finished line "
                                                     "(default: terminal punctuation marks).")


class FineWebStats(StatsOperation):
    """FineWeb statistics per document, as columns `{prefix}<stat>`: `lines` (non-blank
    lines), `line_punct_ratio` (lines ending in terminal punctuation), `short_line_ratio`
    (lines of at most 30 characters), `char_dup_ratio` (characters in duplicate lines over
    characters outside newlines), `list_ratio` (newlines per word), `words`. Ratios are NaN
    when undefined."""

    name = "fineweb_stats"
    Args = FineWebStatsArgs
    consumes = {"{column}": "string"}
    STATS = {"lines": "int64", "line_punct_ratio": "float64", "short_line_ratio": "float64",
             "char_dup_ratio": "float64", "list_ratio": "float64", "words": "int64"}

    def stats(self, texts: list[str], column: Any = None) -> dict[str, Any]:
        import numpy as np

        from .c4 import CLEAN_WORD_COUNTS

        n = len(texts)
        stop = frozenset(self.args.stop_chars) if self.args.stop_chars is not None else \
            TERMINAL_PUNCTUATION  # single characters: a line ends in one if its last is one
        short = self.args.short_line_length
        counts = _compiled_counts(texts, column, stop, short) or _line_counts(texts, stop, short)
        n_lines, punct, shorts = counts["lines"], counts["punct"], counts["shorts"]
        dup_chars, newlines = counts["dup_chars"], counts["newlines"]
        chars = np.fromiter(map(len, texts), np.int64, n) - newlines
        words = None
        if self.args.tokenizer == "fast" and CLEAN_WORD_COUNTS:
            known = [CLEAN_WORD_COUNTS.get(t) for t in texts]
            if all(c is not None for c in known):
                words = np.array(known, dtype=np.int64)
        if words is None:
            words = features_of(texts, self.args.tokenizer).counts
        return {"lines": n_lines, "line_punct_ratio": ratio(punct, n_lines),
                "short_line_ratio": ratio(shorts, n_lines),
                "char_dup_ratio": ratio(dup_chars, chars), "list_ratio": ratio(newlines, words),
                "words": words}


def _line_counts(texts: list[str], stop: frozenset, short: int) -> dict[str, Any]:
    """Per text, over its non-blank lines (split at '\\n'): their count, those ending in a
    `stop` character, those of at most `short` characters, the characters of those equal
    to an earlier one; and its '\\n' count. The twin of kernels.fineweb_lines."""
    import numpy as np

    n = len(texts)
    out = {k: np.zeros(n, np.int64) for k in ("lines", "punct", "shorts", "dup_chars",
                                              "newlines")}
    for i, text in enumerate(texts):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        out["lines"][i] = len(lines)
        out["punct"][i] = sum(1 for ln in lines if ln[-1] in stop)
        out["shorts"][i] = sum(1 for ln in lines if len(ln) <= short)
        seen: set = set()
        d = 0
        for ln in lines:
            if ln in seen:
                d += len(ln)
            else:
                seen.add(ln)
        out["dup_chars"][i] = d
        out["newlines"][i] = text.count("\n")
    return out


def _compiled_counts(texts: list[str], column: Any, stop: frozenset,
                     short: int) -> dict[str, Any] | None:
    """`_line_counts` in C over the UTF-8 bytes; None without kernels."""
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
    return kernels.fineweb_lines(*_utf8(column), stop, short)


class FineWebFilterArgs(FilterArgs):
    prefix: str = Field("fineweb_", description="Prefix of the stat columns to read.")
    line_punct_thr: float | None = Field(0.12, description="Min share of lines ending in "
                                                           "terminal punctuation.")
    line_punct_exclude_zero: bool = Field(False, description="Keep documents where no line "
                                                             "ends in punctuation.")
    short_line_thr: float | None = Field(0.67, description="Max share of short lines.")
    char_duplicates_ratio: float | None = Field(0.01, description="Max share of characters in "
                                                                  "duplicate lines.")
    new_line_ratio: float | None = Field(0.3, description="Max newlines per word.")


class FineWebFilter(ThresholdFilter):
    """Drop documents failing FineWeb's quality rules, read from `fineweb_stats` columns
    (computed here, not stored, when missing). Reasons (first failing rule, in this order):
    fineweb:empty, line_punct_ratio, short_line_ratio, char_dup_ratio, list_ratio."""

    name = "fineweb_filter"
    Args = FineWebFilterArgs
    stats_op = FineWebStats
    family = "fineweb"

    def rules(self, s: dict[str, Any]) -> list[tuple[str, Any]]:
        import numpy as np

        a = self.args
        punct = np.asarray(s["line_punct_ratio"], dtype=float)
        low_punct = below(punct, a.line_punct_thr)
        if a.line_punct_exclude_zero:
            low_punct &= punct != 0
        return [("empty", np.asarray(s["lines"]) == 0),
                ("line_punct_ratio", low_punct),
                ("short_line_ratio", above(s["short_line_ratio"], a.short_line_thr)),
                ("char_dup_ratio", above(s["char_dup_ratio"], a.char_duplicates_ratio)),
                ("list_ratio", above(s["list_ratio"], a.new_line_ratio))]
