"""Read a few rows of a stored step without loading its partitions: by id or by position.

A step stores only the columns it produces; the rows of step S are positions into the files
of the steps that produced their columns (through the `_index` maps of the row-changing steps
in between, see `reader.read_columns`). Here the positions of the wanted rows are mapped down
to each producer's file, and only the Parquet row groups that hold them are read, so looking
at ten rows of a partition of millions reads ten rows' groups, not the partition.

Row ids are located through a per-step, per-partition array of ids, built once per process
(8 bytes a row) and kept in a small LRU cache: steps are immutable (content-addressed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..dataset import ID, Step
from ..integrity import check_step_file
from ..manifest import SUCCESS, load_manifest
from ..plan import stores_data, stores_index
from ..reader import INDEX, read_columns, read_source_partition
from ..storage import Workdir, part_name, read_json

ID_CACHE_STEPS = 6  # id arrays of this many steps stay in memory (8 MB per million rows)


class RunSteps:
    """The steps of a workdir's last run (or of a run record), by name, able to read rows."""

    def __init__(self, workdir: str | Any, manifest: dict | None = None):
        from ..io.dataset import ReadWorkdir

        self.workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
        self.manifest = manifest if manifest is not None else load_manifest(self.workdir.root)
        self.by_name: dict[str, Step] = {}
        self.records: dict[str, dict] = {}
        self._memo: dict[Any, Any] = {}
        self._memo_lock = threading.Lock()
        for ds in self.manifest.get("datasets", []):
            reader = ReadWorkdir(path=str(self.workdir.root), dataset=ds["name"])
            reader._lineage = ds  # this run's lineage, not necessarily the last one
            for step in reader.chain():
                self.by_name.setdefault(step.name, step)
            for record in ds["steps"]:
                self.records.setdefault(record["name"], record)

    def step(self, name: str) -> Step:
        from ..errors import InputError, did_you_mean

        if name not in self.by_name:
            raise InputError(f"no step named {name!r} in this run"
                             f"{did_you_mean(name, list(self.by_name))}",
                             path=str(self.workdir.root))
        return self.by_name[name]

    def memo(self, key: Any, make: Any) -> Any:
        """`make()`, computed once per key for these steps (they are immutable)."""
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        value = make()
        with self._memo_lock:
            return self._memo.setdefault(key, value)

    def fingerprint(self, step: Step) -> str:
        """The step's cache key and the checksums of the files of its chain, as committed:
        a name for what is derived from its rows (a recomputed partition changes it)."""
        import hashlib
        import json

        h = hashlib.sha256()
        for s in step.chain():
            h.update(s.key.encode())
            record = read_json(self.workdir.step_dir(s.key) / SUCCESS) or {}
            for p, part in sorted((record.get("partitions") or {}).items()):
                h.update(json.dumps([p, part.get("checksums"), part.get("rows_out")],
                                    sort_keys=True).encode())
        return f"{step.key}-{h.hexdigest()[:16]}"

    def partitions(self, step: Step) -> int:
        record = read_json(self.workdir.step_dir(step.chain()[0].key) / SUCCESS) or {}
        return int(record.get("partition_count", 0))


_ids_lock = threading.Lock()
_ids: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()


def id_arrays(steps: RunSteps, step: Step) -> list[Any]:
    """The row ids of `step`'s output, one numpy array per partition (cached)."""
    key = (str(steps.workdir.root), step.key)
    with _ids_lock:
        if key in _ids:
            _ids.move_to_end(key)
            return _ids[key]
    arrays = [read_columns(steps.workdir, step, p, [step.columns[ID]]).column(0).to_numpy()
              for p in range(steps.partitions(step))]
    with _ids_lock:
        _ids[key] = arrays
        while len(_ids) > ID_CACHE_STEPS:
            _ids.popitem(last=False)
    return arrays


