"""Sampling and limits."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..operation import Arguments, FilterOperation, GlobalOperation


class SampleArgs(Arguments):
    fraction: float = Field(gt=0, le=1, description="Share of rows to keep.")
    seed: int = Field(0, description="Changes which rows are kept.")


class Sample(FilterOperation):
    """Keep a pseudo-random share of rows, decided by a hash of each row id and the seed:
    the same rows on every run and any number of workers."""

    name = "sample"
    Args = SampleArgs
    default_reason = "not_sampled"

    def process(self, batch: Any) -> Any:
        import numpy as np

        ids = batch.column("_id").to_numpy().view(np.uint64)
        with np.errstate(over="ignore"):
            x = ids + np.uint64(self.args.seed) * np.uint64(0x9E3779B97F4A7C15)
            x ^= x >> np.uint64(33)
            x *= np.uint64(0xFF51AFD7ED558CCD)
            x ^= x >> np.uint64(33)
            x *= np.uint64(0xC4CEB9FE1A85EC53)
            x ^= x >> np.uint64(33)
        return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < self.args.fraction

    def resolve_consumes(self, schema: dict) -> dict:
        return {"_id": "int64"}


class LimitArgs(Arguments):
    n: int = Field(ge=0, description="Rows to keep.")


class Limit(GlobalOperation):
    """Keep the first `n` rows in dataset order (partition, then position)."""

    name = "limit"
    Args = LimitArgs
    keep_unlisted = False
    default_reason = "over_limit"

    def reason(self) -> str:
        return self.default_reason

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        n = batch.num_rows
        keys = np.zeros(n, dtype=np.uint64)
        valid = np.arange(n) < self.args.n
        return {"_key": pa.array(keys, mask=~valid)}

    def reduce(self, bucket: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        order = pc.sort_indices(bucket, sort_keys=[("_part", "ascending"), ("_pos", "ascending")])
        first = pc.take(bucket, order).slice(0, self.args.n)
        return first.append_column("_reason", pa.nulls(first.num_rows, pa.string()))
