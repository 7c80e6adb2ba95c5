"""Checking that an operation keeps the promises of its spec, for its author's tests:

    from datamill.testing import check_operation
    check_operation(WordCount, pa.table({"text": ["a b", None, ""]}), min_length=2)

`check_operation` runs the operation through the engine (the local executor, one worker, a
temporary workdir) on the sample, on an empty input and on the sample with nulls in the
columns it consumes (twice on the sample when it says it is deterministic), calls it on a
batch of no rows, and checks that it and its arguments are documented. Every broken promise
is listed in one AssertionError.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatamillError
from .schema import normalize_columns, type_name


@dataclass
class Checked:
    """What the sample gave: the output rows (visible columns) and the rows dropped, with
    `_id` and `_reason`."""

    output: Any
    dropped: Any
    problems: list[str] = field(default_factory=list)


def check_operation(op: Any, sample: Any, **arguments: Any) -> Checked:
    """Check the contract of operation class `op` on `sample` (a pyarrow Table, a list of
    row dicts, a dict of columns or a pandas DataFrame) with `arguments`:

    - the operation and each of its arguments are documented (a docstring; a `description`
      for every argument);
    - on the sample, the empty input and the sample with its consumed columns null in every
      other row, it runs and returns its declared produced columns, with their Arrow types
      (a map keeps every row); called on a batch of no rows, it answers as its kind must;
    - when `op.deterministic`, two runs give the same rows and drops.

    Returns what the sample gave (`Checked`); raises AssertionError listing every problem."""
    import pyarrow as pa

    from .operation import Operation

    if not (isinstance(op, type) and issubclass(op, Operation)):
        raise TypeError(f"check_operation takes an Operation class, got {op!r}")
    table = _as_table(sample)
    instance = op(**arguments)
    consumed = instance.resolve_consumes(dict(zip(table.schema.names, table.schema.types)))
    missing = [c for c in consumed if c not in table.schema.names]
    if missing:
        raise ValueError(f"the sample lacks column(s) {missing} that {op.name!r} consumes "
                         f"(sample columns: {table.schema.names})")
    problems = _undocumented(op)
    with tempfile.TemporaryDirectory(prefix="datamill-check-") as tmp:
        root = Path(tmp)
        result = _run(op, arguments, table, root / "sample", problems, "the sample")
        _run(op, arguments, table.slice(0, 0), root / "empty", problems, "an empty input")
        _empty_batch(op, arguments, root / "sample" / "input.parquet", problems)
        nulled = _with_nulls(table, list(consumed))
        if nulled is not None:
            _run(op, arguments, nulled, root / "nulls", problems,
                 "the sample with nulls in " + ", ".join(map(repr, consumed)))
        if getattr(op, "deterministic", True) and result is not None:
            again = _run(op, arguments, table, root / "again", problems, "the sample again")
            if again is not None and not _same(result, again):
                problems.append("two runs on the same sample differ, but the operation says "
                                "it is deterministic (set `deterministic = False` if it is "
                                "not)")
    if problems:
        raise AssertionError(f"operation {op.name!r} breaks its contract:\n- "
                             + "\n- ".join(problems))
    assert result is not None
    return Checked(result[0], result[1] if result[1] is not None else pa.table({}))


def _undocumented(op: type) -> list[str]:
    problems = []
    if not op.description():
        problems.append("it has no docstring (its summary in `datamill ops list`)")
    for name, spec in op.Args.model_fields.items():
        if not (spec.description or "").strip():
            problems.append(f"argument {spec.alias or name!r} has no description "
                            "(Field(..., description=...))")
    return problems


def _run(op: type, arguments: dict, table: Any, root: Path, problems: list[str],
         what: str) -> tuple[Any, Any] | None:
    """Run the operation on `table` through the engine; note what goes wrong."""
    import pyarrow.parquet as pq

    from .rows import dropped_rows
    from .running import Dataset

    root.mkdir(parents=True)
    pq.write_table(table, root / "input.parquet")
    try:
        ds = Dataset.read(root / "input.parquet").apply(op, **arguments)
        output = ds.collect(root / "work", workers=1, progress=False)
    except (DatamillError, Exception) as exc:  # noqa: BLE001 - every failure is a finding
        problems.append(f"on {what}: {type(exc).__name__}: {exc}")
        return None
    step = ds.step
    for column, expected in normalize_columns(step.produced).items():
        if column not in output.schema.names:
            problems.append(f"on {what}: the output lacks produced column {column!r}")
        elif output.schema.field(column).type != expected:
            problems.append(f"on {what}: column {column!r} is "
                            f"{type_name(output.schema.field(column).type)}, declared "
                            f"{type_name(expected)}")
    if op.kind == "map" and output.num_rows != table.num_rows:
        problems.append(f"on {what}: a map returned {output.num_rows} rows for "
                        f"{table.num_rows}")
    dropped = dropped_rows(root / "work")
    return output, dropped.drop_columns(["_step"]).sort_by("_id") \
        if "_step" in dropped.column_names else dropped


def _empty_batch(op: type, arguments: dict, path: Path, problems: list[str]) -> None:
    """Call the operation on a batch of no rows (an input may hold none, a filter before
    it may drop them all), and check the answer as the engine does."""
    import pyarrow.parquet as pq

    from .executors.batches import (
        columns_of,
        filter_columns,
        filter_result,
        produced_table,
        to_format,
    )
    from .running import Dataset

    try:
        step = Dataset.read(path).apply(op, **arguments).step
    except Exception:  # noqa: BLE001 - the run on the sample reported it
        return
    reads = step.op_reads()
    empty = pq.read_table(path, columns=list(reads.values())).slice(0, 0) \
        .rename_columns(list(reads))
    instance = step.op
    try:
        instance.setup()
        try:
            batch = to_format(empty, instance.batch_format)
            if op.kind == "global":
                if "_key" not in columns_of(instance.scan(batch)):
                    problems.append("on an empty batch: scan returned no '_key' column")
            elif op.kind == "filter":
                result = instance.process(batch)
                filter_result(step, result, 0)
                filter_columns(step, result, 0)
            elif op.kind in ("map", "expand"):
                out = produced_table(step, instance.process(batch), 0 if op.kind == "map"
                                     else None)
                if out is not None and out.num_rows:
                    problems.append(f"on an empty batch: {out.num_rows} rows came back")
        finally:
            instance.teardown()
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        problems.append(f"on an empty batch: {type(exc).__name__}: {exc}")


def _same(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return a[0].equals(b[0]) and a[1].equals(b[1])


def _with_nulls(table: Any, columns: list[str]) -> Any:
    """`table` with `columns` null in every other row (None when it has no rows)."""
    import pyarrow as pa

    if not table.num_rows or not columns:
        return None
    for name in columns:
        column = table.column(name)
        values = [None if i % 2 == 0 else v for i, v in enumerate(column.to_pylist())]
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array(values, type=column.type))
    return table


def _as_table(sample: Any) -> Any:
    import pyarrow as pa

    if isinstance(sample, pa.Table):
        return sample
    if isinstance(sample, pa.RecordBatch):
        return pa.Table.from_batches([sample])
    if isinstance(sample, list):
        return pa.Table.from_pylist(sample)
    if isinstance(sample, dict):
        return pa.table(sample)
    if hasattr(sample, "columns") and hasattr(sample, "to_dict"):
        return pa.Table.from_pandas(sample, preserve_index=False)
    raise TypeError(f"a sample is a pyarrow Table, a list of rows, a dict of columns or a "
                    f"DataFrame, got {type(sample).__name__}")
