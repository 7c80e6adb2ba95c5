"""Deterministic train/validation/test splits by a hash of the seed and a group key.

Each group (by default the near-duplicate cluster, so that near duplicates never straddle
two splits) gets a number in [0, 1) from a 64-bit hash of the seed and its key. Without
`stratify`, the split is the one whose share of [0, 1) holds that number (the shares laid
out in the order of the split names, sorted): a row's split
depends on nothing but the seed and its group key, so adding rows never moves others. With
`stratify`, each stratum's groups are ranked by their number and cut at the fractions of the
stratum's rows: every stratum gets its proportions exactly (up to whole groups)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..operation import Arguments, GlobalOperation
from ..schema import normalize_columns
from .minhash import _combine, string_hashes

CLUSTER = "cluster_id"  # minhash_dedup(keep_duplicates=True), semantic and exact dedup


class AssignSplitArgs(Arguments):
    fractions: dict[str, float] = Field(
        {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="Split name -> share of the rows (positive, summing to 1).")
    seed: int = Field(0, description="Another seed gives another, equally random, split.")
    group: str | None = Field(None, description="Rows with one value here share a split. "
                                                "Default: `cluster_id` when the input has "
                                                "it (a null: the row alone), else each row "
                                                "alone.")
    stratify: str | None = Field(None, description="Give each value of this column the "
                                                   "fractions exactly (a group's stratum is "
                                                   "that of its first row).")
    output: str = Field("split", description="Column receiving the split name.")

    @field_validator("fractions")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("give at least one split")
        if any(f <= 0 for f in value.values()):
            raise ValueError(f"fractions must be positive, got {value}")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {sum(value.values())} ({value})")
        return value


class AssignSplit(GlobalOperation):
    """Assign each row a split (train/validation/test by default) from a hash of the seed
    and its group key; deterministic, whatever the partitioning or the number of workers.
    The default group is the near-duplicate cluster (`cluster_id`, written by
    `minhash_dedup(keep_duplicates=True)`), so near duplicates never straddle two splits.
    With `stratify`, each stratum gets the fractions exactly. Counters: rows per split."""

    name = "assign_split"
    Args = AssignSplitArgs
    drops_rows = False
    resolves = True

    def _group(self, schema: dict) -> str | None:
        if self.args.group is not None:
            return self.args.group
        return CLUSTER if CLUSTER in schema else None

    def resolve_consumes(self, schema: dict) -> dict:
        cols: dict[str, Any] = {"_id": "int64"}
        group = self._group(schema)
        if group is not None:
            cols[group] = "any"
        if self.args.stratify is not None:
            cols[self.args.stratify] = "any"
        return normalize_columns(cols)

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns({self.args.output: "string"})

    def scan(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        group = self._group({n: None for n in batch.schema.names})
        ids = pc.cast(batch.column("_id"), pa.string())
        alone = pc.binary_join_element_wise(pa.scalar("\x00row "), ids, "")  # apart from values
        if group is None:
            key = alone
        else:  # a null group: the row alone
            values = pc.cast(batch.column(group), pa.string())
            key = pc.if_else(pc.is_null(values), alone, values)
        if isinstance(key, pa.ChunkedArray):
            key = key.combine_chunks()
        hashed = _combine([string_hashes(key)], salt=self.args.seed & 0xFFFFFFFFFFFFFFFF)
        out = {"_key": pa.array(hashed, pa.uint64())}
        if self.args.stratify is not None:
            out["stratum"] = pc.cast(batch.column(self.args.stratify), pa.string())
        return out

    def reduce(self, bucket: Any) -> Any:
        return bucket  # every row goes to resolve: splits need the hashes of all groups

    def resolve(self, tables: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        # by name: the order a dict is written in is not part of the cache key
        names = sorted(self.args.fractions)
        bounds = np.cumsum([self.args.fractions[n] for n in names])
        bounds[-1] = 1.0
        if self.args.stratify is None:
            for t in tables:  # stream: each row's split from its own hash
                u = (t.column("_key").to_numpy() >> np.uint64(11)) / float(1 << 53)
                which = np.minimum(np.searchsorted(bounds, u, side="right"), len(names) - 1)
                yield self._decisions(t, which, names)
            return
        t = pa.concat_tables(list(tables))
        if t.num_rows == 0:
            return
        yield self._decisions(t, self._stratified(t, bounds), names)

    def _stratified(self, t: Any, bounds: Any) -> Any:
        """Split index of each row: in each stratum, groups ranked by hash, cut at the
        fractions of the stratum's rows (a group falls where its middle row does)."""
        import numpy as np

        key = t.column("_key").to_numpy()
        ids = t.column("_id").to_numpy()
        stratum = np.asarray(t.column("stratum").to_pylist(), dtype=object)
        # a group's stratum: its first row's
        order = np.lexsort((ids, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        group_of = np.cumsum(first) - 1
        group_key = key[order][first]
        group_stratum = stratum[order][first]
        group_size = np.bincount(group_of)
        which_group = np.empty(len(group_key), dtype=np.int64)
        for s in dict.fromkeys(group_stratum.tolist()):
            members = np.flatnonzero(group_stratum == s)
            members = members[np.argsort(group_key[members], kind="stable")]
            sizes = group_size[members]
            total = sizes.sum()
            middle = (np.cumsum(sizes) - sizes / 2.0) / total
            which_group[members] = np.minimum(np.searchsorted(bounds, middle, side="right"),
                                              len(bounds) - 1)
        which = np.empty(len(key), dtype=np.int64)
        which[order] = which_group[group_of]
        return which

    def _decisions(self, t: Any, which: Any, names: list[str]) -> dict:
        import numpy as np
        import pyarrow as pa

        for i, n in enumerate(np.bincount(which, minlength=len(names)).tolist()):
            self.count(f"rows_{names[i]}", n)
        return {"_part": t.column("_part"), "_pos": t.column("_pos"), "_id": t.column("_id"),
                self.args.output: pa.array(np.asarray(names, dtype=object)[which].tolist(),
                                           pa.string())}
