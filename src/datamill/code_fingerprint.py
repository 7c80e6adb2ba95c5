"""Code fingerprints: a digest of the code an operation runs, part of its cache key.

Where the code lives decides what is hashed:

- datamill's own modules: datamill's version plus the source of the defining module and of
  the datamill modules it imports, followed through their imports (datamill is often
  installed editable while it is developed, when its version alone would not see an edit).
  The engine (`ENGINE`: the base classes of `datamill.operation`, executors, storage, the
  DAG) is the operations' contract and counts for nothing beyond the version.
- a module of an installed distribution (a file under site-packages): the distribution's
  name and version.
- the standard library and builtins: nothing.
- any other code (a pipeline file, a local package, `__main__`, a notebook): the source of
  the class or function itself and, followed the same way, of its base classes, of the
  functions and classes its code names at module level or holds in closures, the values of
  the constants it names, the type of any other object it names, and the whole source of the
  local modules it names. Code without a source file counts by its bytecode.

So editing another part of a pipeline file (another step's arguments, another operation)
leaves an operation's fingerprint alone. A fingerprint is computed once per class or
function and kept while the names its code looked up still hold the same objects.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import hashlib
import inspect
import re
import sys
import types
import weakref
from typing import Any

_FRAMEWORK = frozenset({"datamill.operation"})
# datamill modules whose source an operation's fingerprint does not follow: the engine
ENGINE = frozenset({
    "datamill", "datamill._version", "datamill.errors", "datamill.operation",
    "datamill.schema", "datamill.registry", "datamill.storage", "datamill.integrity",
    "datamill.dataset",
    "datamill.formats", "datamill.plan", "datamill.reader", "datamill.manifest",
    "datamill.cache", "datamill.cache_history", "datamill.code_fingerprint",
    "datamill.running", "datamill.rows", "datamill.cli", "datamill.executors"})
_MISSING = object()
# obj -> (digest, [(namespace, name, value) looked up]): valid while every lookup still holds
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def code_fingerprint(obj: Any) -> str:
    """A 16-hex-digit digest of the code of a class or function (see the module docstring)."""
    with contextlib.suppress(KeyError, TypeError):
        digest, lookups = _MEMO[obj]
        if all(ns.get(name, _MISSING) is value for ns, name, value in lookups):
            return digest
    walk = _Walk()
    walk.add(obj)
    text = "\0".join(walk.parts).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(text).hexdigest()[:16]
    with contextlib.suppress(TypeError):
        _MEMO[obj] = (digest, walk.lookups)
    return digest


# --- where code comes from ---------------------------------------------------------------
@functools.cache
def origin(module: str | None) -> str | None:
    """What stands for the code of `module`: "" (nothing: builtins, the standard library,
    datamill's framework), a label (datamill or an installed distribution, with its
    version), or None (local code, followed by its source)."""
    if not module or module == "builtins" or module in _FRAMEWORK:
        return ""
    if module == "__main__":  # the user's script or notebook (even when run by `python -m`)
        return None
    top = module.partition(".")[0]
    if top == "datamill":
        from ._version import __version__

        return f"datamill=={__version__} {module}:{datamill_digest(module)}"
    if top in sys.stdlib_module_names:
        return ""
    path = _module_file(module)
    if path and ("site-packages" in path or "dist-packages" in path):
        dist = distribution_of(top)
        return dist or f"{module}:{file_digest(module)}"
    return None


def _module_file(module: str) -> str | None:
    """The module's file; for one not imported (yet), where it would be loaded from."""
    mod = sys.modules.get(module)
    if mod is not None:
        return getattr(mod, "__file__", None)
    import importlib.util

    try:
        return getattr(importlib.util.find_spec(module), "origin", None)
    except (ImportError, ValueError):
        return None


