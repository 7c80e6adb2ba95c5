"""The compiled kernels of _kernels.c, through ctypes; None where the library was not built
(no C compiler at install): callers then use their numpy twins. `DATAMILL_NO_KERNELS=1`
forces the numpy code (tests compare both)."""

from __future__ import annotations

import ctypes
import os
import warnings
from collections.abc import Callable
from functools import cache, wraps
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any


@cache
def library() -> Any:
    """The loaded kernels library, or None (also for a library built from an older
    _kernels.c that lacks a kernel: rebuild with `python setup.py build_ext --inplace`)."""
    if os.environ.get("DATAMILL_NO_KERNELS"):
        return None
    here = Path(__file__).parent
    for suffix in EXTENSION_SUFFIXES:
        path = here / f"_kernels{suffix}"
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            try:
                _declare(lib)
            except AttributeError as exc:  # built from an older _kernels.c
                warnings.warn(f"{path.name} was built from an older _kernels.c ({exc}); "
                              "using the slower numpy twins: rebuild with `python setup.py "
                              "build_ext --inplace`", RuntimeWarning, stacklevel=2)
                return None
            return lib
    return None


def _declare(lib: Any) -> None:
    """The kernels' argument and result types."""
    p = ctypes.c_void_p
    lib.ngram_repetition.argtypes = [p, p, p, ctypes.c_int64, p, ctypes.c_int64, p,
                                     ctypes.c_int64, p, p]
    lib.ngram_repetition.restype = ctypes.c_int
    lib.part_duplicates.argtypes = [p, p, p, p, ctypes.c_int64, p, p]
    lib.part_duplicates.restype = ctypes.c_int
    lib.token_hashes.argtypes = [p, p, p, ctypes.c_int64, p]
    lib.token_hashes.restype = None
    lib.token_bits.argtypes = [p, p, p, p, ctypes.c_int64, p]
    lib.token_bits.restype = None
    lib.rule_starts.argtypes = [p, p, ctypes.c_int64, p, p, p, p, ctypes.c_int64,
                                p, p, p, p]
    lib.rule_starts.restype = ctypes.c_int
    i64 = ctypes.c_int64
    lib.c4_lines.argtypes = [p, p, i64, i64, i64, ctypes.c_int, ctypes.c_int,
                             ctypes.c_char_p, p, p, p, i64]
    lib.c4_lines.restype = i64
    lib.join_lines.argtypes = [p, p, p, i64, i64, p, p]
    lib.join_lines.restype = None
    lib.span_sentences.argtypes = [p, p, p, p, p, p, p, i64, p, p]
    lib.span_sentences.restype = None
    lib.fineweb_lines.argtypes = [p, p, i64, p, i64, i64, p, p, p, p, p]
    lib.fineweb_lines.restype = ctypes.c_int
    lib.gopher_lines.argtypes = [p, p, i64, i64, p, p, p, p, p, p, p, p]
    lib.gopher_lines.restype = None
    lib.char_classes.argtypes = [p, p, i64, i64, p, p, p, p, p]
    lib.char_classes.restype = None
    lib.dfa_features.argtypes = [ctypes.c_char_p, i64, p, p, p, p, p, p]
    lib.dfa_features.restype = i64
    lib.minhash_signatures.argtypes = [p, p, i64, i64, i64, p, p, i64, p, p]
    lib.minhash_signatures.restype = ctypes.c_int
    lib.ft_predict.argtypes = [p, p, p, i64, i64, i64, ctypes.c_float, p, p]
    lib.ft_predict.restype = ctypes.c_int
    lib.token_pass.argtypes = [p, p, p, i64, p, i64, p, ctypes.c_uint16, p, p, i64, p, p,
                               i64, p, p, p, p, p, p, p, p]
    lib.token_pass.restype = i64
    lib.char_flags.argtypes = [p, i64, p, p]
    lib.char_flags.restype = ctypes.c_int


def _ptr(a: Any) -> int:
    return a.ctypes.data


