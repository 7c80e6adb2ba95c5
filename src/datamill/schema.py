"""Column types: parse short type names, check compatibility, describe schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import pyarrow as pa

TypeLike = Union["pa.DataType", str, type]

_ALIASES = {
    "str": "string",
    "text": "string",
    "utf8": "string",
    "large_str": "large_string",
    "int": "int64",
    "float": "float64",
    "double": "float64",
    "bool": "bool_",
    "boolean": "bool_",
    "bytes": "binary",
    "any": "any",
}

ANY = "any"  # wildcard accepted in `consumes` declarations


def to_arrow_type(spec: TypeLike):
    """Turn `pa.int64()`, `"int64"`, `"list<float32>[384]"` or `int` into an Arrow type.

    Returns the string "any" for the wildcard.
    """
    import pyarrow as pa

    if isinstance(spec, pa.DataType):
        return spec
    if isinstance(spec, type):
        py = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
              bytes: pa.binary()}
        if spec in py:
            return py[spec]
        raise TypeError(f"no Arrow type for Python type {spec.__name__}")
    if not isinstance(spec, str):
        raise TypeError(f"not a column type: {spec!r}")
    text = spec.strip()
    name = _ALIASES.get(text, text)
    if name == ANY:
        return ANY
    if name in ("image", "image<binary>", "image<large_binary>"):
        from .image_type import ImageType

        return ImageType(pa.large_binary() if "large" in name else pa.binary())
    if name == "messages":
        from .messages import MESSAGES

        return MESSAGES
    if name.startswith(("list<", "large_list<")) and ">" in name:
        outer, rest = name.split("<", 1)
        inner, _, size = rest.rpartition(">")
        value = to_arrow_type(inner)
        if size:
            return pa.list_(value, int(size.strip("[]")))
        return pa.large_list(value) if outer == "large_list" else pa.list_(value)
    if name.startswith("timestamp[") and name.endswith("]"):
        parts = [p.strip() for p in name[len("timestamp["):-1].split(",")]
        return pa.timestamp(parts[0], tz=parts[1].removeprefix("tz=") if len(parts) > 1 else None)
    factory = getattr(pa, name, None)
    if factory is None or not callable(factory):
        raise TypeError(f"unknown column type {spec!r}")
    try:
        result = factory()
    except TypeError as exc:
        raise TypeError(f"column type {spec!r} needs parameters") from exc
    if not isinstance(result, pa.DataType):
        raise TypeError(f"unknown column type {spec!r}")
    return result


def type_name(t) -> str:
    if t == ANY:
        return "any"
    from .messages import MESSAGES

    return "messages" if t == MESSAGES else str(t)


def is_messages(t) -> bool:
    """Is `t` a conversation column (see datamill.messages)?"""
    from .messages import is_messages as check

    return check(t)


def is_image(t) -> bool:
    """Is `t` the image column type (encoded image bytes, see datamill.image_type)?"""
    return getattr(t, "extension_name", None) == "datamill.image"


def is_compatible(actual, expected) -> bool:
    """Can a column of type `actual` be consumed where `expected` is declared?

    Exact matches pass, the wildcard passes, and the string/large_string and
    binary/large_binary pairs are treated as one type (they differ only in offset width).
    An image column is consumed where binary is declared; a plain binary column is not an image.
    Where "messages" is declared, any list of structs with role and content strings is taken.
    """
    import pyarrow as pa

    if expected == ANY or actual == expected:
        return True
    if is_image(expected):
        return is_image(actual)
    if is_messages(expected):
        return is_messages(actual)
    if is_image(actual):
        actual = actual.storage_type
        if actual == expected:
            return True
    same = [
        (pa.string(), pa.large_string()),
        (pa.binary(), pa.large_binary()),
    ]
    for a, b in same:
        if {str(actual), str(expected)} == {str(a), str(b)}:
            return True
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        if pa.types.is_list(actual) or pa.types.is_large_list(actual):
            return is_compatible(actual.value_type, expected.value_type)
    if pa.types.is_fixed_size_list(expected) and pa.types.is_fixed_size_list(actual):
        return expected.list_size == actual.list_size and is_compatible(
            actual.value_type, expected.value_type)
    return False


def normalize_columns(columns: dict[str, TypeLike] | None) -> dict:
    return {name: to_arrow_type(t) for name, t in (columns or {}).items()}
