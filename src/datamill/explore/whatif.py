"""Threshold what-if: move a filter's thresholds and see which rows would flip, without
re-running the pipeline.

A filter "whose stats are columns" (the Gopher, C4 and FineWeb filters reading their
`*_stats` columns, `language_filter` reading `language_score`, ...) decides from columns
that earlier steps stored. So its decision under other thresholds is the same operation,
built with the new arguments, applied to those stored columns: exactly what a re-run would
decide, at the cost of reading a few numeric columns (never the text). Rows whose new verdict
differs from the one the run recorded (`dropped-*.parquet`) are the flips; a sample of them
is read back with their content through `rowread`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..dataset import ID, Step
from ..errors import ArgumentError, InputError
from ..reader import read_columns
from .rowread import RunSteps, column_types, dropped_files, rows_by_id

MAX_SAMPLE = 50
BEFORE = "_before"  # the reason the run dropped a row for (null: kept), in the inputs file
SNIPPET_CHARS = 600


@dataclass
class Knob:
    """A numeric argument of a filter: its name, current value, type and description."""

    name: str
    value: float | int | None
    kind: str  # "int" or "float"
    optional: bool
    description: str


@dataclass
class Candidate:
    step: str
    operation: str
    consumed: list[str]
    knobs: list[Knob]


def _numeric_kind(annotation: Any) -> tuple[str | None, bool]:
    """("int" | "float" | None, accepts None) for a pydantic field's annotation."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    optional = False
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return None, optional
        annotation = rest[0]
    if annotation is bool:
        return None, optional
    if annotation is int:
        return "int", optional
    if annotation is float:
        return "float", optional
    return None, optional


def _rebuild(record: dict, changes: dict | None = None) -> Any:
    """The step's operation, built from its recorded arguments (and `changes`)."""
    from .. import registry

    try:
        cls = registry.get(record["operation"])
    except Exception as exc:  # noqa: BLE001  (an operation defined in a pipeline file)
        raise InputError(f"operation {record['operation']!r} of step {record['name']!r} is "
                         f"not in the catalogue: {exc}") from None
    args = {**(record.get("arguments") or {}), **(changes or {})}
    try:
        return cls(**args)
    except Exception as exc:  # pydantic's validation error, named
        raise ArgumentError(f"step {record['name']!r}: {' '.join(str(exc).split())}") from None


def _consumed(op: Any, parent: Step) -> list[str]:
    try:
        consumed = op.resolve_consumes({c: None for c in parent.columns})
    except Exception:  # noqa: BLE001  (consumes that need the column types)
        consumed = op._template(op.consumes)
    return [c for c in consumed if c in parent.columns]


def candidates(steps: RunSteps) -> list[Candidate]:
    """The run's filters that decide from stored numeric columns and have numeric
    arguments to move."""
    return list(steps.memo("whatif_candidates", lambda: _candidates(steps)))


def _candidates(steps: RunSteps) -> list[Candidate]:
    import pyarrow as pa

    out = []
    for name, record in steps.records.items():
        if record.get("kind") != "filter" or name not in steps.by_name:
            continue
        try:
            op = _rebuild(record)
        except (InputError, ArgumentError):
            continue
        step = steps.by_name[name]
        if step.parent is None:
            continue
        consumed = _consumed(op, step.parent)
        typ = column_types(steps, step.parent)
        numeric = [c for c in consumed if c in typ and (pa.types.is_integer(typ[c])
                                                         or pa.types.is_floating(typ[c]))]
        texts = [c for c in consumed if c in typ and (pa.types.is_large_string(typ[c]) or (
            pa.types.is_string(typ[c]) and c == getattr(op.args, "column", None)))]
        knobs = knobs_of(op)
        if numeric and not texts and knobs:
            out.append(Candidate(name, record["operation"], consumed, knobs))
    return out


def knobs_of(op: Any) -> list[Knob]:
    out = []
    for fname, info in type(op.args).model_fields.items():
        kind, optional = _numeric_kind(info.annotation)
        if kind:
            out.append(Knob(fname, getattr(op.args, fname), kind, optional,
                            info.description or ""))
    return out


