"""The `datamill` command: run pipeline files, browse operations, inspect workdirs.

    datamill run pipeline.py[:NAME] [--workdir DIR] [--workers N] [--no-cache]
                 [--executor local|ray [--address HOST:PORT]]
    datamill ops list | datamill ops show NAME
    datamill inspect WORKDIR [--json] [--dropped [STEP]] [--quarantine [STEP]]
                     [--duplicates ID] [--columns A,B] [--limit N]
    datamill verify WORKDIR [--dry-run] [--json]
    datamill explore WORKDIR [WORKDIR ...] [--port N] [--host H] [--no-browser]
    datamill report WORKDIR -o report.html

Imports stay lazy (no pyarrow at startup) so that `datamill --version` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__

DROPPED_SAMPLE = 20  # rows shown per step by inspect --dropped / --quarantine
CELL = 40  # characters of a value shown in a row table


class CLIError(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = 1, detail: str = ""):
        super().__init__(message)
        self.code = code
        self.detail = detail  # extra lines (the user's traceback line) printed after


# --- output -----------------------------------------------------------------------------
def _width() -> int:
    """Columns to fit in: the terminal's, else $COLUMNS, else 100."""
    import os
    import shutil

    if sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100


def _fit(widths: list[int], limit: int, gap: int = 2, whole: Sequence[int] = (),
         floors: Sequence[int] = ()) -> list[int]:
    """Cap the widest columns until a row fits `limit` characters, each no narrower than
    its floor (its longest word; 8 when not given); the columns in `whole` (names) keep
    their natural width."""
    floors = list(floors) or [min(w, 8) for w in widths]
    budget = limit - gap * (len(widths) - 1)

    def capped(cap: int) -> list[int]:
        return [w if i in whole else max(min(w, cap), floors[i]) for i, w in enumerate(widths)]

    cap = max(widths, default=0)
    while cap > 1 and sum(capped(cap)) > budget:
        cap -= 1
    return capped(cap)


def _longest_word(text: str) -> int:
    """The widest piece `_wrap_cell` leaves whole: a word, or a name's part up to `_`."""
    import re

    return max(map(len, re.findall(r"[^ _]+_?", text)), default=0)


