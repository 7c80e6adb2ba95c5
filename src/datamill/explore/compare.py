"""Compare two runs: which rows flipped from kept to dropped (and back), where and why.

A run is a workdir's last run, or an earlier one of the same workdir (`runs/<run id>.json`,
whose steps are still there: steps are content-addressed, so a pipeline changed and run
again keeps the steps of its earlier run). A row's fate in a run is "kept" or (the step,
the reason) that dropped or quarantined it, read from the steps' `dropped-*.parquet` and
`quarantine-*.parquet` files. The two runs' fates are joined by row id in DuckDB, straight
over those files. Row ids name the same rows when both runs read the same input (the
comparison says when they did not). The steps whose arguments or code differ say why.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..manifest import load_manifest
from ..storage import Workdir
from .duplicates import duckdb_connection
from .rowread import RunSteps, rows_by_id

KINDS = ("kept_to_dropped", "dropped_to_kept", "reason_changed")
SNIPPET_CHARS = 400


@dataclass
class Run:
    """One side of a comparison: a workdir and one of its runs."""

    workdir: Path
    run_id: str | None  # None: the last run
    manifest: dict
    dataset: dict  # the compared dataset's lineage

    @property
    def label(self) -> str:
        return f"{self.workdir.name} @ {self.manifest.get('run_id', '?')}"


def runs_of(workdir: str | Path) -> list[dict]:
    """The runs recorded in a workdir, newest first: run_id, started, datasets."""
    out = []
    for f in sorted((Path(workdir) / "runs").glob("*.json")):
        try:
            m = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out.append({"run_id": m.get("run_id", f.stem), "started": m.get("started"),
                    "datasets": [d.get("name") for d in m.get("datasets", [])],
                    "_written": f.stat().st_mtime_ns})  # runs started in one second
    out.sort(key=lambda r: (str(r["started"] or ""), r.pop("_written")), reverse=True)
    return out


def open_run(workdir: str | Path, run_id: str | None = None,
             dataset: str | None = None) -> Run:
    """A run of `workdir` (the last one by default) and one of its datasets (the last)."""
    root = Workdir(workdir).root
    if run_id:
        known = {r["run_id"] for r in runs_of(root)}
        if run_id not in known:
            raise InputError(f"no run {run_id!r} in this workdir (runs: "
                             f"{', '.join(sorted(known)) or 'none'})", path=str(root))
        manifest = json.loads((root / "runs" / f"{run_id}.json").read_text())
    else:
        manifest = load_manifest(root)
    datasets = manifest.get("datasets", [])
    chosen = [d for d in datasets if d["name"] == dataset] if dataset else datasets[-1:]
    if not chosen:
        raise InputError(f"no dataset {dataset!r} in run {manifest.get('run_id')} "
                         f"(datasets: {', '.join(d['name'] for d in datasets) or 'none'})",
                         path=str(root))
    missing = [s["name"] for s in chosen[0]["steps"]
               if s.get("kind") != "sink" and not (root / "steps" / s["cache_key"]).is_dir()]
    if missing:
        raise InputError(f"the steps {', '.join(missing)} of run {manifest.get('run_id')} are "
                         "no longer in the workdir", path=str(root))
    return Run(root, run_id, manifest, chosen[0])


def _fates_sql(run: Run, side: str, params: dict) -> str:
    """SQL of one run's fates: `_id`, step, reason, for every row it dropped or set aside."""
    parts = []
    for n, s in enumerate(run.dataset["steps"]):
        folder = run.workdir / "steps" / s["cache_key"]
        for kind, reason in (("dropped", "_reason"), ("quarantine",
                                                      "'quarantined: ' || _error")):
            files = sorted(str(f) for f in folder.glob(f"{kind}-*.parquet"))
            if not files:
                continue
            key = f"{side}{n}{kind[0]}"
            params[f"f_{key}"] = files
            params[f"s_{key}"] = s["name"]
            parts.append(f"SELECT _id, $s_{key}::VARCHAR AS step, {reason}::VARCHAR AS reason "
                         f"FROM read_parquet($f_{key}, union_by_name = true)")
    parts.append("SELECT NULL::BIGINT AS _id, NULL::VARCHAR AS step, NULL::VARCHAR AS reason "
                 "WHERE false")
    return " UNION ALL ".join(parts)


