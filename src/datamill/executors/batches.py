"""Calling an operation on a batch and checking what it returns against its spec."""

from __future__ import annotations

from typing import Any

from ..dataset import Step
from ..errors import OperationError
from ..schema import type_name

PARENT_INDEX = "_parent_index"


def to_format(table: Any, fmt: str) -> Any:
    return table.to_pandas() if fmt == "pandas" else table


def _array(value: Any, typ: Any, step: Step, column: str):
    import pyarrow as pa

    try:
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            return value if value.type == typ else value.cast(typ)
        if hasattr(value, "to_numpy") and hasattr(value, "dtype") and not hasattr(value, "columns"):
            return pa.array(value, type=typ, from_pandas=True)
        return pa.array(value, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
            ValueError) as exc:
        got = getattr(value, "type", None) or getattr(value, "dtype", None) or type(value).__name__
        raise OperationError(
            f"operation {step.op.name!r} returned column {column!r} as {got}, which does not "
            f"convert to the declared {type_name(typ)}: {exc}", step=step.name) from None


def columns_of(result: Any) -> dict[str, Any]:
    """Turn a Table, RecordBatch, DataFrame or dict into {name: column}."""
    import pyarrow as pa

    if isinstance(result, (pa.Table, pa.RecordBatch)):
        return {name: result.column(name) for name in result.schema.names}
    if hasattr(result, "columns") and hasattr(result, "to_dict"):  # pandas DataFrame
        return {str(name): result[name] for name in result.columns}
    if isinstance(result, dict):
        return dict(result)
    raise TypeError(type(result).__name__)


def produced_table(step: Step, result: Any, rows: int | None, stored: bool = True):
    """Check and convert a map/expand result into a Table of the declared produced columns:
    under the names the dataset stores them as (`stored`), or as the operation named them."""
    import pyarrow as pa

    writes = step.op_writes()
    declared = {name: step.produced[column] for name, column in writes.items()}
    if not isinstance(result, (pa.Table, pa.RecordBatch, dict)) and not hasattr(result, "columns"):
        if len(declared) == 1 and step.op.kind == "map":
            result = {next(iter(declared)): result}
        else:
            raise OperationError(
                f"operation {step.op.name!r} returned {type(result).__name__}; expected a Table, "
                f"DataFrame or dict with columns {list(declared)}", step=step.name)
    cols = columns_of(result)
    missing = [c for c in declared if c not in cols]
    if missing:
        raise OperationError(f"operation {step.op.name!r} did not return declared column(s) "
                             f"{missing}; it returned {list(cols)}", step=step.name)
    arrays = {(writes[c] if stored else c): _array(cols[c], t, step, c)
              for c, t in declared.items()}
    if rows is not None:
        for c, a in arrays.items():
            if len(a) != rows:
                raise OperationError(
                    f"operation {step.op.name!r} returned {len(a)} values for column {c!r} "
                    f"from a batch of {rows} rows (a map returns one value per row)",
                    step=step.name)
    extra = {}
    if step.op.kind == "expand":
        if PARENT_INDEX not in cols:
            raise OperationError(f"expand operation {step.op.name!r} must return "
                                 f"{PARENT_INDEX!r}", step=step.name)
        extra[PARENT_INDEX] = _array(cols[PARENT_INDEX], pa.int64(), step, PARENT_INDEX)
    return pa.table({**extra, **arrays}) if (arrays or extra) else None


def filter_result(step: Step, result: Any, rows: int):
    """Normalize a filter's result into (keep mask as numpy bool, reasons: one string or one
    per row). A filter that declares `produces` returns `(mask, reasons, columns)`, with
    `columns` one value per input row (see `filter_columns`)."""
    import numpy as np
    import pyarrow as pa

    reasons: Any = None
    if isinstance(result, tuple):
        result, reasons = result[:2]
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        mask = result.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        mask = np.asarray(result)
    if mask.dtype != bool or mask.shape != (rows,):
        raise OperationError(
            f"filter {step.op.name!r} returned {mask.dtype}{list(mask.shape)}; expected a "
            f"boolean mask of {rows} values (True keeps the row)", step=step.name)
    if reasons is None or isinstance(reasons, str):
        reasons = reasons or step.op.reason()
    elif isinstance(reasons, (pa.Array, pa.ChunkedArray)):
        reasons = reasons.to_pylist()
    else:
        reasons = list(reasons)
    return mask, reasons


def filter_columns(step: Step, result: Any, rows: int, stored: bool = True):
    """The produced columns of a filter that declares `produces`, as a Table of `rows` rows
    (one value per input row; the engine keeps those of the kept rows); None otherwise.
    `stored`: under the names the dataset stores them as (else as the operation named them)."""
    if not step.produced:
        return None
    if not (isinstance(result, tuple) and len(result) == 3):
        raise OperationError(
            f"filter {step.op.name!r} declares produced column(s) {list(step.op_writes())}; it "
            "must return (mask, reasons, columns) with one value per row in each column",
            step=step.name)
    return produced_table(step, result[2], rows, stored)
