"""Prompt templates: Jinja2 in a sandbox, checked when the pipeline is built.

A template is compiled once; the columns it names are found from its syntax tree, so that a
misspelled column or a syntax error is an error of the pipeline, before any data is read."""

from __future__ import annotations

import functools
from typing import Any

from ...errors import PipelineError


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True,
                                autoescape=False)


class Template:
    """A compiled template and the column names it reads (`columns`)."""

    def __init__(self, source: str, what: str, operation: str):
        from jinja2 import TemplateSyntaxError, meta

        env = environment()
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as exc:
            raise PipelineError(f"{what} template has a syntax error at line {exc.lineno}: "
                                f"{exc.message} (template: {source!r})",
                                operation=operation) from None
        self.source, self.what, self.operation = source, what, operation
        self.columns = sorted(meta.find_undeclared_variables(tree) - set(env.globals))
        self.compiled = env.from_string(source)

    def render(self, row: dict) -> str:
        return self.compiled.render(**row)

    def __reduce__(self) -> tuple:  # compiled templates do not pickle: compile again (Ray)
        return (Template, (self.source, self.what, self.operation))


def template(source: str | None, what: str, operation: str) -> Template | None:
    return None if source is None else Template(source, what, operation)
