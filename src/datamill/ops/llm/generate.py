"""`llm_generate`: a reply per row (or `n` of them) from a prompt template over the columns."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from pydantic import Field

from ...schema import normalize_columns
from .base import InvalidReply, LLMArgs, LLMMap

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TRUE, FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}
OUTPUT_TYPES = {"string": "string", "int64": "int64", "float64": "float64", "bool": "bool_"}


def parse_as(text: str, kind: str) -> Any:
    """The reply as a value of `kind`; InvalidReply when it is not one."""
    if kind == "string":
        return text
    stripped = text.strip().strip("`*\"'").strip()
    if kind == "bool":
        word = stripped.split()[0].strip(".,!").lower() if stripped else ""
        if word in TRUE or word in FALSE:
            return word in TRUE
        raise InvalidReply("the answer must be yes or no")
    found = NUMBER.search(stripped)
    if found is None:
        raise InvalidReply("the answer must be a number")
    value = float(found.group())
    if kind == "int64":
        if not value.is_integer():
            raise InvalidReply("the answer must be a whole number")
        return int(value)
    return value


class LLMGenerateArgs(LLMArgs):
    output: str = Field("response", description="Column for the reply.")
    output_type: Literal["string", "int64", "float64", "bool"] = Field(
        "string", description="Type of the output column: a reply that does not parse as it "
                              "is asked again (parse_retries), then the row fails.")
    n: int = Field(1, ge=1, description="Samples per row: with n > 1 the column is a list "
                                        "(sample i uses seed + i).")


class LLMGenerate(LLMMap):
    """Generate text for every row with a chat model: `prompt` (and `system`) are Jinja2
    templates over the columns; the reply goes to `output`, typed by `output_type`, or a list
    of `n` replies.

    Requests go to an OpenAI-compatible server (`base_url`, `model`, the key from the
    environment variable named by `api_key_env`), or to a local model with
    backend="transformers". Replies are cached in the workdir per request, so a killed run
    resumes without asking again. Counters: requests, cache_hits, retries, failed_<kind>,
    prompt_tokens, completion_tokens, cost_microdollars (with `prices`)."""

    name = "llm_generate"
    version = "1"
    Args = LLMGenerateArgs

    def resolve_produces(self, schema: dict) -> dict:
        kind = OUTPUT_TYPES[self.args.output_type]
        return normalize_columns({self.args.output: kind if self.args.n == 1
                                  else f"list<{kind}>"})

    async def answer(self, ask: Any, row: dict) -> dict:
        a = self.args
        messages = self.messages(row)

        def parse(text: str) -> Any:
            return parse_as(text, a.output_type)

        if a.n == 1:
            return {a.output: await ask(messages, parse)}
        replies = await asyncio.gather(*(ask(messages, parse, sample=i) for i in range(a.n)))
        return {a.output: list(replies)}