@functools.cache
def file_digest(module: str) -> str:
    """A digest of the module's source file (its bytecode when no file can be read)."""
    path = _module_file(module)
    try:
        with open(path, "rb") as fh:  # type: ignore[arg-type]
            return hashlib.sha256(fh.read()).hexdigest()[:16]
    except (OSError, TypeError):
        return "no-file"


@functools.cache
def datamill_digest(module: str) -> str:
    """A digest of a datamill module's source and of the datamill modules it imports, lazily
    or not, followed through their imports (the engine excepted)."""
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = file_digest(name) + _c_source_digest(name)
        todo.extend(m for m in _datamill_imports(name) if m not in seen)
    return hashlib.sha256(" ".join(f"{n}:{d}" for n, d in sorted(seen.items())).encode()
                          ).hexdigest()[:16]


def _c_source_digest(module: str) -> str:
    """The digest of `_NAME.c` beside module `NAME`: the C source a ctypes wrapper loads."""
    from pathlib import Path

    path = _module_file(module)
    if not path:
        return ""
    source = Path(path).with_name(f"_{module.rpartition('.')[2]}.c")
    try:
        return "+c:" + hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def _in_engine(module: str) -> bool:
    return module in ENGINE or any(module.startswith(e + ".") for e in ENGINE - {"datamill"})


