"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix
A1), as stat columns plus threshold filters. Definitions and defaults follow datatrove 0.10.1's
GopherQualityFilter and GopherRepetitionFilter; see docs/quality.md."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import Field

from . import kernels
from ._base import (
    FilterArgs,
    StatsArgs,
    StatsOperation,
    ThresholdFilter,
    above,
    below,
    ratio,
)
from .tokenize import features_of, hash_words

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


# --- Gopher quality ---------------------------------------------------------------------------
class GopherQualityStatsArgs(StatsArgs):
    prefix: str = Field("gopher_", description="Prefix of the produced stat columns.")
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS),
                                  description="Words counted by `stop_words` (case-sensitive).")


class GopherQualityStats(StatsOperation):
    """Gopher quality statistics per document, as columns `{prefix}<stat>`: `words` (tokens),
    `non_symbol_words` (tokens with a character that is not punctuation),
    `mean_word_length` (over non-symbol words), `hash_ratio` and `ellipsis_ratio` ('#' and
    '...'/'…' per token), `bullet_lines_ratio` (lines starting with '•' or '-'),
    `ellipsis_lines_ratio` (lines ending with an ellipsis), `alpha_words_ratio` (tokens with a
    letter), `stop_words` (distinct stop words present). Ratios are NaN when undefined."""

    name = "gopher_quality_stats"
    Args = GopherQualityStatsArgs
    consumes = {"{column}": "string"}
    STATS = {"words": "int64", "non_symbol_words": "int64", "mean_word_length": "float64",
             "hash_ratio": "float64", "ellipsis_ratio": "float64",
             "bullet_lines_ratio": "float64", "ellipsis_lines_ratio": "float64",
             "alpha_words_ratio": "float64", "stop_words": "int64"}

    def stats(self, texts: list[str], column: Any = None) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        n = len(texts)
        tok = features_of(texts, self.args.tokenizer)
        doc = tok.doc
        words = tok.counts
        non_symbol = ~tok.symbol
        n_non_symbol = _per_doc(non_symbol, tok.offsets)
        length_sum = _per_doc(np.where(non_symbol, tok.length, 0), tok.offsets)
        n_alpha = _per_doc(tok.alpha, tok.offsets)
        stop = _stop_hashes(tuple(self.args.stop_words))
        n_stop = np.zeros(n, np.int64)
        if len(stop):
            # a first, cheap test on the hashes' top 16 bits, then an exact one
            bucket = np.zeros(1 << 16, dtype=bool)
            bucket[(stop >> np.uint64(48)).astype(np.intp)] = True
            maybe = np.flatnonzero(bucket[(tok.hash >> np.uint64(48)).astype(np.intp)])
            which = np.minimum(np.searchsorted(stop, tok.hash[maybe]), len(stop) - 1)
            hit = stop[which] == tok.hash[maybe]
            present = np.bincount(doc[maybe[hit]] * len(stop) + which[hit],
                                  minlength=n * len(stop))
            n_stop = (present.reshape(n, len(stop)) > 0).sum(axis=1)
        if column is None:
            column = pa.array(texts, pa.string())
        data, offsets = _utf8(column)
        # lines as str.splitlines() sees them, counted over the UTF-8 bytes (\n only); rows
        # with other line breaks are counted in Python
        found = kernels.gopher_lines(data, offsets, LINE_SPACE_STEPS)
        if found is None:
            found = _byte_counts(data, offsets), _line_counts(data, offsets)
        (hashes, ellipses, breaks, ends_nl), (bullets, ellipsis_lines, unsure, exotic) = found
        if unsure.any():  # a line with more leading or trailing spaces: RE2 counts them
            rows = np.flatnonzero(unsure)
            some = column.take(pa.array(rows))
            space = r"[\t\x1f \xa0\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]*"
            # (each match runs to the line's end: Arrow restarts the search after a match
            # as if at the start of a text, where ^ matches)
            bullets[rows] = _count(some, "(?m)^" + space + "[•-][^\n]*", regex=True)
            ellipsis_lines[rows] = _count(some, r"(?m)(?:\.\.\.|…)" + space + "$", regex=True)
        n_lines = breaks + 1 - ends_nl
        n_lines[offsets[1:] == offsets[:-1]] = 0
        for i in np.flatnonzero(exotic).tolist():
            lines = texts[i].splitlines()
            n_lines[i] = len(lines)
            bullets[i] = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            ellipsis_lines[i] = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
        return {"words": words, "non_symbol_words": n_non_symbol,
                "mean_word_length": ratio(length_sum, n_non_symbol),
                "hash_ratio": ratio(hashes, words), "ellipsis_ratio": ratio(ellipses, words),
                "bullet_lines_ratio": ratio(bullets, n_lines),
                "ellipsis_lines_ratio": ratio(ellipsis_lines, n_lines),
                "alpha_words_ratio": ratio(n_alpha, words), "stop_words": n_stop}


