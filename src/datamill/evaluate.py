"""Retrieval evaluation: ranking metrics, evaluating an index with labelled queries, and a
sweep over pipeline settings that shares the cached prefix of every variant.

    result = evaluate_retrieval("index.lancedb/passages", queries, k=10, match="doc_id")
    result.aggregates        # {"recall@10": ..., "mrr": ..., "ndcg@10": ..., "queries": ...}
    result.per_query         # a pyarrow Table: one row per query, with its ranking

    table = sweep(build, {"size": [400, 800], "overlap": [0, 100], "model": [MODEL]},
                  queries=queries, workdir="sweep-work")

Relevance is binary (a list of relevant ids) or graded (a parallel list of grades). Ids are
those of the rows of the index (`_id` of each chunk), or of their documents: `match=` names
the column whose values the relevant ids are (`_parent_id`, a `doc_id` column carried along
by chunk_text); the ranking of chunks then becomes a ranking of documents, each document at
the rank of its best chunk.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PipelineError

__all__ = ["recall_at_k", "reciprocal_rank", "ndcg_at_k", "dedup_ranking",
           "evaluate_retrieval", "EvalResult", "sweep"]


# --- metrics ------------------------------------------------------------------------------
def _grades(relevant: Iterable | Mapping) -> dict:
    """{id: grade}: a mapping as given, an iterable of ids with grade 1; grades <= 0 are
    not relevant."""
    items = relevant.items() if isinstance(relevant, Mapping) else ((r, 1) for r in relevant)
    return {r: float(g) for r, g in items if g and float(g) > 0}


def recall_at_k(ranked: Sequence, relevant: Iterable | Mapping, k: int) -> float:
    """Share of the relevant ids found in the first k of `ranked` (nan without relevant ids)."""
    wanted = _grades(relevant)
    if not wanted:
        return math.nan
    return len(wanted.keys() & set(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence, relevant: Iterable | Mapping, k: int | None = None) -> float:
    """1 / rank of the first relevant id in the first k of `ranked`, 0 when none is there."""
    wanted = _grades(relevant)
    for rank, item in enumerate(ranked[:k] if k else ranked, 1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence, relevant: Iterable | Mapping, k: int) -> float:
    """Normalized discounted cumulative gain at k: sum of (2^grade - 1) / log2(rank + 1) over
    the first k of `ranked`, divided by the same sum for the ideal ranking. Binary relevance
    (a list of ids) is grade 1 for each. nan without relevant ids."""
    wanted = _grades(relevant)
    if not wanted:
        return math.nan
    dcg = sum((2 ** wanted[item] - 1) / math.log2(rank + 1)
              for rank, item in enumerate(ranked[:k], 1) if item in wanted)
    ideal = sorted(wanted.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg


def dedup_ranking(items: Iterable) -> list:
    """The ranking of distinct values: each at the rank of its first occurrence (a document
    ranks where its best chunk does). None values are dropped."""
    seen: set = set()
    out = []
    for item in items:
        if item is not None and item not in seen:
            seen.add(item)
            out.append(item)
    return out


# --- evaluating an index ------------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-query rankings and metrics (`per_query`, a pyarrow Table) and their means."""

    per_query: Any
    aggregates: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.aggregates.items())


