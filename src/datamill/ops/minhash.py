"""Near-duplicate removal with MinHash and locality-sensitive hashing, out of core.

Phases (see GlobalOperation): scan computes each document's MinHash signature and emits one
row per band (`_key` = hash of the band number and the band's values: rows are routed to
buckets by band); reduce finds, in each bucket, the rows that share a band key and returns
edges (each member -> the group's first row, nodes keyed by row locator); the engine joins
the edges of every bucket into clusters (distributed connected components) and keeps the
smallest node of each, its first row in dataset order.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..executors.components import row_locators
from ..operation import Arguments, GlobalOperation
from ..schema import normalize_columns
from .dedup import CLUSTER_LINEAGE

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”„‘’«»‹›–—…¡¿·•"
CHUNK_DOCS = 2048  # documents tokenized at once (bounds scan's temporaries)
SLICE_SHINGLES = 1 << 16  # shingles hashed at once (temporaries stay in cache)
LONG_TOKEN = 64  # bytes; longer tokens are hashed one by one
_ODD = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9)


def _mix64(x: Any) -> Any:
    """splitmix64's finalizer over a uint64 array: every input bit reaches every output bit."""
    import numpy as np

    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _combine(columns: list[Any], salt: int = 0) -> Any:
    """One well-mixed uint64 per row from several uint64 columns (order matters): a chain of
    bijective mixes, so distinct rows collide only by chance (2^-64)."""
    import numpy as np

    with np.errstate(over="ignore"):
        acc = _mix64(np.full(len(columns[0]), salt, dtype=np.uint64) + np.uint64(_ODD[7]))
        for col in columns:
            acc = _mix64(acc ^ col)
    return acc


