"""Exact deduplication over the whole dataset, out of core (near duplicates: ops/minhash.py)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from ..operation import Arguments, GlobalOperation

Normalization = Literal["nfkc", "lower", "punctuation", "whitespace"]
NORMALIZATIONS: tuple[Normalization, ...] = ("nfkc", "lower", "punctuation", "whitespace")
CLUSTER_LINEAGE = {"cluster_id": "int64", "cluster_size": "int64"}


def normalize_strings(values: Any, steps: tuple[str, ...]) -> Any:
    """Apply the named normalizations, in the order of NORMALIZATIONS, to a string array:

    nfkc         Unicode NFKC (compatibility forms: ligatures, full-width letters, NBSP)
    lower        Unicode lowercase
    punctuation  remove every Unicode punctuation character (category P*)
    whitespace   collapse runs of whitespace (Unicode separators too) to one space; trim
    """
    import pyarrow.compute as pc

    if "nfkc" in steps:
        values = pc.utf8_normalize(values, "NFKC")
    if "lower" in steps:
        values = pc.utf8_lower(values)
    if "punctuation" in steps:
        values = pc.replace_substring_regex(values, r"\p{P}+", "")
    if "whitespace" in steps:
        values = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, r"[\s\p{Z}]+", " "))
    return values



def _string_digests(column: Any) -> bytes:
    """16-byte BLAKE2b digests of a string column's values, one after the other: of
    b"\\x01" + the value's UTF-8 bytes (read straight from the Arrow buffers, no Python
    string made), or of b"\\x00" for a null."""
    import numpy as np
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return b"".join(_string_digests(chunk) for chunk in column.chunks)
    if not len(column):
        return b""
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    _, off_buf, data_buf = column.buffers()
    offsets = np.frombuffer(off_buf, width)[column.offset:column.offset + len(column) + 1]
    data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    blake2b = hashlib.blake2b
    out = []
    for i, (lo, hi) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        if valid is not None and not valid[i]:
            out.append(blake2b(b"\x00", digest_size=16).digest())
        else:
            h = blake2b(b"\x01", digest_size=16)
            h.update(data[lo:hi])
            out.append(h.digest())
    return b"".join(out)

class DropDuplicatesArgs(Arguments):
    columns: list[str] | None = Field(None, description="Key columns (default: all columns).")
    normalize: bool | list[Normalization] = Field(
        False, description="Compare string key columns after normalizing them: True for all "
        "of nfkc, lower, punctuation, whitespace, or a list of those.")


class DropDuplicates(GlobalOperation):
    """Drop rows whose key columns repeat an earlier row's. The row kept is the first in
    dataset order (source partition, then position), whatever the number of workers.

    `normalize` compares string columns after NFKC, lowercasing, removing punctuation and
    collapsing whitespace (all, or the ones listed); the stored rows are unchanged. Each
    dropped row records `cluster_id` (the `_id` of the row kept in its place) and
    `cluster_size`: `datamill.duplicates(workdir, id)` lists the duplicates of a kept row.

    Phases: scan hashes the key of every row (128-bit BLAKE2b) and spreads the hashes into
    buckets on disk; reduce finds repeats within each bucket; apply drops them. Memory is
    bounded by one bucket (about 40 bytes per row of it), not by the dataset."""

    name = "drop_duplicates"
    Args = DropDuplicatesArgs
    default_reason = "duplicate"
    lineage = CLUSTER_LINEAGE

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in (self.args.columns or list(schema))}

    def _normalizations(self) -> tuple[str, ...]:
        chosen = self.args.normalize
        if chosen is True:
            return NORMALIZATIONS
        return tuple(n for n in NORMALIZATIONS if n in (chosen or ()))

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        steps = self._normalizations()
        columns = []
        for name in batch.schema.names:
            column = batch.column(name)
            is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            columns.append(normalize_strings(column, steps) if steps and is_text else column)
        if len(columns) == 1 and (pa.types.is_string(columns[0].type)
                                  or pa.types.is_large_string(columns[0].type)):
            digests = _string_digests(columns[0])
        else:
            rows = zip(*(c.to_pylist() for c in columns))
            keys = [json.dumps(r, default=repr, ensure_ascii=False).encode() for r in rows]
            digests = b"".join(hashlib.blake2b(k, digest_size=16).digest() for k in keys)
        halves = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2) if digests else \
            np.zeros((0, 2), np.uint64)
        return {"_key": pa.array(halves[:, 0]), "_key2": pa.array(halves[:, 1])}

    def reduce(self, bucket: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        k1 = bucket.column("_key").to_numpy()
        k2 = bucket.column("_key2").to_numpy()
        part = bucket.column("_part").to_numpy()
        pos = bucket.column("_pos").to_numpy()
        ids = bucket.column("_id").to_numpy()
        order = np.lexsort((pos, part, k2, k1))
        s1, s2 = k1[order], k2[order]
        repeat = np.r_[False, (s1[1:] == s1[:-1]) & (s2[1:] == s2[:-1])]
        group = np.cumsum(~repeat) - 1  # group number of each sorted row
        first = np.flatnonzero(~repeat)  # sorted index of each group's kept row
        sizes = np.diff(np.r_[first, len(order)])
        dropped = order[repeat]
        return {"_id": pa.array(ids[dropped]), "_part": pa.array(part[dropped]),
                "_pos": pa.array(pos[dropped]),
                "_reason": pa.array([self.default_reason] * len(dropped), pa.string()),
                "cluster_id": pa.array(ids[order[first[group[repeat]]]]),
                "cluster_size": pa.array(sizes[group[repeat]].astype(np.int64))}
