"""Conversations for fine-tuning: converters into and out of the `messages` column type
(OpenAI chat, ShareGPT, Alpaca, preference pairs) and `validate_chat` (role order, empty
turns, tokens counted with a real tokenizer's chat template). See docs/finetune.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import PipelineError
from ..io.tokenizer import count_tokens, load_tokenizer, tokenizer_digest
from ..messages import (
    MESSAGES,
    conversation_problem,
    from_alpaca,
    from_preference,
    from_sharegpt,
    messages_array,
    to_alpaca,
    to_preference,
    to_sharegpt,
)
from ..operation import Arguments, FilterOperation, MapOperation
from ..schema import normalize_columns


def _sharegpt_type() -> Any:
    import pyarrow as pa

    return pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))


class ToMessagesArgs(Arguments):
    format: Literal["openai", "sharegpt", "alpaca"] = Field(
        description="openai: a list of {role, content} (field order and extra fields "
                    "ignored); sharegpt: a list of {from, value} with human/gpt speakers; "
                    "alpaca: instruction, input and output columns.")
    column: str | None = Field(None, description="The conversation column (openai: "
                                                 "'messages', sharegpt: 'conversations').")
    instruction: str = Field("instruction", description="alpaca: the instruction column.")
    input: str | None = Field("input", description="alpaca: the input column (None: none).")
    output_column: str = Field("output", description="alpaca: the answer column.")
    system: str | None = Field(None, description="A system prompt put first (alpaca).")
    output: str = Field("messages", description="Column receiving the conversation.")


class ToMessages(MapOperation):
    """Convert a conversation format into a `messages` column (list<struct<role, content>>).

    ShareGPT speakers map human/user -> user, gpt/assistant/chatgpt/model -> assistant,
    system -> system, tool/function_response/observation -> tool; any other speaker is a row
    error naming it. Alpaca rows become [system], user (the instruction, then the input after
    a blank line when there is one), assistant (the output)."""

    name = "to_messages"
    Args = ToMessagesArgs

    def _column(self) -> str:
        return self.args.column or {"openai": "messages", "sharegpt": "conversations"}.get(
            self.args.format, "")

    def resolve_consumes(self, schema: dict) -> dict:
        a = self.args
        if a.format == "alpaca":
            cols = {a.instruction: "string", a.output_column: "string"}
            if a.input is not None:
                cols[a.input] = "string"
            return normalize_columns(cols)
        if a.format == "openai":
            return normalize_columns({self._column(): "messages"})
        return {self._column(): _sharegpt_type()}

    def resolve_produces(self, schema: dict) -> dict:
        return {self.args.output: MESSAGES}

    def process(self, batch: Any) -> Any:
        a = self.args
        if a.format == "alpaca":
            inputs = batch.column(a.input).to_pylist() if a.input else [None] * batch.num_rows
            rows = [from_alpaca(i, x, o, a.system) for i, x, o in zip(
                batch.column(a.instruction).to_pylist(), inputs,
                batch.column(a.output_column).to_pylist())]
        elif a.format == "sharegpt":
            rows = [from_sharegpt(t) for t in batch.column(self._column()).to_pylist()]
        else:
            rows = batch.column(self._column()).to_pylist()
        return {a.output: messages_array(rows)}


class FromMessagesArgs(Arguments):
    format: Literal["sharegpt", "alpaca"] = Field(
        description="sharegpt: a `conversations` column of {from, value}; alpaca: "
                    "instruction, input, output and system columns (single-turn only).")
    column: str = Field("messages", description="The messages column.")


class FromMessages(MapOperation):
    """Convert a `messages` column to ShareGPT (`conversations`: user -> human, assistant ->
    gpt) or Alpaca (`instruction`, `input` (empty), `output`, `system`); a conversation with
    more than one user turn has no Alpaca form and is a row error."""

    name = "from_messages"
    Args = FromMessagesArgs
    consumes = {"{column}": "messages"}

    def resolve_produces(self, schema: dict) -> dict:
        if self.args.format == "sharegpt":
            return {"conversations": _sharegpt_type()}
        return normalize_columns({"instruction": "string", "input": "string",
                                  "output": "string", "system": "string"})

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.column(self.args.column).to_pylist()
        if self.args.format == "sharegpt":
            return {"conversations": pa.array([to_sharegpt(r) for r in rows],
                                              self.resolve_produces({})["conversations"])}
        alpaca = [to_alpaca(r) for r in rows]
        return {k: pa.array([r[k] for r in alpaca], pa.string())
                for k in ("instruction", "input", "output", "system")}


class PreferenceToMessagesArgs(Arguments):
    prompt: str = Field("prompt", description="The prompt column (a string, or messages).")
    chosen: str = Field("chosen", description="The preferred answer (a string).")
    rejected: str = Field("rejected", description="The other answer (a string).")
    system: str | None = Field(None, description="A system prompt put first.")
    chosen_output: str = Field("chosen_messages", description="Column receiving the "
                                                              "conversation ending in chosen.")
    rejected_output: str = Field("rejected_messages",
                                 description="Column receiving the conversation ending in "
                                             "rejected.")


class PreferenceToMessages(MapOperation):
    """Preference pairs (prompt, chosen, rejected: the `preference` op's string columns) to
    two `messages` columns: the prompt as a user turn (or the prompt's own messages), then
    each answer as the assistant's turn (TRL's conversational preference form)."""

    name = "preference_to_messages"
    Args = PreferenceToMessagesArgs

    def resolve_consumes(self, schema: dict) -> dict:
        a = self.args
        prompt = schema.get(a.prompt)
        from ..schema import is_messages

        kind = "messages" if prompt is not None and is_messages(prompt) else "string"
        return normalize_columns({a.prompt: kind, a.chosen: "string", a.rejected: "string"})

    def resolve_produces(self, schema: dict) -> dict:
        return {self.args.chosen_output: MESSAGES, self.args.rejected_output: MESSAGES}

    def process(self, batch: Any) -> Any:
        a = self.args
        prompts = batch.column(a.prompt).to_pylist()
        out = {}
        for column, target in ((a.chosen, a.chosen_output), (a.rejected, a.rejected_output)):
            out[target] = messages_array([from_preference(p, x, a.system) for p, x in zip(
                prompts, batch.column(column).to_pylist())])
        return out


class MessagesToPreferenceArgs(Arguments):
    chosen: str = Field("chosen_messages", description="The preferred conversation.")
    rejected: str = Field("rejected_messages", description="The other conversation.")


class MessagesToPreference(MapOperation):
    """Two conversations that share one user turn and differ in the assistant's answer ->
    `prompt`, `chosen`, `rejected` strings (the form DPO trainers and the `preference` op
    use); any other shape is a row error saying why."""

    name = "messages_to_preference"
    Args = MessagesToPreferenceArgs
    consumes = {"{chosen}": "messages", "{rejected}": "messages"}
    produces = {"prompt": "string", "chosen": "string", "rejected": "string"}

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        pairs = [to_preference(c, r) for c, r in zip(
            batch.column(self.args.chosen).to_pylist(),
            batch.column(self.args.rejected).to_pylist())]
        return {k: pa.array([p[k] for p in pairs], pa.string())
                for k in ("prompt", "chosen", "rejected")}


class ValidateChatArgs(Arguments):
    column: str = Field("messages", description="The messages column.")
    tokenizer: str | None = Field(None, description="Count tokens with this tokenizer's chat "
                                                    "template: a .gguf model file, a tokenizer "
                                                    "folder, or a name in the offline Hugging "
                                                    "Face cache.")
    max_tokens: int | None = Field(None, gt=0, description="Drop conversations over this "
                                                           "many tokens (too_long).")
    final_assistant: bool = Field(True, description="The last message must be the "
                                                    "assistant's (training data).")
    output: str = Field("num_tokens", description="Column receiving the token count "
                                                  "(with a tokenizer).")

    @model_validator(mode="after")
    def _needs_tokenizer(self) -> ValidateChatArgs:
        if self.max_tokens is not None and self.tokenizer is None:
            raise ValueError("max_tokens needs a tokenizer to count with")
        return self


class ValidateChat(FilterOperation):
    """Keep conversations fit for training; drop the others with a reason:
    empty_conversation (null or no messages), bad_roles (a role other than system, user,
    assistant, tool; a system message not first; user and assistant not alternating from a
    user turn; a tool message not between assistant turns; the last message not the
    assistant's), empty_turn (a message with no content, or only whitespace), too_long
    (more than `max_tokens` tokens). With a `tokenizer`, `num_tokens` holds each kept
    conversation's tokens as its chat template renders it; the tokenizer is loaded once per
    worker and its files' digest is part of the step's cache key."""

    name = "validate_chat"
    Args = ValidateChatArgs
    consumes = {"{column}": "messages"}

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns({self.args.output: "int64"}) if self.args.tokenizer else {}

    def key_inputs(self) -> dict[str, str]:
        if self.args.tokenizer is None:
            return {}
        return {"tokenizer": self._digest()}

    def _digest(self) -> str:
        try:
            return tokenizer_digest(self.args.tokenizer)
        except (FileNotFoundError, OSError) as exc:
            raise PipelineError(f"tokenizer: {exc}", operation=self.name) from None

    def setup(self) -> None:
        self.tok = None
        if self.args.tokenizer is not None:
            try:
                self.tok = load_tokenizer(self.args.tokenizer)
            except (ValueError, OSError) as exc:
                raise PipelineError(f"tokenizer: {exc}", operation=self.name) from None

    def process(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        if not hasattr(self, "tok"):
            self.setup()
        a = self.args
        rows = batch.column(a.column).to_pylist()
        reasons = np.array([conversation_problem(r, final_assistant=a.final_assistant)
                            for r in rows], dtype=object)
        if self.tok is None:
            return np.equal(reasons, None), reasons
        fit = np.flatnonzero(np.equal(reasons, None))
        counts = np.full(len(rows), None, dtype=object)
        counted = count_tokens(self.tok, [rows[i] for i in fit.tolist()])
        counts[fit] = counted
        self.count("tokens", sum(counted))
        if a.max_tokens is not None:
            over = fit[np.asarray(counted, dtype=np.int64) > a.max_tokens] if counted else fit[:0]
            reasons[over] = "too_long"
        keep = np.equal(reasons, None)
        self.count("tokens_kept", int(sum(c for c, k in zip(counts, keep) if k)))
        return keep, reasons, {a.output: pa.array(counts.tolist(), pa.int64())}


class MessagesTextArgs(Arguments):
    column: str = Field("messages", description="The messages column.")
    roles: list[str] | None = Field(None, description="Keep only these roles' messages "
                                                      "(e.g. ['assistant']); None: all.")
    separator: str = Field("\n\n", description="Between two messages.")
    output: str = Field("text", description="Column receiving the text.")


class MessagesText(MapOperation):
    """Flatten a conversation into one string column: the contents of its messages (of the
    roles asked for) joined by `separator`, with no role markup. For the string operations:
    `decontaminate` of generated answers against an evaluation set, `minhash_dedup`,
    `drop_duplicates`. A conversation with no message of those roles gives an empty string."""

    name = "messages_text"
    Args = MessagesTextArgs
    consumes = {"{column}": "messages"}
    produces = {"{output}": "string"}

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        roles = set(self.args.roles) if self.args.roles is not None else None
        sep = self.args.separator
        out = [None if c is None else sep.join(
            m["content"] or "" for m in c if roles is None or m["role"] in roles)
            for c in batch.column(self.args.column).to_pylist()]
        return {self.args.output: pa.array(out, pa.string())}
