"""Select, drop and rename columns. These store no data: they change which columns the
dataset exposes and under which names."""

from __future__ import annotations

from pydantic import Field

from ..errors import SchemaError
from ..operation import Arguments, ProjectOperation


class ColumnsArgs(Arguments):
    columns: list[str] = Field(description="Column names.", min_length=1)


class Select(ProjectOperation):
    """Keep only the given columns, in that order."""

    name = "select"
    Args = ColumnsArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in self.args.columns}

    def project(self, schema: dict) -> dict[str, str]:
        return {c: c for c in self.args.columns}


class Drop(ProjectOperation):
    """Remove the given columns."""

    name = "drop"
    Args = ColumnsArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in self.args.columns}

    def project(self, schema: dict) -> dict[str, str]:
        return {c: c for c in schema if c not in self.args.columns}


class RenameArgs(Arguments):
    mapping: dict[str, str] = Field(description="{old name: new name}.", min_length=1)


class Rename(ProjectOperation):
    """Rename columns; the others keep their names and order."""

    name = "rename"
    Args = RenameArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: "any" for c in self.args.mapping}

    def project(self, schema: dict) -> dict[str, str]:
        mapping = self.args.mapping
        result = {mapping.get(c, c): c for c in schema}
        if len(result) != len(schema):
            clashes = sorted(set(mapping.values()) & (set(schema) - set(mapping)))
            raise SchemaError(f"renaming onto existing column(s) {clashes}", operation=self.name)
        return result
