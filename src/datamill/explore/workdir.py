"""What the explorer knows of a workdir: its manifest, its steps and their records.

A `RunView` is built once per workdir the explorer serves. Steps are addressed by name (as
the manifest lists them), never by a path from a request: every file read is a file of a
step the manifest names, under the workdir's `steps/` folder (a step folder that resolves
outside the workdir, through a symlink, is refused), or an input file a source step read in
place (the run's own input). Nothing here writes to the workdir.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import DatamillError
from ..manifest import LINEAGE, MANIFEST, SUCCESS, load_manifest
from ..storage import Workdir, read_json


class ExploreError(DatamillError):
    """A workdir the explorer cannot show, or a thing a request names that does not exist
    (answered 404)."""


class Unreadable(ExploreError):
    """Data the workdir names but that cannot be read as the run left it (500)."""


class BadRequest(ExploreError):
    """A request the explorer cannot answer as asked: a bad filter or parameter (400)."""


@dataclass
class StepView:
    """One step of the last run: its manifest entry, and where it sits."""

    name: str
    record: dict  # the manifest's entry (no per-partition stats)
    dataset: str  # the first dataset whose chain holds it
    position: int  # index in that dataset's chain
    inputs: list[str] = field(default_factory=list)  # names of the steps it reads

    @property
    def key(self) -> str:
        return self.record["cache_key"]

    @property
    def kind(self) -> str:
        return self.record.get("kind", "?")

    @property
    def dropped_total(self) -> int:
        return sum(self.record.get("dropped", {}).values())


class RunView:
    """A workdir as the explorer reads it. `index` is its number in the explorer's URLs."""

    def __init__(self, path: str | os.PathLike, index: int = 0):
        self.workdir = Workdir(path)
        self.index = index
        root = self.workdir.root
        if not root.is_dir():
            raise ExploreError(f"no such workdir: {root}")
        if not any((root / n).is_file() for n in (MANIFEST, LINEAGE)):
            raise ExploreError(f"no {MANIFEST} in {root}: has a pipeline run there?")
        try:
            self.manifest = load_manifest(root)
        except (OSError, ValueError) as exc:
            raise ExploreError(f"cannot read the manifest in {root}: {exc}") from exc
        self.steps: dict[str, StepView] = {}
        self.datasets: list[tuple[str, list[str]]] = []
        by_key: dict[str, str] = {}
        for ds in self.manifest.get("datasets", []):
            names = []
            for i, s in enumerate(ds.get("steps", [])):
                name = by_key.get(s["cache_key"], s["name"])
                if name in self.steps and self.steps[name].key != s["cache_key"]:
                    name = f"{name}@{s['cache_key'][:8]}"  # same name, another step
                if name not in self.steps:
                    inputs = [by_key[k] for k in s.get("inputs", []) if k in by_key]
                    self.steps[name] = StepView(name, s, ds.get("name", "?"), i, inputs)
                    by_key[s["cache_key"]] = name
                names.append(name)
            self.datasets.append((ds.get("name", "?"), names))
        self._chains: dict[str, Any] | None = None
        self.notes: list[str] = []  # shown on every page of the run
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.workdir.root

    @property
    def label(self) -> str:
        return self.root.name

    def step(self, name: str) -> StepView:
        """The step named `name`; ExploreError when the last run has none."""
        try:
            return self.steps[name]
        except KeyError:
            raise ExploreError(f"no step named {name!r} in {self.root}") from None

    def step_dir(self, step: StepView) -> Path:
        """The step's folder, refused if it resolves outside the workdir (a symlink)."""
        folder = self.workdir.step_dir(step.key)
        resolved = folder.resolve()
        if not resolved.is_relative_to(self.root / "steps"):
            raise ExploreError(f"step {step.name!r}: its folder leads outside the workdir")
        return resolved

    def files(self, step: StepView, kind: str) -> list[tuple[int, Path]]:
        """(partition, path) of the step's `kind` files (part, dropped, quarantine), each
        checked to be a regular file inside the step's folder."""
        folder = self.step_dir(step)
        out = []
        for path in sorted(folder.glob(f"{kind}-*.parquet")):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                out.append((int(path.stem.rsplit("-", 1)[1]), path))
            except ValueError:
                continue
        return out

    def full_record(self, step: StepView) -> dict:
        """The step's `_SUCCESS.json` (with per-partition stats), or its manifest entry."""
        cache = self.__dict__.setdefault("_records", {})
        if step.key not in cache:
            record = read_json(self.step_dir(step) / SUCCESS)
            cache[step.key] = record if isinstance(record, dict) else dict(step.record)
        return cache[step.key]

    def partition_rows(self, step: StepView) -> list[int]:
        """Rows out of each partition of the step, in partition order."""
        parts = self.full_record(step).get("partitions") or {}
        if not parts:
            return [int(step.record.get("rows_out", 0))] if step.record.get("rows_out") else []
        count = max(int(p) for p in parts) + 1
        return [int(parts.get(str(p), {}).get("rows_out", 0)) for p in range(count)]

    @cached_property
    def run_info(self) -> dict:
        return {k: v for k, v in self.manifest.items() if k != "datasets"}

    def chain_step(self, name: str) -> Any:
        """The `datamill.dataset.Step` of the step `name`, able to read its rows back (a
        sink reads as its input)."""
        view = self.step(name)
        if view.kind == "sink":
            if not view.inputs:
                raise ExploreError(f"step {name!r} is a sink with no recorded input")
            return self.chain_step(view.inputs[0])
        with self._lock:
            if self._chains is None:
                self._chains = self._build_chains()
        try:
            return self._chains[view.key]
        except KeyError:
            raise ExploreError(f"step {name!r} has no rows to read") from None

    def _build_chains(self) -> dict[str, Any]:
        """Cache key -> `Step`, over every dataset of the manifest."""
        from ..errors import InputError

        chains: dict[str, Any] = {}
        for ds_name, _names in self.datasets:
            reader = _recorded_reader(str(self.root), ds_name)
            try:
                for s in reader.chain():
                    chains.setdefault(s.key, s)
            except InputError as exc:
                raise Unreadable(f"cannot read the rows of {self.root}: {exc}") from exc
            self.notes += [f"the code of step {name!r} changed since the run (its input "
                           "files did not): its rows are read again with the current code"
                           for name in reader.drifted if name not in " ".join(self.notes)]
        return chains

    def visible_columns(self, name: str) -> list[str]:
        """The columns of the step's rows, in the step's order (row ids left out)."""
        return [c for c in self.chain_step(name).columns if not c.startswith("_")]

    def column_types(self) -> dict[str, str]:
        """Column name -> type name, over every dataset of the manifest."""
        out: dict[str, str] = {}
        for ds in self.manifest.get("datasets", []):
            for c, v in ds.get("columns", {}).items():
                out.setdefault(c, v.get("type", "?"))
        return out


def load_runs(paths: list[str | os.PathLike]) -> list[RunView]:
    return [RunView(p, i) for i, p in enumerate(paths)]


def _recorded_reader(root: str, dataset: str) -> Any:
    """A `ReadWorkdir` of the dataset that also accepts a source read in place whose reader's
    code changed since the run, as long as its input files are those the run read (names,
    sizes, times): `.drifted` names such steps. (A run refuses that; showing the rows is
    still right, and the row counts recorded per partition are checked when reading.)"""
    import json

    from .. import registry
    from ..errors import InputError
    from ..io.dataset import ReadWorkdir

    class RecordedReader(ReadWorkdir):  # no `name`: not registered as an operation
        drifted: list[str]

        def _source_in_place(self, record: dict) -> Any:
            try:
                return super()._source_in_place(record)
            except InputError:
                recorded = record.get("input_files")
                try:
                    op = registry.get(record["operation"])(**record["arguments"])
                    now = json.loads(op.fingerprint())
                except Exception:  # noqa: BLE001  (any failure: the strict error stands)
                    now = None
                if not recorded or now != recorded:
                    raise
                self.drifted.append(record["name"])
                return op

    reader = RecordedReader(path=root, dataset=dataset)
    reader.drifted = []
    return reader
