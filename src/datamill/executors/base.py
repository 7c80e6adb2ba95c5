"""What every executor shares: planning a run, the cache, committing units and step
records, the manifest. A subclass only decides where the units of a stage run
(`_parallel`): the local executor forks worker processes, the Ray executor submits tasks."""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..cache_history import ABSENT, BROKEN, CACHE_OFF, INTACT, PARTIAL, CacheHistory, explain
from ..cache_history import reason as cache_reason
from ..dataset import LazyDataset, Step
from ..errors import CorruptFileError, StorageError
from ..integrity import Damage, forget_verified, mark_damaged, take_damaged
from ..manifest import (
    SUCCESS,
    dataset_lineage,
    load_record,
    read_partition_stats,
    step_record,
    write_manifest,
)
from ..plan import Stage, build_stages, resumed, stores_data
from ..reader import PARTITIONING, partition_count, pin_partitioning
from ..storage import (
    Workdir,
    atomic_write_json,
    parquet_file_ok,
    part_name,
    read_json,
    remove_tree,
)
from . import global_phases, rowwise
from .adopt import adopt_partitions
from .progress import Progress, logger
from .workers import teardown_all

MAX_REPAIRS = 100  # damaged files found (and their partitions recomputed) in one run


@dataclass
class RunResult:
    """What a run did: the workdir, the manifest, and each step's record."""

    workdir: Path
    manifest: dict
    manifest_path: Path
    cached: set[str] = field(default_factory=set)

    @property
    def steps(self) -> list[dict]:
        seen, out = set(), []
        for ds in self.manifest["datasets"]:
            for s in ds["steps"]:
                if s["cache_key"] not in seen:
                    seen.add(s["cache_key"])
                    out.append(s)
        return out

    def step(self, name: str) -> dict:
        for s in self.steps:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def duplicates(self, row_id: int, step: str | None = None) -> Any:
        """Rows dropped as duplicates of the kept row `row_id` (see `datamill.duplicates`)."""
        from ..manifest import duplicates

        return duplicates(self.workdir, row_id, step)

    @property
    def outputs(self) -> list[str]:
        return [s["arguments"].get("path") for s in self.steps if s.get("kind") == "sink"]


def _input_files(step: Step) -> list:
    """[path, size, mtime] of each input file of a file source (its fingerprint)."""
    import json

    try:
        files = json.loads(step.op.fingerprint())
    except (ValueError, TypeError):
        return []
    return files if isinstance(files, list) else []


def _check_inputs_unchanged(datasets: list[LazyDataset]) -> None:
    """A dataset's cache keys are made when it is built, from its input files as they were
    then (names, sizes, times): run after one changed, it would be served what the cache
    holds for the old files (or, read in place, mix old results with new rows). Refuse."""
    from ..cache import digest
    from ..errors import InputError

    seen: set[str] = set()
    for ds in datasets:
        source = ds.step.chain()[0]
        if source.key in seen or source.parts is None:
            continue
        seen.add(source.key)
        if digest(source.op.fingerprint()) not in source.parts.inputs:
            raise InputError(
                f"the input of step {source.name!r} ({source.op.name}) changed after this "
                "dataset was built (file sizes or modification times differ), and its cache "
                "keys describe the files as they were: build it again (Dataset.read...) to "
                "run on them as they are", path=str(getattr(source.op.args, "path", "")))


