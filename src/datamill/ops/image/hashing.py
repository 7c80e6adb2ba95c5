"""64-bit perceptual hashes of images and an exact search for hashes within a Hamming distance.

Hashes (bits packed row by row, most significant first, so ``f"{h:016x}"`` reads like the usual
hex notation of these hashes):

    phash  grey 32x32 (Lanczos), 2-D DCT-II, the 8x8 lowest frequencies; bit = above their median
    dhash  grey 9x8 (Lanczos); bit = the pixel is brighter than its left neighbour

Search (multi-index hashing): split the 64 bits into `threshold + 1` bands. Two hashes at most
`threshold` bits apart differ in at most `threshold` bands, so they agree exactly on at least one
(pigeonhole): every such pair shares a band value, and comparing the hashes of each group of
rows sharing one finds all of them, with no false negative. Groups are compared in passes by
offset (row k against row k + d of the same group) over contiguous slices, so the work is the
number of pairs in groups, vectorized, and memory stays linear in the rows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

HashMethod = Literal["phash", "dhash"]
METHODS: tuple[str, ...] = ("phash", "dhash")
BITS = 64
PHASH_SIDE = 32  # the grey image the DCT reads
PHASH_LOW = 8  # the low-frequency corner kept
DHASH_SIZE = (9, 8)  # width, height: 8 differences per row


@lru_cache(maxsize=1)
def _dct_matrix() -> Any:
    """DCT-II basis (unnormalized): row k holds cos(pi * k * (2n + 1) / 2N), n = 0..N-1; only
    the PHASH_LOW lowest frequencies are kept."""
    import numpy as np

    n = np.arange(PHASH_SIDE)
    k = np.arange(PHASH_LOW)[:, None]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * PHASH_SIDE))


def _pack(bits: Any) -> int:
    """A boolean array of 64 (row-major) as one int, its first bit the most significant."""
    import numpy as np

    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


def _grey(image: Any, size: tuple[int, int]) -> Any:
    import numpy as np
    from PIL import Image

    return np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS),
                      dtype=np.float64)


def phash(image: Any) -> int:
    """The 64-bit DCT hash of a PIL image."""
    import numpy as np

    pixels = _grey(image, (PHASH_SIDE, PHASH_SIDE))
    basis = _dct_matrix()
    low = basis @ pixels @ basis.T  # 2-D DCT, the low-frequency corner only
    return _pack(low > np.median(low))


def dhash(image: Any) -> int:
    """The 64-bit difference hash of a PIL image."""
    pixels = _grey(image, DHASH_SIZE)
    return _pack(pixels[:, 1:] > pixels[:, :-1])


HASHERS = {"phash": phash, "dhash": dhash}
# what the hash reads: JPEG may decode at a reduced scale no smaller than this
DRAFT_SIZE = {"phash": (PHASH_SIDE * 2, PHASH_SIDE * 2), "dhash": (DHASH_SIZE[0] * 4,) * 2}


def hamming(a: Any, b: Any) -> Any:
    """Bits that differ between uint64 arrays (or scalars), element by element."""
    import numpy as np

    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def bands(threshold: int) -> list[tuple[int, int]]:
    """(shift, width) of the `threshold + 1` bands of a 64-bit hash, widths differing by one
    at most."""
    count = threshold + 1
    if not 0 <= threshold < BITS:
        raise ValueError(f"the Hamming threshold must be in 0..{BITS - 1}, got {threshold}")
    widths = [BITS // count + (i < BITS % count) for i in range(count)]
    shifts = [sum(widths[i + 1:]) for i in range(count)]
    return list(zip(shifts, widths))


def band_values(hashes: Any, shift: int, width: int) -> Any:
    """The bits [shift, shift + width) of each uint64 hash."""
    import numpy as np

    mask = np.uint64((1 << width) - 1)
    return (np.asarray(hashes, np.uint64) >> np.uint64(shift)) & mask


def close_pairs(groups: Any, hashes: Any, threshold: int) -> tuple[Any, Any, int]:
    """The pairs (i, j) of positions with equal `groups` values whose uint64 `hashes` are at
    most `threshold` bits apart (each pair once, i before j within its group), and the
    number of pairs compared (every pair of every group).

    Rows are ordered by group, largest groups first; pass d compares each row with the row d
    places after it, over contiguous slices of the rows whose group is larger than d (a
    prefix). No pair is materialized before it is found close, and the work is the number of
    pairs compared, in vectorized passes."""
    import numpy as np

    groups = np.asarray(groups)
    none = np.zeros(0, np.int64)
    n = len(groups)
    if n < 2:
        return none, none, 0
    if groups.dtype.kind == "u" and n and int(groups.max()) < 1 << 16:
        groups = groups.astype(np.uint16)  # a band's bits: numpy sorts 16-bit keys by radix
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, n])
    big = sizes > 1
    starts, sizes = starts[big], sizes[big]
    if not len(sizes):
        return none, none, 0
    by_size = np.argsort(-sizes, kind="stable")  # rows of the largest groups first
    starts, sizes = starts[by_size], sizes[by_size]
    rows = order[_ranges(starts, sizes)]
    h = np.asarray(hashes, np.uint64)[rows]
    gid = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    ends = np.cumsum(sizes)
    # groups larger than d: a prefix of them (sizes descend); their rows: ends[count - 1]
    larger = np.searchsorted(-sizes, -np.arange(1, int(sizes[0])), side="left")
    found_i, found_j = [], []
    xor = np.empty(len(h), np.uint64)
    bits = np.empty(len(h), np.uint8)
    within = np.empty(len(h), bool)
    for d, count in enumerate(larger.tolist(), start=1):
        m = int(ends[count - 1]) - d
        np.bitwise_xor(h[:m], h[d:m + d], out=xor[:m])
        np.bitwise_count(xor[:m], out=bits[:m])
        np.less_equal(bits[:m], threshold, out=within[:m])
        k = np.flatnonzero(within[:m])
        k = k[gid[k] == gid[k + d]]  # close across two groups: rare, dropped here
        if len(k):
            found_i.append(rows[k])
            found_j.append(rows[k + d])
    compared = int((sizes * (sizes - 1) // 2).sum())
    if not found_i:
        return none, none, compared
    return np.concatenate(found_i), np.concatenate(found_j), compared


def _ranges(starts: Any, sizes: Any) -> Any:
    """The concatenated ranges [start, start + size) (vectorized)."""
    import numpy as np

    offsets = np.repeat(np.cumsum(sizes) - sizes - starts, sizes)
    return np.arange(int(sizes.sum())) - offsets


def _unique_pairs(a: Any, b: Any, n: int) -> tuple[Any, Any]:
    """The distinct pairs (min, max) of index arrays a, b (indices below n), sorted."""
    import numpy as np

    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    code = np.unique(lo * n + hi)
    return code // n, code % n


def near_pairs(hashes: Any, threshold: int) -> tuple[Any, Any]:
    """Every pair (i, j), i < j, of uint64 hashes at most `threshold` bits apart, each once,
    sorted: candidates share a band (multi-index hashing), then their distance is checked."""
    import numpy as np

    hashes = np.asarray(hashes, np.uint64)
    found_a, found_b = [], []
    for shift, width in bands(threshold):
        i, j, _ = close_pairs(band_values(hashes, shift, width), hashes, threshold)
        found_a.append(i)
        found_b.append(j)
    return _unique_pairs(np.concatenate(found_a), np.concatenate(found_b), len(hashes))


def near_edges(hashes: Any, threshold: int) -> tuple[Any, Any]:
    """Edges (i, j), i < j, whose connected components are those of `near_pairs`, with each
    distinct hash compared once: the copies of a hash are joined to its first row only (a
    thousand identical hashes give 999 edges, not half a million pairs)."""
    import numpy as np

    hashes = np.asarray(hashes, np.uint64)
    distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    copies = np.flatnonzero(first[inverse] != np.arange(len(hashes)))
    i, j = near_pairs(distinct, threshold)
    return (np.r_[first[inverse[copies]], first[i]].astype(np.int64),
            np.r_[copies, first[j]].astype(np.int64))


def brute_force_pairs(hashes: Any, threshold: int, rows: int = 64,
                      columns: int = 16384) -> tuple[Any, Any]:
    """The same pairs as `near_pairs` (sorted), by comparing every pair: tiles of `rows` x
    `columns` (the default fits in a CPU cache) over the upper triangle, through reused
    buffers. The reference for tests and the baseline of benchmarks/image_dedup.py."""
    import numpy as np

    hashes = np.asarray(hashes, np.uint64)
    n = len(hashes)
    xor = np.empty((rows, columns), np.uint64)
    bits = np.empty((rows, columns), np.uint8)
    within = np.empty((rows, columns), bool)
    found_a, found_b = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for lo in range(0, n, rows):
        block = hashes[lo:lo + rows, None]
        r = len(block)
        for c in range(lo, n, columns):
            w = min(columns, n - c)
            np.bitwise_xor(block, hashes[None, c:c + w], out=xor[:r, :w])
            np.bitwise_count(xor[:r, :w], out=bits[:r, :w])
            np.less_equal(bits[:r, :w], threshold, out=within[:r, :w])
            if within[:r, :w].any():
                i, j = np.nonzero(within[:r, :w])
                i, j = i + lo, j + c
                keep = i < j
                found_a.append(i[keep])
                found_b.append(j[keep])
    return _unique_pairs(np.concatenate(found_a), np.concatenate(found_b), max(n, 1))