def _joined(a: Run, b: Run, params: dict) -> str:
    return (f"WITH a AS ({_fates_sql(a, 'a', params)}), b AS ({_fates_sql(b, 'b', params)}), "
            "j AS (SELECT coalesce(a._id, b._id) AS _id, a.step AS a_step, "
            "a.reason AS a_reason, b.step AS b_step, b.reason AS b_reason FROM a "
            "FULL OUTER JOIN b ON a._id = b._id "
            "WHERE a.step IS DISTINCT FROM b.step OR a.reason IS DISTINCT FROM b.reason), "
            "k AS (SELECT *, CASE WHEN a_step IS NULL THEN 'kept_to_dropped' "
            "WHEN b_step IS NULL THEN 'dropped_to_kept' ELSE 'reason_changed' END AS kind "
            "FROM j) ")


@dataclass
class Comparison:
    a: Run
    b: Run
    rows: dict[str, tuple[int | None, int | None]]  # "read", "kept": (a, b)
    counts: dict[str, int]  # kind -> rows
    groups: list[dict]  # kind, a_step, a_reason, b_step, b_reason, rows (largest first)
    steps: list[dict]  # name, operation, status (same / changed / only in a / only in b), diff
    same_input: bool
    notes: list[str] = field(default_factory=list)


def _rows(run: Run) -> tuple[int | None, int | None]:
    steps = [s for s in run.dataset["steps"] if s.get("kind") != "sink"]
    if not steps:
        return None, None
    return steps[0].get("rows_out"), steps[-1].get("rows_out")


def step_changes(a: Run, b: Run) -> list[dict]:
    """Each step of either run, by name: the same step (cache key), or what differs: its
    arguments (name: before -> after), its code, its input."""
    sa = {s["name"]: s for s in a.dataset["steps"]}
    sb = {s["name"]: s for s in b.dataset["steps"]}
    out = []
    for name in dict.fromkeys([*sa, *sb]):
        x, y = sa.get(name), sb.get(name)
        if x is None or y is None:
            out.append({"name": name, "operation": (x or y).get("operation"),
                        "status": "only in b" if x is None else "only in a", "diff": []})
            continue
        if x.get("cache_key") == y.get("cache_key"):
            out.append({"name": name, "operation": x.get("operation"), "status": "same",
                        "diff": []})
            continue
        diff = []
        ax, ay = x.get("arguments") or {}, y.get("arguments") or {}
        for k in sorted(set(ax) | set(ay)):
            if ax.get(k) != ay.get(k):
                diff.append(f"{k}: {json.dumps(ax.get(k))} -> {json.dumps(ay.get(k))}")
        if x.get("code") != y.get("code"):
            diff.append("code changed")
        if x.get("operation") != y.get("operation"):
            diff.append(f"operation: {x.get('operation')} -> {y.get('operation')}")
        if not diff:
            diff.append("its input changed")
        out.append({"name": name, "operation": y.get("operation"), "status": "changed",
                    "diff": diff})
    return out


_lock = threading.Lock()
_flips: OrderedDict[tuple, Any] = OrderedDict()
FLIPS_KEPT = 4  # comparisons whose flipped rows stay in memory


def flips(a: Run, b: Run) -> Any:
    """The rows whose fate differs between runs `a` and `b`, by id (a pyarrow Table: `_id`,
    kind, a_step, a_reason, b_step, b_reason), joined once by DuckDB over the runs'
    files, then kept in memory (runs and their steps are immutable)."""
    key = (str(a.workdir), a.manifest.get("run_id"), a.dataset["name"],
           str(b.workdir), b.manifest.get("run_id"), b.dataset["name"])
    with _lock:
        if key in _flips:
            _flips.move_to_end(key)
            return _flips[key]
    params: dict[str, Any] = {}
    sql = _joined(a, b, params)
    con = duckdb_connection()
    try:
        rel = con.sql(sql + "SELECT _id, kind, a_step, a_reason, b_step, b_reason FROM k "
                      "ORDER BY _id", params=params)
        table = (getattr(rel, "to_arrow_table", None) or rel.arrow)()  # DuckDB 2 / 1.x
    finally:
        con.close()
    with _lock:
        _flips[key] = table
        while len(_flips) > FLIPS_KEPT:
            _flips.popitem(last=False)
    return table


