"""A map and a filter from a user's Python function, over batches or over rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from ..operation import Arguments, FilterOperation, MapOperation


class PythonMapArgs(Arguments):
    function: Callable = Field(description="fn(batch) -> columns, or fn(row: dict) -> dict "
                                           "with row=True. Part of the cache key by its source.")
    outputs: dict[str, Any] = Field(description="{column: type} the function returns "
                                                "(`Dataset.map`'s `produces`).")
    inputs: list[str] | None = Field(None, description="Columns the function reads (default: "
                                                       "all; `Dataset.map`'s `consumes`).")
    row: bool = Field(False, description="Call the function once per row with a dict.")
    batch_format: Literal["arrow", "pandas"] = Field("arrow", description="Batch type passed.")


class PythonMap(MapOperation):
    """Add or replace columns with a Python function of a batch (or of a row)."""

    name = "python_map"
    Args = PythonMapArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in (self.args.inputs or list(schema))}

    def resolve_produces(self, schema: dict) -> dict:
        from ..schema import normalize_columns

        return normalize_columns(self.args.outputs)

    @property
    def batch_format(self) -> str:  # type: ignore[override]
        return "arrow" if self.args.row else self.args.batch_format

    def process(self, batch: Any) -> Any:
        fn = self.args.function
        if not self.args.row:
            return fn(batch)
        rows = [fn(r) for r in batch.to_pylist()]
        return {c: [r[c] for r in rows] for c in self.args.outputs}


class PythonFilterArgs(Arguments):
    function: Callable = Field(description="fn(batch) -> mask or (mask, reasons); with "
                                           "row=True fn(row: dict) -> bool or (bool, reason).")
    inputs: list[str] | None = Field(None, description="Columns the function reads (default: "
                                                       "all; `Dataset.filter`'s `consumes`).")
    row: bool = Field(False, description="Call the function once per row with a dict.")
    reason: str = Field("python_filter", description="Drop reason when the function gives none.")
    batch_format: Literal["arrow", "pandas"] = Field("arrow", description="Batch type passed.")


class PythonFilter(FilterOperation):
    """Keep the rows for which a Python function says True."""

    name = "python_filter"
    Args = PythonFilterArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in (self.args.inputs or list(schema))}

    @property
    def batch_format(self) -> str:  # type: ignore[override]
        return "arrow" if self.args.row else self.args.batch_format

    def reason(self) -> str:
        return self.args.reason

    def process(self, batch: Any) -> Any:
        import numpy as np

        fn = self.args.function
        if not self.args.row:
            result = fn(batch)
            if isinstance(result, tuple):
                return result
            return np.asarray(result, dtype=bool) if not hasattr(result, "type") else result
        keep, reasons = [], []
        for r in batch.to_pylist():
            out = fn(r)
            ok, why = out if isinstance(out, tuple) else (out, None)
            keep.append(bool(ok))
            reasons.append(why)
        return np.asarray(keep, dtype=bool), reasons