def parse_changes(knobs: list[Knob], given: dict[str, str]) -> dict[str, Any]:
    """The arguments to change, from form values (strings); "" or "off" turns an optional
    rule off. Unknown names and non-numbers are errors naming them."""
    by_name = {k.name: k for k in knobs}
    changes: dict[str, Any] = {}
    for name, raw in given.items():
        if name not in by_name:
            from ..errors import did_you_mean

            raise ArgumentError(f"no numeric argument {name!r}{did_you_mean(name, list(by_name))}"
                                f" (arguments: {', '.join(by_name)})")
        knob = by_name[name]
        text = str(raw).strip()
        if text.lower() in ("", "off", "none"):
            if not knob.optional:
                raise ArgumentError(f"argument {name!r} cannot be turned off")
            value: Any = None
        else:
            try:
                value = int(text) if knob.kind == "int" else float(text)
            except ValueError:
                raise ArgumentError(f"argument {name!r}: {text[:40]!r} is not "
                                    f"{'an integer' if knob.kind == 'int' else 'a number'}"
                                    ) from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ArgumentError(f"argument {name!r} must be a finite number")
        if value != knob.value:
            changes[name] = value
    return changes


@dataclass
class WhatIf:
    step: str
    changes: dict[str, Any]
    rows_in: int
    kept_before: int
    kept_after: int
    newly_dropped: dict[str, int]  # new reason -> rows the run kept that would be dropped
    newly_kept: dict[str, int]  # old reason -> rows the run dropped that would be kept
    reason_changed: int  # dropped both times, for another reason
    sample: list[dict] = field(default_factory=list)  # _id, before, after, stats, snippet


def _verdict(op: Any, batch: Any) -> tuple[Any, Any]:
    """(keep mask, reason per row: an object array, None where kept) of filter `op` over
    `batch`."""
    import numpy as np
    import pyarrow as pa

    op.setup()
    result = op.process(batch)
    reasons: Any = None
    if isinstance(result, tuple):
        result, reasons = result[:2]
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        mask = result.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        mask = np.asarray(result, dtype=bool)
    if reasons is None or isinstance(reasons, str):
        out = np.full(len(mask), reasons or op.reason(), dtype=object)
    elif isinstance(reasons, (pa.Array, pa.ChunkedArray)):
        out = np.asarray(reasons.to_pylist(), dtype=object)
    else:
        out = np.asarray(reasons, dtype=object)
    out[mask] = None
    return mask, out


def what_if(steps: RunSteps, step_name: str, given: dict[str, str],
            sample: int = 20) -> WhatIf:
    """What filter step `step_name` would keep with the arguments in `given` (form values)
    instead of those it ran with: counts of flipped rows by reason, and a sample."""
    import numpy as np
    import pyarrow as pa

    found = {c.step: c for c in candidates(steps)}
    if step_name not in found:
        raise InputError(f"step {step_name!r} is not a filter that decides from stored "
                         f"numeric columns (those that are: {', '.join(found) or 'none'})",
                         path=str(steps.workdir.root))
    cand = found[step_name]
    changes = parse_changes(cand.knobs, given)
    record = steps.records[step_name]
    op = _rebuild(record, changes)
    parent = steps.by_name[step_name].parent
    assert parent is not None
    sample = max(0, min(int(sample), MAX_SAMPLE))
    result = WhatIf(step_name, changes, 0, 0, 0, {}, {}, 0)
    picked: list[tuple[int, str | None, str | None]] = []
    with pa.memory_map(str(_inputs(steps, step_name, cand.consumed))) as source:
        reader = pa.ipc.open_file(source)
        for n in range(reader.num_record_batches):
            batch = reader.get_batch(n)
            ids = batch.column(ID).to_numpy()
            codes = batch.column(BEFORE).indices.fill_null(-1).to_numpy(zero_copy_only=False)
            names = np.asarray(batch.column(BEFORE).dictionary.to_pylist() + [None],
                               dtype=object)
            before = names[codes]  # index -1: None (kept)
            now_kept, after = _verdict(op, pa.Table.from_batches([batch]).select(
                cand.consumed))
            was_kept = codes < 0
            result.rows_in += batch.num_rows
            result.kept_before += int(was_kept.sum())
            result.kept_after += int(now_kept.sum())
            dropped_now = np.nonzero(was_kept & ~now_kept)[0]
            kept_now = np.nonzero(~was_kept & now_kept)[0]
            both = np.nonzero(~was_kept & ~now_kept)[0]
            other = both[np.not_equal(before[both], after[both])]
            for r, k in Counter(after[dropped_now].tolist()).items():
                result.newly_dropped[r] = result.newly_dropped.get(r, 0) + k
            for r, k in Counter(before[kept_now].tolist()).items():
                result.newly_kept[r] = result.newly_kept.get(r, 0) + k
            result.reason_changed += len(other)
            flips = np.sort(np.concatenate([dropped_now, kept_now, other]))
            for i in flips[:max(0, sample - len(picked))]:
                picked.append((int(ids[i]), before[i], after[i]))
    result.sample = _sample_rows(steps, parent, cand.consumed, op, picked)
    return result