class Executor:
    """Runs datasets into a workdir: the plan, the cache, the commits and the records.
    Subclasses decide where units of work run (`_parallel`)."""

    name = "base"

    def __init__(self, workdir: str | os.PathLike = "datamill-work", *, workers: int | None = None,
                 cache: bool = True, progress: bool | None = None,
                 log: Callable[[str], None] | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValueError(f"workers must be a whole number of at least 1, got {workers!r}")
        self.workdir = Workdir(workdir)
        self.workers = workers or os.cpu_count() or 1
        self.cache = cache
        self.progress_mode = progress
        self.log = log

    # --- cache ------------------------------------------------------------------------
    def is_complete(self, step: Step) -> bool:
        """Cheap checks (no checksums: a file is checked when read): the record, each
        partition's marker, each file's size and Parquet magic; a sink's output folder
        still holds what this workdir wrote."""
        record = load_record(self.workdir, step)
        if record is None:
            return False
        folder = self.workdir.step_dir(step.key)
        for p, stats in record.get("partitions", {}).items():
            if not (folder / part_name("stats", int(p), "json")).exists():
                return False  # marked for recompute (damaged)
            for name, size in stats.get("files", {}).items():
                if not parquet_file_ok(folder / name, size):
                    return False
        if step.kind == "sink":
            return step.op.outputs_ok(record) and step.op.written_from(self.workdir.root)
        return True

    def key_state(self, step: Step) -> str:
        """What the workdir holds under the step's key (to say why it recomputes)."""
        if load_record(self.workdir, step) is not None:
            return INTACT if self.is_complete(step) else BROKEN
        folder = self.workdir.step_dir(step.key)
        started = folder.is_dir() and any(f.name != PARTITIONING for f in folder.iterdir())
        return PARTIAL if started else ABSENT

    def complete_keys(self, chain: list[Step]) -> set[str]:
        """Keys of the complete prefix of `chain` (a step counts only if its ancestors do)."""
        done: set[str] = set()
        for step in chain:
            if not self.cache or not self.is_complete(step):
                break
            done.add(step.key)
        return done

    # --- running ----------------------------------------------------------------------
    def run(self, datasets: Iterable[LazyDataset]) -> RunResult:
        datasets = list(datasets)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        started = time.time()
        with self.workdir.lock() as lock_fd, self.session(lock_fd), \
                contextlib.ExitStack() as self._claims:
            self.workdir.remove_temp_files()  # a killed run's: no live writer has any now
            self._claimed: set[str] = set()  # sinks whose output this run holds
            forget_verified()
            if not self.cache:
                for ds in datasets:
                    for step in ds.step.chain():
                        remove_tree(self.workdir.step_dir(step.key))
            self.check(datasets)
            _check_inputs_unchanged(datasets)
            self._before_run(datasets)
            records: dict[str, dict] = {}
            cached: set[str] = set()
            self._history = CacheHistory(self.workdir)
            self._why: dict[str, dict] = {}  # recomputed step's key -> why (cache_history)
            try:
                self._run_repairing([ds.step for ds in datasets], records, cached)
            finally:
                self._remember(datasets, records)
            lineages = [dataset_lineage(ds.step, records, cached, self._why)
                        for ds in datasets]
            for ds, lineage in zip(datasets, lineages):
                if ds.step.kind == "sink" and ds.step.key not in cached:
                    ds.step.op.finalize(records[ds.step.key], lineage)
            run = {"datamill_version": __version__, "run_id": run_id,
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                   "wall_seconds": round(time.time() - started, 3), "workers": self.workers,
                   "executor": self.name}
            path = write_manifest(self.workdir, run, lineages)
            teardown_all()
        return RunResult(self.workdir.root, {**run, "datasets": lineages}, path, cached)

    def collect(self, dataset: LazyDataset, columns: list[str] | None = None) -> Any:
        """Run `dataset` (cache permitting) and read its rows back as one Table; a damaged
        file met while reading is recomputed, then the read starts over."""
        from ..reader import read_table

        for _ in range(MAX_REPAIRS):
            self.run([dataset])
            try:
                return read_table(self.workdir, dataset.step, columns)
            except CorruptFileError as exc:
                with self.workdir.lock():
                    self.repair(exc, {}, set())
        raise StorageError(f"files of workdir {self.workdir.root} were found damaged "
                           f"{MAX_REPAIRS} times; check its disk")

    def _run_repairing(self, ends: list[Step], records: dict[str, dict],
                       cached: set[str]) -> None:
        """Run the chains ending at `ends`. A damaged file met on the way is marked, and
        its step alone is brought up to date first (exactly the damaged partitions), so
        that the stage that met it does not recompute the steps before it."""
        steps = {s.key: s for end in ends for s in end.chain()}
        repairs: list[Step] = []
        for _ in range(MAX_REPAIRS):
            try:
                while repairs:
                    self._run_chains([repairs[0]], records, cached)
                    repairs.pop(0)
                self._run_chains(ends, records, cached)
                return
            except CorruptFileError as exc:
                self.repair(exc, records, cached)
                if exc.key in steps:
                    repairs.insert(0, steps[exc.key])
        raise StorageError(f"files of workdir {self.workdir.root} were found damaged "
                           f"{MAX_REPAIRS} times in one run; check its disk")

    def _run_chains(self, ends: list[Step], records: dict[str, dict],
                    cached: set[str]) -> None:
        for end in ends:
            chain = end.chain()
            pin_partitioning(self.workdir, chain[0], self.units_wanted())
            complete = self.complete_keys(chain)
            for step in chain:
                if step.key in complete and step.key not in records:
                    cached.add(step.key)
                    records[step.key] = load_record(self.workdir, step)
            if self.cache:
                explain(chain, complete | set(records), self.key_state, self._history,
                        self._why)
            else:
                self._why.update((s.key, cache_reason(CACHE_OFF, "run without the cache"))
                                 for s in chain)
            stages = build_stages(chain, complete | set(records))
            with Progress(chain, self.progress_mode, self.log) as progress:
                for step in chain:
                    if step.key in cached:
                        progress.cached(step.name, records[step.key])
                for stage in stages:
                    self._run_stage(stage, progress, records)

    def repair(self, exc: CorruptFileError, records: dict[str, dict], cached: set[str]) -> None:
        """A committed file of this workdir was found damaged while read: mark it, so that
        the run recomputes its partition (steps downstream keep their committed partitions).
        A damaged file of another workdir (read as a source) is not ours to repair."""
        if Path(exc.workdir) != self.workdir.root:
            raise exc
        logger.warning("datamill: %s is damaged (%s): recomputing partition %d of step %r",
                       exc.path, exc.problem, exc.partition, exc.step)
        mark_damaged(self.workdir, [Damage(exc.step, exc.key, exc.partition, exc.path,
                                           exc.problem)])
        records.pop(exc.key, None)
        cached.discard(exc.key)

    def _remember(self, datasets: list[LazyDataset], records: dict) -> None:
        """Note every complete step in the history (it only explains: never fail a run)."""
        for ds in datasets:
            for step in ds.step.chain():
                if step.key in records:
                    self._history.remember(step)
        with contextlib.suppress(StorageError, OSError):
            self._history.save()

    def units_wanted(self) -> int:
        """How many units a stage should have at least: twice the workers (so that uneven
        units still keep every worker busy), one with a single worker."""
        return 2 * self.workers if self.workers > 1 else 1

    def _steps_to_run(self, datasets: list[LazyDataset]) -> list[Step]:
        """Every step of `datasets` that the cache does not already hold, once each."""
        seen: dict[str, Step] = {}
        for ds in datasets:
            chain = ds.step.chain()
            complete = self.complete_keys(chain)
            for step in chain:
                if step.key not in complete:
                    seen.setdefault(step.key, step)
        return list(seen.values())

    def _before_run(self, datasets: list[LazyDataset]) -> None:
        """Each step that will compute checks what it needs (`Operation.before_run`)."""
        from ..operation import RunContext

        for step in self._steps_to_run(datasets):
            step.op.before_run(RunContext(self.workdir.root, step.name, self.workers))

    # --- hooks for subclasses -----------------------------------------------------------
    @contextlib.contextmanager
    def session(self, lock_fd: int) -> Iterator[None]:
        """Around the whole run, with the workdir locked (connect to a cluster, ...)."""
        yield

    def check(self, datasets: list[LazyDataset]) -> None:
        """Before any step runs: refuse what this executor cannot run (see
        `_steps_to_run`)."""

    def _run_stage(self, stage: Stage, progress: Progress, records: dict) -> None:
        start = time.perf_counter()
        count = partition_count(self.workdir, stage.steps[0])
        for step in stage.steps:
            folder = self.workdir.step_dir(step.key)
            folder.mkdir(parents=True, exist_ok=True)
            if step.kind == "sink":
                self._prepare_sink(step, folder, count)
        progress.stage_started(stage, count)
        progress.expect_rows(self._rows_hint(stage.steps[0]) if stage.input_step else None)
        if stage.kind == "rowwise":
            self._run_rowwise(stage, count, progress)
        else:
            self._run_global(stage, count, progress)
        wall = time.perf_counter() - start
        for step in stage.steps:
            stats = read_partition_stats(self.workdir, step, count)
            record = step_record(step, stats, wall)
            if step.kind == "source":
                record["partition_count"] = count
                record["materialized"] = stores_data(step)
                record["input_files"] = _input_files(step)
            if step.kind == "sink":
                record["outputs"] = [f for s in stats.values() for f in s.get("outputs", [])]
                location = getattr(step.op, "location", None)
                if location is not None:  # where `outputs` are (`datamill verify` checks them)
                    record["output_location"] = location
            repaired = take_damaged(self.workdir, step.key)
            if repaired:
                record["repaired"] = repaired
            atomic_write_json(self.workdir.step_dir(step.key) / SUCCESS, record)
            records[step.key] = record
            progress.step_done(step.name, record)

    def _prepare_sink(self, step: Step, folder: Path, count: int) -> None:
        """Claim the sink's output for this run (refused while another workdir's run writes
        it), then prepare it: resume our committed partitions, unless another workdir wrote
        the folder since (then every partition is rewritten). The sink learns the number of
        partitions (`partition_count`, for file names such as `train-00001-of-00004`)."""
        claim = getattr(step.op, "claim", None)
        taken_over = False
        if claim is not None and step.key not in self._claimed:  # once: a repair re-runs it
            self._claimed.add(step.key)
            taken_over = self._claims.enter_context(claim(self.workdir.root))
        if taken_over:
            for marker in folder.glob("stats-*.json"):
                marker.unlink()
        step.op.partition_count = count
        step.op.prepare(fresh=not any(folder.glob("stats-*.json")))

    def _committed(self, step: Step, partition: int) -> bool:
        """Is the partition's marker there, and every file it lists intact?"""
        folder = self.workdir.step_dir(step.key)
        stats = read_json(folder / part_name("stats", partition, "json"))
        if stats is None:
            return False
        if step.kind == "sink":
            return step.op.outputs_ok({"outputs": stats.get("outputs", [])})
        return all(parquet_file_ok(folder / name, size)
                   for name, size in stats.get("files", {}).items())

    def _pending(self, steps: list[Step], count: int) -> list[int]:
        return [p for p in range(count) if not all(self._committed(s, p) for s in steps)]

    def _run_rowwise(self, stage: Stage, count: int, progress: Progress) -> None:
        if self.cache:  # partitions of input files that did not change are kept
            adopt_partitions(self.workdir, stage, count)
        pending = self._pending(stage.steps, count)
        progress.skip(stage, count - len(pending))
        workdir = self.workdir
        by_start: dict[int, list[int]] = {}  # first step not yet committed -> partitions
        for p in pending:
            first = next(i for i, s in enumerate(stage.steps) if not self._committed(s, p))
            by_start.setdefault(first, []).append(p)
        # memory:// sinks live in this process's memory: forked workers would lose their files
        serial = any(getattr(s.op, "driver_only", False) for s in stage.steps)
        for first, parts in sorted(by_start.items()):
            part = resumed(stage, first)

            def unit(p: int, report: Any, part: Stage = part) -> dict:
                return rowwise.run_partition(workdir, part, p, report)

            self._parallel({"rowwise": unit}, "rowwise", parts, progress, serial=serial,
                           steps=part.steps)

    def _run_global(self, stage: Stage, count: int, progress: Progress) -> None:
        from . import components

        step = stage.steps[0]
        if not self._pending([step], count):
            return  # every partition committed (e.g. downstream of a repaired step)
        workdir = self.workdir
        parent_rows = self._rows_hint(step)
        buckets = global_phases.bucket_count(workdir, step, self.workers, parent_rows)
        units = {
            "scan": lambda p, report: global_phases.scan_partition(workdir, step, p, buckets),
            "reduce": lambda b, report: global_phases.reduce_bucket(workdir, step, b, buckets),
            "resolve": lambda _, report: global_phases.resolve_step(workdir, step),
            "apply": lambda p, report: global_phases.apply_partition(workdir, step, p),
        }
        run = functools.partial(self._parallel, units, progress=progress, steps=[step])
        run("scan", list(range(count)), phase=f"{step.name}: scan")
        run("reduce", list(range(buckets)), phase=f"{step.name}: reduce")
        if step.op.resolves == components.COMPONENTS:  # rounds of units, until stars

            def run_units(name: str, unit: Callable, items: list[int], phase: str) -> None:
                # these units never call the operation: no setup(), default resources
                self._parallel({name: unit}, name, items, progress, phase=phase)

            components.run_components(global_phases.shuffle_dir(workdir, step), buckets,
                                      step.op.reason(), run_units, step.name)
        elif step.op.resolves:  # one unit
            run("resolve", [0], phase=f"{step.name}: resolve")
        run("apply", self._pending([step], count), phase=f"{step.name}: apply")
        remove_tree(global_phases.shuffle_dir(workdir, step))

    def _rows_hint(self, step: Step) -> int:
        node = step.parent
        while node is not None:
            record = load_record(self.workdir, node)
            if record and node.kind != "project":
                return int(record.get("rows_out", 0))
            node = node.parent
        return 0

    def _parallel(self, units: dict[str, Callable], name: str, items: list[int],
                  progress: Progress, phase: str | None = None, serial: bool = False,
                  steps: list[Step] | None = None) -> None:
        """Run `units[name](item, report)` for every item; `steps` are the steps the units
        belong to (their resources). Units commit their own output; this only schedules.
        `serial` units (e.g. memory:// sinks, held in the driver's memory) run here."""
        if not items:
            return
        if phase:
            progress.phase(phase, len(items))
        if serial or self._in_driver(items):
            for item in items:
                progress.unit_done(phase, units[name](item, progress.rows))
            return
        self._dispatch(units, name, items, progress, phase, steps or [])

    def _in_driver(self, items: list[int]) -> bool:
        """Are these units cheaper to run in the driver than to dispatch?"""
        return False

    def _dispatch(self, units: dict[str, Callable], name: str, items: list[int],
                  progress: Progress, phase: str | None, steps: list[Step]) -> None:
        """Run the units elsewhere (worker processes, a cluster), reporting each result to
        `progress.unit_done`."""
        raise NotImplementedError