@functools.lru_cache(maxsize=8)
def _stop_hashes(words: tuple) -> Any:
    """The sorted distinct hashes of `words`."""
    import numpy as np

    return np.unique(hash_words(list(words))) if words else np.zeros(0, np.uint64)


def _per_doc(values: Any, offsets: Any) -> Any:
    """Sums of `values` (per token) per document (tokens `offsets[d]:offsets[d+1]`)."""
    import numpy as np

    if values.dtype == bool:  # count the true ones: 3x faster than a cumulative sum
        return np.diff(np.searchsorted(np.flatnonzero(values), offsets))
    cs = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def _utf8(column: Any) -> tuple[Any, Any]:
    """The UTF-8 bytes of a string array (uint8) and each text's offsets in them (int64)."""
    import numpy as np
    import pyarrow as pa

    n = len(column)
    if pa.types.is_large_string(column.type):
        width = np.int64
    else:
        column = column.cast(pa.string()) if not pa.types.is_string(column.type) else column
        width = np.int32
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(1, np.int64)
    _, off_buf, data_buf = column.buffers()
    offsets = np.frombuffer(off_buf, dtype=width)[column.offset:column.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] \
        if data_buf is not None else np.zeros(0, np.uint8)
    offsets -= offsets[0]
    return data, offsets


