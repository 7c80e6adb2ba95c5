"""The `messages` column type: a conversation, as a list of {role, content}.

A plain Arrow type, `list<struct<role: string, content: string>>`, given a name: the type
string "messages" in `consumes`/`produces` means it. It is no extension type (unlike
`image`): the structure says what it is, and every reader of Parquet or Arrow (Hugging Face
`datasets`, pandas, DuckDB, Polars) already understands it as the chat format, so nothing
needs registering for the data to travel. A column is accepted as messages when it is a list
of structs with `role` and `content` string fields, in any order, with optional extra fields
(`weight`, `name`): OpenAI chat JSONL read by `read_jsonl` is such a column as it stands.

The rules a training conversation follows (`conversation_problem`): at least one message;
roles from system, user, assistant, tool; a system message only first; then user and
assistant alternate, starting with user; a tool message only after an assistant message or
another tool message, and followed by an assistant message; the last message is the
assistant's (unless `final_assistant=False`); no turn is empty or only whitespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

NAME = "messages"
ROLES = ("system", "user", "assistant", "tool")
MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

# drop reasons (validate_chat) and row errors of the converters
EMPTY_CONVERSATION = "empty_conversation"
BAD_ROLES = "bad_roles"
EMPTY_TURN = "empty_turn"


def is_messages(t: Any) -> bool:
    """Is `t` a messages type: a list (or large list) of structs with `role` and `content`
    string fields (in any order, other fields allowed)?"""
    if not isinstance(t, pa.DataType):
        return False
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return False
    item = t.value_type
    if not pa.types.is_struct(item):
        return False
    names = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
    return all(k in names and (pa.types.is_string(names[k]) or pa.types.is_large_string(names[k])
                               or pa.types.is_null(names[k])) for k in ("role", "content"))


def messages_array(conversations: Iterable[Sequence[dict] | None],
                   extra: dict[str, pa.DataType] | None = None) -> pa.Array:
    """A messages array from Python conversations (lists of dicts with role and content;
    None for a null row). `extra` names more per-message fields to keep, with their type."""
    if not extra:
        return pa.array([None if c is None else
                         [{"role": m.get("role"), "content": m.get("content")} for m in c]
                         for c in conversations], MESSAGES)
    fields = [pa.field("role", pa.string()), pa.field("content", pa.string())] + \
        [pa.field(k, v) for k, v in extra.items()]
    keys = ["role", "content", *extra]
    return pa.array([None if c is None else [{k: m.get(k) for k in keys} for m in c]
                     for c in conversations], pa.list_(pa.struct(fields)))


def canonical(values: Any) -> pa.Array:
    """A messages column (any field order, string or large_string, extra fields) as the
    canonical MESSAGES type: role and content only."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type == MESSAGES:
        return values
    if not is_messages(values.type):
        raise TypeError(f"not a messages column: {values.type}")
    return messages_array(values.to_pylist())


def conversation_problem(conversation: Sequence[dict] | None, *,
                         final_assistant: bool = True) -> str | None:
    """Why a conversation is unfit for training (a drop reason), or None when it is fit.
    Checked in this order: empty_conversation, bad_roles (order and names), empty_turn."""
    if not conversation:
        return EMPTY_CONVERSATION
    roles = [m.get("role") for m in conversation]
    if role_order_problem(roles, final_assistant=final_assistant) is not None:
        return BAD_ROLES
    for m in conversation:
        content = m.get("content")
        if content is None or not str(content).strip():
            return EMPTY_TURN
    return None


def role_order_problem(roles: Sequence[str | None], *,
                       final_assistant: bool = True) -> str | None:
    """What breaks the role rules in a list of roles (a sentence), or None."""
    if not roles:
        return "no messages"
    for i, role in enumerate(roles):
        if role not in ROLES:
            return f"message {i} has role {role!r} (roles: {', '.join(ROLES)})"
    rest = list(roles[1:] if roles[0] == "system" else roles)
    if "system" in rest:
        return "a system message that is not the first"
    if not rest:
        return "only a system message"
    if rest[0] != "user":
        return f"the first message after the system prompt is {rest[0]!r}, not 'user'"
    previous = None
    for i, role in enumerate(rest):
        if role == "tool":
            if previous not in ("assistant", "tool"):
                return f"a tool message after {previous!r} (it answers an assistant's call)"
            if i + 1 == len(rest) or rest[i + 1] not in ("tool", "assistant"):
                return "a tool message not followed by the assistant"
        elif role == previous or (previous == "tool" and role != "assistant"):
            return f"two {role!r} turns in a row" if role == previous else \
                f"{role!r} after a tool message"
        previous = role
    if final_assistant and rest[-1] != "assistant":
        return f"the last message is {rest[-1]!r}, not 'assistant'"
    return None