@functools.cache
def _datamill_imports(module: str) -> tuple[str, ...]:
    """The datamill modules (engine excepted) that `module`'s source imports anywhere."""
    import ast
    import importlib.util

    path = _module_file(module) or getattr(importlib.util.find_spec(module), "origin", None)
    try:
        with open(path, "rb") as fh:  # type: ignore[arg-type]
            tree = ast.parse(fh.read())
    except (OSError, TypeError, SyntaxError, ValueError):
        return ()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package
                                               ) if node.level else node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from . import module`
    return tuple(sorted(m for m in found if m.startswith("datamill.") and not _in_engine(m)
                        and _is_module(m)))


def _is_module(name: str) -> bool:
    """Whether `name` is a module, without importing it (nor, for `module.attribute`,
    the module: find_spec imports a name's parent, so a parent that is no package ends it)."""
    import importlib.util

    parent = name.rpartition(".")[0]
    try:
        if parent in sys.modules:
            if not hasattr(sys.modules[parent], "__path__"):
                return False
        elif parent:
            spec = importlib.util.find_spec(parent)
            if spec is None or spec.submodule_search_locations is None:
                return False
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def distribution_of(top: str) -> str | None:
    """`name==version` of the installed distribution providing top-level package `top`."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution(top)  # most distributions are named after their package
        if any(f.parts and f.parts[0].split(".")[0] == top for f in dist.files or ()):
            return f"{dist.metadata['Name']}=={dist.version}"
    for name in _packages_distributions().get(top, ()):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{name}=={metadata.version(name)}"
    return None


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()  # slow (every distribution's file list): once


def _is_builtin(obj: Any) -> bool:
    import builtins

    if isinstance(obj, types.FunctionType):
        return False
    return getattr(builtins, getattr(obj, "__name__", ""), None) is obj or not isinstance(
        obj, type)


# --- the walk ----------------------------------------------------------------------------
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _source(obj: Any) -> str | None:
    """The object's source text (kept: the code of a loaded object never changes)."""
    with contextlib.suppress(KeyError, TypeError):
        return _SOURCES[obj]
    try:
        text: str | None = inspect.getsource(obj)
    except (OSError, TypeError, SyntaxError):
        text = None
    with contextlib.suppress(TypeError):
        _SOURCES[obj] = text
    return text


def _global_names(code: types.CodeType) -> list[str]:
    names = [ins.argval for ins in dis.get_instructions(code)
             if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    return names


def bytecode_digest(code: types.CodeType) -> str:
    """A digest of compiled code (line numbers excluded), for code without source."""
    consts = [bytecode_digest(c) if isinstance(c, types.CodeType) else stable_repr(c)
              for c in code.co_consts]
    text = repr((code.co_names, code.co_varnames, consts)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(code.co_code + text).hexdigest()[:16]


_CONSTANT = (str, bytes, int, float, complex, bool, type(None))


def is_constant(value: Any) -> bool:
    if isinstance(value, _CONSTANT):
        return True
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(is_constant(v) for v in value)
    if isinstance(value, dict):
        return all(is_constant(k) and is_constant(v) for k, v in value.items())
    return False


def stable_repr(value: Any) -> str:
    """repr() that does not depend on hash randomization (sets and dicts sorted)."""
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({sorted(stable_repr(v) for v in value)})"
    if isinstance(value, dict):
        items = sorted((stable_repr(k), stable_repr(v)) for k, v in value.items())
        return f"dict({items})"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}({[stable_repr(v) for v in value]})"
    return repr(value)


class _Walk:
    """Collects the parts of one fingerprint, following what code refers to."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.lookups: list[tuple[dict, str, Any]] = []
        self._seen: set[int] = set()
        self._alive: list[Any] = []  # keeps ids unique while walking

    def add(self, obj: Any) -> None:
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        self._alive.append(obj)
        if isinstance(obj, types.ModuleType):
            module = obj.__name__
        else:
            module = getattr(obj, "__module__", None)
        where = origin(module) if isinstance(module, str) else None
        if module == "builtins" and not _is_builtin(obj):
            where = None  # defined by exec() in a namespace without __name__
        if where is not None:
            if where:
                self.parts.append(where)
            return
        if isinstance(obj, types.ModuleType):
            self.parts.append(f"module {module}:{file_digest(module)}")
        elif isinstance(obj, type):
            self._class(obj)
        elif isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, types.MethodType):
            self.add(obj.__func__)
        elif isinstance(obj, functools.partial):
            self.add(obj.func)
            self.value("partial", (obj.args, obj.keywords))
        else:  # a callable instance or a builtin: its type
            self.add(type(obj))

    def _function(self, fn: types.FunctionType) -> None:
        source = _source(fn)
        if source is None:
            self.parts.append(f"def {fn.__qualname__} bytecode:{bytecode_digest(fn.__code__)}")
            self.value("defaults", (fn.__defaults__, fn.__kwdefaults__))
        else:
            self.parts.append(f"def {fn.__qualname__}\n{source}")
        self._names(fn)
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            self.add(wrapped)

    def _names(self, fn: types.FunctionType) -> None:
        """What the function names at module level and holds in its closure."""
        namespace = fn.__globals__
        for name in dict.fromkeys(_global_names(fn.__code__)):
            value = namespace.get(name, _MISSING)
            self.lookups.append((namespace, name, value))
            if value is not _MISSING:
                self.value(name, value)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            self.value(name, contents)

    def _class(self, cls: type) -> None:
        source = _source(cls)
        self.parts.append(f"class {cls.__qualname__}\n{source or ''}")
        for base in cls.__mro__[1:]:
            if base is not object:
                self.add(base)
        for name, member in vars(cls).items():
            if name.startswith("__") and name.endswith("__"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            functions = ([f for f in (member.fget, member.fset, member.fdel) if f]
                         if isinstance(member, property) else [member])
            for item in functions:
                inside = getattr(item, "__qualname__", "").startswith(cls.__qualname__ + ".")
                if isinstance(item, types.FunctionType) and inside and source is not None:
                    self._names(item)  # its text is part of the class's source
                else:
                    self.value(f"{cls.__qualname__}.{name}", item)

    def value(self, name: str, value: Any) -> None:
        """Something code refers to: code is followed, constants count by value, any other
        object by its type."""
        if isinstance(value, types.ModuleType) or callable(value):
            self.add(value)
        elif is_constant(value):
            self.parts.append(f"{name}={stable_repr(value)}")
        elif isinstance(value, re.Pattern):
            self.parts.append(f"{name}=re.compile({value.pattern!r}, {value.flags})")
        else:
            self.add(type(value))