def _wrap_cell(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters: at spaces, and a name (`strip_image_metadata`)
    after an underscore rather than mid-word."""
    import re
    import textwrap

    if " " in text.strip() or len(text) <= width:
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    lines = [""]
    for piece in re.findall(r"[^_]*_|[^_]+$", text):
        while piece:
            if lines[-1] and len(lines[-1]) + len(piece) > width:
                lines.append("")
            room = width - len(lines[-1])
            lines[-1] += piece[:room]
            piece = piece[room:]
    return lines


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "",
           whole: Sequence[int] = ()) -> None:
    """A rich table on a terminal, plain aligned columns otherwise; both fit the width
    (long cells wrap onto following lines), except that the columns in `whole` (indexes:
    names) are never wrapped."""
    cells = [[str(c) for c in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(title) or None, title_justify="left")
        for i, header in enumerate(headers):
            table.add_column(escape(header), no_wrap=i in whole)
        for row in cells:
            table.add_row(*map(escape, row))
        Console(width=_width()).print(table)
        return
    if title:
        print(title)
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    floors = [min(12, max([_longest_word(h), *(_longest_word(r[i]) for r in cells)]))
              for i, h in enumerate(headers)]
    widths = _fit(natural, _width(), whole=whole, floors=floors)
    for row in [list(headers), *cells]:
        wrapped = [_wrap_cell(c, w) for c, w in zip(row, widths)]
        for k in range(max(map(len, wrapped))):
            print("  ".join((lines[k] if k < len(lines) else "").ljust(w)
                            for lines, w in zip(wrapped, widths)).rstrip())


def _wrapped(text: str, indent: str = "  ") -> str:
    import textwrap

    return textwrap.fill(text, _width(), subsequent_indent=indent, break_on_hyphens=False)


def _dropped_total(dropped: dict[str, int]) -> int:
    return sum(dropped.values())


def _why_recomputed(steps: Sequence[dict]) -> None:
    """Why each step the cache did not serve recomputed (`recomputed` in the manifest): a
    table of its own, so that the summary stays narrow. A first run (every step `new`) and
    a run without the cache have nothing to explain."""
    rows = [[s["name"], ", ".join(why["because"]), why.get("detail", "")] for s in steps
            if not s.get("cached") and (why := s.get("recomputed") or {})
            and not set(why.get("because") or []) <= {"new", "cache off"}]
    if rows:
        print()
        _table(["step", "because", "detail"], rows, title="why recomputed:", whole=[0])


def _parallelism(steps: Sequence[dict]) -> None:
    """Which worker processes ran the partitions of the row-wise passes, a line per pass."""
    groups: list[tuple[tuple, list[str]]] = []
    for s in steps:
        if not s.get("workers"):
            continue  # cached before workers were recorded, or a global step
        key = (s.get("units"), len(s["workers"]))
        if groups and groups[-1][0] == key:
            groups[-1][1].append(s["name"])
        else:
            groups.append((key, [s["name"]]))
    if groups:
        print("\nparallelism:")
    for (units, workers), names in groups:
        print(_wrapped(f"  {' -> '.join(names)}: {units} partition{'s' * (units != 1)} run "
                       f"by {workers} worker process{'es' * (workers != 1)}", indent="    "))


def _remapped(steps: Sequence[dict]) -> None:
    """Steps whose operation was pointed at other columns (consumes=/produces=)."""
    for s in steps:
        remap = s.get("remapped") or {}
        parts = [f"reads {name!r} from {col!r}" for name, col in remap.get("consumes", {}).items()]
        parts += [f"stores {name!r} as {col!r}" for name, col in remap.get("produces", {}).items()]
        if parts:
            print(_wrapped(f"columns of {s['name']}: " + ", ".join(parts)))


def _drop_reasons(steps: Sequence[dict]) -> None:
    """Rows dropped by each step, by reason: a table of their own, so that the summary
    stays narrow however many reasons a step has."""
    rows = [[s["name"], reason, n] for s in steps for reason, n in s.get("dropped", {}).items()]
    if rows:
        print()
        _table(["step", "reason", "rows"], rows, title="drops by reason:", whole=[0])


# --- run ----------------------------------------------------------------------------------
def _user_frame(exc: BaseException, path: Path) -> str:
    """The innermost traceback line inside the user's file, formatted."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path:
        return f'  File "{path}", line {exc.lineno}\n    {(exc.text or "").strip()}'
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    if not frames:
        return ""
    f = frames[-1]
    return f'  File "{path}", line {f.lineno}, in {f.name}\n    {(f.line or "").strip()}'


def load_pipeline_file(path: Path) -> Any:
    """Import a pipeline file as a module (its folder goes on sys.path).

    The module name is derived from the file's stem, not its location, so that operations
    defined in the file keep their identity (part of cache keys) if the file moves. The file
    is compiled from its source, never from a cached .pyc (whose staleness check only sees
    whole seconds and sizes): the code that runs is the code the cache key hashed."""
    import importlib.util

    path = path.resolve()
    if not path.is_file():
        raise CLIError(f"no such pipeline file: {path}", code=2)
    name = "_datamill_pipeline_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot load {path} as Python (is it a .py file?)", code=2)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CLIError(f"error while loading pipeline file {path}: {type(exc).__name__}: {exc}",
                       code=2, detail=_user_frame(exc, path)) from exc
    return module


def _as_datasets(value: Any, what: str) -> list:
    from .dataset import LazyDataset as Dataset

    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(d, Dataset) for d in items):
        raise CLIError(f"{what} is a {type(value).__name__}, not a Dataset, a list of Datasets, "
                       "or a function returning one", code=2)
    return items


def pick_target(module: Any, path: Path, name: str | None) -> list:
    """The datasets to run: module.NAME, else `pipeline`, else the only Dataset global."""
    from .dataset import LazyDataset as Dataset

    if name is None:
        if hasattr(module, "pipeline"):
            name = "pipeline"
        else:
            found = [k for k, v in vars(module).items() if isinstance(v, Dataset)]
            if len(found) != 1:
                listing = f"several Datasets: {', '.join(found)}" if found else "no Dataset"
                raise CLIError(f"{path} defines {listing}; name the one to run as "
                               f"{path.name}:NAME (or call it `pipeline`)", code=2)
            name = found[0]
    if not hasattr(module, name):
        from .errors import did_you_mean

        found = _runnable_names(module)
        listing = (f"it defines {', '.join(found)}" if found else
                   "it defines no Dataset, list of Datasets or function")
        raise CLIError(f"{path} has no attribute {name!r} ({listing}){did_you_mean(name, found)}",
                       code=2)
    target = getattr(module, name)
    if callable(target) and not isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise CLIError(f"{path}:{name}() raised {type(exc).__name__}: {exc}", code=2,
                           detail=_user_frame(exc, path.resolve())) from exc
    return _as_datasets(target, f"{path.name}:{name}")


