"""`llm_judge`: a score and a rationale per row, on a rubric (LLM-as-a-judge)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ...schema import normalize_columns
from .base import LLMMap, ScoringArgs
from .structured import instructions, parse_json, response_format

JUDGE = ("You are a strict, consistent grader. Grade the item below on this rubric, with a "
         "score from {low} to {high} ({high} is best).\n\nRubric:\n{rubric}")
SCORE_ONLY = "Reply with the score only, as: Score: N"
NUMBER_ONLY = "Reply with the score only: one number, nothing else."
PREFIX = "Score:"


class LLMJudgeArgs(ScoringArgs):
    rubric: str = Field(description="What a good item is, and how scores are given.")
    min_score: int = Field(1, description="Lowest score.")
    max_score: int = Field(10, description="Highest score.")
    score_column: str = Field("score", description="Column for the score (int64).")
    rationale_column: str | None = Field("rationale", description="Column for the judge's "
                                                                  "reasons (None: no column; "
                                                                  "null values when scored by "
                                                                  "logprobs).")
    expected_column: str | None = Field(
        "score_expected", description="Scored by logprobs: the probability-weighted mean "
                                      "score (float64; None: no column).")
    confidence_column: str | None = Field(
        "score_confidence", description="Scored by logprobs: the probability of the score "
                                        "given (float64; None: no column).")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="What the request asks of the server (see llm_extract).")

    @model_validator(mode="after")
    def _scale(self) -> LLMJudgeArgs:
        if self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        self.check_labels([str(s) for s in range(self.min_score, self.max_score + 1)])
        return self


class LLMJudge(LLMMap):
    """Score every row on a `rubric` with a chat model (LLM-as-a-judge): an integer from
    `min_score` to `max_score` in `score_column`, and the judge's reasons in
    `rationale_column` (asked for first, so the score follows from them). `prompt` renders
    the item to grade from the columns (say, "Question: {{ q }}\\nAnswer: {{ a }}").

    `scoring="json"` (the default against a server): a reply that is not the JSON asked for,
    or a score out of range, is asked again (`parse_retries`), then the row follows
    on_error. `scoring="logprobs"` (the default with backend="transformers"): the reply is
    opened with "Score:" and the model's probability of each score as the next tokens is
    read, so even a small model always gives a score: the most likely one, the expected
    score (`expected_column`) and its probability (`confidence_column`); no rationale.
    Drop low scores with a filter after it. Arguments as `llm_generate`."""

    name = "llm_judge"
    version = "2"
    Args = LLMJudgeArgs

    def reply_schema(self) -> dict:
        a = self.args
        return {"type": "object", "properties": {
            "rationale": {"type": "string"},
            "score": {"type": "integer", "minimum": a.min_score, "maximum": a.max_score}},
            "required": ["rationale", "score"]}

    def resolve_produces(self, schema: dict) -> dict:
        a = self.args
        cols = {a.score_column: "int64"}
        if a.rationale_column:
            cols[a.rationale_column] = "string"
        if a.by_logprobs:
            cols.update({c: "float64" for c in (a.expected_column, a.confidence_column) if c})
        return normalize_columns(cols)

    async def answer(self, ask: Any, row: dict) -> dict:
        if self.args.by_logprobs:
            return await self.answer_by_logprobs(ask, row)
        return await self.answer_by_json(ask, row)

    async def answer_by_json(self, ask: Any, row: dict) -> dict:
        a = self.args
        schema = self.reply_schema()
        system = JUDGE.format(low=a.min_score, high=a.max_score, rubric=a.rubric) \
            + "\n\n" + instructions(schema)
        extra = {}
        fmt = response_format(a.response_format, schema, "judgement")
        if fmt is not None:
            extra["response_format"] = fmt
        value = await ask(self.messages(row, system), lambda t: parse_json(t, schema), **extra)
        out = {a.score_column: int(value["score"])}
        if a.rationale_column:
            out[a.rationale_column] = value["rationale"]
        if a.by_logprobs:  # asked by logprobs first: nothing to say about the probabilities
            out.update({c: None for c in (a.expected_column, a.confidence_column) if c})
        return out

    async def answer_by_logprobs(self, ask: Any, row: dict) -> dict:
        a = self.args
        local = a.backend == "transformers"  # a local model's reply opens with PREFIX
        system = JUDGE.format(low=a.min_score, high=a.max_score, rubric=a.rubric) \
            + "\n\n" + (SCORE_ONLY if local else NUMBER_ONLY)
        scores = [str(s) for s in range(a.min_score, a.max_score + 1)]
        probs = (await ask.score(self.messages(row, system), PREFIX, scores))["probabilities"]
        if probs is None:  # the server gave no logprobs (or none on a score): parse a reply
            ask.counts["logprobs_unusable"] += 1
            return await self.answer_by_json(ask, row)
        best = max(scores, key=lambda s: probs[s])  # the lower score on a tie
        out: dict[str, Any] = {a.score_column: int(best)}
        if a.rationale_column:
            out[a.rationale_column] = None
        if a.expected_column:
            out[a.expected_column] = sum(int(s) * p for s, p in probs.items())
        if a.confidence_column:
            out[a.confidence_column] = probs[best]
        return out
