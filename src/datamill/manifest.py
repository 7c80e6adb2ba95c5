"""Step records and manifests: the lineage every run leaves behind.

A step record (`steps/<key>/_SUCCESS.json`) holds the operation, its version and arguments,
its code fingerprint (`code`), the distribution that provides it (`distribution`), the cache
key, what the key is made of (`key_parts`: code, arguments, inputs) and input keys, the
columns it was pointed at (`remapped`), rows in/out, drops by reason, errors, the
operation's own counters (`Operation.count`), timings, and the files committed per
partition. The manifest (`manifest.json`) lists, for each dataset a run produced, its steps
in order and, per column, the step that produced it and its type.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .cache import canonical
from .code_fingerprint import code_fingerprint
from .dataset import Step
from .environments import environment_key, normalized
from .integrity import check_part_file
from .plan import stores_data, stores_index
from .remap import renamed
from .schema import type_name
from .storage import Workdir, atomic_write_json, part_name, read_json

SUCCESS = "_SUCCESS.json"
MANIFEST = "manifest.json"
LINEAGE = "_datamill_lineage.json"


def remapped_columns(step: Step) -> dict[str, dict[str, str]]:
    """The step's column remapping (remap.py): {"consumes"/"produces": {the operation's
    name: dataset column}}, only the names that differ; empty when none does."""
    out = {"consumes": renamed(step.op_reads()), "produces": renamed(step.op_writes())}
    return {k: v for k, v in out.items() if v}


def step_record(step: Step, partitions: dict[int, dict], wall_seconds: float) -> dict:
    dropped: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    for s in partitions.values():
        dropped.update(s.get("dropped", {}))
        counters.update(s.get("counters", {}))
    return {
        "name": step.name,
        "operation": step.op.name,
        "identity": step.op.identity(),
        "version": step.op.version,
        "kind": step.kind,
        "arguments": canonical(step.op.args),
        "on_error": step.on_error,
        "code": code_fingerprint(type(step.op)),
        "distribution": _distribution(step),
        "environment": _environment(step),
        "cache_key": step.key,
        "key_parts": step.parts.as_dict() if step.parts else None,
        "inputs": [step.parent.key] if step.parent else [],
        "rows_in": sum(s.get("rows_in", 0) for s in partitions.values()),
        "rows_out": sum(s.get("rows_out", 0) for s in partitions.values()),
        "dropped": dict(sorted(dropped.items(), key=lambda kv: -kv[1])),
        "errors": sum(s.get("errors", 0) for s in partitions.values()),
        "counters": dict(sorted(counters.items())),
        "seconds": round(sum(s.get("seconds", 0.0) for s in partitions.values()), 6),
        "wall_seconds": round(wall_seconds, 6),
        "produced": {c: type_name(t) for c, t in step.produced.items()},
        "remapped": remapped_columns(step),
        "column_order": [c for c in step.schema if not c.startswith("_")],
        "stores_index": stores_index(step),
        "stores_data": stores_data(step),
        "partitions": {str(p): s for p, s in sorted(partitions.items())},
        "units": len(partitions),
        "workers": sorted({s["worker"] for s in partitions.values() if s.get("worker")}),
    }


def _environment(step: Step) -> dict | None:
    """The requirements or image the step's operation ran with (docs/environments.md)."""
    requirements = normalized(getattr(step.op, "requirements", ()))
    image = getattr(step.op, "image", None)
    if not requirements and not image:
        return None
    out: dict = {"requirements": requirements, "key": environment_key(requirements)} \
        if requirements else {}
    if image:
        out["image"] = image
    return out


def _distribution(step: Step) -> dict[str, str] | None:
    """The distribution and version that provide the step's operation (registry.provider)."""
    from .registry import provider

    found = provider(type(step.op))
    return {"name": found[0], "version": found[1]} if found else None


def read_partition_stats(workdir: Workdir, step: Step, count: int) -> dict[int, dict]:
    out = {}
    for p in range(count):
        s = read_json(workdir.step_dir(step.key) / part_name("stats", p, "json"))
        if s is not None:
            out[p] = s
    return out


def load_record(workdir: Workdir, step: Step) -> dict | None:
    return read_json(workdir.step_dir(step.key) / SUCCESS)


def dataset_lineage(step: Step, records: dict[str, dict], cached: set[str],
                    why: dict[str, dict] | None = None) -> dict:
    """The lineage of the dataset ending at `step`: its steps (records) and its columns;
    `why` holds the reason each recomputed step recomputed (see `cache_history`)."""
    steps = []
    for s in step.chain():
        record = dict(records.get(s.key) or {"name": s.name, "cache_key": s.key})
        record.pop("partitions", None)
        record["cached"] = s.key in cached
        record["recomputed"] = None if s.key in cached else (why or {}).get(s.key)
        steps.append(record)
    columns = {c: {"type": type_name(step.schema[c]), "step": ref.step, "stored": ref.stored}
               for c, ref in step.columns.items()}
    return {"name": step.name, "steps": steps, "columns": columns,
            "arrow_schema": arrow_schema_b64(step.schema)}


def arrow_schema_b64(schema: dict) -> str:
    import base64

    import pyarrow as pa

    return base64.b64encode(pa.schema(list(schema.items())).serialize().to_pybytes()).decode()


def write_manifest(workdir: Workdir, run: dict, datasets: list[dict]) -> Path:
    manifest = {**run, "datasets": datasets}
    atomic_write_json(workdir.root / "runs" / f"{run['run_id']}.json", manifest)
    path = workdir.root / MANIFEST
    atomic_write_json(path, manifest)
    return path


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        for name in (MANIFEST, LINEAGE):
            if (path / name).exists():
                path = path / name
                break
    return json.loads(path.read_text())


def dropped_rows(workdir: str | Path, step_name: str | None = None) -> Any:
    """The rows each filter of the last run dropped, with their reasons (a pyarrow Table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wd = Workdir(workdir)
    manifest = load_manifest(wd.root)
    tables = []
    seen: set[str] = set()
    for ds in manifest["datasets"]:
        for s in ds["steps"]:
            if (step_name and s["name"] != step_name) or s["cache_key"] in seen:
                continue
            seen.add(s["cache_key"])
            for f in sorted(wd.step_dir(s["cache_key"]).glob("dropped-*.parquet")):
                check_part_file(wd, s["cache_key"], s["name"], f)
                t = pq.read_table(f)
                tables.append(t.append_column("_step", pa.array([s["name"]] * t.num_rows,
                                                                pa.string())))
    if not tables:
        return pa.table({"_id": pa.array([], pa.int64()), "_reason": pa.array([], pa.string()),
                         "_step": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")  # dedup steps add lineage


def duplicates(workdir: str | Path, row_id: int, step_name: str | None = None) -> Any:
    """The rows dropped as duplicates of the kept row `row_id` (by `drop_duplicates` or
    `minhash_dedup`, or only by step `step_name`): `_id`, `_reason`, `cluster_id` (= `row_id`),
    `cluster_size`, `_step`. Empty when the row was kept with no duplicate."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dropped_rows(workdir, step_name)
    if "cluster_id" not in table.schema.names:
        return table.slice(0, 0).append_column("cluster_id", pa.array([], pa.int64()))
    return table.filter(pc.equal(table.column("cluster_id"), pa.scalar(row_id, pa.int64())))
