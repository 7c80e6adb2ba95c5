"""Semantic deduplication: drop rows whose embeddings are nearly parallel, out of core.

Phases (see GlobalOperation): scan normalizes each vector and hashes it with `tables` sets of
`bits` random hyperplanes (sign random projections: two vectors at angle t agree on one bit
with probability 1 - t/pi), one row per table (`_key` = the table's bit pattern); reduce
compares, block by block, every pair of rows that share a key and returns the pairs whose
cosine similarity reaches `threshold`, as edges between `_id`s; the engine joins those pairs
into clusters (distributed connected components) and keeps the smallest `_id` of each.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..errors import SchemaError
from ..executors.components import row_locators
from ..operation import Arguments, GlobalOperation
from .dedup import CLUSTER_LINEAGE
from .minhash import _combine

BLOCK = 2048  # rows compared at once: a BLOCK x BLOCK similarity matrix at most
VECTOR = "vector"
ROW_BYTES = 100  # a typical small shuffled row; buckets are sized in these (see shuffle_rows)


class SemanticDedupArgs(Arguments):
    column: str = Field("embedding", description="Vector column (fixed_size_list<float32>).")
    threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity from which two "
                                                            "rows are duplicates.")
    bits: int = Field(12, ge=1, le=64, description="Hyperplanes per hash table (more: "
                                                   "smaller buckets, fewer candidates).")
    tables: int = Field(10, ge=1, description="Hash tables (more: higher recall, more "
                                              "shuffled rows).")
    seed: int = Field(0, description="Seed of the random hyperplanes.")


class SemanticDedup(GlobalOperation):
    """Drop semantic near-duplicates: rows whose vectors have cosine similarity >= `threshold`
    (default 0.95), typically paraphrases embedded by embed_text.

    Candidates: `tables` (10) hash tables of `bits` (12) seeded random hyperplanes; rows that
    agree on every bit of one table share a bucket. A pair at similarity s is a candidate with
    probability 1 - (1 - (1 - acos(s)/pi)^bits)^tables (96% at 0.95, 99% at 0.97 with the
    defaults; docs/retrieval.md). Candidates are compared exactly (cosine of the float32
    vectors), the pairs at or above the threshold are joined into clusters (connected
    components, so a chain a~b~c is one cluster), and each cluster keeps its smallest `_id`;
    the others are dropped with reason "semantic_duplicate", recording `cluster_id` (the kept
    row's `_id`) and `cluster_size`: `datamill.duplicates(workdir, id)` lists them. Null and
    zero vectors are kept and never compared. Memory: one partition, one bucket (compared in
    blocks of 2048 rows), then one bucket of similar pairs (docs/dedup.md)."""

    name = "semantic_dedup"
    Args = SemanticDedupArgs
    default_reason = "semantic_duplicate"
    resolves = "components"  # similar pairs -> clusters, distributed
    lineage = CLUSTER_LINEAGE

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        column = self.args.column
        typ = schema.get(column)
        if typ is None:
            listing = ", ".join(sorted(schema)) or "none"
            raise SchemaError(f"vector column {column!r} is missing (columns: {listing})",
                              operation=self.name)
        if not ((pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ))
                and pa.types.is_floating(typ.value_type)):
            raise SchemaError(f"vector column {column!r} must be a list of floats "
                              f"(embed_text's fixed_size_list<float32>), got {typ}",
                              operation=self.name)
        self._dim = getattr(typ, "list_size", None) or 384
        return {column: typ}

    def shuffle_rows(self, input_rows: int) -> int:
        """Shuffled rows carry a vector: each counts as ROW_BYTES of a small row, so that a
        bucket holds about 200 MB of vectors (130k rows of 384 floats)."""
        weight = max(1, 4 * getattr(self, "_dim", 384) // ROW_BYTES)
        return input_rows * self.args.tables * weight

    def hyperplanes(self, dim: int) -> Any:
        """float32[tables * bits, dim], drawn from the seed (the same in every worker)."""
        import numpy as np

        rng = np.random.default_rng(self.args.seed)
        return rng.standard_normal((self.args.tables * self.args.bits, dim)).astype(np.float32)

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        vectors, rows = unit_vectors(batch.column(self.args.column))
        self.count("rows_without_vector", batch.num_rows - len(rows))
        tables, bits = self.args.tables, self.args.bits
        if not len(rows):
            return {"_key": pa.array([], pa.uint64()), "_row": pa.array([], pa.int64()),
                    VECTOR: pa.array([], pa.list_(pa.float32()))}
        signs = (vectors @ self.hyperplanes(vectors.shape[1]).T) > 0
        weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
        keys = [_combine([(signs[:, t * bits:(t + 1) * bits] * weights).sum(
            axis=1, dtype=np.uint64)], salt=t + 1) for t in range(tables)]
        dim = vectors.shape[1]
        flat = pa.array(np.tile(vectors, (tables, 1)).reshape(-1), pa.float32())
        return {"_key": pa.array(np.concatenate(keys), pa.uint64()),
                "_row": pa.array(np.tile(rows, tables), pa.int64()),
                VECTOR: pa.FixedSizeListArray.from_arrays(flat, dim)}

    def reduce(self, bucket: Any) -> Any:
        """Similar pairs among the rows sharing a key: (smaller id, larger id) each, as edges
        between `_id`s (a cluster keeps its smallest) with the rows' locators."""
        import numpy as np

        key = bucket.column("_key").to_numpy()
        ids = bucket.column("_id").to_numpy()
        loc = row_locators(bucket)
        column = bucket.column(VECTOR).combine_chunks()
        vectors = column.flatten().to_numpy().reshape(len(column), -1)
        order = np.lexsort((ids, key))
        bounds = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1], True])
        found: list[tuple[Any, Any]] = []
        compared = 0
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if hi - lo < 2:
                continue
            group = order[lo:hi]
            compared += (hi - lo) * (hi - lo - 1) // 2
            found += similar_pairs(vectors[group], self.args.threshold, group)
        a = np.concatenate([p[0] for p in found]) if found else np.zeros(0, np.int64)
        b = np.concatenate([p[1] for p in found]) if found else np.zeros(0, np.int64)
        first = np.where(ids[a] <= ids[b], a, b)
        second = np.where(ids[a] <= ids[b], b, a)
        if len(first):  # a pair sharing keys in several tables of this bucket: once
            _, unique = np.unique(np.c_[ids[first], ids[second]], axis=0, return_index=True)
            first, second = first[unique], second[unique]
        self.count("compared_pairs", compared)
        self.count("similar_pairs", len(first))
        return {"src": ids[first], "dst": ids[second], "src_id": ids[first],
                "dst_id": ids[second], "src_loc": loc[first], "dst_loc": loc[second]}


