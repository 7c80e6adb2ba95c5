"""Operations: typed, reusable units with a spec (columns consumed/produced, arguments, resources).

An operation is a small class over a batch (a pyarrow Table, or a pandas DataFrame when
`batch_format = "pandas"`). Kinds: map, filter, expand, global, source, sink. Subclasses declare:

    name, version            identity (part of the cache key)
    Args                     a pydantic model of the arguments (types, defaults, docs)
    consumes / produces      {column: Arrow type}; keys may be "{arg}" templates
    resources                cpus, gpus, memory, concurrency
    setup() / teardown()     once per worker (load models here)

A row-wise operation that waits on I/O may overlap its batches: with `batches_in_flight = N`
(N > 1) and `submit(batch) -> handle` / `collect(handle) -> result`, the engine submits up to
N batches of a partition before collecting the oldest, and collects them in order (rows keep
their order). `process(batch)` remains the call for single rows when a batch fails;
`cancel(handle)`, if defined, is called for batches submitted to a pass that failed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ArgumentError, PipelineError, SchemaError, did_you_mean
from .schema import normalize_columns

Kind = Literal["map", "filter", "expand", "global", "source", "sink", "project"]
OnError = Literal["raise", "skip", "quarantine"]

__all__ = [
    "Arguments", "Field", "Resources", "Operation", "MapOperation", "FilterOperation",
    "ExpandOperation", "GlobalOperation", "SourceOperation", "SinkOperation",
    "ProjectOperation",
]


class Arguments(BaseModel):
    """Base of every operation's `Args`: unknown names are refused, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class RunContext:
    """What `Operation.before_run` learns of the run: its workdir, the step's name, and how
    many workers share the work (processes or Ray tasks at once, at most)."""

    workdir: Path
    step: str
    workers: int


