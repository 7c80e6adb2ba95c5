"""Cache keys: a step's key is a digest of its code, its arguments and its inputs.

The three parts are kept apart (`KeyParts`, stored in the step record) so that a later run
can say which of them changed when a step recomputes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .code_fingerprint import code_fingerprint
from .environments import environment_key, normalized


def canonical(value: Any) -> Any:
    """A JSON-able, deterministic form of an argument value (functions by their code)."""
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
    """Identify a user function by its qualified name and the digest of its code (its source,
    what it calls and the values it closes over: see `code_fingerprint`)."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    return f"{name}@{code_fingerprint(fn)}"


def digest(value: Any, length: int = 16) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def holds_code(value: Any) -> bool:
    """Is the argument (a function, or a collection of them) code rather than data?"""
    if isinstance(value, (list, tuple, set, frozenset)):
        return bool(value) and all(holds_code(v) for v in value)
    if isinstance(value, dict):
        return bool(value) and all(holds_code(v) for v in value.values())
    return callable(value) and not isinstance(value, type)


@dataclass(frozen=True)
class KeyParts:
    """What a step's cache key is made of.

    code: a digest of the operation's identity, version, kind, code fingerprint, its
    environment (requirements and Python version, or image) if it declares one, and of the
    arguments that are functions (`python_map`'s); arguments: a digest per other argument,
    per step option and per `key_inputs()` entry (a model's files); inputs: the parent
    step's key, or a digest of a source's input files."""

    code: str
    arguments: dict[str, str]
    inputs: tuple[str, ...]

    @property
    def key(self) -> str:
        return digest({"code": self.code, "arguments": self.arguments,
                       "inputs": list(self.inputs)}, 20)

    def as_dict(self) -> dict:
        return {"code": self.code, "arguments": dict(self.arguments),
                "inputs": list(self.inputs)}


def key_parts(op: Any, inputs: list[str], options: dict[str, Any] | None = None) -> KeyParts:
    """The key parts of operation instance `op` applied to `inputs` with step `options`."""
    code: dict[str, Any] = {"operation": op.identity(), "version": op.version,
                            "kind": op.kind, "fingerprint": code_fingerprint(type(op))}
    requirements = normalized(getattr(op, "requirements", ()))
    if requirements:  # the environment it runs in: other versions may compute otherwise
        code["environment"] = environment_key(requirements)
    if getattr(op, "image", None):
        code["image"] = op.image
    arguments: dict[str, str] = {}
    for name, value in op.args:
        if holds_code(value):
            code[f"argument {name}"] = canonical(value)
        else:
            arguments[name] = digest(canonical(value))
    for name, value in (options or {}).items():
        arguments[f"step option {name}"] = digest(canonical(value))
    for name, value in op.key_inputs().items():
        arguments[f"input {name}"] = value
    return KeyParts(digest(code), arguments, tuple(inputs))