def _runnable_names(module: Any) -> list[str]:
    """What `file.py:NAME` could name: the module's Datasets, lists of Datasets, and the
    functions it defines."""
    import inspect

    from .dataset import LazyDataset as Dataset

    names = []
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        if isinstance(value, Dataset) or (
                isinstance(value, (list, tuple)) and value
                and all(isinstance(v, Dataset) for v in value)) or (
                inspect.isfunction(value) and value.__module__ == module.__name__):
            names.append(key)
    return names


def _split_target(spec: str) -> tuple[Path, str | None]:
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier() and not Path(spec).exists():
        return Path(head), tail
    return Path(spec), None


def until_step(datasets: list, step_name: str) -> list:
    """The datasets that end at the step named `step_name` of `datasets`' chains (one per
    distinct step of that name): running them runs the pipeline up to that step."""
    found: dict[str, Any] = {}
    names: dict[str, None] = {}
    for ds in datasets:
        for step in ds.step.chain():
            names[step.name] = None
            if step.name == step_name:
                found.setdefault(step.key, type(ds)(step))
    if not found:
        from .errors import did_you_mean

        raise CLIError(f"--until {step_name}: the pipeline has no step of that name"
                       f"{did_you_mean(step_name, list(names))} (steps: {', '.join(names)})",
                       code=2)
    return list(found.values())


def cmd_run(args: argparse.Namespace) -> int:
    path, name = _split_target(args.pipeline)
    module = load_pipeline_file(path)
    datasets = pick_target(module, path, name)
    if args.until:
        datasets = until_step(datasets, args.until)
    from .executors import make_executor

    workdir = Path(args.workdir) if args.workdir else Path.cwd() / "datamill-work"
    if args.address and args.executor != "ray":
        raise CLIError("--address is for --executor ray", code=2)
    options = {"address": args.address} if args.executor == "ray" else {}
    executor = make_executor(args.executor, workdir, workers=args.workers,
                             cache=not args.no_cache, progress=args.progress, **options)
    result = executor.run(datasets)
    steps = result.steps
    _table(["step", "kind", "rows in -> out", "dropped", "errors", "cached"],
           [[s["name"], s.get("kind", "?"), f"{s.get('rows_in', 0)} -> {s.get('rows_out', 0)}",
             _dropped_total(s.get("dropped", {})), s.get("errors", 0),
             "cached" if s.get("cached") else "computed"] for s in steps], whole=[0])
    _drop_reasons(steps)
    _why_recomputed(steps)
    for s in steps:
        if s.get("kind") == "sink":
            print(f"output: {s['arguments'].get('path')}")
    print(f"manifest: {result.manifest_path}")
    return 0


# --- ops ----------------------------------------------------------------------------------
def cmd_compile_kfp(args: argparse.Namespace) -> int:
    path, name = _split_target(args.pipeline)
    module = load_pipeline_file(path)
    datasets = pick_target(module, path, name)
    from .kubeflow import compile_kfp

    tasks = compile_kfp(datasets, path, args.output, image=args.image, volume=args.volume,
                        target=name, mount_path=args.mount_path, workdir=args.workdir,
                        workers=args.workers, pipeline_path=args.pipeline_path)
    _table(["task", "steps", "image"],
           [[t.name, ", ".join(s.name for s in t.steps), t.image] for t in tasks], whole=[0])
    print(f"wrote {args.output}")
    return 0


def cmd_ops_list(args: argparse.Namespace) -> int:
    from . import registry

    ops = registry.load_all()
    rows = []
    for n, c in sorted(ops.items()):
        found = registry.provider(c)
        rows.append([n, c.kind, c.version, f"{found[0]} {found[1]}" if found else "-",
                     c.summary()])
    _table(["name", "kind", "version", "distribution", "summary"], rows, whole=[0, 3])
    return 0


def cmd_ops_new(args: argparse.Namespace) -> int:
    from .packaging import new_package

    root = new_package(args.name, args.kind, Path(args.dir))
    print(f"wrote {root}/: pyproject.toml (entry point {args.name}), src/, tests/, README.md")
    print(f"next: cd {root} && pip install -e '.[test]' && pytest")
    return 0