def _kernel(fn: Callable) -> Callable:
    """A kernel's wrapper: called with the loaded library first; returns None without
    kernels (the caller then uses the numpy twin)."""
    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        lib = library()
        return None if lib is None else fn(lib, *args, **kwargs)
    return call


def _c(array: Any, dtype: Any) -> Any:
    """`array` as a C-contiguous numpy array of `dtype` (no copy when it already is one)."""
    import numpy as np

    return np.ascontiguousarray(array, dtype=dtype)


@_kernel
def ngram_repetition(lib: Any, hashes: Any, lengths: Any, offsets: Any, top_n: list[int],
                     dup_n: list[int]) -> tuple[dict, dict] | None:
    """gopher.ngram_repetition's result, computed per document in C; None without kernels."""
    import numpy as np

    n_docs = len(offsets) - 1
    hashes = _c(hashes, np.uint64)
    lengths = _c(lengths, np.int64)
    offsets = _c(offsets, np.int64)
    top = _c(top_n, np.int64)
    dup = _c(dup_n, np.int64)
    top_out = np.zeros((len(top), n_docs))
    dup_out = np.zeros((len(dup), n_docs))
    if lib.ngram_repetition(_ptr(hashes), _ptr(lengths), _ptr(offsets), n_docs, _ptr(top),
                            len(top), _ptr(dup), len(dup), _ptr(top_out), _ptr(dup_out)):
        raise MemoryError("ngram_repetition: out of memory")
    return dict(zip(top_n, top_out)), dict(zip(dup_n, dup_out))


@_kernel
def part_duplicates(lib: Any, data: Any, start: Any, end: Any,
                    count: Any) -> tuple[Any, Any] | None:
    """Per text, how many of its parts equal an earlier one and their characters (as
    gopher._duplicates counts them), in C; None without kernels."""
    import numpy as np

    data = _c(data, np.uint8)
    start = _c(start, np.int64)
    end = _c(end, np.int64)
    count = _c(count, np.int64)
    dup = np.zeros(len(count), np.int64)
    dup_chars = np.zeros(len(count), np.int64)
    if lib.part_duplicates(_ptr(data), _ptr(start), _ptr(end), _ptr(count), len(count),
                           _ptr(dup), _ptr(dup_chars)):
        raise MemoryError("part_duplicates: out of memory")
    return dup, dup_chars


@_kernel
def token_hashes(lib: Any, cp: Any, tstart: Any, tend: Any) -> Any:
    """tokenize._featurize's token hashes (before special splits), in C; None without
    kernels. `cp`: uint32 code points; `tstart`, `tend`: int64 token bounds."""
    import numpy as np

    cp = _c(cp, np.uint32)
    tstart = _c(tstart, np.int64)
    tend = _c(tend, np.int64)
    out = np.empty(len(tstart), np.uint64)
    lib.token_hashes(_ptr(cp), _ptr(tstart), _ptr(tend), len(tstart), _ptr(out))
    return out


@_kernel
def token_bits(lib: Any, flags: Any, table: Any, tstart: Any, length: Any) -> Any:
    """The OR of `table[flags]` over each token's characters, in C; None without kernels."""
    import numpy as np

    flags = _c(flags, np.uint16)
    tstart = _c(tstart, np.int64)
    length = _c(length, np.int64)
    out = np.empty(len(tstart), np.uint8)
    lib.token_bits(_ptr(flags), _ptr(table), _ptr(tstart), _ptr(length), len(tstart),
                   _ptr(out))
    return out


@_kernel
def char_flags(lib: Any, cp: Any, table: Any) -> tuple[Any, bool] | None:
    """`table[cp]` (uint16 flags per code point) and whether one has the UNKNOWN bit, in C;
    None without kernels."""
    import numpy as np

    cp = _c(cp, np.uint32)
    out = np.empty(len(cp), np.uint16)
    unknown = lib.char_flags(_ptr(cp), len(cp), _ptr(table), _ptr(out))
    return out, bool(unknown)