def _byte_counts(data: Any, offsets: Any) -> tuple[Any, Any, Any, Any]:
    """Per text (UTF-8 `data`, text i at `offsets[i]:offsets[i+1]`): '#' count, ellipsis
    count ('...' counted as `str.count` does, without overlaps, plus '…'), newline count, and
    whether it ends with a newline."""
    import numpy as np

    n = len(offsets) - 1
    if n == 0:
        return (np.zeros(0, np.int64),) * 3 + (np.zeros(0, bool),)

    def per_text(at: Any) -> Any:
        return np.bincount(np.searchsorted(offsets, at, side="right") - 1, minlength=n)

    hashes = per_text(np.flatnonzero(data == 0x23))
    newline = data == 0x0A
    breaks = per_text(np.flatnonzero(newline))
    ends = np.zeros(n, dtype=bool)
    nonempty = offsets[1:] > offsets[:-1]
    ends[nonempty] = newline[offsets[1:][nonempty] - 1]
    # runs of '.' (cut where a text starts): each holds length // 3 ellipses
    dot = data == 0x2E
    cut = np.zeros(len(data) + 1, dtype=bool)
    cut[offsets] = True
    after = np.zeros(len(data), dtype=bool)
    after[:-1] = dot[1:]
    before = np.zeros(len(data), dtype=bool)
    before[1:] = dot[:-1]
    first = np.flatnonzero(dot & (~before | cut[:-1]))
    last = np.flatnonzero(dot & (~after | cut[1:]))
    dots = np.bincount(np.searchsorted(offsets, first, side="right") - 1,
                       weights=(last - first + 1) // 3, minlength=n).astype(np.int64)
    e2 = np.flatnonzero(data[:-2] == 0xE2) if len(data) > 2 else np.zeros(0, np.int64)
    e2 = e2[(data[e2 + 1] == 0x80) & (data[e2 + 2] == 0xA6)]  # U+2026 '…'
    return hashes, dots + per_text(e2), breaks, ends



def _space_width(data: Any, at: Any, before: bool) -> Any:
    """Width in bytes of the space character (of the RE2 pattern's set: tab, 0x1f, space,
    U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, U+3000) starting at `at` (or, with
    `before`, ending just before it); 0 where there is none. Reads up to 3 bytes past `at`
    (before: ahead of it), clipped to `data`: callers check the text's bounds."""
    import numpy as np

    top = len(data) - 1

    def byte(k: int) -> Any:
        return data[np.clip(at + k, 0, top)]

    if before:
        b1, b2, b3 = byte(-1), byte(-2), byte(-3)
        lead3, mid, last = b3, b2, b1
    else:
        b1, b2, b3 = byte(0), byte(1), byte(2)
        lead3, mid, last = b1, b2, b3
    one = (b1 == 0x20) | (b1 == 0x09) | (b1 == 0x1F)
    two = (b2 == 0xC2) & (b1 == 0xA0) if before else (b1 == 0xC2) & (b2 == 0xA0)
    three = (((lead3 == 0xE2) & (mid == 0x80) & (((last >= 0x80) & (last <= 0x8A))
                                                 | (last == 0xAF)))
             | ((lead3 == 0xE2) & (mid == 0x81) & (last == 0x9F))
             | ((lead3 == 0xE1) & (mid == 0x9A) & (last == 0x80))
             | ((lead3 == 0xE3) & (mid == 0x80) & (last == 0x80)))
    return np.where(one, 1, np.where(two, 2, np.where(three, 3, 0)))


LINE_SPACE_STEPS = 8  # spaces skipped around a line's bullet / ellipsis before RE2 counts


def _line_counts(data: Any, offsets: Any,
                 steps: int = LINE_SPACE_STEPS) -> tuple[Any, Any, Any, Any]:
    """Per text: lines starting with '•' or '-' after spaces, lines ending with '...' or '…'
    before spaces (lines cut at '\n' only), which texts have a line with more than `steps`
    such spaces (counted elsewhere), and which have a line break other than '\n'."""
    import numpy as np

    n = len(offsets) - 1
    nl = np.flatnonzero(data == 0x0A)
    text_of_nl = np.searchsorted(offsets, nl, side="right") - 1
    unsure = np.zeros(n, dtype=bool)
    # line starts: each text's start and after each newline, unless at the text's end
    starts = np.concatenate([offsets[:-1], nl + 1])
    owner = np.concatenate([np.arange(n), text_of_nl])
    keep = starts < offsets[owner + 1]
    at, owner = starts[keep], owner[keep]
    end = offsets[owner + 1]
    at = at.copy()
    moving = np.arange(len(at))  # line starts still on a space
    for _ in range(steps + 1):
        w = _space_width(data, at[moving], before=False)
        w[at[moving] >= end[moving]] = 0
        moving = moving[w > 0]
        if not len(moving):
            break
        at[moving] += w[w > 0]
    else:
        unsure[owner[moving]] = True
    top = max(len(data) - 1, 0)
    b0 = data[np.minimum(at, top)] if len(data) else np.zeros(len(at), np.uint8)
    bullet = (at < end) & ((b0 == 0x2D) | ((b0 == 0xE2) & (data[np.minimum(at + 1, top)] == 0x80)
                                          & (data[np.minimum(at + 2, top)] == 0xA2)))
    bullets = np.bincount(owner[bullet], minlength=n)
    # line ends: each newline, and each text's end unless the text is empty or ends with one
    last = offsets[1:] - 1
    open_end = (offsets[1:] > offsets[:-1])
    open_end[open_end] = data[last[open_end]] != 0x0A
    ends = np.concatenate([nl, offsets[1:][open_end]])
    owner = np.concatenate([text_of_nl, np.flatnonzero(open_end)])
    at = ends.copy()
    begin = offsets[owner]
    moving = np.arange(len(at))  # line ends still after a space
    for _ in range(steps + 1):
        w = _space_width(data, at[moving], before=True)
        w[at[moving] - w < begin[moving]] = 0
        moving = moving[w > 0]
        if not len(moving):
            break
        at[moving] -= w[w > 0]
    else:
        unsure[owner[moving]] = True
    room = at - 3 >= begin
    c1 = data[np.clip(at - 3, 0, top)]
    c2 = data[np.clip(at - 2, 0, top)]
    c3 = data[np.clip(at - 1, 0, top)]
    dots = room & (((c1 == 0x2E) & (c2 == 0x2E) & (c3 == 0x2E))
                   | ((c1 == 0xE2) & (c2 == 0x80) & (c3 == 0xA6)))
    ellipsis_lines = np.bincount(owner[dots], minlength=n)
    # other line breaks: \r \x0b \x0c \x1c \x1d \x1e, U+0085, U+2028, U+2029
    low = np.flatnonzero(data < 0x1F)
    low = low[((data[low] >= 0x0B) & (data[low] <= 0x0D)) | (data[low] >= 0x1C)]
    odd = [low]
    c2_ = np.flatnonzero(data[:-1] == 0xC2) if len(data) > 1 else np.zeros(0, np.int64)
    odd.append(c2_[data[c2_ + 1] == 0x85])
    e2 = np.flatnonzero(data[:-2] == 0xE2) if len(data) > 2 else np.zeros(0, np.int64)
    odd.append(e2[(data[e2 + 1] == 0x80) & ((data[e2 + 2] == 0xA8) | (data[e2 + 2] == 0xA9))])
    exotic = np.zeros(n, dtype=bool)
    exotic[np.searchsorted(offsets, np.concatenate(odd), side="right") - 1] = True
    return bullets.astype(np.int64), ellipsis_lines.astype(np.int64), unsure, exotic


def _count(column: Any, pattern: str, regex: bool = False) -> Any:
    import pyarrow.compute as pc

    counter = pc.count_substring_regex if regex else pc.count_substring
    return counter(column, pattern).to_numpy(zero_copy_only=False).astype("int64")


class GopherQualityFilterArgs(FilterArgs):
    prefix: str = Field("gopher_", description="Prefix of the stat columns to read.")
    min_doc_words: int | None = Field(50, description="Drop below this many non-symbol words.")
    max_doc_words: int | None = Field(100_000, description="Drop above this many.")
    min_avg_word_length: float | None = Field(3, description="Mean word length lower bound.")
    max_avg_word_length: float | None = Field(10, description="Mean word length upper bound.")
    max_symbol_word_ratio: float | None = Field(0.1, description="Max '#' or ellipses per word.")
    max_bullet_lines_ratio: float | None = Field(0.9, description="Max share of bullet lines.")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="Max share of lines ending "
                                                                    "in an ellipsis.")
    min_alpha_words_ratio: float | None = Field(0.8, description="Min share of words with a "
                                                                 "letter.")
    min_stop_words: int | None = Field(2, description="Min distinct stop words.")