# --- converters (one row at a time; the ops in ops/chat.py apply them to columns) -----------

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
                  "model": "assistant", "system": "system", "tool": "tool",
                  "function_response": "tool", "observation": "tool"}
TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system", "tool": "tool"}


def from_sharegpt(turns: Sequence[dict] | None) -> list[dict] | None:
    """ShareGPT `conversations` ([{from, value}], human/gpt roles) -> messages."""
    if turns is None:
        return None
    out = []
    for i, turn in enumerate(turns):
        who = turn.get("from")
        role = SHAREGPT_ROLES.get(str(who).lower()) if who is not None else None
        if role is None:
            raise ValueError(f"ShareGPT turn {i} is from {who!r}; known speakers: "
                             f"{', '.join(sorted(SHAREGPT_ROLES))}")
        out.append({"role": role, "content": turn.get("value")})
    return out


def to_sharegpt(conversation: Sequence[dict] | None) -> list[dict] | None:
    if conversation is None:
        return None
    return [{"from": TO_SHAREGPT.get(m["role"], m["role"]), "value": m["content"]}
            for m in conversation]


def from_alpaca(instruction: str | None, input: str | None, output: str | None,
                system: str | None = None) -> list[dict]:
    """Alpaca (instruction, input, output) -> [system], user, assistant. A non-empty input
    follows the instruction after a blank line."""
    prompt = instruction or ""
    if input and input.strip():
        prompt = f"{prompt}\n\n{input}" if prompt else input
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def to_alpaca(conversation: Sequence[dict]) -> dict:
    """A single-turn conversation ([system], user, assistant) -> Alpaca instruction, input
    (empty), output, system. A multi-turn conversation has no Alpaca form: ValueError."""
    roles = [m["role"] for m in conversation]
    body = conversation[1:] if roles[:1] == ["system"] else conversation
    if [m["role"] for m in body] != ["user", "assistant"]:
        raise ValueError(f"Alpaca holds one user turn and one answer; this conversation has "
                         f"roles {roles}")
    return {"instruction": body[0]["content"], "input": "", "output": body[1]["content"],
            "system": conversation[0]["content"] if roles[:1] == ["system"] else None}


def from_preference(prompt: Any, answer: str | None,
                    system: str | None = None) -> list[dict] | None:
    """A preference pair's side: the prompt (a string, or messages) and one answer -> the
    whole conversation, ending with that answer."""
    if prompt is None or answer is None:
        return None
    turns = list(prompt) if isinstance(prompt, (list, tuple)) else \
        [{"role": "user", "content": prompt}]
    head = [{"role": "system", "content": system}] if system and \
        (not turns or turns[0].get("role") != "system") else []
    return head + [dict(m) for m in turns] + [{"role": "assistant", "content": answer}]


def to_preference(chosen: Sequence[dict], rejected: Sequence[dict]) -> dict:
    """Two conversations that share a single user turn and differ in the assistant's answer
    -> prompt, chosen, rejected (strings). Other shapes: ValueError."""
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" \
            or rejected[-1]["role"] != "assistant":
        raise ValueError("chosen and rejected must each end with an assistant message")
    if [dict(m) for m in chosen[:-1]] != [dict(m) for m in rejected[:-1]]:
        raise ValueError("chosen and rejected differ before their last message (a preference "
                         "pair answers one prompt)")
    shared = [dict(m) for m in chosen[:-1]]
    if [m["role"] for m in shared] != ["user"]:
        raise ValueError(f"a preference pair's prompt is one user turn; this one has roles "
                         f"{[m['role'] for m in shared]}")
    return {"prompt": shared[0]["content"], "chosen": chosen[-1]["content"],
            "rejected": rejected[-1]["content"]}