@_kernel
def token_pass(lib: Any, cp: Any, flags: Any, start: Any, doc_start: Any, bits: Any,
               sent_flag: int, specials: tuple[Any, Any, Any, Any]) -> dict | None:
    """tokenize._featurize's tokens from its start mask, in one pass in C: {"offsets",
    "start", "length", "hash", "alpha", "symbol", "punct", "sent_end"}; None without
    kernels. `specials`: (bucket, sorted hashes, piece offsets, piece lengths) of the words
    split by exception (tokenize._special_table)."""
    import numpy as np

    cp = _c(cp, np.uint32)
    flags = _c(flags, np.uint16)
    start = _c(start, np.bool_)
    doc_start = _c(doc_start, np.int64)
    bucket, special, piece_off, piece_len = specials
    n_docs = len(doc_start) - 1
    cap = int(np.count_nonzero(start)) + 64  # split words add a few: a second call if not
    while True:
        out = {"offsets": np.empty(n_docs + 1, np.int64), "start": np.empty(cap, np.int64),
               "length": np.empty(cap, np.int64), "hash": np.empty(cap, np.uint64),
               **{k: np.empty(cap, np.bool_) for k in ("alpha", "symbol", "punct",
                                                        "sent_end")}}
        count = lib.token_pass(
            _ptr(cp), _ptr(flags), _ptr(start), len(cp), _ptr(doc_start), n_docs, _ptr(bits),
            sent_flag, _ptr(bucket), _ptr(special), len(special), _ptr(piece_off),
            _ptr(piece_len), cap, *(_ptr(out[k]) for k in ("start", "length", "hash", "alpha",
                                                            "symbol", "punct", "sent_end",
                                                            "offsets")))
        if count <= cap:
            return {k: (v if k == "offsets" else v[:count]) for k, v in out.items()}
        cap = count


@_kernel
def rule_starts(lib: Any, cp: Any, flags: Any, words: tuple[Any, Any, Any]) -> tuple | None:
    """tokenize._rule_starts without its two rare rules, in C: (start mask, unit candidates,
    "cannot" candidates); None without kernels. `words`: the rules' word lists (code
    points, word offsets, list offsets: tokenize._rule_words)."""
    import numpy as np

    cp = _c(cp, np.uint32)
    flags = _c(flags, np.uint16)
    codes, offsets, lists = words
    n = len(cp)
    cap = 4096  # candidates are rare: a second call when a batch has more
    while True:
        start = np.zeros(n, dtype=bool)
        units = np.empty(cap, np.int64)
        cannot = np.empty(cap, np.int64)
        counts = np.zeros(2, np.int64)
        if lib.rule_starts(_ptr(cp), _ptr(flags), n, _ptr(codes), _ptr(offsets), _ptr(lists),
                           _ptr(start), cap, _ptr(units), _ptr(counts[0:]), _ptr(cannot),
                           _ptr(counts[1:])):
            raise MemoryError("rule_starts: out of memory")
        n_units, n_cannot = counts.tolist()
        if max(n_units, n_cannot) <= cap:
            return start, units[:n_units], cannot[:n_cannot]
        cap = max(n_units, n_cannot)


@_kernel
def c4_lines(lib: Any, data: Any, offsets: Any, max_len: int, min_words: int, punct: bool,
             cut_citations: bool, phrases: tuple[str, ...]) -> tuple | None:
    """C4's line rules over UTF-8 texts, in C: (lines per text, exact per text, candidate
    lines as rows of (text, start, end, byte start, byte end, flags)); see _kernels.c's
    c4_lines. None without
    kernels. `data`: uint8; `offsets`: int64, text i at offsets[i]:offsets[i + 1]."""
    import numpy as np

    data = _c(data, np.uint8)
    offsets = _c(offsets, np.int64)
    encoded = [p.encode() for p in phrases]
    if len(encoded) > 63 or any(len(p) < 2 or b"\0" in p for p in encoded):
        raise ValueError("c4_lines: at most 63 phrases, of 2 bytes or more, without NUL")
    words = b"".join(p + b"\0" for p in encoded) + b"\0"
    n = len(offsets) - 1
    n_lines = np.zeros(n, np.int64)
    exact = np.zeros(n, np.uint8)
    cap = 16 * n + 64  # candidates are a few per text: a second call when more
    while True:
        lines = np.empty((cap, 6), np.int64)
        found = lib.c4_lines(_ptr(data), _ptr(offsets), n, max_len, min_words, int(punct),
                             int(cut_citations), words, _ptr(n_lines), _ptr(exact),
                             _ptr(lines), cap)
        if found <= cap:
            return n_lines, exact.view(bool), lines[:found]
        cap = found