class GopherQualityFilter(ThresholdFilter):
    """Drop documents failing Gopher's quality rules, read from `gopher_quality_stats` columns
    (computed here, not stored, when missing). Defaults are the published ones. Reasons
    (first failing rule, in this order): gopher_quality:too_few_words, too_many_words,
    mean_word_length_low, mean_word_length_high, hash_ratio, ellipsis_ratio, bullet_lines,
    ellipsis_lines, alpha_words, stop_words. A threshold of None turns its rule off."""

    name = "gopher_quality_filter"
    Args = GopherQualityFilterArgs
    stats_op = GopherQualityStats
    family = "gopher_quality"

    def rules(self, s: dict[str, Any]) -> list[tuple[str, Any]]:
        a = self.args
        return [
            ("too_few_words", below(s["non_symbol_words"], a.min_doc_words)),
            ("too_many_words", above(s["non_symbol_words"], a.max_doc_words)),
            ("mean_word_length_low", below(s["mean_word_length"], a.min_avg_word_length)),
            ("mean_word_length_high", above(s["mean_word_length"], a.max_avg_word_length)),
            ("hash_ratio", above(s["hash_ratio"], a.max_symbol_word_ratio)),
            ("ellipsis_ratio", above(s["ellipsis_ratio"], a.max_symbol_word_ratio)),
            ("bullet_lines", above(s["bullet_lines_ratio"], a.max_bullet_lines_ratio)),
            ("ellipsis_lines", above(s["ellipsis_lines_ratio"], a.max_ellipsis_lines_ratio)),
            ("alpha_words", below(s["alpha_words_ratio"], a.min_alpha_words_ratio)),
            ("stop_words", below(s["stop_words"], a.min_stop_words)),
        ]


# --- Gopher repetition ------------------------------------------------------------------------
TOP_N_GRAMS = {2: 0.2, 3: 0.18, 4: 0.16}
DUP_N_GRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


class GopherRepetitionStatsArgs(StatsArgs):
    prefix: str = Field("gopher_", description="Prefix of the produced stat columns.")
    top_n: list[int] = Field(default_factory=lambda: sorted(TOP_N_GRAMS),
                             description="n of the `top_<n>_gram_char_frac` stats.")
    dup_n: list[int] = Field(default_factory=lambda: sorted(DUP_N_GRAMS),
                             description="n of the `dup_<n>_gram_char_frac` stats.")