def unit_vectors(column: Any) -> tuple[Any, Any]:
    """(float32[rows with a vector, dim] scaled to unit length, their positions): null,
    empty and zero vectors are left out."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = np.asarray(pc.is_valid(column)) if column.null_count else \
        np.ones(len(column), bool)
    if pa.types.is_list(column.type):
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy()
        valid &= lengths > 0
    rows = np.flatnonzero(valid)
    present = column.filter(pa.array(valid))
    if not len(rows):
        return np.zeros((0, 0), np.float32), rows
    vectors = present.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = vectors.reshape(len(rows), -1)
    norms = np.linalg.norm(vectors, axis=1)
    nonzero = norms > 0
    return (vectors[nonzero] / norms[nonzero, None]).astype(np.float32), rows[nonzero]


def similar_pairs(vectors: Any, threshold: float, labels: Any) -> list[tuple[Any, Any]]:
    """Pairs (labels[i], labels[j]), i < j, of unit vectors with dot product >= threshold,
    computed in BLOCK x BLOCK tiles."""
    import numpy as np

    out = []
    n = len(vectors)
    for i in range(0, n, BLOCK):
        for j in range(i, n, BLOCK):
            sims = vectors[i:i + BLOCK] @ vectors[j:j + BLOCK].T
            a, b = np.nonzero(sims >= np.float32(threshold))
            a, b = a + i, b + j
            upper = a < b
            if upper.any():
                out.append((labels[a[upper]], labels[b[upper]]))
    return out