def cmd_ops_readme(args: argparse.Namespace) -> int:
    from . import registry
    from .packaging import readme_section, write_readme

    cls = registry.get(args.name)
    if args.output is None:
        print(readme_section(cls), end="")
        return 0
    changed = write_readme(cls, Path(args.output))
    print(f"{args.output}: {'updated' if changed else 'already up to date'}")
    return 0


def cmd_ops_show(args: argparse.Namespace) -> int:
    from . import packaging, registry

    cls = registry.get(args.name)
    resources = ", ".join(f"{k}={v}" for k, v in cls.resources.model_dump().items()
                          if v is not None)
    print(f"{cls.name}  ({cls.kind} operation, version {cls.version})")
    print(f"  {cls.identity()}\n")
    print(cls.description() or "(no description)")
    print()
    rows = packaging.arguments(cls)
    if rows:
        _table(["argument", "type", "default", "description"], [list(r) for r in rows],
               title="Arguments:")
    else:
        print("Arguments: none")
    print()
    found = registry.provider(cls)
    print(f"provided by:  {f'{found[0]} {found[1]}' if found else '-'}")
    print(f"consumes:     {packaging.columns(cls, 'consumes')}")
    print(f"produces:     {packaging.columns(cls, 'produces')}")
    print(f"resources:    {resources}")
    print(f"batch size:   {cls.batch_size or 'default'}")
    print(f"batch format: {cls.batch_format}")
    print(f"deterministic: {'yes' if getattr(cls, 'deterministic', True) else 'no'}")
    if cls.requirements:  # runs in an environment of its own (docs/environments.md)
        print(f"requirements: {', '.join(cls.requirements)}")
    if cls.image:
        print(f"image:        {cls.image}")
    return 0


# --- inspect ------------------------------------------------------------------------------
def _load_workdir_manifest(workdir: Path) -> dict:
    from .manifest import LINEAGE, MANIFEST, load_manifest

    if not workdir.is_dir():
        raise CLIError(f"no such workdir: {workdir}")
    if not any((workdir / n).is_file() for n in (MANIFEST, LINEAGE)):
        raise CLIError(f"no {MANIFEST} in {workdir}: has a pipeline run there?")
    try:
        return load_manifest(workdir)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read the manifest in {workdir}: {exc}") from exc


def _check_step(workdir: Path, manifest: dict, step: str | None) -> str | None:
    from .errors import did_you_mean

    names = [s["name"] for ds in manifest.get("datasets", []) for s in ds["steps"]]
    if step and step not in names:
        raise CLIError(f"no step named {step!r} in {workdir}{did_you_mean(step, names)}")
    return step or None


def _set_aside(workdir: Path, manifest: dict, kind: str, step: str | None,
               columns: list[str] | bool, limit: int) -> dict[str, dict]:
    """Per step: how many rows it dropped (or quarantined), and the first `limit` of them
    with their content."""
    from . import rows

    found: dict[str, dict] = {}
    for name in rows.steps_with(workdir, kind, _check_step(workdir, manifest, step)):
        if kind == "dropped":
            table = rows.dropped_rows(workdir, name, columns=columns, limit=limit)
            total = rows.set_aside_count(workdir, "dropped", name)
        else:
            table = rows.quarantined_rows(workdir, name, columns=columns, limit=limit)
            total = rows.set_aside_count(workdir, "quarantine", name)
        found[name] = {"total": total, "rows": table.to_pylist()}
    return found


def _duplicates_of(workdir: Path, row_id: int, columns: list[str] | bool) -> dict:
    """The kept row `row_id`, the step that kept it, and the rows dropped as its duplicates;
    an id that no deduplication step saw is an error."""
    from . import rows

    steps = rows.dedup_steps(workdir)
    if not steps:
        raise CLIError(f"no step of the last run in {workdir} records duplicates "
                       "(drop_duplicates, minhash_dedup, semantic_dedup, image_dedup)")
    for step in steps:
        kept = rows.find_row(workdir, row_id, step, columns=columns)
        if kept is not None:
            dups = rows.duplicates(workdir, row_id, step, columns=columns)
            return {"of": row_id, "step": step, "row": kept.to_pylist()[0],
                    "rows": dups.to_pylist()}
    raise CLIError(f"no row with _id {row_id} reached {', '.join(map(repr, steps))} in "
                   f"{workdir} (row ids are in `datamill inspect {workdir} --dropped`)")