def compare(a: Run, b: Run) -> Comparison:
    """How run `b`'s rows fared against run `a`'s: counts per kind of flip and per
    (step, reason) on each side, and the steps that differ."""
    table = flips(a, b)
    keys = ["kind", "a_step", "a_reason", "b_step", "b_reason"]
    grouped = table.group_by(keys, use_threads=False).aggregate([("_id", "count")])
    groups = sorted(({**{k: r[k] for k in keys}, "rows": int(r["_id_count"])}
                     for r in grouped.to_pylist()),
                    key=lambda g: (-g["rows"], *(str(g[k] or "") for k in keys)))[:200]
    counts = {k: sum(g["rows"] for g in groups if g["kind"] == k) for k in KINDS}
    if len(grouped) > 200:  # counts from every group, not only those shown
        import pyarrow.compute as pc

        counts = {k: int(pc.sum(pc.equal(table.column("kind"), k)).as_py() or 0)
                  for k in KINDS}
    source_a = next((s for s in a.dataset["steps"] if s.get("kind") == "source"), {})
    source_b = next((s for s in b.dataset["steps"] if s.get("kind") == "source"), {})
    same_input = source_a.get("cache_key") == source_b.get("cache_key")
    notes = [] if same_input else [
        "the two runs read different inputs: a row id names the same row in both only if "
        "the input files are the same (or keep their order)"]
    return Comparison(
        a, b, {"read": (_rows(a)[0], _rows(b)[0]), "kept": (_rows(a)[1], _rows(b)[1])},
        counts, groups, step_changes(a, b), same_input, notes)


def flipped_rows(a: Run, b: Run, kind: str | None = None, offset: int = 0,
                 limit: int = 50, with_content: bool = True) -> tuple[int, list[dict]]:
    """(how many, a page of) rows whose fate differs, by id: `_id`, kind, a_step, a_reason,
    b_step, b_reason, and a snippet of its text from the run that dropped it."""
    import pyarrow.compute as pc

    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown kind of flip {kind!r} (kinds: {', '.join(KINDS)})")
    table = flips(a, b)
    if kind:
        table = table.filter(pc.equal(table.column("kind"), kind))
    out = [{**r, "_id": int(r["_id"]), "text": None}
           for r in table.slice(max(0, int(offset)), max(0, int(limit))).to_pylist()]
    if with_content and out:
        _add_snippets(a, b, out)
    return table.num_rows, out


def _add_snippets(a: Run, b: Run, rows: list[dict]) -> None:
    """A text snippet of each row, read as the step that dropped it received it."""
    import pyarrow as pa

    from .rowread import column_types

    wanted: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        side, step = ("b", r["b_step"]) if r["b_step"] else ("a", r["a_step"])
        wanted.setdefault((side, step), []).append(r)
    loaded: dict[str, RunSteps] = {}
    for (side, step_name), group in wanted.items():
        run = b if side == "b" else a
        if side not in loaded:
            loaded[side] = RunSteps(run.workdir, {**run.manifest, "datasets": [run.dataset]})
        steps = loaded[side]
        step = steps.by_name.get(step_name)
        if step is None:
            continue
        parent = step.parent or step
        types = column_types(steps, parent)
        text = next((c for c in ("text", "content", "chunk", "caption") if c in types), None) \
            or next((c for c, t in types.items() if pa.types.is_string(t)
                     or pa.types.is_large_string(t)), None)
        if text is None:
            continue
        found = {r["_id"]: r for r in rows_by_id(steps, parent, [r["_id"] for r in group],
                                                  [text])}
        for r in group:
            value = found.get(r["_id"], {}).get(text)
            if isinstance(value, str) and len(value) > SNIPPET_CHARS:
                value = value[:SNIPPET_CHARS] + "\u2026"
            r["text"] = value
            r["text_column"] = text
