"""Jinja2 filters and globals of the explorer's templates (autoescape stays on: these return
plain strings, escaped by Jinja, except the SVG charts of svg.py)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from .svg import human

CELL = 160  # characters of a value shown in a table cell
TEXT = 20_000  # characters of a value shown whole (a row's page)


def cell(value: Any, width: int = CELL) -> str:
    """A value as one line of at most `width` characters; bytes as an image label or text."""
    if value is None:
        return "∅"
    if isinstance(value, bytes):
        from ..image_type import sniff_format

        fmt = sniff_format(value)
        if fmt is not None:
            return f"<{fmt} bytes, {len(value):,} bytes>"
        value = value[: width * 4].decode("utf-8", errors="replace")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def kind(value: Any) -> str:
    """The class of a table cell: "num" (right-aligned, unwrapped) for numbers."""
    return "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else "text"


def full(value: Any) -> str:
    """A value whole (up to `TEXT` characters), line breaks kept."""
    if isinstance(value, bytes):
        return cell(value, TEXT)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str, ensure_ascii=False, indent=1)
    text = "∅" if value is None else str(value)
    return text if len(text) <= TEXT else text[:TEXT] + f"… ({len(text) - TEXT:,} more)"


def query(params: dict[str, Any], **changes: Any) -> str:
    """`?a=1&b=2` from `params` updated with `changes` (None removes a key)."""
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def seconds(value: Any) -> str:
    try:
        return f"{float(value):.2f} s"
    except (TypeError, ValueError):
        return "?"


def number(value: Any) -> str:
    from .svg import num

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else num(value)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False)


def install(env: Any) -> None:
    env.filters.update(cell=cell, full=full, kind=kind, seconds=seconds, number=number, human=human,
                       as_json=as_json)
    env.globals.update(query=query)