class Resources(BaseModel):
    """What one worker of the operation needs. Ray turns these into resource requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = Field(None, description="bytes per worker")
    concurrency: int | None = Field(None, description="parallel calls for I/O-bound work")


class Operation:
    """Base class; subclass one of the kind-specific classes below."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    kind: ClassVar[Kind]
    Args: ClassVar[type[Arguments]] = Arguments
    consumes: ClassVar[dict[str, Any]] = {}
    produces: ClassVar[dict[str, Any]] = {}
    resources: ClassVar[Resources] = Resources()
    batch_size: ClassVar[int | None] = None
    # in-memory bytes of one batch: a step gets slices of at most this many, and a pass
    # holding the step reads batches of up to it (None: the engine's budget, larger for
    # batches holding images; executors/rowwise.py)
    batch_bytes: ClassVar[int | None] = None
    batch_format: ClassVar[Literal["arrow", "pandas"]] = "arrow"
    in_place: ClassVar[bool] = False  # may replace the columns it consumes without overwrite=
    # the same rows and arguments give the same output (datamill.testing checks it); False
    # for an operation that samples, reads the clock or calls a remote model
    deterministic: ClassVar[bool] = True
    # the local executor runs setup() once in the driver, before forking its workers, which
    # then share what it loaded (for CPU models safe to fork: no threads, no GPU context)
    setup_before_fork: ClassVar[bool] = False
    # pip requirements ("pkg==1.2"): the operation runs in an environment of its own, where
    # they shadow what is installed here; image: the container image it runs in on Ray and
    # Kubeflow (docs/environments.md). Both are part of the cache key.
    requirements: ClassVar[tuple[str, ...]] = ()
    image: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.requirements and getattr(cls, "kind", None) not in ("map", "filter", "expand"):
            raise PipelineError(f"{cls.__qualname__}: only map, filter and expand operations "
                                "can declare requirements (they run in an environment of "
                                "their own, batch by batch)", operation=cls.name or None)
        if cls.__dict__.get("name"):
            from .registry import register

            register(cls)

    def __init__(self, **arguments: Any) -> None:
        self.args = self.validate_arguments(arguments)

    # --- spec -------------------------------------------------------------------------
    @classmethod
    def description(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "").strip()

    @classmethod
    def summary(cls) -> str:
        return cls.description().split("\n\n")[0].replace("\n", " ")

    @classmethod
    def identity(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def validate_arguments(cls, arguments: dict[str, Any]) -> Arguments:
        known = [f.alias or name for name, f in cls.Args.model_fields.items()]
        accepted = set(known) | set(cls.Args.model_fields)
        for key in arguments:
            if key not in accepted:
                listing = ", ".join(known) or "none"
                raise ArgumentError(
                    f"unknown argument {key!r}{did_you_mean(key, known)} (arguments: {listing})",
                    operation=cls.name, unknown=key, known=tuple(known))
        try:
            return cls.Args(**arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                f" (got {err.get('input')!r})" if err["type"] != "missing"
                else f"{'.'.join(str(p) for p in err['loc'])}: required argument missing"
                for err in exc.errors())
            raise ArgumentError(f"invalid arguments: {problems}", operation=cls.name) from None

    def _template(self, columns: dict[str, Any]) -> dict:
        values = self.args.model_dump()
        resolved: dict[str, Any] = {}
        for key, value in columns.items():
            if "{" in key:
                try:
                    key = key.format(**values)
                except KeyError as exc:
                    raise PipelineError(f"column template {key!r} names no argument {exc}",
                                        operation=self.name) from None
            resolved[key] = value
        return normalize_columns(resolved)

    def resolve_consumes(self, schema: dict) -> dict:
        """Columns this step reads, given the input schema. Override for dynamic contracts."""
        return self._template(self.consumes)

    def resolve_produces(self, schema: dict) -> dict:
        """Columns this step adds or replaces, given the input schema."""
        return self._template(self.produces)

    def key_inputs(self) -> dict[str, str]:
        """Digests of what the step reads besides its rows and arguments (a model's files),
        part of its cache key: when they change, the step recomputes. Default: none."""
        return {}

    # --- lifecycle --------------------------------------------------------------------
    def before_run(self, context: RunContext) -> None:
        """Runs on the driver before a run in which this step computes (the cache does not
        hold it all), before any step runs: check what the step needs from outside (a
        server that answers) and raise to stop the run early; note what it keeps in the
        workdir. What it sets on `self` travels to the workers. Default: nothing."""

    def setup(self) -> None:
        """Runs once per worker before the first batch (load models, open clients)."""

    def teardown(self) -> None:
        """Runs once per worker after the last batch."""

    # --- counters ---------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the step's counter `name`. Row-wise steps sum their counters per
        partition (`stats-P.json`) and per step (the record's `counters`, shown by
        `datamill inspect`). Counts of a batch that fails and is retried row by row are
        replaced by those of its rows, each row's kept whether it succeeds or fails (a
        failure counted by kind stays counted)."""
        counters = self.__dict__.setdefault("_counters", {})
        counters[name] = counters.get(name, 0) + int(n)

    def take_counters(self) -> dict[str, int]:
        """The counts added since the last call, which clears them (the engine calls this)."""
        return self.__dict__.pop("_counters", None) or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args!r})"


class MapOperation(Operation):
    """One row in, one row out: `process(batch)` returns the produced columns."""

    kind = "map"

    def process(self, batch: Any) -> Any:  # Table | dict[str, array] | DataFrame
        raise NotImplementedError


class FilterOperation(Operation):
    """Keeps or drops rows. `process(batch)` returns a boolean mask (True keeps), or
    `(mask, reasons)` where `reasons` is one string or one string per row. A filter that
    declares `produces` (say, what it fetched for the rows it keeps) returns
    `(mask, reasons, columns)`, each column one value per input row; the values of dropped
    rows are discarded."""

    kind = "filter"
    default_reason: ClassVar[str] = ""

    def process(self, batch: Any) -> Any:
        raise NotImplementedError

    def reason(self) -> str:
        return self.default_reason or self.name


class ExpandOperation(Operation):
    """One row in, many rows out. `process(batch)` returns the produced columns of the children
    plus `_parent_index` (the position in `batch` of each child's parent). Children keep their
    parent's id in `_parent_id` and inherit the parent's other columns."""

    kind = "expand"

    def process(self, batch: Any) -> Any:
        raise NotImplementedError


class ProjectOperation(Operation):
    """Changes only which columns are visible or their names; stores no data."""

    kind = "project"

    def project(self, schema: dict) -> dict[str, str]:
        """Return {new name: old name} for the columns that remain."""
        raise NotImplementedError


class GlobalOperation(Operation):
    """Needs the whole dataset. Runs in phases, out of core:

    1. `scan(batch)` per input partition returns rows to shuffle: a table with a `_key`
       (uint64 hash) column and whatever else `reduce` needs; one row per input row (a null
       `_key` skips it), or any number when it also returns `_row` (the position in `batch`
       of each output row's input row). Rows are spread into buckets on disk by `_key`;
       `_id`, `_part` and `_pos` (the row's partition and position) are attached by the engine.
    2. `reduce(bucket)` per bucket returns decisions: a table with `_part`, `_pos`, `_id` and
       `_reason` (rows to drop, filter semantics; null keeps) and/or the produced columns.
    3. When `resolves = "components"`, `reduce` returns edges between rows instead: `src`,
       `dst` (int64 node keys, one per row), the rows' `src_id`, `dst_id` and, unless the
       keys are the row locators `_part << 40 | _pos`, `src_loc`, `dst_loc`. The engine
       finds the connected components in rounds of units over buckets of nodes (never the
       whole graph in one process); each component keeps the row of its smallest key and
       drops the others with `reason()`, all recording `cluster_id` (the kept row's `_id`)
       and `cluster_size`; it counts `duplicate_clusters`.
       When `resolves = True`: what every `reduce` returned (partial aggregates: any
       columns) is streamed, bucket after bucket, to `resolve(tables)` in ONE process, which
       returns or yields the decisions instead.
    4. The engine routes decisions back to each partition and stores the step's output.
       Dropped rows are listed with their `_reason` and the `lineage` columns of the decision
       (for example the id of the row kept in their place).
    """

    kind = "global"
    drops_rows: ClassVar[bool] = True
    keep_unlisted: ClassVar[bool] = True  # rows `reduce` does not mention are kept
    default_reason: ClassVar[str] = ""
    resolves: ClassVar[bool | str] = False  # phase 3: "components", or True for `resolve`
    lineage: ClassVar[dict[str, Any]] = {}  # decision columns stored with each dropped row

    def reason(self) -> str:
        """The drop reason of rows that `reduce` does not mention when keep_unlisted=False."""
        return self.default_reason or self.name

    def shuffle_rows(self, input_rows: int) -> int:
        """How many rows `scan` emits for `input_rows` input rows (sizes the buckets)."""
        return input_rows

    def scan(self, batch: Any) -> Any:
        raise NotImplementedError

    def reduce(self, bucket: Any) -> Any:
        raise NotImplementedError

    def resolve(self, tables: Iterator[Any]) -> Any:  # Table | Iterator[Table]
        """Phase 3 (when `resolves = True`): every bucket's `reduce` output -> decisions."""
        raise NotImplementedError


class SourceOperation(Operation):
    """Reads input: lists partitions (units of work), gives the schema, yields batches."""

    kind = "source"
    materialize: ClassVar[bool] = True  # store a Parquet copy in the workdir
    # set by a row-wise pass while it reads: the smallest `batch_bytes` its steps declare
    # (None: none does); a reader that parses in chunks may parse pieces of about that size
    read_bytes: int | None = None

    def schema(self) -> dict:
        raise NotImplementedError

    def partitions(self) -> list[Any]:
        raise NotImplementedError

    def finer_partitions(self, units: int) -> list[Any]:
        """Partitions cut so that there are at least `units` when the data allows (byte
        ranges, row groups, groups of fewer files), for every worker to have work even when
        the input is one file. Row ids must not depend on the cut. Default: `partitions()`."""
        return self.partitions()

    def fingerprint(self) -> str:
        """Changes whenever the input changes (file names, sizes, mtimes)."""
        raise NotImplementedError

    def read(self, partition: Any, columns: list[str] | None) -> Any:  # Iterator[RecordBatch]
        raise NotImplementedError

    def partition_fingerprint(self, partition: Any) -> str | None:
        """What a partition reads (its files, their sizes and times, its range), so that its
        committed output can be kept when other files of the input change; None: unknown."""
        return None

    # --- bad input --------------------------------------------------------------------
    def reject(self, error: str, *, path: str | None, row_id: int, line: int | None = None,
               raw: bytes | None = None) -> None:
        """Set aside input that cannot become a row (a broken line, an unreadable file),
        under `errors='skip'` or `'quarantine'`: the engine counts it as an error of the
        read step and, when quarantining, keeps it in the step's quarantine file."""
        self.__dict__.setdefault("_rejected", []).append(
            {"_id": int(row_id), "_error": error, "_path": path, "_line": line, "_raw": raw})

    def take_rejected(self) -> list[dict]:
        """What `reject` set aside since the last call, which clears it (the engine calls
        this after each batch)."""
        return self.__dict__.pop("_rejected", None) or []


class SinkOperation(Operation):
    """Writes the dataset out. `open_partition(index)` returns a writer with
    `write(table)` and `close() -> list[str]` (the files it committed)."""

    kind = "sink"
    private_columns: ClassVar[tuple[str, ...]] = ()  # `_` columns it receives (e.g. `_id`)
    partition_count: int | None = None  # set by the engine before `prepare`

    def prepare(self, fresh: bool = True) -> None:
        """Runs once on the driver before partitions are written; `fresh` is False when
        resuming a write that already committed some partitions."""

    def open_partition(self, index: int) -> Any:
        raise NotImplementedError

    def finalize(self, record: dict, lineage: dict) -> None:
        """Runs once on the driver after every partition is written."""

    def outputs_ok(self, record: dict) -> bool:
        """Is what an earlier run wrote still there, intact? (cache check)"""
        return True

    def written_from(self, workdir: Any) -> bool:
        """Was the output last written by a run of `workdir` (not overwritten since by
        another workdir's run)?"""
        return True


def check_kind(op: Any, allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(op, Operation) or op.kind not in allowed:
        raise PipelineError(f"{what} needs an operation of kind {' or '.join(allowed)}, "
                            f"got {op!r}")


def function_operation(kind: str, fn: Callable, *, name: str | None, version: str,
                       consumes: dict | None, produces: dict | None,
                       batch_format: str | None, resources: Resources | None,
                       requirements: list[str] | tuple[str, ...] = (),
                       image: str | None = None) -> type:
    """Build an Operation class from a function `fn(batch, **arguments)` (the decorators)."""
    from pydantic import create_model

    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        raise PipelineError(f"{fn.__name__}: an operation function takes the batch first")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        annotation = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        default = p.default if p.default is not inspect.Parameter.empty else ...
        fields[p.name] = (annotation, default)
    op_name = name or fn.__name__
    args_model = create_model(f"{op_name}_Args", __base__=Arguments, **fields)
    fmt = batch_format
    if fmt is None:
        hint = params[0].annotation
        fmt = "pandas" if "DataFrame" in str(hint) else "arrow"
    base = {"map": MapOperation, "filter": FilterOperation, "expand": ExpandOperation}[kind]

    def process(self: Operation, batch: Any) -> Any:
        return fn(batch, **self.args.model_dump())

    attrs = {
        "__doc__": fn.__doc__, "__module__": fn.__module__ or "__main__",
        "__qualname__": fn.__qualname__,
        "name": op_name, "version": version, "Args": args_model,
        "consumes": dict(consumes or {}), "produces": dict(produces or {}),
        "batch_format": fmt, "process": process, "function": staticmethod(fn),
    }
    if resources is not None:
        attrs["resources"] = resources
    if requirements:
        attrs["requirements"] = tuple(requirements)
    if image:
        attrs["image"] = image
    return type(fn.__name__, (base,), attrs)


def _decorator(kind: str):
    def decorate(fn: Callable | None = None, *, name: str | None = None, version: str = "1",
                 consumes: dict | None = None, produces: dict | None = None,
                 batch_format: str | None = None, resources: Resources | None = None,
                 requirements: list[str] | tuple[str, ...] = (), image: str | None = None):
        def wrap(f: Callable) -> type:
            return function_operation(kind, f, name=name, version=version, consumes=consumes,
                                      produces=produces, batch_format=batch_format,
                                      resources=resources, requirements=requirements,
                                      image=image)
        return wrap(fn) if fn is not None else wrap
    decorate.__doc__ = f"Decorate `fn(batch, **arguments)` as a {kind} operation class."
    return decorate


map_operation = _decorator("map")
filter_operation = _decorator("filter")
expand_operation = _decorator("expand")


def ensure_no_collision(step: str, op: Operation, schema: dict, produced: dict,
                        overwrite: bool, replaced: set[str] | None = None) -> None:
    """Refuse produced columns that exist already, unless `overwrite` or the op is in place
    (`replaced`: the columns it writes back where it read them; default: what it consumes)."""
    consumed = (op.resolve_consumes(schema) if replaced is None else replaced) \
        if op.in_place else {}
    clashes = [c for c in produced if c in schema and c not in consumed]
    if clashes and not overwrite:
        raise SchemaError(
            f"produces column(s) {', '.join(map(repr, clashes))} that already exist; "
            "pass overwrite=True to replace them", step=step, operation=op.name)