def _image_label(value: bytes) -> str | None:
    """"<png image, 12,345 bytes>" for the bytes of a raster image, else None."""
    from .image_type import sniff_format

    fmt = sniff_format(value)
    return None if fmt in (None, "svg", "html") else f"<{fmt} image, {len(value):,} bytes>"


def _cell(value: Any, width: int = CELL) -> str:
    """A value in a row table: one line, at most `width` characters."""
    if value is None:
        return "-"
    if isinstance(value, bytes):
        value = _image_label(value) or value.decode("utf-8", errors="replace")
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _row_tables(found: dict[str, dict], what: str) -> None:
    """One table per step: its meta columns first, then the row's content."""
    for step, entry in found.items():
        rows = entry["rows"]
        print(f"\n{what} by {step}: {entry['total']} (showing {len(rows)})")
        if not rows:
            continue
        meta = [c for c in ("_id", "_reason", "cluster_id", "_error", "_path", "_line", "_raw",
                            "_row")  # _row: the row as JSON, in workdirs of earlier versions
                if any(r.get(c) is not None for r in rows)]
        content = [c for c in rows[0] if not c.startswith("_") and c not in (
            "cluster_id", "cluster_size") and any(c in r for r in rows)]
        headers = [{"_path": "file", "_raw": "raw line"}.get(c, c.lstrip("_")) for c in meta]
        whole = {"_error": 10 * CELL, "_path": 10 * CELL}  # wrapped, not cut
        cells = {c: [_cell(r.get(c), whole.get(c, CELL)) for r in rows] for c in (*meta, *content)}
        shown = _fitting(content, cells, sum(min(max(map(len, [h, *cells[c]])), 3 * CELL) + 2
                                             for h, c in zip(headers, meta)))
        _table([*headers, *shown], [[cells[c][i] for c in (*meta, *shown)]
                                    for i in range(len(rows))])
        if len(shown) < len(content):
            print(_wrapped(f"(and column(s) {', '.join(content[len(shown):])}: pick columns "
                           "with --columns, or see every value with --json)"))


def _fitting(content: list[str], cells: dict[str, list[str]], used: int) -> list[str]:
    """The leading content columns that fit beside the meta columns (`used` characters),
    each at least 12 characters wide (or its own width), at least one."""
    shown: list[str] = []
    for c in content:
        width = min(12, max(map(len, [c, *cells[c]])))
        if shown and used + width > _width():
            break
        shown.append(c)
        used += min(CELL, max(map(len, [c, *cells[c]]))) + 2
    return shown


def _json_rows(value: Any) -> Any:
    if isinstance(value, bytes):
        return _image_label(value) or value.decode("utf-8", errors="replace")
    return str(value)


