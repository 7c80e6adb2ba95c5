"""`llm_classify`: one label per row, from a fixed set."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from ...schema import normalize_columns
from .base import InvalidReply, LLMArgs, LLMMap

CLASSIFY = "Classify the item below. Answer with exactly one of these labels and nothing " \
           "else: {labels}."


def match_label(text: str, labels: list[str]) -> str:
    """The label a reply gives: the reply itself (case, quotes and punctuation aside), or
    the only label it names as a whole word; InvalidReply otherwise."""
    clean = text.strip().strip("`*\"'.!: \n").strip()
    for label in labels:
        if clean.lower() == label.lower():
            return label
    named = [label for label in labels
             if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.I)]
    if len(named) == 1:
        return named[0]
    raise InvalidReply(f"the answer must be exactly one of: {', '.join(labels)}")


class LLMClassifyArgs(LLMArgs):
    labels: list[str] = Field(description="The labels to choose from (two or more).")
    output: str = Field("label", description="Column for the label.")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) < 2 or len(set(value)) != len(value):
            raise ValueError("labels needs two or more distinct labels")
        return value


class LLMClassify(LLMMap):
    """Label every row with one of `labels`, with a chat model. `prompt` renders the item
    from the columns; the model is told the labels. The reply is matched to a label (case,
    quotes and punctuation aside, or the only label it names); any other reply is asked again
    (`parse_retries`), then the row follows on_error. Arguments as `llm_generate`."""

    name = "llm_classify"
    version = "1"
    Args = LLMClassifyArgs

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns({self.args.output: "string"})

    async def answer(self, ask: Any, row: dict) -> dict:
        labels = self.args.labels
        system = CLASSIFY.format(labels=", ".join(labels))
        label = await ask(self.messages(row, system), lambda t: match_label(t, labels))
        return {self.args.output: label}