def _as_table(queries: Any) -> Any:
    """A pyarrow Table from a Table, a Dataset (run in a temporary workdir), a pandas
    DataFrame, a list of dicts, or a Parquet/JSONL path."""
    import pyarrow as pa

    from .dataset import LazyDataset
    from .running import collect

    if isinstance(queries, pa.Table):
        return queries
    if isinstance(queries, LazyDataset):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="datamill-queries-") as tmp:
            return collect(queries, tmp, workers=1, progress=False)
    if isinstance(queries, (str, Path)):
        path = str(queries)
        if path.endswith((".jsonl", ".json")):
            import pyarrow.json as pj

            return pj.read_json(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if isinstance(queries, list):
        return pa.Table.from_pylist(queries)
    if hasattr(queries, "to_dict") and hasattr(queries, "columns"):  # a pandas DataFrame
        return pa.Table.from_pandas(queries, preserve_index=False)
    raise PipelineError(f"queries: expected a Table, Dataset, DataFrame, list of dicts or "
                        f"file path, got {type(queries).__name__}")


def _column_values(index: Any, column: str) -> dict:
    """{row id: value of `column`} for every row of the index (for a match column that hits
    do not carry)."""
    if column not in index.columns:
        raise PipelineError(f"match column {column!r} is not in {index.where} (columns: "
                            f"{', '.join(c for c in index.columns if c != 'embedding')})")
    id_column = index.id_column
    table = getattr(index, "table", None)
    if table is not None:  # LanceDB
        rows = table.search().select([id_column, column]).limit(table.count_rows()).to_arrow()
        return dict(zip(rows.column(id_column).to_pylist(), rows.column(column).to_pylist()))
    from psycopg import sql

    cur = index.conn.execute(sql.SQL("SELECT {}, {} FROM {}").format(
        sql.Identifier(id_column), sql.Identifier(column), sql.Identifier(index.name)))
    return dict(cur.fetchall())


def evaluate_retrieval(index: Any, queries: Any, k: int = 10, *, match: str | None = None,
                       query_column: str = "query", relevant_column: str = "relevant",
                       grades_column: str | None = None, fetch: int | None = None,
                       model: str | None = None, table: str | None = None,
                       hybrid: bool = False) -> EvalResult:
    """Search `index` (a spec for `datamill search`, or an open `datamill.search.Index`) with
    each query and score the ranking against its relevant ids.

    `queries` has a text column `query_column` and a list column `relevant_column` (ids of
    relevant rows: `_id` of chunks by default, or values of the `match` column, such as
    `_parent_id` or a document id carried by every chunk); `grades_column`, a parallel list
    of numbers, makes relevance graded (nDCG uses 2^grade - 1). With `match`, chunks are
    mapped to their document and the ranking keeps each document once, at its best chunk's
    rank; `fetch` chunks are retrieved (default: 3k with `match`, else k) so that about k
    documents are ranked. Metrics: recall@k, MRR (reciprocal rank within k), nDCG@k, hit@k;
    queries without any relevant id are left out of the means."""
    from .search import Encoder, Index, open_index

    if k < 1:
        raise PipelineError(f"k must be at least 1, got {k}")
    qt = _as_table(queries)
    for needed in (query_column, relevant_column, grades_column):
        if needed and needed not in qt.schema.names:
            raise PipelineError(f"queries have no column {needed!r} (columns: "
                                f"{', '.join(qt.schema.names)})")
    texts = qt.column(query_column).to_pylist()
    relevant = qt.column(relevant_column).to_pylist()
    grades = qt.column(grades_column).to_pylist() if grades_column else None
    depth = fetch or (3 * k if match and match != "_id" else k)
    opened = not isinstance(index, Index)
    idx = open_index(str(index), table) if opened else index
    try:
        lookup = None
        if match and match != "_id" and match != idx.id_column and match != "_parent_id" \
                and match not in ("url", "path", "title", "source", "heading_path"):
            lookup = _column_values(idx, match)
        encoder = Encoder(idx.meta, model, idx.where)
        asked = [i for i, t in enumerate(texts) if t and t.strip()]
        vectors = encoder([texts[i] for i in asked]) if asked else []
        rankings: list[list] = [[] for _ in texts]
        seconds: list[float] = [0.0] * len(texts)
        for i, vector in zip(asked, vectors):
            start = time.perf_counter()
            hits = idx.search(vector, depth, text=texts[i] if hybrid else None)
            seconds[i] = time.perf_counter() - start
            if not match or match in ("_id", idx.id_column):
                ranked = [h.id for h in hits]
            elif lookup is not None:
                ranked = [lookup.get(h.id) for h in hits]
            else:
                if hits and not any(match in h.source for h in hits):
                    raise PipelineError(f"hits of {idx.where} carry no {match!r} column")
                ranked = [h.source.get(match) for h in hits]
            rankings[i] = dedup_ranking(ranked)[:k]
    finally:
        if opened:
            idx.close()
    return _score(qt, query_column, relevant, grades, rankings, seconds, k)


def _score(qt: Any, query_column: str, relevant: list, grades: list | None, rankings: list,
           seconds: list, k: int) -> EvalResult:
    import pyarrow as pa

    rows: dict[str, list] = {"recall": [], "rr": [], "ndcg": [], "hit": []}
    for n, ranked in enumerate(rankings):
        wanted = list(relevant[n] or [])
        judged = dict(zip(wanted, grades[n])) if grades is not None and grades[n] else wanted
        rows["recall"].append(recall_at_k(ranked, judged, k))
        rows["rr"].append(reciprocal_rank(ranked, judged, k))
        rows["ndcg"].append(ndcg_at_k(ranked, judged, k))
        rows["hit"].append(float(bool(set(ranked) & set(_grades(judged)))))
    judged_rows = [n for n, r in enumerate(rows["recall"]) if not math.isnan(r)]
    for n in set(range(len(rankings))) - set(judged_rows):
        rows["rr"][n] = rows["hit"][n] = math.nan

    def mean(values: list) -> float:
        kept = [values[n] for n in judged_rows]
        return sum(kept) / len(kept) if kept else math.nan

    per_query = pa.table({
        "query": qt.column(query_column),
        "retrieved": pa.array([[str(x) for x in r] for r in rankings], pa.list_(pa.string())),
        f"recall@{k}": pa.array(rows["recall"], pa.float64()),
        "reciprocal_rank": pa.array(rows["rr"], pa.float64()),
        f"ndcg@{k}": pa.array(rows["ndcg"], pa.float64()),
        f"hit@{k}": pa.array(rows["hit"], pa.float64()),
        "search_seconds": pa.array(seconds, pa.float64()),
    })
    aggregates = {f"recall@{k}": mean(rows["recall"]), "mrr": mean(rows["rr"]),
                  f"ndcg@{k}": mean(rows["ndcg"]), f"hit@{k}": mean(rows["hit"]),
                  "queries": len(judged_rows)}
    return EvalResult(per_query, aggregates)


# --- sweeping pipeline settings -----------------------------------------------------------
def _index_of(ds: Any) -> tuple[str, str | None]:
    """(index spec, table) of a pipeline that ends in a vector sink."""
    step = ds.step
    if step.kind != "sink" or step.op.name not in ("write_lancedb", "write_pgvector"):
        raise PipelineError(f"sweep: build_pipeline must return a Dataset ending in "
                            f"write_lancedb or write_pgvector, got a {step.kind} step "
                            f"{step.name!r}")
    return step.op.args.path, step.op.args.table


def sweep(build_pipeline: Callable[..., Any], grid: Mapping[str, Sequence], queries: Any,
          workdir: str | Path, *, k: int = 10, match: str | None = None,
          output: str | Path | None = None, workers: int | None = None,
          progress: bool | None = False, **evaluate_options: Any) -> Any:
    """Build and evaluate one pipeline per combination of `grid` values, in ONE workdir.

    `build_pipeline(**setting)` returns a Dataset ending in a vector sink (each setting
    writing its own table). Cache keys are content-addressed, so each distinct prefix of the
    variants runs once: chunking with the same size and overlap is computed for the first
    model and read from the cache for the others. Returns a pyarrow Table with one row per
    setting: its parameters, the metrics of `evaluate_retrieval`, `build_seconds` (the run's
    wall time), `computed_steps` and `cached_steps`; with `output`, also writes it as
    `output`.parquet and `output`.csv."""
    import pyarrow as pa

    names = list(grid)
    settings = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
    queries = _as_table(queries)
    targets: dict[tuple, dict] = {}
    variants = []
    for setting in settings:  # build (and validate) every variant before running any
        ds = build_pipeline(**setting)
        target = _index_of(ds)
        if target in targets:
            raise PipelineError(f"sweep: settings {targets[target]} and {setting} write the "
                                f"same table {target[1]!r} at {target[0]}; give each its own")
        targets[target] = setting
        variants.append((setting, ds, target))
    from .running import run

    rows = []
    for setting, ds, target in variants:
        start = time.perf_counter()
        result = run(ds, workdir, workers=workers, progress=progress)
        seconds = time.perf_counter() - start
        cached = sum(1 for s in result.steps if s["cache_key"] in result.cached)
        evaluated = evaluate_retrieval(target[0], queries, k, match=match, table=target[1],
                                       **evaluate_options)
        rows.append({**{n: _plain(v) for n, v in setting.items()}, **evaluated.aggregates,
                     "build_seconds": round(seconds, 3),
                     "computed_steps": len(result.steps) - cached, "cached_steps": cached})
    table = pa.Table.from_pylist(rows)
    if output is not None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out.with_suffix(".parquet"))
        pcsv.write_csv(table, out.with_suffix(".csv"))
    return table


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