def tokenize(texts: Any) -> tuple[Any, Any]:
    """Word tokens of a string array: lowercase, split on whitespace, strip punctuation at
    both ends of each token, drop empty tokens. Returns (tokens, document index of each)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    lists = pc.utf8_split_whitespace(pc.utf8_lower(texts))
    doc = pc.list_parent_indices(lists)
    tokens = pc.utf8_trim(pc.list_flatten(lists), characters=PUNCTUATION)
    keep = pc.greater(pc.binary_length(tokens), 0)
    return tokens.filter(keep), doc.filter(keep).to_numpy().astype("int64")


def string_hashes(strings: Any) -> Any:
    """A 64-bit hash of each value of a string array (no nulls): FNV-1a over its UTF-8 bytes,
    vectorized across strings (one pass per byte position, longest strings first), then
    splitmix64's finalizer with the length. Strings over LONG_TOKEN bytes use BLAKE2b."""
    import hashlib

    import numpy as np
    import pyarrow as pa

    strings = strings.cast(pa.large_string())
    n = len(strings)
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[strings.offset:strings.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else \
        np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    out = np.empty(n, dtype=np.uint64)
    long = np.flatnonzero(lengths > LONG_TOKEN)
    for i in long.tolist():
        out[i] = int.from_bytes(hashlib.blake2b(data[offsets[i]:offsets[i + 1]].tobytes(),
                                                digest_size=8).digest(), "little")
    short = np.flatnonzero(lengths <= LONG_TOKEN)
    order = short[np.argsort(-lengths[short], kind="stable")]
    start, size = offsets[order], lengths[order]
    # active[j]: how many strings are longer than j bytes (a prefix of `order`)
    active = np.searchsorted(-size, -np.arange(int(size.max()) if len(size) else 0))
    h = np.full(len(order), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j, count in enumerate(active.tolist()):
            h[:count] ^= data[start[:count] + j]
            h[:count] *= prime
        out[order] = _mix64(h ^ (size.astype(np.uint64) << np.uint64(56)))
    return out


def word_hashes(tokens: Any) -> Any:
    """A 64-bit hash of each token, computed once per distinct token of the chunk."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(tokens)
    return string_hashes(encoded.dictionary)[encoded.indices.to_numpy()]


def shingle_hashes(words: Any, doc: Any, docs: int, n: int) -> tuple[Any, Any]:
    """32-bit hashes of every word n-gram of every document (a document with fewer than n
    words has one shingle: all its words). Returns (hashes, document of each), ordered by
    document. The n-gram starting at word i hashes words[i:i+n], each multiplied by its own
    odd constant, summed and mixed: contiguous slices, no gathers."""
    import numpy as np

    total = len(words)
    counts = np.bincount(doc, minlength=docs)
    ends = np.cumsum(counts)
    end_of = np.repeat(ends, counts)  # for each word: end of its document
    padded = np.r_[words, np.zeros(n, np.uint64)]
    with np.errstate(over="ignore"):
        acc = padded[:total] * np.uint64(_ODD[0])
        for k in range(1, n):
            acc += padded[k:total + k] * np.uint64(_ODD[k % len(_ODD)])
        full = np.arange(total) + n <= end_of
        short_docs = np.flatnonzero((counts > 0) & (counts < n))
        if len(short_docs):  # their one shingle: the words they have, zeros after
            at = (ends - counts)[short_docs]
            acc[at] = 0
            for k in range(n):
                valid = k < counts[short_docs]
                acc[at[valid]] += padded[at[valid] + k] * np.uint64(_ODD[k % len(_ODD)])
            full[at] = True
    starts = np.flatnonzero(full)
    return _mix64(acc[starts]) >> np.uint64(32), doc[starts]


def min_hashes(shingles: Any, starts: Any, a: Any, b: Any) -> Any:
    """uint32[len(a), len(starts)]: for each hash function (a, b) and each document (its
    shingles begin at `starts`), the minimum over its 32-bit shingles x of

        h(x) = ((a*x + b) mod 2^64) >> 32

    Dietzfelbinger's multiply-add-shift family: for 32-bit keys and 64-bit a, b it is strongly
    universal (2-independent), the guarantee of the textbook (a*x + b) mod p family, with no
    modulo: three vectorized passes per function. Buffers are reused across functions."""
    import numpy as np

    out = np.empty((len(a), len(starts)), dtype=np.uint32)
    x = np.empty(len(shingles), dtype=np.uint64)
    s32 = np.uint64(32)
    with np.errstate(over="ignore"):
        for i in range(len(a)):
            np.multiply(shingles, a[i], out=x)
            x += b[i]
            x >>= s32
            out[i] = np.minimum.reduceat(x, starts)
    return out


class MinHashDedupArgs(Arguments):
    column: str = Field("text", description="Text column to compare.")
    ngram: int = Field(5, ge=1, description="Words per shingle.")
    bands: int = Field(14, ge=1, description="LSH bands.")
    rows_per_band: int = Field(8, ge=1, description="Signature values per band.")
    seed: int = Field(1, description="Seed of the MinHash hash functions.")
    keep_duplicates: bool = Field(
        False, description="Drop nothing: every row gets its cluster in `cluster_id` and "
                           "`cluster_size` columns (null for a row in no cluster), e.g. to "
                           "keep near duplicates in one split (assign_split).")


class MinHashDedup(GlobalOperation):
    """Drop near-duplicate documents: MinHash over word n-grams, LSH bands, clusters.

    Tokens: lowercase, split on whitespace, punctuation stripped from both ends of each
    token. Shingles: every `ngram` consecutive tokens (default 5), hashed to 32 bits x.
    Signature: `bands x rows_per_band` (default 14 x 8 = 112) minima over the shingles of
    ((a*x + b) mod 2^64) >> 32, a universal hash with seeded a, b. Two documents are
    candidates when one band agrees: probability 1 - (1 - s^r)^b at Jaccard similarity s
    (50% at s = 0.68 for 14 x 8; see docs/dedup.md). Candidates are joined into clusters
    (connected components); each keeps its first row in dataset order and drops the others
    with reason "near_duplicate", recording `cluster_id` (the kept row's `_id`) and
    `cluster_size`: `datamill.duplicates(workdir, id)` lists them. Rows with no token are
    kept and never compared. With `keep_duplicates=True` nothing is dropped and the
    clusters become columns instead: `cluster_id` and `cluster_size`, null for a row in no
    cluster (assign_split groups by them). Memory: one partition, one bucket of band rows, then one
    bucket of candidate pairs (the clusters are found in rounds of units; docs/dedup.md)."""

    name = "minhash_dedup"
    Args = MinHashDedupArgs
    default_reason = "near_duplicate"
    resolves = "components"  # edges -> clusters, distributed (executors/components.py)
    lineage = CLUSTER_LINEAGE

    def resolve_consumes(self, schema: dict) -> dict:
        return normalize_columns({self.args.column: "string"})

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns(CLUSTER_LINEAGE) if self.args.keep_duplicates else {}

    @property
    def drops_rows(self) -> bool:  # type: ignore[override]
        return not self.args.keep_duplicates

    def shuffle_rows(self, input_rows: int) -> int:
        return input_rows * self.args.bands

    def hash_functions(self) -> tuple[Any, Any]:
        """The seeded (a, b) of each signature value: a odd, both uniform over 64 bits."""
        import numpy as np

        rng = np.random.default_rng(self.args.seed)
        k = self.args.bands * self.args.rows_per_band
        a = rng.integers(0, 1 << 64, size=k, dtype=np.uint64, endpoint=False) | np.uint64(1)
        b = rng.integers(0, 1 << 64, size=k, dtype=np.uint64, endpoint=False)
        return a, b

    def signatures(self, texts: Any) -> tuple[Any, Any]:
        """MinHash signatures of a string array: (uint32[docs with tokens, bands * rows],
        index in `texts` of each signed document). Computed in C when the kernels are built
        (one pass per document), else with numpy (`vector_signatures`): the same values."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from .quality import kernels

        a, b = self.hash_functions()
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        compiled = kernels.minhash_signatures(pc.utf8_lower(texts), self.args.ngram,
                                              LONG_TOKEN, a, b)
        if compiled is None:
            return self.vector_signatures(texts)
        sig, status = compiled
        if texts.null_count:
            status[texts.is_null().to_numpy(zero_copy_only=False)] = 0
        long = np.flatnonzero(status == 2)  # a token hashed with BLAKE2b: the numpy path's
        if len(long):
            long_sig, long_signed = self.vector_signatures(texts.take(pa.array(long)))
            status[long] = 0
            status[long[long_signed]] = 1
            sig[long[long_signed]] = long_sig
        signed = np.flatnonzero(status == 1)
        return sig[signed], signed

    def vector_signatures(self, texts: Any) -> tuple[Any, Any]:
        """`signatures` with numpy over the whole array (the kernel's twin)."""
        import numpy as np

        a, b = self.hash_functions()
        tokens, doc = tokenize(texts)
        shingles, owner = shingle_hashes(word_hashes(tokens), doc, len(texts), self.args.ngram)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else \
            np.zeros(0, np.int64)
        signed = owner[starts]
        sig = np.empty((len(a), len(signed)), dtype=np.uint32)
        # slices of whole documents, about SLICE_SHINGLES each, so that temporaries stay in cache
        cuts = np.unique(np.searchsorted(starts, np.arange(0, len(shingles), SLICE_SHINGLES)))
        cuts = cuts[cuts < len(signed)]  # a long last document: no empty slice after it
        for lo, hi in zip(cuts.tolist(), np.r_[cuts[1:], len(signed)].tolist()):
            first, last = starts[lo], starts[hi] if hi < len(signed) else len(shingles)
            sig[:, lo:hi] = min_hashes(shingles[first:last], starts[lo:hi] - first, a, b)
        return sig.T, signed

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        texts = batch.column(self.args.column)
        bands, r = self.args.bands, self.args.rows_per_band
        keys, rows = [], []
        for lo in range(0, len(texts), CHUNK_DOCS):
            sig, signed = self.signatures(texts.slice(lo, CHUNK_DOCS))
            for band in range(bands):
                values = sig[:, band * r:(band + 1) * r].astype(np.uint64)
                cols = [(values[:, j] << np.uint64(32)) | values[:, j + 1]
                        for j in range(0, r - 1, 2)] + ([values[:, r - 1]] if r % 2 else [])
                keys.append(_combine(cols, salt=band + 1))
                rows.append(signed + lo)
        key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.count("documents_without_tokens", len(texts) - len(row) // bands)
        return {"_key": pa.array(key, pa.uint64()), "_row": pa.array(row, pa.int64())}

    def reduce(self, bucket: Any) -> Any:
        """Edges: each row of a group sharing a band key -> the group's first row. Nodes are
        row locators (`_part << 40 | _pos`), so a cluster keeps its first row in dataset order."""
        import numpy as np

        key = bucket.column("_key").to_numpy()
        loc = row_locators(bucket)
        ids = bucket.column("_id").to_numpy()
        order = np.lexsort((loc, key))
        key, loc, ids = key[order], loc[order], ids[order]
        new = np.r_[True, key[1:] != key[:-1]]
        head = np.maximum.accumulate(np.where(new, np.arange(len(key)), 0))
        member = ~new
        src, dst = loc[member], loc[head[member]]
        src_id, dst_id = ids[member], ids[head[member]]
        if len(src):  # a pair agreeing on several bands lands here once per band
            order = np.lexsort((dst, src))
            unique = np.r_[True, (src[order][1:] != src[order][:-1])
                           | (dst[order][1:] != dst[order][:-1])]
            pick = order[unique]
            src, dst, src_id, dst_id = src[pick], dst[pick], src_id[pick], dst_id[pick]
        self.count("candidate_edges", len(src))
        return {"src": src, "dst": dst, "src_id": src_id, "dst_id": dst_id}