class GopherRepetitionStats(StatsOperation):
    """Gopher repetition statistics per document, as columns `{prefix}<stat>`: duplicate
    paragraphs and lines (`dup_para_frac`, `dup_para_char_frac`, `dup_line_frac`,
    `dup_line_char_frac`), the characters of the most frequent n-gram (`top_<n>_gram_char_frac`)
    and of duplicated n-grams (`dup_<n>_gram_char_frac`), as fractions of the document's
    characters. Fractions of an empty document are NaN."""

    name = "gopher_repetition_stats"
    Args = GopherRepetitionStatsArgs
    consumes = {"{column}": "string"}
    STATS = {"dup_para_frac": "float64", "dup_para_char_frac": "float64",
             "dup_line_frac": "float64", "dup_line_char_frac": "float64"}

    def stat_types(self) -> dict[str, str]:
        out = dict(self.STATS)
        out.update({f"top_{n}_gram_char_frac": "float64" for n in self.args.top_n})
        out.update({f"dup_{n}_gram_char_frac": "float64" for n in self.args.dup_n})
        return out

    def resolve_produces(self, schema: dict) -> dict:
        return self._template({self.args.prefix + s: t for s, t in self.stat_types().items()})

    def stats(self, texts: list[str], column: Any = None) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(texts)
        chars = np.fromiter(map(len, texts), np.int64, n)
        out = {k: np.zeros(n) for k in self.stat_types()}
        if column is None:
            column = pa.array(texts, pa.string())
        stripped = pc.utf8_trim_whitespace(column)  # (strips what str.strip() strips)
        for kind, parts in (("para", _parts(stripped, 2)), ("line", _parts(column, 1))):
            dup, dup_chars, total = _duplicates(*parts)
            out[f"dup_{kind}_frac"] = ratio(dup, total)
            out[f"dup_{kind}_char_frac"] = ratio(dup_chars, chars)
        empty = chars == 0
        out["dup_para_frac"][empty] = np.nan
        out["dup_line_frac"][empty] = np.nan
        tok = features_of(texts, self.args.tokenizer)
        top, dup = ngram_repetition(tok, self.args.top_n, self.args.dup_n)
        for k, v in top.items():
            out[f"top_{k}_gram_char_frac"] = ratio(v, chars)
        for k, v in dup.items():
            out[f"dup_{k}_gram_char_frac"] = ratio(v, chars)
        return out


def _parts(column: Any, min_run: int) -> tuple[Any, Any, Any, Any]:
    """The parts of each text of `column` (a string Array) between runs of at least `min_run`
    newlines, as `re.split("\\n{min_run,}", text)` cuts them: the texts' UTF-8 bytes, each
    part's start and end in them (in order) and the number of parts of each text."""
    import numpy as np

    data, offsets = _utf8(column)
    n = len(offsets) - 1
    nl = data == 0x0A
    first = offsets[:-1][offsets[:-1] < len(data)]  # texts' first and last bytes
    last = offsets[1:][offsets[1:] > 0] - 1
    after_nl = np.zeros(len(data), dtype=bool)  # (a newline of the same text)
    after_nl[1:] = nl[:-1]
    after_nl[first] = False
    before_nl = np.zeros(len(data), dtype=bool)
    before_nl[:-1] = nl[1:]
    before_nl[last] = False
    run_start = np.flatnonzero(nl & ~after_nl)
    run_end = np.flatnonzero(nl & ~before_nl) + 1
    if min_run > 1:
        long = run_end - run_start >= min_run
        run_start, run_end = run_start[long], run_end[long]
    runs = np.bincount(np.searchsorted(offsets, run_start, side="right") - 1, minlength=n)
    # per text: its start, then each run's end; each run's start, then the text's end
    # (sorted, ties are equal values: the k-th start and the k-th end bound the k-th part)
    start = np.sort(np.concatenate([offsets[:-1], run_end]))
    end = np.sort(np.concatenate([run_start, offsets[1:]]))
    return data, start, end, runs + 1


