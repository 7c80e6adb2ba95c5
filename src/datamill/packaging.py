"""Operations as pip-installable packages: a README section written from an operation's spec,
and `datamill ops new`, which scaffolds a package (pyproject with the `datamill.operations`
entry point, the operation, its README and tests that use `datamill.testing`)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Any

from .errors import PipelineError
from .registry import ENTRY_POINT_GROUP

KINDS = ("map", "filter", "expand", "global")


def _markers(name: str) -> tuple[str, str]:
    """The comments around an operation's README section (one section per operation)."""
    return (f"<!-- datamill:spec {name} (written by `datamill ops readme {name}`; edits "
            "here are lost) -->", f"<!-- /datamill:spec {name} -->")


# --- the spec, as text --------------------------------------------------------------------
def type_label(annotation: Any) -> str:
    """An argument's type as a reader writes it (`int`, `list[str] | None`)."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return re.sub(r"\b(typing|collections\.abc|builtins)\.", "", str(annotation))


def default_label(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return repr(field.default_factory())
    return repr(field.default)


def arguments(cls: type) -> list[tuple[str, str, str, str]]:
    """(argument, type, default, description) of each argument of operation class `cls`."""
    return [(f.alias or n, type_label(f.annotation), default_label(f), f.description or "")
            for n, f in cls.Args.model_fields.items()]


def columns(cls: type, attr: str) -> str:
    """The declared consumed or produced columns, `name: type`, of `cls`."""
    from .operation import Operation

    declared = getattr(cls, attr)
    text = ", ".join(f"{col}: {typ}" for col, typ in declared.items()) or "-"
    if getattr(cls, f"resolve_{attr}") != getattr(Operation, f"resolve_{attr}"):
        text += " (computed from the input schema)"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def readme_section(cls: type) -> str:
    """The Markdown section a package's README shows for operation class `cls`, from its
    spec: summary, description, arguments with their docs, columns with their types."""
    start, end = _markers(cls.name)
    lines = [start, f"## `{cls.name}`", "",
             f"A **{cls.kind}** operation (version {cls.version}).", "",
             cls.description() or "(no description)", "", "### Arguments", ""]
    example = next((c for c in cls.consumes if "{" not in c), "text")
    rows = arguments(cls)
    if rows:
        lines += ["| argument | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{a}` | `{_cell(t)}` | `{_cell(d)}` | {_cell(doc)} |"
                  for a, t, d, doc in rows]
    else:
        lines.append("None.")
    lines += ["", "### Columns", "",
              f"- consumes: {columns(cls, 'consumes')}",
              f"- produces: {columns(cls, 'produces')}", "",
              "Point it at other columns with the step options `consumes=` / `produces=`: "
              f"`.apply(\"{cls.name}\", consumes={{\"{example}\": \"your_column\"}})`.",
              end]
    return "\n".join(lines) + "\n"


def write_readme(cls: type, path: Path) -> bool:
    """Write (or bring up to date) the spec section of README `path`; True if it changed.
    Text outside the section is the author's and is kept."""
    section = readme_section(cls)
    start, end = _markers(cls.name)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        new = before + section + ("\n" + after if after else "")
    else:
        new = (text.rstrip("\n") + "\n\n" if text else "") + section
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


# --- scaffolding --------------------------------------------------------------------------
def check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise PipelineError(f"an operation name is lowercase letters, digits and _, starting "
                            f"with a letter (a Python identifier), got {name!r}")
    from . import registry

    taken = registry.load_all().get(name)
    if taken is not None:
        raise PipelineError(f"an operation named {name!r} exists already ({taken.identity()});"
                            " a package's operation of the same name would replace it: pick "
                            "another name")


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def new_package(name: str, kind: str, directory: Path) -> Path:
    """Scaffold package `datamill-NAME` under `directory`; returns its folder."""
    from .templates import operation_module, test_module

    if kind not in KINDS:
        raise PipelineError(f"--kind is one of {', '.join(KINDS)}, got {kind!r}")
    check_name(name)
    dist = "datamill-" + name.replace("_", "-")
    package = "datamill_" + name
    root = Path(directory) / dist
    if root.exists():
        raise PipelineError(f"{root} exists already; remove it or pick another --dir")
    cls = class_name(name)
    files = {
        "pyproject.toml": _pyproject(dist, package, name, cls, kind),
        f"src/{package}/__init__.py": f'"""The datamill operation `{name}`."""\n\n'
                                      f"from .ops import {cls}\n\n__all__ = [\"{cls}\"]\n",
        f"src/{package}/ops.py": operation_module(name, cls, kind),
        f"tests/test_{name}.py": test_module(name, cls, kind, package),
        "README.md": _readme_intro(dist, name),
        ".gitignore": "build/\ndist/\n*.egg-info/\n__pycache__/\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    write_readme(_load_class(root / "src" / package / "ops.py", package, cls), root / "README.md")
    return root


def _load_class(path: Path, package: str, cls: str) -> type:
    """The operation class of a scaffolded module, loaded from its file without installing
    the package (and without registering its name in this process)."""
    import importlib.util
    import sys

    from . import registry

    module_name = f"_datamill_scaffold_{package}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    before = dict(registry._REGISTRY)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.modules.pop(module_name, None)
        registry._REGISTRY.clear()
        registry._REGISTRY.update(before)
    return getattr(module, cls)


def _pyproject(dist: str, package: str, name: str, cls: str, kind: str) -> str:
    from ._version import __version__

    major_minor = ".".join(__version__.split(".")[:2])
    return f'''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "The datamill {kind} operation `{name}`."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["datamill>={major_minor}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# how datamill finds the operation: `datamill ops list` shows it once the package is installed
[project.entry-points."{ENTRY_POINT_GROUP}"]
{name} = "{package}.ops:{cls}"

[tool.setuptools.packages.find]
where = ["src"]
'''


def _readme_intro(dist: str, name: str) -> str:
    return f'''# {dist}

A [datamill](https://pypi.org/project/datamill/) operation, published through the
`{ENTRY_POINT_GROUP}` entry point: once the package is installed, `datamill ops list`
shows `{name}` and any pipeline can apply it by name.

```bash
pip install {dist}            # or: pip install --index-url https://your.index/simple {dist}
```

```python
import datamill as dm

dm.Dataset.read("docs.jsonl").apply("{name}").write("out/").run()
```

Develop: `pip install -e ".[test]" && pytest`. After changing the operation's docstring,
arguments or columns, `datamill ops readme {name} -o README.md` rewrites the section below.

'''
