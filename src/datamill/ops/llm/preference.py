"""`llm_preference`: pairwise preference between two responses, for DPO data."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from ...schema import normalize_columns
from .base import LLMArgs, LLMFilter
from .structured import instructions, parse_json, response_format

COMPARE = ("You compare two responses to the same prompt and pick the better one{rubric}. "
           "Judge the content, not the order or the length.")
PAIR = "Prompt:\n{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}"
SCHEMA = {"type": "object", "properties": {"rationale": {"type": "string"},
                                           "better": {"type": "string", "enum": ["A", "B"]}},
          "required": ["rationale", "better"]}


class LLMPreferenceArgs(LLMArgs):
    response_a: str = Field(description="Column of the first response.")
    response_b: str = Field(description="Column of the second response.")
    rubric: str | None = Field(None, description="What makes a response better.")
    swap_check: bool = Field(True, description="Ask again with the responses swapped and drop "
                                               "the pair when the verdicts disagree "
                                               "(position bias).")
    prompt_column: str = Field("prompt", description="Column for the rendered prompt.")
    chosen_column: str = Field("chosen", description="Column for the preferred response.")
    rejected_column: str = Field("rejected", description="Column for the other one.")
    rationale_column: str | None = Field("preference_rationale",
                                         description="Column for the judge's reasons.")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="What the request asks of the server (see llm_extract).")


class LLMPreference(LLMFilter):
    """Turn two responses to a prompt into a preference pair (DPO data): a chat model judges
    which of `response_a` and `response_b` is better for the prompt that `prompt` renders;
    the rows get string columns `prompt`, `chosen` and `rejected` (the shape of the
    preference-pair converters) and the judge's reasons.

    With `swap_check` (the default) the pair is judged twice, in both orders; verdicts that
    disagree drop the row (`inconsistent_preference`). Identical responses are dropped without
    a request (`identical_responses`). Arguments as `llm_generate`."""

    name = "llm_preference"
    version = "1"
    Args = LLMPreferenceArgs
    default_reason = "inconsistent_preference"

    def resolve_consumes(self, schema: dict) -> dict:
        a = self.args
        return {**super().resolve_consumes(schema),
                **normalize_columns({a.response_a: "string", a.response_b: "string"})}

    def resolve_produces(self, schema: dict) -> dict:
        a = self.args
        cols = {a.prompt_column: "string", a.chosen_column: "string",
                a.rejected_column: "string"}
        if a.rationale_column:
            cols[a.rationale_column] = "string"
        return normalize_columns(cols)

    async def answer(self, ask: Any, row: dict) -> dict:
        a = self.args
        prompt = self.render("prompt", row)
        first, second = row[a.response_a], row[a.response_b]
        out = {a.prompt_column: prompt, a.chosen_column: None, a.rejected_column: None}
        if a.rationale_column:
            out[a.rationale_column] = None
        if first == second:
            return {**out, "_drop": "identical_responses"}
        rubric = f" on this rubric:\n{a.rubric}\n" if a.rubric else ""
        system = COMPARE.format(rubric=rubric) + "\n\n" + instructions(SCHEMA)
        extra = {}
        fmt = response_format(a.response_format, SCHEMA, "preference")
        if fmt is not None:
            extra["response_format"] = fmt

        async def verdict(x: str, y: str) -> dict:
            messages = self.messages(row, system, PAIR.format(prompt=prompt, a=x, b=y))
            return await ask(messages, lambda t: parse_json(t, SCHEMA), **extra)

        asks = [verdict(first, second)]
        if a.swap_check:
            asks.append(verdict(second, first))
        verdicts = await asyncio.gather(*asks)
        picks = [v["better"] == "A" for v in verdicts[:1]]  # True: the first column won
        if len(verdicts) == 2:
            picks.append(verdicts[1]["better"] == "B")
        if len(set(picks)) > 1:
            return {**out, "_drop": "inconsistent_preference"}
        chosen, rejected = (first, second) if picks[0] else (second, first)
        out.update({a.chosen_column: chosen, a.rejected_column: rejected})
        if a.rationale_column:
            out[a.rationale_column] = verdicts[0]["rationale"]
        return out