def _duplicates(data: Any, start: Any, end: Any, count: Any) -> tuple[Any, Any, Any]:
    """Per text, of its `count` parts (bytes `start:end` of the UTF-8 `data`, as `_parts`
    gives them): how many equal an earlier part of the same text, their characters, and the
    number of parts. Only parts that share their text and byte length with another are
    compared (by Arrow's dictionary encoding)."""
    import numpy as np
    import pyarrow as pa

    from . import kernels

    n = len(count)
    total = count.astype(np.int64)
    fast = kernels.part_duplicates(data, start, end, total)
    if fast is not None:
        return (*fast, total)
    dup = np.zeros(n, np.int64)
    dup_chars = np.zeros(n, np.int64)
    if len(start) == 0:
        return dup, dup_chars, total
    doc = np.repeat(np.arange(n, dtype=np.uint64), total)
    size = end - start
    ids = _factorize((size.astype(np.uint64) << np.uint64(32)) | doc)
    maybe = np.flatnonzero(np.bincount(ids)[ids] > 1)
    if len(maybe) == 0:
        return dup, dup_chars, total
    # the candidates' bytes, one after the other, as a binary array
    sizes = size[maybe]
    bounds = np.zeros(len(maybe) + 1, np.int64)
    np.cumsum(sizes, out=bounds[1:])
    picked = data[np.repeat(start[maybe] - bounds[:-1], sizes) + np.arange(bounds[-1])]
    same = pa.Array.from_buffers(pa.large_binary(), len(maybe),
                                 [None, pa.py_buffer(bounds), pa.py_buffer(picked)])
    codes = same.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.uint64)
    later = ~_first_seen(_factorize((codes << np.uint64(32)) | doc[maybe]))
    # characters: the bytes that do not continue a UTF-8 sequence
    chars = np.zeros(len(picked) + 1, np.int64)
    np.cumsum((picked & 0xC0) != 0x80, out=chars[1:])
    lengths = (chars[bounds[1:]] - chars[bounds[:-1]])[later]
    d = doc[maybe[later]].astype(np.int64)
    return (np.bincount(d, minlength=n), np.bincount(d, weights=lengths, minlength=n), total)


def _first_seen(codes: Any) -> Any:
    """Which entries of `codes` (numbered in order of first appearance) appear first."""
    import numpy as np

    seen = np.maximum.accumulate(codes)
    out = np.ones(len(codes), dtype=bool)
    out[1:] = seen[1:] > seen[:-1]
    return out


def ngram_repetition(tok: Any, top_n: list[int], dup_n: list[int]) -> tuple[dict, dict]:
    """Per document: for each n in `top_n`, the characters of the most frequent n-gram times
    its count (n-grams joined by spaces; ties go to the first seen); for each n in `dup_n`, the
    characters (words joined without spaces) of n-grams that repeat an earlier n-gram, scanning
    left to right and skipping past each repeat.

    An n-gram can occur twice only where the (n-1)-grams at its position and at the next one
    both do: only those candidate positions are hashed and grouped for n, the others are
    known to be unique. The candidates shrink quickly with n. (The compiled kernel, where
    built, computes the same per document: kernels.py.)"""
    import numpy as np

    from . import kernels

    if kernels.library() is not None:
        return kernels.ngram_repetition(tok.hash, tok.length, tok.offsets, top_n, dup_n)
    n_docs = len(tok.offsets) - 1
    total = len(tok.length)
    doc = tok.doc
    cum_len = np.zeros(total + 1, np.int64)
    np.cumsum(tok.length, out=cum_len[1:])
    top = {k: np.zeros(n_docs) for k in top_n}
    dup = {k: np.zeros(n_docs) for k in dup_n}
    wanted = set(top_n) | set(dup_n)
    if not wanted or total == 0:
        return top, dup
    g = tok.hash.copy()  # g[i]: hash of the k-gram at i, kept up to date at the candidates
    mult = np.uint64(0x100000001B3)
    counts_doc = tok.counts
    first_tok = tok.offsets[:-1]
    # k = 2: every position whose bigram stays inside its document
    pos = np.flatnonzero(doc[:-1] == doc[1:]) if total > 1 else np.zeros(0, np.int64)
    for k in range(2, max(wanted) + 1):
        with np.errstate(over="ignore"):
            if k == 2:
                g[:-1] = g[:-1] * mult + tok.hash[1:]
            elif len(pos):
                g[pos] = g[pos] * mult + tok.hash[pos + k - 1]
        d = doc[pos]
        if k in top:  # documents with no repeated k-gram: their first k-gram, once
            long_enough = counts_doc >= k
            j = first_tok[long_enough]
            top[k][long_enough] = cum_len[j + k] - cum_len[j] + k - 1
        if len(pos) == 0:
            continue
        with np.errstate(over="ignore"):
            key = g[pos] * np.uint64(0x9E3779B97F4A7C15) + d.astype(np.uint64)
        codes = _factorize(key, d)
        n_codes = int(codes.max()) + 1
        is_first = _first_seen(codes)
        first = np.flatnonzero(is_first)  # code c first appears at first[c]
        counts = np.bincount(codes, minlength=n_codes)
        repeated = counts[codes] > 1  # per candidate: its k-gram occurs twice or more
        if k in top:
            rep_codes = np.flatnonzero(counts > 1)  # in order of first appearance
            if len(rep_codes):
                code_doc = d[first[rep_codes]]
                rc = counts[rep_codes]
                starts = np.flatnonzero(np.r_[True, code_doc[1:] != code_doc[:-1]])
                best = np.maximum.reduceat(rc, starts)
                is_best = rc == np.repeat(best, np.diff(np.r_[starts, len(rep_codes)]))
                winner = np.flatnonzero(is_best)
                winner = winner[np.r_[True, code_doc[winner[1:]] != code_doc[winner[:-1]]]]
                w = rep_codes[winner]
                p0 = pos[first[w]]
                top[k][code_doc[winner]] = counts[w] * (cum_len[p0 + k] - cum_len[p0] + k - 1)
        if k in dup:
            cand = np.flatnonzero(~is_first)  # occurrences that repeat an earlier one
            if len(cand):
                dup[k] = _repeated_chars(pos[cand], pos[first[codes[cand]]], codes[cand],
                                         d[cand], cum_len, k, n_docs)
        # candidates for k + 1: i and i + 1 both start a repeated k-gram of the same document
        rpos = pos[repeated]
        if len(rpos) < 2:
            pos = rpos[:0]
            continue
        nxt = np.zeros(len(rpos), dtype=bool)
        nxt[:-1] = (rpos[1:] == rpos[:-1] + 1) & (doc[rpos[1:]] == doc[rpos[:-1]])
        pos = rpos[nxt]
    return top, dup