def locate(steps: RunSteps, step: Step, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Where each of `ids` is among `step`'s output rows: {id: (partition, position)}; ids
    that are not there are left out."""
    import numpy as np

    wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
    found: dict[int, tuple[int, int]] = {}
    if not len(wanted):
        return found
    for p, arr in enumerate(id_arrays(steps, step)):
        hits = np.nonzero(np.isin(arr, wanted))[0]
        for pos in hits:
            found.setdefault(int(arr[pos]), (p, int(pos)))
        if len(found) == len(set(wanted.tolist())):
            break
    return found


def _producer_positions(workdir: Workdir, step: Step, partition: int,
                        positions: Any) -> dict[int, Any]:
    """For each step i of the chain: `positions` (rows of `step`) mapped to rows of step i's
    output, composing the `_index` maps on the way down."""
    import numpy as np

    chain = step.chain()
    current = np.asarray(positions, dtype=np.int64)
    out: dict[int, Any] = {}
    for i in range(len(chain) - 1, -1, -1):
        out[i] = current
        if stores_index(chain[i]):
            idx = _read_file(workdir, chain[i], partition, [INDEX]).column(0).to_numpy()
            current = idx[current]
    return out


def _read_file(workdir: Workdir, step: Step, partition: int, columns: list[str],
               rows: Any = None) -> Any:
    """Columns of a step's committed file (checked against its commit once per process);
    only the row groups holding `rows` (positions) when given, taken in that order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    path = workdir.step_dir(step.key) / part_name("part", partition)
    check_step_file(workdir, step.key, step.name, partition, path)
    with pq.ParquetFile(path) as f:
        if rows is None:
            return f.read(columns=columns)
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.cumsum([0] + [f.metadata.row_group(g).num_rows
                                  for g in range(f.metadata.num_row_groups)])
        groups = sorted(set(np.searchsorted(starts, rows, side="right") - 1))
        if not groups:
            return f.schema_arrow.empty_table().select(columns)
        table = f.read_row_groups(groups, columns=columns)
        offset = {g: int(sum(starts[h + 1] - starts[h] for h in groups if h < g))
                  for g in groups}
        local = [offset[g] + int(r - starts[g])
                 for r, g in zip(rows, np.searchsorted(starts, rows, side="right") - 1)]
        return table.take(pa.array(local, pa.int64()))


def read_rows(steps: RunSteps, step: Step, partition: int, positions: list[int],
              names: list[str]) -> Any:
    """Columns `names` (and `_id`) of the rows at `positions` of `step`'s output in
    `partition`, in that order: a pyarrow Table."""
    import pyarrow as pa

    chain = step.chain()
    where = {s.name: i for i, s in enumerate(chain)}
    wanted = [ID, *[n for n in names if n != ID]]
    mapped = _producer_positions(steps.workdir, step, partition, positions)
    by_producer: dict[int, list[str]] = {}
    for n in wanted:
        by_producer.setdefault(where[step.columns[n].step], []).append(n)
    arrays: dict[str, Any] = {}
    for i, group in by_producer.items():
        producer = chain[i]
        stored = [step.columns[n].stored for n in group]
        if producer.kind == "source" and not stores_data(producer):
            table = read_source_partition(steps.workdir, producer, partition, stored)
            table = table.take(pa.array(mapped[i], pa.int64()))
        else:
            table = _read_file(steps.workdir, producer, partition, stored, mapped[i])
        for n, s in zip(group, stored):
            arrays[n] = table.column(s)
    return pa.table({n: arrays[n] for n in wanted})


def rows_by_id(steps: RunSteps, step: Step, ids: list[int], names: list[str]) -> list[dict]:
    """The rows `ids` of `step`'s output (columns `names`, `_id`, and where each row is:
    `_partition`, `_position`), in the order of `ids`; ids not found are left out."""
    where = locate(steps, step, ids)
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for i in ids:
        if int(i) in where:
            p, pos = where[int(i)]
            by_partition.setdefault(p, []).append((int(i), pos))
    found: dict[int, dict] = {}
    for p, pairs in by_partition.items():
        table = read_rows(steps, step, p, [pos for _i, pos in pairs], names)
        for (i, pos), row in zip(pairs, table.to_pylist()):
            found[i] = {**row, "_partition": p, "_position": pos}
    return [found[int(i)] for i in ids if int(i) in found]


def visible(step: Step) -> list[str]:
    return [c for c in step.columns if not c.startswith("_")]


def dropped_files(steps: RunSteps, name: str) -> list[Any]:
    """The `dropped-*.parquet` files of step `name`, each checked against its commit."""
    step = steps.step(name)
    out = []
    for f in sorted(steps.workdir.step_dir(step.key).glob("dropped-*.parquet")):
        check_step_file(steps.workdir, step.key, step.name, int(f.stem.rsplit("-", 1)[1]), f)
        out.append(f)
    return out


def column_types(steps: RunSteps, step: Step) -> dict[str, Any]:
    """The Arrow type of each visible column of `step`, from the schema of the file of the
    step that stored it (a source read in place: its reader's schema)."""
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    chain = {s.name: s for s in step.chain()}
    out: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name in visible(step):
        ref = step.columns[name]
        producer = chain[ref.step]
        if producer.name not in schemas:
            if producer.kind == "source" and not stores_data(producer):
                try:
                    schemas[producer.name] = dict(producer.op.schema())
                except Exception:  # noqa: BLE001  (an input that moved: types unknown)
                    schemas[producer.name] = {}
            else:
                files = sorted(steps.workdir.step_dir(producer.key).glob("part-*.parquet"))
                schemas[producer.name] = ({f.name: f.type for f in pq.read_schema(files[0])}
                                          if files else {})
        typ = schemas[producer.name].get(ref.stored)
        if typ is not None:
            out[name] = typ
    return out


def is_image_type(typ: Any) -> bool:
    from ..image_type import is_image

    return is_image(typ)


def steps_of(run: Any) -> RunSteps:
    """The `RunSteps` of an explorer's `RunView` (built once per view)."""
    found = run.__dict__.get("_run_steps")
    if found is None:
        found = run.__dict__["_run_steps"] = RunSteps(run.workdir, run.manifest)
    return found
