"""Duplicate clusters: each kept row beside the rows dropped as its duplicates.

Deduplication steps (`drop_duplicates`, `minhash_dedup`, `semantic_dedup`, `image_dedup`)
record, for every row they drop, the kept row it duplicates (`cluster_id`, the kept row's
`_id`) and the cluster's size. Clusters are listed with DuckDB straight over those
`dropped-*.parquet` files (largest first, paged); a cluster's rows are read back with
`rowread` (only their row groups). Text that differs between the kept row and a duplicate
is diffed word by word here, on the server; the template escapes every piece.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .rowread import RunSteps, column_types, dropped_files, is_image_type, rows_by_id, visible

MAX_DIFF_TOKENS = 3000  # words (and the spaces between) compared per text; the rest is cut
MAX_CLUSTER_ROWS = 50  # duplicates shown per cluster (the count says how many there are)
MAX_TEXT_CHARS = 20_000  # characters of a text value shown
MIN_DIFF_WORDS = 3  # a text column is diffed when a value has more words than this


def duckdb_connection() -> Any:
    """An in-memory DuckDB with bounded memory and threads (the explorer serves many pages
    from one process)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '256MB'")
    con.execute("SET threads = 2")
    return con


def dedup_steps(steps: RunSteps) -> list[str]:
    """Names of the run's steps that recorded duplicate clusters (`cluster_id`)."""
    return list(steps.memo("dedup_steps", lambda: _dedup_steps(steps)))


def _dedup_steps(steps: RunSteps) -> list[str]:
    import pyarrow.parquet as pq

    out = []
    for name, record in steps.records.items():
        if record.get("kind") == "sink":
            continue
        files = dropped_files(steps, name) if name in steps.by_name else []
        if any("cluster_id" in pq.read_schema(f).names for f in files):
            out.append(name)
    return out


@dataclass
class ClusterPage:
    step: str
    clusters: list[dict]  # cluster_id (the kept row's id), dropped, size
    total_clusters: int
    total_dropped: int
    offset: int
    limit: int


def clusters(steps: RunSteps, step_name: str, offset: int = 0, limit: int = 50) -> ClusterPage:
    """The clusters of dedup step `step_name`, largest first (then by kept id)."""
    if step_name not in dedup_steps(steps):
        raise InputError(f"step {step_name!r} records no duplicate clusters "
                         f"(steps that do: {', '.join(dedup_steps(steps)) or 'none'})",
                         path=str(steps.workdir.root))
    table = steps.memo(("clusters", step_name), lambda: _cluster_table(steps, step_name))
    import pyarrow.compute as pc

    page = table.slice(max(0, int(offset)), max(0, int(limit))).to_pylist()
    return ClusterPage(step_name, page, table.num_rows,
                       int(pc.sum(table.column("dropped")).as_py() or 0), offset, limit)


def _cluster_table(steps: RunSteps, step_name: str) -> Any:
    """Every cluster of the step, largest first (then by kept id): cluster_id, dropped,
    size; grouped by DuckDB over the step's dropped files, once."""
    files = [str(f) for f in dropped_files(steps, step_name)]
    con = duckdb_connection()
    try:
        rel = con.sql(
            "SELECT cluster_id::BIGINT AS cluster_id, count(*)::BIGINT AS dropped, "
            "coalesce(max(cluster_size), count(*) + 1)::BIGINT AS size "
            "FROM read_parquet($files, union_by_name = true) "
            "GROUP BY cluster_id ORDER BY dropped DESC, cluster_id", params={"files": files})
        return (getattr(rel, "to_arrow_table", None) or rel.arrow)()  # DuckDB 2 / 1.x
    finally:
        con.close()