def _repeated_chars(p: Any, f: Any, codes: Any, d: Any, cum_len: Any, n: int,
                    n_docs: int) -> Any:
    """Characters of the n-grams datatrove's scan counts as repeats, per document, from the
    occurrences that repeat an earlier one (at token positions `p`, sorted, with codes `codes`,
    documents `d`, first occurrences at `f`).

    First, for all documents at once, assume every visited repeat counts: the scan is then a
    greedy non-overlapping selection (take a repeat, jump to the first one n positions
    further). The assumption holds unless a taken repeat's skip hides a first occurrence;
    only the documents where one does run the exact scan."""
    import numpy as np

    m = len(p)
    chars = cum_len[p + n] - cum_len[p]
    nxt = np.searchsorted(p, p + n)  # the next repeat a take's skip lands on
    in_doc = nxt < m
    in_doc[in_doc] = d[nxt[in_doc]] == d[in_doc]
    nxt[~in_doc] = m
    taken = np.zeros(m, dtype=bool)
    cur = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])  # each document's first repeat
    while len(cur) > 32:  # all documents in step; the few long ones finish in Python
        taken[cur] = True
        cur = nxt[cur]
        cur = cur[cur < m]
    for i in cur.tolist():
        while i < m:
            taken[i] = True
            i = int(nxt[i])
    out = np.bincount(d[taken], weights=chars[taken], minlength=n_docs).astype(float)
    q = p[taken]
    at = np.searchsorted(q, f) - 1  # the last taken repeat before each first occurrence
    hidden = (at >= 0) & (d[taken][np.maximum(at, 0)] == d) & (f - q[np.maximum(at, 0)] < n)
    if hidden.any():
        hard = np.zeros(n_docs, dtype=bool)
        hard[d[hidden]] = True
        ix = np.flatnonzero(hard[d])
        hd = d[ix]
        starts = np.flatnonzero(np.r_[True, hd[1:] != hd[:-1]])
        bounds = np.r_[starts, len(ix)].tolist()
        c_list, p_list = codes[ix].tolist(), p[ix].tolist()
        f_list, s_list = f[ix].tolist(), chars[ix].tolist()
        # a take's skip lands on nxt, the same document's (a hard one) or past it
        local = nxt[ix]
        inside = local < m
        local[inside] = np.searchsorted(ix, local[inside])
        local[~inside] = len(ix)
        n_list = local.tolist()
        for j, lo, hi in zip(hd[starts].tolist(), bounds, bounds[1:]):
            out[j] = _greedy_repeats(c_list, p_list, f_list, s_list, n_list, lo, hi, n)
    return out


FACTORIZE_CHUNK = 8192  # keys hashed at a time: a hash table this size stays in cache