def _inputs(steps: RunSteps, step_name: str, consumed: list[str]) -> Any:
    """An Arrow file of the filter's input as the run recorded it, written once in the
    explorer's cache folder (never in the workdir): `_id`, the consumed columns, and
    `_before`, the reason the run dropped the row for (null: kept); one record batch per
    partition. Named by the fingerprint of the step's chain (keys and file checksums), so a
    recomputed step is never read stale. Memory-mapped by `what_if`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .stats import cache_dir

    step = steps.by_name[step_name]
    parent = step.parent
    assert parent is not None
    path = cache_dir() / f"whatif-{steps.fingerprint(step)}.arrow"
    if path.exists():
        return path
    dropped = {int(f.stem.rsplit("-", 1)[1]): f for f in dropped_files(steps, step_name)}
    reasons = sorted({r for f in dropped.values()
                      for r in pq.read_table(f, columns=["_reason"]).column(0).unique()
                      .to_pylist() if r is not None})
    code = {r: i for i, r in enumerate(reasons)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    writer = None
    try:
        for p in range(steps.partitions(parent)):
            refs = [parent.columns[ID], *(parent.columns[c] for c in consumed)]
            batch = read_columns(steps.workdir, parent, p, refs).rename_columns(
                [ID, *consumed])
            indices = pa.nulls(batch.num_rows, pa.int16())
            if p in dropped:
                d = pq.read_table(dropped[p], columns=["_id", "_reason"])
                where = pc.index_in(batch.column(ID), value_set=d.column("_id"))
                d_codes = pa.array([code.get(r, -1) for r in d.column("_reason").to_pylist()],
                                   pa.int16())
                indices = pc.take(d_codes, where)
            before = pa.DictionaryArray.from_arrays(indices, pa.array(reasons, pa.string()))
            table = batch.append_column(BEFORE, before).combine_chunks()
            if writer is None:
                writer = pa.ipc.new_file(str(tmp), table.schema)
            for b in table.to_batches(max_chunksize=1 << 20):
                writer.write_batch(b)
        if writer is None:
            raise InputError(f"step {step_name!r} has no partition to read")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def _sample_rows(steps: RunSteps, parent: Step, consumed: list[str], op: Any,
                 picked: list[tuple[int, str | None, str | None]]) -> list[dict]:
    import pyarrow as pa

    if not picked:
        return []
    typ = column_types(steps, parent)
    text = getattr(op.args, "column", None)
    if text not in typ:
        text = next((c for c, t in typ.items() if pa.types.is_string(t)
                     or pa.types.is_large_string(t)), None)
    names = list(dict.fromkeys([*consumed, *([text] if text else [])]))
    rows = {r[ID]: r for r in rows_by_id(steps, parent, [i for i, _b, _a in picked], names)}
    out = []
    for i, b, a in picked:
        row = rows.get(i, {})
        snippet = row.get(text) if text else None
        if isinstance(snippet, str) and len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS] + "\u2026"
        out.append({"_id": i, "before": b, "after": a, "text_column": text, "text": snippet,
                    "stats": {c: row.get(c) for c in consumed}})
    return out
