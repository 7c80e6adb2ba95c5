"""LazyDataset: an immutable, lazy node of a pipeline DAG, validated as it is built.

    Dataset.read("docs/*.jsonl").apply("text_length_filter", min_chars=200).write("out/")

Nothing is read here; every `.apply()` checks columns, types and arguments first. Running
lives a floor above, in running.py (`datamill.Dataset` adds `run` and `collect`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .cache import KeyParts, digest, key_parts
from .errors import ArgumentError, PipelineError, SchemaError, did_you_mean
from .operation import OnError, Operation, ensure_no_collision
from .remap import Remap, check_writes
from .schema import is_compatible, is_image, type_name

ID = "_id"
PARENT_ID = "_parent_id"
_STEP_OPTIONS = ("step_name", "on_error", "overwrite")
_APPLY_OPTIONS = (*_STEP_OPTIONS, "consumes", "produces")

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class ColumnRef:
    """Where a visible column's data lives: the step that produced it, under which name."""

    step: str
    stored: str


@dataclass(eq=False)
class Step:
    """One node: an operation applied to its parent's output."""

    name: str
    op: Operation
    parent: Step | None
    key: str
    schema: dict  # visible columns after this step: name -> Arrow type
    columns: dict[str, ColumnRef]
    consumed: dict = field(default_factory=dict)
    produced: dict = field(default_factory=dict)
    on_error: OnError = "raise"
    parts: KeyParts | None = None  # what `key` is made of (code, arguments, inputs)
    # the key computed as if the source's files had not changed: partitions of a step of
    # the same family that read the same, unchanged files can be kept (executors/adopt.py)
    family: str = ""
    # column remapping (remap.py): {name the operation declares: dataset column}, for every
    # column it reads and every column it produces; empty means the same names
    reads: dict[str, str] = field(default_factory=dict)
    writes: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def changes_rows(self) -> bool:
        return self.op.kind in ("filter", "expand", "global", "source")

    def op_reads(self) -> dict[str, str]:
        """{name the operation reads: dataset column}."""
        return self.reads or {c: c for c in self.consumed}

    def op_writes(self) -> dict[str, str]:
        """{name the operation returns: dataset column it is stored as}."""
        return self.writes or {c: c for c in self.produced}

    def chain(self) -> list[Step]:
        steps: list[Step] = []
        node: Step | None = self
        while node is not None:
            steps.append(node)
            node = node.parent
        return steps[::-1]


def _instantiate(op: Any, args: dict[str, Any]) -> Operation:
    from . import registry

    if isinstance(op, str):
        op = registry.get(op)
    if isinstance(op, type) and issubclass(op, Operation):
        return op(**args)
    if isinstance(op, Operation):
        if args:
            raise PipelineError(f"arguments {sorted(args)} given with an already-built "
                                f"operation; pass the class or name instead", operation=op.name)
        return op
    raise PipelineError(f"not an operation: {op!r}")


def _reader_policy(op: Operation, on_error: str | None, args: dict) -> tuple[str, dict]:
    """The read step's on_error and the reader's `errors` argument, made one policy.

    Readers that can set input aside take `errors` ('raise', 'skip', 'quarantine'; document
    readers also 'keep'); a reader without it cannot honour on_error, which is refused."""
    if on_error is not None and on_error not in ("raise", "skip", "quarantine"):
        raise PipelineError(f"on_error must be raise, skip or quarantine, got {on_error!r}",
                            operation=op.name)
    field = getattr(op.Args, "model_fields", {}).get("errors")
    if field is None:
        if on_error not in (None, "raise"):
            raise PipelineError(
                f"this reader cannot honour on_error={on_error!r}: it has no way to set "
                "rows aside (a broken file fails the run, naming it). Fix or remove the "
                "input, or convert it to JSONL or CSV, which can skip broken lines",
                operation=op.name)
        return "raise", {}
    given = args.get("errors", op.args.errors)
    if on_error in (None, "raise"):
        if on_error == "raise" and given in ("skip", "quarantine"):
            raise PipelineError(f"on_error='raise' contradicts errors={given!r}",
                                operation=op.name)
        return (given if given in ("skip", "quarantine") else "raise"), {}
    if given not in ("raise", on_error):
        raise PipelineError(f"on_error={on_error!r} contradicts errors={given!r}; give one",
                            operation=op.name)
    return on_error, ({} if given == on_error else {"errors": on_error})