def _factorize(keys: Any, doc: Any = None) -> Any:
    """Group ids of `keys` (uint64), numbered in order of first appearance (hashing: pandas
    when installed, else pyarrow). With `doc` (each key's document, non-decreasing; keys of
    different documents never equal), keys are hashed a few thousand at a time, cut between
    documents: 1.2-2x faster than one large table, which misses the cache."""
    import numpy as np

    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        import pyarrow as pa

        return pa.array(keys).dictionary_encode().indices.to_numpy()
    m = len(keys)
    if doc is None or m <= 2 * FACTORIZE_CHUNK:
        return pd.factorize(keys)[0]
    cuts = np.searchsorted(doc, doc[FACTORIZE_CHUNK::FACTORIZE_CHUNK])  # documents' starts
    bounds = np.unique(np.r_[0, cuts, m]).tolist()
    out = np.empty(m, dtype=np.intp)
    base = 0
    for lo, hi in zip(bounds, bounds[1:]):
        codes = pd.factorize(keys[lo:hi])[0]
        np.add(codes, base, out=out[lo:hi])
        base += int(codes.max()) + 1
    return out


def _greedy_repeats(codes: list, positions: list, first_positions: list, chars: list,
                    nxt: list, lo: int, hi: int, n: int) -> int:
    """datatrove's scan (visit n-grams left to right; one seen before counts its characters
    and skips n positions), over only the n-grams that occur earlier (`codes[lo:hi]`, at
    `positions`, whose first occurrence is at `first_positions`): the others are never
    repeats. An occurrence is visited unless a repeat's skip covers it; `nxt[i]` is the first
    occurrence a skip from i lands on (>= hi: none)."""
    from bisect import bisect_right

    seen: set = set()
    skip_starts: list[int] = []
    repeated = 0
    i = lo
    while i < hi:
        c = codes[i]
        if c not in seen:
            p0 = first_positions[i]
            k = bisect_right(skip_starts, p0) - 1
            if k < 0 or p0 >= skip_starts[k] + n - 1:  # the first occurrence was visited
                seen.add(c)
        if c in seen:
            repeated += chars[i]
            skip_starts.append(positions[i] + 1)
            i = nxt[i]
        else:
            seen.add(c)
            i += 1
    return repeated


class GopherRepetitionFilterArgs(FilterArgs):
    prefix: str = Field("gopher_", description="Prefix of the stat columns to read.")
    dup_line_frac: float | None = Field(0.3, description="Max share of duplicate lines.")
    dup_para_frac: float | None = Field(0.3, description="Max share of duplicate paragraphs.")
    dup_line_char_frac: float | None = Field(0.2, description="Max characters in duplicate "
                                                              "lines.")
    dup_para_char_frac: float | None = Field(0.2, description="Max characters in duplicate "
                                                              "paragraphs.")
    top_n_grams: dict[int, float] = Field(default_factory=lambda: dict(TOP_N_GRAMS),
                                          description="{n: max character share of the most "
                                                      "frequent n-gram}.")
    dup_n_grams: dict[int, float] = Field(default_factory=lambda: dict(DUP_N_GRAMS),
                                          description="{n: max character share of duplicated "
                                                      "n-grams}.")


class GopherRepetitionFilter(ThresholdFilter):
    """Drop documents failing Gopher's repetition rules, read from `gopher_repetition_stats`
    columns (computed here, not stored, when missing). Reasons: gopher_repetition:empty,
    dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac, top_<n>_gram,
    dup_<n>_gram (first failing rule, in this order). A threshold of None turns it off."""

    name = "gopher_repetition_filter"
    Args = GopherRepetitionFilterArgs
    stats_op = GopherRepetitionStats
    family = "gopher_repetition"

    def _stats_instance(self) -> StatsOperation:
        op = getattr(self, "_stats", None)
        if op is None:
            a = self.args
            op = self._stats = GopherRepetitionStats(
                column=a.column, prefix=a.prefix, tokenizer=a.tokenizer,
                top_n=sorted(a.top_n_grams), dup_n=sorted(a.dup_n_grams))
        return op

    def _stat_columns(self) -> dict[str, str]:
        types = self._stats_instance().stat_types()
        return {self.args.prefix + s: t for s, t in types.items()}

    def rules(self, s: dict[str, Any]) -> list[tuple[str, Any]]:
        import numpy as np

        a = self.args
        out = [("empty", np.isnan(np.asarray(s["dup_para_char_frac"], dtype=float)))]
        out += [(k, above(s[k], getattr(a, k))) for k in
                ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")]
        out += [(f"top_{n}_gram", above(s[f"top_{n}_gram_char_frac"], limit))
                for n, limit in a.top_n_grams.items()]
        out += [(f"dup_{n}_gram", above(s[f"dup_{n}_gram_char_frac"], limit))
                for n, limit in a.dup_n_grams.items()]
        return out