@_kernel
def join_lines(lib: Any, data: Any, side: Any, rows: Any, n_texts: int) -> tuple[Any, Any] | None:
    """Per text, its lines joined by newlines and stripped, in C: (UTF-8 bytes, int64
    offsets); None without kernels. `rows`: per line (text, source, byte start, byte end),
    in text order, bytes of `data` (source 0) or `side` (source 1)."""
    import numpy as np

    data = _c(data, np.uint8)
    side = _c(side, np.uint8)
    rows = _c(rows, np.int64)
    size = int((rows[:, 3] - rows[:, 2]).sum()) + len(rows)
    out = np.empty(max(size, 1), np.uint8)
    offsets = np.empty(n_texts + 1, np.int64)
    lib.join_lines(_ptr(data), _ptr(side), _ptr(rows), len(rows), n_texts, _ptr(out),
                   _ptr(offsets))
    return out[:offsets[-1]], offsets


@_kernel
def span_sentences(lib: Any, tokens: Any, doc: Any, lo: Any, hi: Any) -> tuple[Any, Any] | None:
    """Sentences and tokens of each line (the tokens of document doc[i] starting in
    lo[i]..hi[i]), in C; None without kernels."""
    import numpy as np

    start = _c(tokens.start, np.int64)
    punct = _c(tokens.punct, bool).view(np.uint8)
    sent_end = _c(tokens.sent_end, bool).view(np.uint8)
    offsets = _c(tokens.offsets, np.int64)
    doc, lo, hi = (_c(a, np.int64) for a in (doc, lo, hi))
    sentences = np.empty(len(doc), np.int64)
    words = np.empty(len(doc), np.int64)
    lib.span_sentences(_ptr(start), _ptr(punct), _ptr(sent_end), _ptr(offsets), _ptr(doc),
                       _ptr(lo), _ptr(hi), len(doc), _ptr(sentences), _ptr(words))
    return sentences, words


@_kernel
def fineweb_lines(lib: Any, data: Any, offsets: Any, stop: Any, short_len: int) -> dict | None:
    """FineWeb's per-text line counts over UTF-8 texts, in C (see _kernels.c's
    fineweb_lines): lines, punct, shorts, dup_chars, newlines; None without kernels.
    `stop`: the characters that end a finished line."""
    import numpy as np

    data = _c(data, np.uint8)
    offsets = _c(offsets, np.int64)
    codes = np.array(sorted(map(ord, stop)), dtype=np.uint32)
    n = len(offsets) - 1
    out = {k: np.zeros(n, np.int64) for k in ("lines", "punct", "shorts", "dup_chars",
                                              "newlines")}
    if lib.fineweb_lines(_ptr(data), _ptr(offsets), n, _ptr(codes), len(codes), short_len,
                         *(_ptr(v) for v in out.values())):
        raise MemoryError("fineweb_lines: out of memory")
    return out


