"""Continue from an earlier run: read a dataset that a workdir's manifest describes.

The dataset is read by reference (no copy): its columns come from the steps stored in that
workdir, which may have been moved or copied elsewhere since (paths inside are relative).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..errors import InputError
from ..operation import Arguments, SourceOperation


class ReadWorkdirArgs(Arguments):
    path: str = Field(description="A workdir of an earlier run (or its manifest.json).")
    dataset: str | None = Field(None, description="Which dataset of the manifest (the name of "
                                                  "its last step); default: the last one.")

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        from .files import absolute

        return absolute(value)


class _Recorded:
    """Stands in for a step's operation when only its record is known."""

    def __init__(self, record: dict):
        self.kind = record.get("kind", "map")
        self.name = record.get("operation", record["name"])
        self.drops_rows = bool(record.get("stores_index", False))
        self.materialize = bool(record.get("stores_data", True))


class ReadWorkdir(SourceOperation):
    """Read the dataset an earlier run produced, from its workdir, keeping its row ids."""

    name = "read_workdir"
    Args = ReadWorkdirArgs
    materialize = False

    def __init__(self, **arguments: Any):
        super().__init__(**arguments)
        self._target: Any = None
        self._lineage: dict | None = None

    @property
    def root(self) -> Path:
        path = Path(self.args.path).expanduser().resolve()
        return path.parent if path.is_file() else path

    def lineage(self) -> dict:
        if self._lineage is None:
            from ..manifest import load_manifest

            try:
                manifest = load_manifest(self.root)
            except (OSError, ValueError) as exc:
                raise InputError(f"not a datamill workdir ({exc})", path=str(self.root)) from None
            datasets = manifest.get("datasets", [])
            if not datasets:
                raise InputError("the manifest lists no dataset", path=str(self.root))
            wanted = self.args.dataset
            chosen = [d for d in datasets if d["name"] == wanted] if wanted else datasets[-1:]
            if not chosen:
                names = [d["name"] for d in datasets]
                raise InputError(f"no dataset named {wanted!r} (datasets: {names})",
                                 path=str(self.root))
            self._lineage = chosen[0]
        return self._lineage

    def _steps(self) -> Any:
        from ..dataset import ColumnRef

        parent = self.chain()[-1]
        lineage = self.lineage()
        columns = {c: ColumnRef(v["step"], v["stored"]) for c, v in lineage["columns"].items()}
        parent.columns = columns
        parent.schema = self.schema()
        return parent

    def chain(self) -> list[Any]:
        """The dataset's steps (sinks left out), each with the columns it exposes (as
        `ColumnRef`s: the step that stored each), so that any step's rows can be read back.
        Types are not recorded per step: `schema` holds the column names only."""
        from ..dataset import Step

        steps: list[Any] = []
        columns: dict = {}
        for record in self.lineage()["steps"]:
            if record.get("kind") == "sink":
                continue
            op: Any = _Recorded(record)
            if record.get("kind") == "source" and not record.get("stores_data", True):
                op = self._source_in_place(record)
            columns = _columns_after(record, columns)
            order = record.get("column_order") or []  # the step's column order, if recorded
            columns = {c: columns[c] for c in sorted(columns, key=lambda c: (
                c not in order, order.index(c) if c in order else 0))}
            steps.append(Step(name=record["name"], op=op, parent=steps[-1] if steps else None,
                              key=record["cache_key"], schema=dict.fromkeys(columns),
                              columns=columns, on_error=record.get("on_error", "raise")))
        return steps

    def _source_in_place(self, record: dict) -> Any:
        """Rebuild a source that the earlier run read in place (not copied into the workdir),
        and check that its files are still those the run read."""
        from .. import registry
        from ..dataset import LazyDataset
        from ..errors import DatamillError

        op = registry.get(record["operation"])(**record["arguments"])
        what = f"the input of step {record['name']!r} ({record['operation']})"
        try:
            key = LazyDataset._root(op, step_name=record["name"]).step.key
        except InputError as exc:
            error = InputError(f"{exc}; {what} is read in place by the workdir {self.root}, "
                               "so its files must stay where they were")
            error.path, error.line = exc.path, exc.line
            raise error from None
        except DatamillError as exc:
            raise InputError(f"cannot rebuild {what}: {exc}", path=str(self.root)) from None
        if key != record["cache_key"]:
            raise InputError(
                f"{what} changed since the run that produced this workdir (file names, sizes "
                "or modification times differ: its files are read in place, not copied). "
                f"Path: {record['arguments'].get('path')}", path=str(self.root))
        return op

    def target(self) -> Any:
        if self._target is None:
            self._target = self._steps()
        return self._target

    def schema(self) -> dict:
        import pyarrow as pa

        raw = base64.b64decode(self.lineage()["arrow_schema"])
        schema = pa.ipc.read_schema(pa.py_buffer(raw))
        return {f.name: f.type for f in schema if f.name != "_id"}

    def fingerprint(self) -> str:
        self.target()  # fail now, naming the file, if data read in place is gone or changed
        return self.lineage()["steps"][-1]["cache_key"]

    def partitions(self) -> list[int]:
        first = self.lineage()["steps"][0]
        return list(range(int(first.get("partition_count", 0))))

    def read(self, partition: int, columns: list[str] | None) -> Iterator[Any]:
        from ..reader import read_columns
        from ..storage import Workdir

        target = self.target()
        names = [c for c in (columns or list(target.columns)) if c in target.columns]
        if "_id" not in names:
            names.insert(0, "_id")
        table = read_columns(Workdir(self.root), target, partition,
                             [target.columns[c] for c in names])
        yield table.rename_columns(names)


def _columns_after(record: dict, columns: dict) -> dict:
    """The columns a recorded step exposes, from those of its parent: what it produced
    replaces or adds; a projection (select, drop, rename) is replayed from its arguments."""
    from .. import registry
    from ..dataset import ID, PARENT_ID, ColumnRef

    name, kind = record["name"], record.get("kind")
    produced = list(record.get("produced", {}))
    if kind == "source":
        return {c: ColumnRef(name, c) for c in dict.fromkeys([ID, *produced])}
    if kind == "project":
        try:
            op = registry.get(record["operation"])(**record.get("arguments", {}))
            mapping = op.project(dict.fromkeys(c for c in columns if not c.startswith("_")))
        except Exception:  # noqa: BLE001 - not importable here: keep the parent's columns
            return dict(columns)
        out = {ID: columns[ID], **{new: columns[old] for new, old in mapping.items()
                                   if old in columns}}
        if PARENT_ID in columns:
            out[PARENT_ID] = columns[PARENT_ID]
        return out
    out = dict(columns)
    for c in produced:
        out[c] = ColumnRef(name, c)
    if kind == "expand":
        out[ID] = ColumnRef(name, ID)
        out[PARENT_ID] = ColumnRef(name, PARENT_ID)
    return out
