"""`llm_extract`: structured output. A JSON schema (or a pydantic model) becomes typed
columns; a reply that is not valid JSON for it is asked again, then the row fails."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ...schema import normalize_columns
from .base import LLMArgs, LLMMap
from .structured import (
    column_types,
    instructions,
    parse_json,
    response_format,
    schema_of,
    to_column,
)


class LLMExtractArgs(LLMArgs):
    schema_: dict = Field(alias="schema", description="A JSON schema of an object, or a "
                                                      "pydantic model class: each top-level "
                                                      "property becomes a column.")
    prefix: str = Field("", description="Put before each column's name.")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="What the request asks of the server: structured output "
                                   "for the schema (OpenAI, vLLM, llama.cpp), any JSON object, "
                                   "or nothing (the instructions alone).")

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> dict:
        return schema_of(value)


class LLMExtract(LLMMap):
    """Extract typed fields from every row with a chat model: `schema` (a JSON schema of an
    object, or a pydantic model) gives the columns: strings, integers (int64), numbers
    (float64), booleans, arrays of those (lists); objects and other shapes as JSON text.

    The model is told the schema (and the server asked for structured output, see
    `response_format`); the JSON is found in the reply (fenced or not) and validated. A reply
    that is not valid JSON for the schema is asked again, telling the model what is wrong, up
    to `parse_retries` times; then the row follows the step's on_error. Arguments as
    `llm_generate` (base_url, model, api_key_env, prompt, system, ...)."""

    name = "llm_extract"
    version = "1"
    Args = LLMExtractArgs

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns(column_types(self.args.schema_, self.args.prefix))

    async def answer(self, ask: Any, row: dict) -> dict:
        a = self.args
        extra = {}
        fmt = response_format(a.response_format, a.schema_, "extraction")
        if fmt is not None:
            extra["response_format"] = fmt
        value = await ask(self.messages(row, instructions(a.schema_)),
                          lambda text: parse_json(text, a.schema_), **extra)
        types = column_types(a.schema_)
        return {a.prefix + name: to_column(value.get(name), kind)
                for name, kind in types.items()}
