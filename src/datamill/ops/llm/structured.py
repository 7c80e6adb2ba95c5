"""Replies that must be JSON for a schema: the schema from a dict or a pydantic model, its
top-level properties as Arrow column types, and the parse that finds, reads and validates
the JSON in a reply (an InvalidReply says what is wrong, for the model to try again)."""

from __future__ import annotations

import json
import re
from typing import Any

from .base import InvalidReply

FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
SCALARS = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool_"}


def schema_of(value: Any) -> dict:
    """A JSON schema (dict) from a dict or a pydantic model class; an object schema."""
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        value = value.model_json_schema()
    if not isinstance(value, dict) or value.get("type") != "object" \
            or not isinstance(value.get("properties"), dict) or not value["properties"]:
        raise ValueError("schema must be a JSON schema of an object with properties (or a "
                         "pydantic model class)")
    return value


def _kind(prop: dict) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None:
        options = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
        if len(options) == 1:
            return _kind(options[0])
        if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
            return "string"
    return kind


def column_type(prop: dict) -> str:
    """The Arrow type of a property: scalars as themselves, arrays of scalars as lists,
    anything else (objects, mixed arrays) as its JSON text."""
    kind = _kind(prop)
    if kind in SCALARS:
        return SCALARS[kind]
    if kind == "array":
        inner = _kind(prop.get("items") or {})
        if inner in SCALARS:
            return f"list<{SCALARS[inner]}>"
    return "string"


def column_types(schema: dict, prefix: str = "") -> dict[str, str]:
    return {prefix + name: column_type(prop) for name, prop in schema["properties"].items()}


def to_column(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


def find_json(text: str) -> Any:
    """The JSON object in a reply: the whole reply, a fenced block, or from the first `{`
    to the last `}`."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except ValueError:
            continue
    raise InvalidReply("the reply is not valid JSON")


def parse_json(text: str, schema: dict) -> dict:
    """The reply's JSON object, valid for `schema` (jsonschema), or InvalidReply."""
    import jsonschema

    value = find_json(text)
    if not isinstance(value, dict):
        raise InvalidReply("the reply must be one JSON object")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value),
                    key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "the object"
        raise InvalidReply(f"the JSON does not match the schema at {where}: "
                           f"{errors[0].message}")
    return value


def instructions(schema: dict) -> str:
    return ("Reply with one JSON object and nothing else, valid for this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False))


def response_format(mode: str, schema: dict, name: str) -> dict | None:
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None
