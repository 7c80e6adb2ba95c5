"""`llm_classify`: one label per row, from a fixed set."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from ...schema import normalize_columns
from .base import InvalidReply, LLMMap, ScoringArgs

CLASSIFY = "Classify the item below. Answer with exactly one of these labels and nothing " \
           "else: {labels}."
PREFIX = "Label:"


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


class LLMClassifyArgs(ScoringArgs):
    labels: list[str] = Field(description="The labels to choose from (two or more).")
    output: str = Field("label", description="Column for the label.")
    confidence_column: str | None = Field(
        None, description="Scored by logprobs: a column (float64) for the label's "
                          "probability.")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) < 2 or len(set(value)) != len(value):
            raise ValueError("labels needs two or more distinct labels")
        return value

    @model_validator(mode="after")
    def _first_tokens(self) -> LLMClassifyArgs:
        self.check_labels(self.labels)
        return self


class LLMClassify(LLMMap):
    """Label every row with one of `labels`, with a chat model. `prompt` renders the item
    from the columns; the model is told the labels. The reply is matched to a label (case,
    quotes and punctuation aside, or the only label it names); any other reply is asked again
    (`parse_retries`), then the row follows on_error. With `scoring="logprobs"` (the default
    with backend="transformers") the reply is opened with "Label:" and the label the model
    finds most likely as the next tokens is taken (its probability in `confidence_column`).
    Arguments as `llm_generate`."""

    name = "llm_classify"
    version = "2"
    Args = LLMClassifyArgs

    def resolve_produces(self, schema: dict) -> dict:
        a = self.args
        cols = {a.output: "string"}
        if a.by_logprobs and a.confidence_column:
            cols[a.confidence_column] = "float64"
        return normalize_columns(cols)

    async def answer(self, ask: Any, row: dict) -> dict:
        labels = self.args.labels
        system = CLASSIFY.format(labels=", ".join(labels))
        if self.args.by_logprobs:
            scored = await ask.score(self.messages(row, system), PREFIX, labels)
            probs = scored["probabilities"]
            if probs is not None:
                best = max(labels, key=lambda label: probs[label])
                out: dict[str, Any] = {self.args.output: best}
                if self.args.confidence_column:
                    out[self.args.confidence_column] = probs[best]
                return out
            ask.counts["logprobs_unusable"] += 1  # no logprobs from the server: a reply
        label = await ask(self.messages(row, system), lambda t: match_label(t, labels))
        out = {self.args.output: label}
        if self.args.by_logprobs and self.args.confidence_column:
            out[self.args.confidence_column] = None
        return out