def _members(steps: RunSteps, step_name: str) -> Any:
    """The rows the step dropped as duplicates: `_id`, `_reason`, `cluster_id`, sorted by
    cluster, then id (read once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f, columns=["_id", "_reason", "cluster_id"])
              for f in dropped_files(steps, step_name)]
    table = pa.concat_tables(tables) if tables else pa.table(
        {"_id": pa.array([], pa.int64()), "_reason": pa.array([], pa.string()),
         "cluster_id": pa.array([], pa.int64())})
    return table.sort_by([("cluster_id", "ascending"), ("_id", "ascending")])


@dataclass
class Cluster:
    step: str
    kept: dict | None  # the kept row (None if it is not found among the step's input)
    duplicates: list[dict]  # each: the row, `_reason`, and `diffs` {column: segments}
    total: int  # how many rows were dropped as its duplicates
    text_columns: list[str]
    image_columns: list[str]
    other_columns: list[str] = field(default_factory=list)


def cluster(steps: RunSteps, step_name: str, kept_id: int,
            limit: int = MAX_CLUSTER_ROWS) -> Cluster:
    """The kept row `kept_id` of dedup step `step_name` and (up to `limit` of) its
    duplicates, with a word diff of each text column (of more than a few words) against the
    kept row. Image columns
    are not read (the page shows them through the thumbnail route)."""
    import pyarrow as pa

    if step_name not in dedup_steps(steps):
        raise InputError(f"step {step_name!r} records no duplicate clusters",
                         path=str(steps.workdir.root))
    step = steps.step(step_name)
    parent = step.parent or step
    types = column_types(steps, parent)
    images = [c for c in visible(parent) if c in types and is_image_type(types[c])]
    texts = [c for c in visible(parent) if c in types and (pa.types.is_string(types[c])
                                                           or pa.types.is_large_string(types[c]))]
    others = [c for c in visible(parent) if c not in images and c not in texts]
    import numpy as np

    table = steps.memo(("members", step_name), lambda: _members(steps, step_name))
    cluster_ids = table.column("cluster_id").to_numpy()
    lo, hi = np.searchsorted(cluster_ids, [int(kept_id), int(kept_id) + 1])
    found = table.slice(int(lo), int(hi - lo))
    total = found.num_rows
    members = list(zip(found.column("_id").to_pylist(), found.column("_reason").to_pylist()))
    shown = members[:limit]
    names = texts + others
    rows = rows_by_id(steps, parent, [kept_id, *[i for i, _r in shown]], names)
    by_id = {r["_id"]: r for r in rows}
    kept = by_id.get(int(kept_id))
    if kept is None and not members:
        raise InputError(f"no cluster kept by row {kept_id} in step {step_name!r}",
                         path=str(steps.workdir.root))
    dups = []
    for i, reason in shown:
        row = dict(by_id.get(i, {"_id": i}))
        row["_reason"] = reason
        row["diffs"] = {c: word_diff(_text(kept.get(c)), _text(row.get(c)))
                        for c in texts if kept is not None and _prose(kept.get(c), row.get(c))}
        dups.append(row)
    if kept is not None:
        kept = {k: (_cut(v) if k in texts else v) for k, v in kept.items()}
    return Cluster(step_name, kept, dups, total, texts, images, others)


def _prose(*values: Any) -> bool:
    """Is either value text of a few words (worth a word diff; a path or a code is not)?"""
    return any(isinstance(v, str) and len(v.split(None, MIN_DIFF_WORDS)) > MIN_DIFF_WORDS
               for v in values)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        return value[:MAX_TEXT_CHARS] + "\u2026"
    return value


_TOKEN = re.compile(r"\S+|\s+")


def word_diff(kept: str, other: str) -> list[tuple[str, str]]:
    """How `other` differs from `kept`, word by word: (tag, text) pieces in `other`'s
    order, tag "equal", "insert" (only in `other`) or "delete" (only in `kept`). Texts
    longer than MAX_DIFF_TOKENS tokens are compared on their beginning, and the rest of
    `other` follows as one "equal" or "insert" piece ("cut" when it is not compared)."""
    a = _TOKEN.findall(kept)
    b = _TOKEN.findall(other)
    rest = "".join(b[MAX_DIFF_TOKENS:])
    a, b = a[:MAX_DIFF_TOKENS], b[:MAX_DIFF_TOKENS]
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("equal", "".join(b[j1:j2])))
            continue
        if tag in ("delete", "replace") and "".join(a[i1:i2]).strip():
            out.append(("delete", "".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            out.append(("insert", "".join(b[j1:j2])))
    if rest:
        out.append(("cut", rest[:MAX_TEXT_CHARS]))
    return _merged(out)


def _merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent pieces of one tag joined."""
    out: list[tuple[str, str]] = []
    for tag, text in pieces:
        if out and out[-1][0] == tag:
            out[-1] = (tag, out[-1][1] + text)
        elif text:
            out.append((tag, text))
    return out


def similarity(pieces: list[tuple[str, str]]) -> float:
    """The share of `other`'s characters that are equal to the kept text's."""
    same = sum(len(t) for tag, t in pieces if tag == "equal")
    total = sum(len(t) for tag, t in pieces if tag != "delete")
    return 1.0 if total == 0 else same / total