def cmd_inspect(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    manifest = _load_workdir_manifest(workdir)
    if args.limit < 1:
        raise CLIError("--limit must be at least 1", code=2)
    columns: list[str] | bool = [c.strip() for c in args.columns.split(",") if c.strip()] \
        if args.columns else True
    dropped = quarantined = dups = None
    if args.dropped is not None:
        dropped = _set_aside(workdir, manifest, "dropped", args.dropped, columns, args.limit)
    if args.quarantine is not None:
        quarantined = _set_aside(workdir, manifest, "quarantine", args.quarantine, columns,
                                 args.limit)
    if args.duplicates is not None:
        dups = _duplicates_of(workdir, args.duplicates, columns)
    if args.json:
        out = dict(manifest)
        if dropped is not None:
            out["dropped_rows"] = {"total": sum(e["total"] for e in dropped.values()),
                                   "sample": [{"_step": step, **r} for step, e in
                                              dropped.items() for r in e["rows"]]}
        if quarantined is not None:
            out["quarantined_rows"] = quarantined
        if dups is not None:
            out["duplicates"] = dups
        print(json.dumps(out, indent=2, default=_json_rows))
        return 0
    run = [f"{k}={manifest[k]}"
           for k in ("run_id", "started", "wall_seconds", "executor", "workers") if k in manifest]
    print(_wrapped(f"run: {' '.join(run) or '(unknown)'}"))
    for ds in manifest.get("datasets", []):
        print()
        _table(["step", "operation", "kind", "rows in", "rows out", "dropped", "errors",
                "wall s", "cached"],
               [[s["name"], s.get("operation", "?"), s.get("kind", "?"), s.get("rows_in", "?"),
                 s.get("rows_out", "?"), _dropped_total(s.get("dropped", {})),
                 s.get("errors", 0), f"{s.get('wall_seconds', 0):.2f}",
                 "yes" if s.get("cached") else "no"]
                for s in ds["steps"]], title=f"dataset {ds.get('name')}:", whole=[0])
        _drop_reasons(ds["steps"])
        _why_recomputed(ds["steps"])
        _remapped(ds["steps"])
        for s in ds["steps"]:  # an operation's own counters (Operation.count)
            if s.get("counters"):
                print(_wrapped(f"counters of {s['name']}: "
                               + ", ".join(f"{k}={v}" for k, v in s["counters"].items())))
        _parallelism(ds["steps"])
    if dropped is not None:
        print(f"\ndropped rows: {sum(e['total'] for e in dropped.values())}")
        _row_tables(dropped, "dropped")
    if quarantined is not None:
        print(f"\nquarantined rows: {sum(e['total'] for e in quarantined.values())}")
        _row_tables(quarantined, "quarantined")
    if dups is not None:
        print(f"\nrow {dups['of']}, kept by {dups['step']}:")
        row = dups["row"]
        _table(list(row), [[_cell(v) for v in row.values()]])
        _row_tables({dups["step"]: {"total": len(dups["rows"]), "rows": dups["rows"]}},
                    f"duplicates of row {dups['of']} dropped")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every committed file; exit 1 when something is damaged (marked for
    recompute unless --dry-run)."""
    from dataclasses import asdict

    from .integrity import verify

    try:
        report = verify(args.workdir, mark=not args.dry_run)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps({"damaged": [asdict(d) for d in report.damaged],
                          "pending": report.pending, "temp_files_removed": report.temp_files,
                          "temp_bytes_removed": report.temp_bytes}, indent=2))
        return 1 if report.damaged else 0
    if report.temp_files:
        print(f"removed {report.temp_files} temp files of killed runs "
              f"({report.temp_bytes / 2**20:.1f} MiB)")
    if report.pending:
        print(f"{len(report.pending)} damaged files found earlier await recompute (run the "
              "pipeline):")
        for d in report.pending:
            print(f"  step {d['step']}, partition {d['partition']}: {d['file']}")
    if not report.damaged:
        print(f"ok: every committed file of {args.workdir} is intact")
        return 0
    print(f"damaged: {len(report.damaged)} files")
    for d in report.damaged:  # one line each, unwrapped: paths stay whole for grep and copy
        print(f"  step {d.step}, partition {d.partition}: {d.file} ({d.problem})")
    if args.dry_run:
        print("nothing marked (--dry-run)")
    else:
        print("marked for recompute: the next run of the pipeline recomputes exactly these "
              "partitions")
    return 1


def cmd_search(args: argparse.Namespace) -> int:
    from .search import format_hits, search

    if args.k < 1:
        raise CLIError("-k must be at least 1", code=2)
    hits = search(args.index, args.query, args.k, hybrid=args.hybrid, model=args.model,
                  table=args.table, distinct=not args.all)
    if args.json:
        print(json.dumps([{"id": h.id, "score": h.score, "text": h.text, **h.source,
                           "also": h.also} for h in hits], default=str, ensure_ascii=False))
    else:
        print(format_hits(hits) if hits else "no results")
    return 0


# --- explore, report -----------------------------------------------------------------------
def _explore_imports() -> None:
    """The explorer's dependencies, or a CLIError naming the extra to install."""
    import importlib.util

    missing = [m for m in ("starlette", "jinja2", "duckdb", "uvicorn", "PIL")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(f"the explorer needs {', '.join(missing)}: pip install "
                       "'datamill[explore]'", code=2)


def cmd_explore(args: argparse.Namespace) -> int:
    for workdir in args.workdirs:
        _load_workdir_manifest(Path(workdir))
    _explore_imports()
    from .explore.server import serve

    try:
        serve(args.workdirs, host=args.host, port=args.port, open_browser=not args.no_browser)
    except OSError as exc:
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    _load_workdir_manifest(Path(args.workdir))
    _explore_imports()
    from .explore.report import write_report

    out = write_report(args.workdir, args.output)
    print(f"report: {out}")
    return 0


# --- entry point --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# Loggers of libraries datamill runs: their notices are noise unless --verbose.
THIRD_PARTY_LOGGERS = ("ray", "lance", "lancedb", "pylance", "urllib3", "filelock", "fsspec",
                       "sentence_transformers", "transformers", "torch", "huggingface_hub",
                       "datasets", "trafilatura", "htmldate", "justext", "asyncio")
# Environment read by native (Rust, C++) code when it starts: set before it loads.
QUIET_ENV = {"RUST_LOG": "error", "LANCE_LOG": "error", "LANCEDB_LOG": "error",
             "RAY_DEDUP_LOGS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2",
             "TOKENIZERS_PARALLELISM": "false"}


def quiet_third_party(verbose: bool) -> None:
    """Keep third-party log lines (lance's Rust WARN, ray's INFO) out of the output unless
    `verbose`. Settings the user made in the environment win."""
    import logging
    import os

    if verbose:
        os.environ["DATAMILL_VERBOSE"] = "1"  # Ray workers forward their logs
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _stdout_closed() -> int:
    """The reader of stdout went away (`datamill inspect WD | head -1`): stop quietly.
    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail."""
    import os

    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # what a shell reports for a command ended by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full Python tracebacks on errors")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show the log lines of third-party libraries (lance, ray)")
    parser = argparse.ArgumentParser(prog="datamill", parents=[common],
                                     description="Composable, typed, cached data pipelines.")
    parser.add_argument("--version", action="version", version=f"datamill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run a pipeline file")
    run.add_argument("pipeline", metavar="PIPELINE.py[:NAME]",
                     help="a Python file; NAME picks a Dataset, list or function in it")
    run.add_argument("--workdir", help="working directory (default: ./datamill-work)")
    run.add_argument("--workers", type=_positive_int,
                     help="parallel units (default: the cores here, or the cluster's CPUs)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="where units run: worker processes here, or a Ray cluster")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="the Ray head node (default: $RAY_ADDRESS, else a local Ray)")
    run.add_argument("--no-cache", action="store_true", help="recompute every step")
    run.add_argument("--until", metavar="STEP",
                     help="run the pipeline up to its step STEP (and no further)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="live progress bars (default: when stderr is a terminal)")
    run.set_defaults(handler=cmd_run)

    comp = sub.add_parser("compile", parents=[common],
                          help="compile a pipeline file for a workflow service")
    comp_sub = comp.add_subparsers(dest="target", metavar="TARGET", required=True)
    kfp = comp_sub.add_parser("kfp", parents=[common],
                              help="a Kubeflow Pipelines v2 YAML (Vertex AI Pipelines too)")
    kfp.add_argument("pipeline", metavar="PIPELINE.py[:NAME]",
                     help="a Python file; NAME picks a Dataset, list or function in it")
    kfp.add_argument("-o", "--output", required=True, help="the YAML file to write")
    kfp.add_argument("--image", required=True,
                     help="container image with datamill installed (an operation may "
                          "declare its own)")
    kfp.add_argument("--volume", required=True, metavar="PVC",
                     help="PersistentVolumeClaim every task mounts: workdir and outputs")
    kfp.add_argument("--mount-path", default="/mnt/datamill",
                     help="where tasks mount the volume, and run (default: /mnt/datamill)")
    kfp.add_argument("--workdir", default="datamill-work",
                     help="workdir, relative to the mount (default: datamill-work)")
    kfp.add_argument("--workers", type=_positive_int, default=1,
                     help="worker processes per task; its CPU and memory requests are the "
                          "stage's declared resources times this (default: 1)")
    kfp.add_argument("--pipeline-path", metavar="PATH",
                     help="where the image holds the pipeline file (default: the file "
                          "travels inside the YAML)")
    kfp.set_defaults(handler=cmd_compile_kfp)

    ops = sub.add_parser("ops", parents=[common], help="list or describe operations")
    ops_sub = ops.add_subparsers(dest="ops_command", metavar="{list,show,new,readme}")
    ops_sub.add_parser("list", parents=[common],
                       help="all operations, with the distribution providing each").set_defaults(
        handler=cmd_ops_list)
    show = ops_sub.add_parser("show", parents=[common], help="one operation's spec")
    show.add_argument("name")
    show.set_defaults(handler=cmd_ops_show)
    new = ops_sub.add_parser("new", parents=[common],
                             help="scaffold a pip-installable package of one operation")
    new.add_argument("name", help="the operation's name (lowercase, digits, _)")
    new.add_argument("--kind", choices=("map", "filter", "expand", "global"), default="map",
                     help="the kind of operation (default: map)")
    new.add_argument("--dir", default=".", help="where to create datamill-NAME/ (default: .)")
    new.set_defaults(handler=cmd_ops_new)
    readme = ops_sub.add_parser("readme", parents=[common],
                                help="the README section of an operation, from its spec")
    readme.add_argument("name")
    readme.add_argument("-o", "--output", metavar="README.md",
                        help="write (or update) the section in this file instead of printing")
    readme.set_defaults(handler=cmd_ops_readme)
    ops.set_defaults(handler=lambda _args: _usage(ops))

    insp = sub.add_parser("inspect", parents=[common], help="summarize a workdir's last run")
    insp.add_argument("workdir")
    insp.add_argument("--json", action="store_true", help="print the manifest as JSON")
    insp.add_argument("--dropped", nargs="?", const="", metavar="STEP",
                      help="also show dropped rows, with their content (of STEP)")
    insp.add_argument("--quarantine", nargs="?", const="", metavar="STEP",
                      help="also show quarantined rows: file, error, the whole row (of STEP)")
    insp.add_argument("--duplicates", type=int, metavar="ID",
                      help="show the kept row ID and the rows dropped as its duplicates")
    insp.add_argument("--columns", metavar="A,B",
                      help="the columns of the rows to show (default: all, values cut)")
    insp.add_argument("--limit", type=int, default=DROPPED_SAMPLE, metavar="N",
                      help=f"rows shown per step (default: {DROPPED_SAMPLE})")
    insp.set_defaults(handler=cmd_inspect)

    check = sub.add_parser("verify", parents=[common],
                           help="check every committed file of a workdir")
    check.add_argument("workdir")
    check.add_argument("--dry-run", action="store_true",
                       help="only report: mark nothing for recompute, remove no temp file")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(handler=cmd_verify)

    explore = sub.add_parser("explore", parents=[common],
                             help="browse workdirs in a local web app (read-only)")
    explore.add_argument("workdirs", nargs="+", metavar="WORKDIR")
    explore.add_argument("--port", type=int, default=8765,
                         help="port to serve on (default: 8765; 0: any free port)")
    explore.add_argument("--host", default="127.0.0.1",
                         help="address to bind (default: 127.0.0.1, this machine only; "
                              "another one requires the access token printed in the URL)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser")
    explore.set_defaults(handler=cmd_explore)

    report = sub.add_parser("report", parents=[common],
                            help="write a workdir's overview as one self-contained HTML file")
    report.add_argument("workdir")
    report.add_argument("-o", "--output", required=True, metavar="REPORT.html",
                        help="the HTML file to write")
    report.set_defaults(handler=cmd_report)

    find = sub.add_parser("search", parents=[common], help="query a vector index")
    find.add_argument("index", help="LanceDB database[/table], or postgresql://...[?table=T]")
    find.add_argument("query", help="text to search for")
    find.add_argument("-k", type=int, default=5, help="passages to show (default: 5)")
    find.add_argument("--hybrid", action="store_true",
                      help="vector + full-text search (needs the index's fts_column)")
    find.add_argument("--model", help="query model (default: the one the index records)")
    find.add_argument("--table", help="table name, when INDEX does not say")
    find.add_argument("--json", action="store_true", help="print the hits as JSON")
    find.add_argument("--all", action="store_true",
                      help="list identical passages separately (default: one hit each, with "
                           "the other places it was indexed from)")
    find.set_defaults(handler=cmd_search)
    parser.set_defaults(handler=lambda _args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    debug = getattr(args, "debug", False)
    quiet_third_party(getattr(args, "verbose", False))
    from .errors import DatamillError

    try:
        try:
            return args.handler(args)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
    except BrokenPipeError:
        return _stdout_closed()
    except CLIError as exc:
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        print(f"datamill: error: {exc}", file=sys.stderr)
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        return exc.code
    except DatamillError as exc:
        if debug:
            traceback.print_exc()
        print(f"datamill: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " Committed work is kept: re-running the same command resumes where it " \
            "stopped." if args.command == "run" else ""
        print(f"\ndatamill: interrupted.{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