@_kernel
def gopher_lines(lib: Any, data: Any, offsets: Any, steps: int) -> tuple | None:
    """gopher._byte_counts and gopher._line_counts in one C pass: (hashes, ellipses,
    breaks, ends_nl), (bullets, ellipsis_lines, unsure, exotic); None without kernels."""
    import numpy as np

    data = _c(data, np.uint8)
    offsets = _c(offsets, np.int64)
    n = len(offsets) - 1
    counts = [np.zeros(n, np.int64) for _ in range(3)]
    ends_nl = np.zeros(n, bool)
    lines = [np.zeros(n, np.int64) for _ in range(2)]
    flags = [np.zeros(n, bool) for _ in range(2)]
    lib.gopher_lines(_ptr(data), _ptr(offsets), n, steps, *map(_ptr, counts), _ptr(ends_nl),
                     *map(_ptr, lines), *map(_ptr, flags))
    return (*counts, ends_nl), (*lines, *flags)


@_kernel
def char_classes(lib: Any, data: Any, offsets: Any, max_chars: int, table: Any) -> tuple | None:
    """Per text, the letters, visible characters and junk among its first `max_chars` code
    points (`table`: uint8 classes of the Basic Multilingual Plane, bits 1/2/4), and which
    texts reach beyond the plane (their counts are left to the caller); in C, None without
    kernels."""
    import numpy as np

    data = _c(data, np.uint8)
    offsets = _c(offsets, np.int64)
    table = _c(table, np.uint8)
    n = len(offsets) - 1
    counts = [np.empty(n, np.int64) for _ in range(3)]
    astral = np.empty(n, bool)
    lib.char_classes(_ptr(data), _ptr(offsets), n, max_chars, _ptr(table), *map(_ptr, counts),
                     _ptr(astral))
    return (*counts, astral)


class FeatureWalk:
    """py3langid's byte automaton over one text, in C: the distinct features in order of
    first appearance and their counts (what py3langid.langid.visit_counts counts)."""

    def __init__(self, nextmove: Any, row: Any, out: Any):
        import numpy as np

        self.lib = library()
        self.nextmove, self.row, self.out = (
            _c(np.frombuffer(a, a.typecode) if hasattr(a, "typecode") else a, dtype)
            for a, dtype in ((nextmove, np.uint32), (row, np.uint32), (out, np.int32)))
        if len(self.row) != len(self.out) or len(self.nextmove) < 256 * (int(self.row.max()) + 1):
            raise ValueError("FeatureWalk: inconsistent automaton tables")
        self.seen = np.full(int(self.out.max()) + 1, -1, np.int64)
        self.tables = tuple(map(_ptr, (self.nextmove, self.row, self.out, self.seen)))
        self._reserve(4096)

    def _reserve(self, n: int) -> None:
        import numpy as np

        self.idx, self.count = np.empty(n, np.int64), np.empty(n, np.int64)
        self.buffers = _ptr(self.idx), _ptr(self.count)

    def __call__(self, text: bytes) -> tuple[Any, Any]:
        if len(text) > len(self.idx):
            self._reserve(len(text))
        found = self.lib.dfa_features(text, len(text), *self.tables, *self.buffers)
        return self.idx[:found].copy(), self.count[:found].copy()


@_kernel
def minhash_signatures(lib: Any, lowered: Any, ngram: int, long_token: int, a: Any,
                       b: Any) -> tuple[Any, Any] | None:
    """minhash's signatures of a lowercased string array, in C: (uint32[docs, len(a)],
    uint8 status per document: 0 no token, 1 signed, 2 a token over `long_token` bytes,
    left to the caller); None without kernels."""
    import numpy as np
    import pyarrow as pa

    lowered = lowered.cast(pa.large_string())
    n = len(lowered)
    buffers = lowered.buffers()
    offsets = _c(np.frombuffer(buffers[1], dtype=np.int64)[lowered.offset:lowered.offset + n + 1],
                 np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else \
        np.zeros(1, np.uint8)
    a, b = _c(a, np.uint64), _c(b, np.uint64)
    sig = np.empty((n, len(a)), np.uint32)
    status = np.zeros(n, np.uint8)
    if lib.minhash_signatures(_ptr(data), _ptr(offsets), n, ngram, long_token, _ptr(a),
                              _ptr(b), len(a), _ptr(sig), _ptr(status)):
        raise MemoryError("minhash_signatures: out of memory")
    return sig, status
