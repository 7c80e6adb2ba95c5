"""Cache keys: hash(operation identity + version, arguments, input keys)."""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any


def canonical(value: Any) -> Any:
    """A JSON-able, deterministic form of an argument value (functions by their source)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return {k: canonical(v) for k, v in value}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if callable(value):
        return {"function": function_fingerprint(value)}
    if hasattr(value, "__fspath__"):
        return str(value)
    return repr(value)


def function_fingerprint(fn: Any) -> str:
    """Identify a user function by its qualified name and source text."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(getattr(fn, "__code__", fn))
    closure = getattr(fn, "__closure__", None) or ()
    cells = []
    for cell in closure:
        try:
            cells.append(repr(cell.cell_contents))
        except ValueError:
            cells.append("<empty>")
    digest = hashlib.sha256((source + "\0" + "\0".join(cells)).encode()).hexdigest()[:16]
    return f"{name}@{digest}"


def step_key(identity: str, version: str, args: Any, inputs: list[str], extra: Any = None) -> str:
    payload = json.dumps(
        {"op": identity, "version": version, "args": canonical(args), "inputs": inputs,
         "extra": canonical(extra)},
        sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
