"""Exact deduplication over the whole dataset, out of core."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field

from ..operation import Arguments, GlobalOperation


class DropDuplicatesArgs(Arguments):
    columns: list[str] | None = Field(None, description="Key columns (default: all columns).")


class DropDuplicates(GlobalOperation):
    """Drop rows whose key columns repeat an earlier row's. The row kept is the first in
    dataset order (source partition, then position), whatever the number of workers.

    Phases: scan hashes the key of every row (128-bit BLAKE2b) and spreads the hashes into
    buckets on disk; reduce finds repeats within each bucket; apply drops them. Memory is
    bounded by one bucket (about 40 bytes per row of it), not by the dataset."""

    name = "drop_duplicates"
    Args = DropDuplicatesArgs
    default_reason = "duplicate"

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in (self.args.columns or list(schema))}

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        names = batch.schema.names
        if len(names) == 1 and pa.types.is_string(batch.schema.field(0).type) or (
                len(names) == 1 and pa.types.is_large_string(batch.schema.field(0).type)):
            keys = [b"\x00" if v is None else b"\x01" + v.encode("utf-8", "surrogatepass")
                    for v in batch.column(0).to_pylist()]
        else:
            rows = zip(*(batch.column(c).to_pylist() for c in names))
            keys = [json.dumps(r, default=repr, ensure_ascii=False).encode() for r in rows]
        digests = b"".join(hashlib.blake2b(k, digest_size=16).digest() for k in keys)
        halves = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2) if keys else \
            np.zeros((0, 2), np.uint64)
        return {"_key": pa.array(halves[:, 0]), "_key2": pa.array(halves[:, 1])}

    def reduce(self, bucket: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        k1 = bucket.column("_key").to_numpy()
        k2 = bucket.column("_key2").to_numpy()
        part = bucket.column("_part").to_numpy()
        pos = bucket.column("_pos").to_numpy()
        order = np.lexsort((pos, part, k2, k1))
        s1, s2 = k1[order], k2[order]
        repeat = np.r_[False, (s1[1:] == s1[:-1]) & (s2[1:] == s2[:-1])]
        dropped = bucket.take(pa.array(order[repeat]))
        return dropped.select(["_id", "_part", "_pos"]).append_column(
            "_reason", pa.array([self.default_reason] * dropped.num_rows, pa.string()))
