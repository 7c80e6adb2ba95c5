"""A row's lineage: every step it went through, the columns each step produced for it, and
where and why it left (dropped with a reason, or quarantined with its error).

The row is followed by position: its place in the source partition, then through the
`_index` of each row-changing step (an expanded row may become several). Its partition is
found from the dropped and quarantined files (one DuckDB query over their `_id`), else by
scanning the source's row ids one partition at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dataset import ID
from ..plan import stores_index
from .data import _duckdb, _sql_list
from .reading import _index, ids_of, read_at
from .workdir import RunView

MAX_COPIES = 5  # rows an expanded row became, shown per step


@dataclass
class Visit:
    step: str
    kind: str
    present: int  # rows with this id in the step's output (0: it left here or before)
    produced: list[dict] = field(default_factory=list)  # per copy: the columns it produced
    positions: list[int] = field(default_factory=list)
    dropped: str | None = None  # the reason, when the step dropped it
    error: str | None = None  # the error, when the step quarantined it
    duplicate_of: int | None = None  # the kept row, when dropped as its duplicate


@dataclass
class Lineage:
    row_id: int
    partition: int | None
    visits: list[Visit]
    dataset: str = ""


def _set_aside(run: RunView, names: list[str], row_id: int) -> dict[str, tuple[int, dict]]:
    """Step name -> (partition, the dropped or quarantined record) for the row."""
    found: dict[str, tuple[int, dict]] = {}
    for name in names:
        view = run.steps.get(name)
        if view is None or view.kind == "sink":
            continue
        for kind in ("dropped", "quarantine"):
            files = run.files(view, kind)
            if not files:
                continue
            con = _duckdb()
            try:
                names = "_id, _reason, cluster_id" if kind == "dropped" and _has_cluster(
                    files) else "_id, _reason" if kind == "dropped" else "_id, _error"
                table = con.execute(
                    f"SELECT {names}, filename FROM read_parquet("
                    f"{_sql_list([f for _p, f in files])}, filename=true, union_by_name=true) "
                    "WHERE _id = ? LIMIT 1", [row_id]).fetchall()
            finally:
                con.close()
            if table:
                row = table[0]
                part = {str(f): p for p, f in files}.get(row[-1], 0)
                found[name] = (part, {kind: row[1], "cluster_id": row[2] if len(row) > 3
                                      else None})
    return found


def _has_cluster(files: list) -> bool:
    import pyarrow.parquet as pq

    return any("cluster_id" in pq.read_schema(f).names for _p, f in files)


def row_lineage(run: RunView, row_id: int) -> list[Lineage]:
    """The row's lineage through each dataset of the run (usually one)."""
    import numpy as np

    out = []
    for ds_name, names in run.datasets:
        rows = [n for n in names if run.steps[n].kind != "sink"]
        if not rows:
            continue
        chain = run.chain_step(rows[-1]).chain()
        left = _set_aside(run, [s.name for s in chain], row_id)
        partitions = sorted({p for p, _ in left.values()})
        counts = run.partition_rows(run.step(chain[0].name))
        candidates = partitions or range(len(counts))
        partition, positions = None, np.zeros(0, np.int64)
        for p in candidates:
            positions = np.nonzero(ids_of(run, chain[0], p) == row_id)[0]
            if len(positions):
                partition = p
                break
        visits = []
        for i, step in enumerate(chain):
            if partition is not None and i > 0 and stores_index(step) and len(positions):
                positions = np.nonzero(np.isin(_index(run, step, partition), positions))[0]
            visit = Visit(step.name, step.kind, len(positions),
                          positions=[int(x) for x in positions[:MAX_COPIES]])
            record = left.get(step.name, (0, {}))[1]
            visit.dropped = record.get("dropped")
            visit.error = record.get("quarantine")
            if record.get("cluster_id") is not None and record["cluster_id"] != row_id:
                visit.duplicate_of = int(record["cluster_id"])
            produced = [c for c, ref in step.columns.items()
                        if ref.step == step.name and not c.startswith("_")]
            if produced and len(positions):
                visit.produced = read_at(run, step, partition, produced,
                                         positions[:MAX_COPIES]).to_pylist()
            visits.append(visit)
        out.append(Lineage(row_id, partition, visits, ds_name))
    return out


__all__ = ["ID", "Lineage", "Visit", "row_lineage"]