class LazyDataset:
    """A lazy dataset: `read`, `apply`, `write`. It knows nothing of running: `datamill.Dataset`
    (running.py) adds `run` and `collect`."""

    def __init__(self, step: Step):
        self._step = step

    # --- building ---------------------------------------------------------------------
    @classmethod
    def read(cls, source: Any, format: str | None = None, **args: Any) -> Self:
        """Start a pipeline from files (Parquet, JSONL[.gz|.zst], CSV, text), an earlier
        run's workdir or written output, or a source operation (class, name or instance)."""
        from .formats import resolve_source

        options = {k: args.pop(k) for k in _STEP_OPTIONS if k in args}
        with _step_option_hint(_STEP_OPTIONS):
            op = resolve_source(source, format, dict(args))
        on_error, change = _reader_policy(op, options.pop("on_error", None), args)
        if change:  # the reader sets bad input aside itself: the step's policy becomes its
            op = type(op)(**{**op.args.model_dump(by_alias=True, exclude_unset=True),
                             **change})
        return cls._root(op, on_error=on_error, **options)

    @classmethod
    def _root(cls, op: Operation, step_name: str | None = None, on_error: OnError | None = None,
              overwrite: bool = False) -> Self:
        if op.kind != "source":
            raise PipelineError("Dataset.read needs a source operation", operation=op.name)
        on_error, change = _reader_policy(op, on_error, {})
        if change:
            raise PipelineError(f"on_error={on_error!r} disagrees with the reader's errors="
                                f"{op.args.errors!r}; pass errors={on_error!r} to the reader",
                                operation=op.name)
        name = step_name or op.name
        schema = dict(op.schema())
        if ID in schema:
            raise SchemaError(f"input has a column named {ID!r}, which datamill reserves for "
                              "row ids", step=name, operation=op.name)
        parts = key_parts(op, [digest(op.fingerprint())], {"on_error": on_error})
        family = replace(parts, inputs=(digest({"schema": {c: str(t)
                                                           for c, t in schema.items()}}),))
        columns = {c: ColumnRef(name, c) for c in [ID, *schema]}
        schema = {ID: _id_type(), **schema}
        step = Step(name=name, op=op, parent=None, key=parts.key, schema=schema,
                    columns=columns, produced=dict(schema), on_error=on_error, parts=parts,
                    family=family.key)
        return cls(step)

    def apply(self, op: Any, **args: Any) -> Self:
        """Derive a dataset by applying an operation (a class, a registered name or an
        instance). Step options: `step_name`, `on_error` (raise|skip|quarantine), `overwrite`,
        and `consumes` / `produces`: {name the operation declares: dataset column}, to point
        any operation at other columns (remap.py)."""
        step_name = args.pop("step_name", None)
        on_error = args.pop("on_error", "raise")
        overwrite = bool(args.pop("overwrite", False))
        consumes, produces = args.pop("consumes", None), args.pop("produces", None)
        if on_error not in ("raise", "skip", "quarantine"):
            raise PipelineError(f"on_error must be raise, skip or quarantine, got {on_error!r}")
        with _step_option_hint(_APPLY_OPTIONS):
            op = _instantiate(op, args)
        remap = Remap.given(consumes, produces, op.name)
        if op.kind in ("source", "sink"):
            raise PipelineError(f"use Dataset.read/.write for {op.kind} operations",
                                operation=op.name)
        if op.kind == "global" and on_error != "raise":
            raise PipelineError(f"a global operation cannot honour on_error={on_error!r}: it "
                                "decides over all rows at once, with no row to set aside",
                                operation=op.name)
        if op.kind == "project" and remap:
            raise PipelineError("select, drop and rename name their columns in their "
                                "arguments: give the columns there, not consumes/produces",
                                operation=op.name)
        name = step_name or self._unique_name(op.name)
        parent = self._step
        schema = dict(parent.schema)
        columns = dict(parent.columns)
        view = remap.view(_visible(schema))
        declared_in = op.resolve_consumes(view)
        reads = remap.reads(declared_in)
        if remap:
            remap.check_keys(declared_in, op.resolve_produces(view) if op.kind != "project"
                             else {}, op.name, name)
        for declared, column in reads.items():
            self._check_consumes(name, op, {column: declared_in[declared]}, declared)
        consumed = {column: declared_in[declared] for declared, column in reads.items()}
        produced: dict = {}
        writes: dict[str, str] = {}
        if op.kind == "project":
            mapping = op.project(_visible(schema))
            for _new, old in mapping.items():
                if old not in schema:
                    self._missing(name, op, old)
            schema = {ID: schema[ID], **{new: schema[old] for new, old in mapping.items()}}
            columns = {ID: columns[ID], **{new: columns[old] for new, old in mapping.items()}}
            if PARENT_ID in parent.schema and PARENT_ID not in schema:
                schema[PARENT_ID] = parent.schema[PARENT_ID]
                columns[PARENT_ID] = parent.columns[PARENT_ID]
        else:
            declared_out = op.resolve_produces(view)
            writes = remap.writes(declared_in, declared_out)
            check_writes(writes, op.name, name)
            produced = {writes[c]: typ for c, typ in declared_out.items()}
            reserved = [c for c in produced if c.startswith("_")]
            if reserved:
                raise SchemaError(f"produces reserved column name(s) {reserved}; names "
                                  "starting with '_' belong to datamill", step=name,
                                  operation=op.name)
            replaced = {writes[c] for c in declared_out if c in reads and writes[c] == reads[c]}
            ensure_no_collision(name, op, _visible(schema), produced, overwrite,
                                replaced if remap else None)
            for col, typ in produced.items():
                schema[col] = typ
                columns[col] = ColumnRef(name, col)
            if op.kind == "expand":
                schema[PARENT_ID] = schema[ID]
                columns[PARENT_ID] = ColumnRef(name, PARENT_ID)
                columns[ID] = ColumnRef(name, ID)
        parts = key_parts(op, [parent.key], {"on_error": on_error, **remap.options()})
        family = replace(parts, inputs=(parent.family,)).key \
            if parent.family and op.kind != "global" else ""
        step = Step(name=name, op=op, parent=parent, key=parts.key, schema=schema,
                    columns=columns, consumed=consumed, produced=produced, on_error=on_error,
                    parts=parts, family=family, reads=reads, writes=writes)
        return type(self)(step)

    def write(self, target: Any, format: str | None = None, **args: Any) -> Self:
        """End the pipeline in a sink: a path (format from the extension or `format=`:
        parquet, jsonl, csv) or a sink operation."""
        from .formats import resolve_sink

        step_name = args.pop("step_name", None)
        with _step_option_hint(("step_name",)):
            op = resolve_sink(target, format, args)
        name = step_name or self._unique_name(op.name)
        parent = self._step
        consumed = op.resolve_consumes(_visible(parent.schema))
        self._check_consumes(name, op, consumed)
        parts = key_parts(op, [parent.key])
        step = Step(name=name, op=op, parent=parent, key=parts.key, schema=dict(parent.schema),
                    columns=dict(parent.columns), consumed=consumed, parts=parts)
        return type(self)(step)

    # --- conveniences over built-in operations ------------------------------------------
    def select(self, *columns: str) -> Self:
        return self.apply("select", columns=list(columns))

    def drop(self, *columns: str) -> Self:
        return self.apply("drop", columns=list(columns))

    def rename(self, mapping: dict[str, str] | None = None, **renames: str) -> Self:
        return self.apply("rename", mapping={**(mapping or {}), **renames})

    def map(self, function: Any, produces: dict, consumes: list[str] | None = None,
            **options: Any) -> Self:
        """Add or replace columns with `function` (`produces`: {column: type} it returns;
        `consumes`: the columns it reads, default all)."""
        return self.apply("python_map", function=function, outputs=produces, inputs=consumes,
                          **options)

    def filter(self, function: Any, consumes: list[str] | None = None,
               **options: Any) -> Self:
        """Keep the rows for which `function` says True (`consumes`: the columns it reads)."""
        return self.apply("python_filter", function=function, inputs=consumes, **options)

    def limit(self, n: int) -> Self:
        return self.apply("limit", n=n)

    def sample(self, fraction: float, seed: int = 0) -> Self:
        return self.apply("sample", fraction=fraction, seed=seed)

    def drop_duplicates(self, columns: list[str] | None = None, **options: Any) -> Self:
        return self.apply("drop_duplicates", columns=columns, **options)

    # --- introspection ----------------------------------------------------------------
    @property
    def step(self) -> Step:
        return self._step

    @property
    def schema(self) -> dict:
        """Visible columns and their Arrow types (row-id columns excluded)."""
        return _visible(self._step.schema)

    @property
    def steps(self) -> list[Step]:
        return self._step.chain()

    def lineage(self) -> dict[str, str]:
        """Column -> the step that produced it."""
        return {c: ref.step for c, ref in self._step.columns.items() if not c.startswith("_")}

    def explain(self) -> str:
        lines = []
        for step in self.steps:
            cols = ", ".join(f"{c}: {type_name(t)}" for c, t in step.produced.items()
                             if not c.startswith("_"))
            lines.append(f"{step.name:<28} {step.kind:<7} {step.key[:12]}  {cols}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        cols = ", ".join(f"{c}: {type_name(t)}" for c, t in self.schema.items())
        return f"Dataset(step={self._step.name!r}, columns={{{cols}}})"

    # --- validation helpers -----------------------------------------------------------
    def _unique_name(self, base: str) -> str:
        taken = {s.name for s in self._step.chain()}
        if base not in taken:
            return base
        n = 2
        while f"{base}_{n}" in taken:
            n += 1
        return f"{base}_{n}"

    def _missing(self, name: str, op: Operation, column: str,
                 declared: str | None = None) -> None:
        existing = ", ".join(f"{c} (from {ref.step})" for c, ref in self._step.columns.items()
                             if not c.startswith("_"))
        hint = did_you_mean(column, list(_visible(self._step.schema)))
        what = (f"consumes {declared!r} from column {column!r}" if declared not in (None, column)
                else f"consumes column {column!r}")
        raise SchemaError(f"{what}, which does not exist{hint} "
                          f"(columns: {existing or 'none'})", step=name, operation=op.name)

    def _check_consumes(self, name: str, op: Operation, consumed: dict,
                        declared: str | None = None) -> None:
        """Each consumed column exists with a compatible type; `declared`: the name the
        operation reads it as, when remapped."""
        schema = self._step.schema
        for col, expected in consumed.items():
            if col not in schema:
                self._missing(name, op, col, declared)
            actual = schema[col]
            if not is_compatible(actual, expected):
                producer = self._step.columns[col].step
                hint = ("; mark its bytes as images with .apply(\"as_images\", "
                        f"columns=[{col!r}])" if is_image(expected) else "")
                read_as = f" (read as {declared!r})" if declared not in (None, col) else ""
                raise SchemaError(
                    f"column {col!r}{read_as} has type {type_name(actual)} (produced by step "
                    f"{producer!r}), but the operation consumes {type_name(expected)}{hint}",
                    step=name, operation=op.name)


@contextmanager
def _step_option_hint(options: tuple[str, ...]) -> Iterator[None]:
    """An unknown argument closer to a step option (`on_eror`) than to any of the
    operation's own arguments is reported as the misspelled step option."""
    try:
        yield
    except ArgumentError as exc:
        key = exc.unknown
        if key is None:
            raise
        hint = did_you_mean(key, [*exc.known, *options])
        if not any(hint.endswith(f" {o!r}?") for o in options):
            raise
        listing = ", ".join(exc.known) or "none"
        raise ArgumentError(
            f"unknown argument {key!r}; did you mean the step option "
            f"{hint.rsplit(' ', 1)[1][:-1]}? (step options: {', '.join(options)}; "
            f"arguments: {listing})", step=exc.step, operation=exc.operation, unknown=key,
            known=exc.known) from None


def _visible(schema: dict) -> dict:
    return {c: t for c, t in schema.items() if not c.startswith("_")}


def _id_type():
    import pyarrow as pa

    return pa.int64()
