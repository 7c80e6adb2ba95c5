"""Column remapping at apply time: point any operation at other columns.

    ds.apply("detect_language", consumes={"text": "body"}, produces={"language": "lang"})

The operation keeps seeing the names it declares (`text`, `language`); the dataset reads
`body` and stores `lang`. The rename happens at the boundary of the step (executors read the
mapped columns under the declared names, and store what the operation returns under the
mapped names), so no operation has to opt in.

A column the operation both consumes and produces under one name (an in-place op such as
`normalize_text`) is one column of the operation's view: mapped in `consumes`, it is also
written back there, unless `produces` maps it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import PipelineError, SchemaError, did_you_mean


@dataclass(frozen=True)
class Remap:
    """The mappings a user gave: {name the operation declares: dataset column}."""

    consumes: dict[str, str] = field(default_factory=dict)
    produces: dict[str, str] = field(default_factory=dict)

    @classmethod
    def given(cls, consumes: Any, produces: Any, operation: str) -> Remap:
        return cls(_mapping(consumes, "consumes", operation),
                   _mapping(produces, "produces", operation))

    def __bool__(self) -> bool:
        return bool(self.consumes or self.produces)

    def options(self) -> dict[str, dict[str, str]]:
        """The step options that go into the cache key (none when nothing is remapped, so
        that keys of steps without a mapping stay what they were)."""
        return {k: v for k, v in (("consumes", self.consumes), ("produces", self.produces))
                if v}

    def view(self, schema: dict) -> dict:
        """`schema` as the operation sees it: each mapped column under the declared name. A
        column the mapping shadows (an existing column with a declared name) is hidden."""
        sources = {target: name for name, target in self.consumes.items()}
        out: dict = {}
        for col, typ in schema.items():
            if col in self.consumes and col not in sources:
                continue  # shadowed by the mapped column
            if col in sources:
                for name, target in self.consumes.items():
                    if target == col:
                        out[name] = typ
            else:
                out[col] = typ
        return out

    def check_keys(self, consumed: dict, produced: dict, operation: str, step: str) -> None:
        """Every mapped name is one the operation declares."""
        for what, mapping, declared in (("consumes", self.consumes, consumed),
                                        ("produces", self.produces, produced)):
            for key in mapping:
                if key not in declared:
                    listing = ", ".join(declared) or "none"
                    raise SchemaError(
                        f"{what}={{{key!r}: {mapping[key]!r}}} maps a column the operation "
                        f"does not {what[:-1]}{did_you_mean(key, list(declared))} (it "
                        f"{what}: {listing})", step=step, operation=operation)

    def reads(self, consumed: dict) -> dict[str, str]:
        """{declared consumed name: dataset column it reads}."""
        return {name: self.consumes.get(name, name) for name in consumed}

    def writes(self, consumed: dict, produced: dict) -> dict[str, str]:
        """{declared produced name: dataset column it is stored as}. A produced name that is
        also consumed follows its `consumes` mapping unless `produces` maps it."""
        out = {}
        for name in produced:
            if name in self.produces:
                out[name] = self.produces[name]
            elif name in consumed and name in self.consumes:
                out[name] = self.consumes[name]
            else:
                out[name] = name
        return out


def check_writes(writes: dict[str, str], operation: str, step: str) -> None:
    """Two produced columns may not be stored under one name."""
    seen: dict[str, str] = {}
    for name, target in writes.items():
        if target in seen:
            raise SchemaError(
                f"produced columns {seen[target]!r} and {name!r} would both be stored as "
                f"{target!r}; map them to different names (produces={{...}})",
                step=step, operation=operation)
        seen[target] = name


def renamed(mapping: dict[str, str]) -> dict[str, str]:
    """Only the entries that rename (the lineage records these)."""
    return {k: v for k, v in mapping.items() if k != v}


def _mapping(value: Any, what: str, operation: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()):
        raise PipelineError(
            f"{what} must map the operation's column names to dataset columns, as "
            f"{{name: column}} with non-empty strings; got {value!r}", operation=operation)
    reserved = [v for v in value.values() if v.startswith("_")]
    if reserved:
        raise PipelineError(f"{what} maps to reserved column name(s) {reserved}; names "
                            "starting with '_' belong to datamill", operation=operation)
    return dict(value)
