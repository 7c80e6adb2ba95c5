"""The `messages` column type and the converters in and out of it (ops/chat.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import datamill as dm
from datamill.errors import OperationError, SchemaError
from datamill.messages import (
    MESSAGES,
    conversation_problem,
    is_messages,
    role_order_problem,
)
from datamill.schema import is_compatible, to_arrow_type, type_name

from .conftest import write_jsonl

CHATS = [
    [{"role": "user", "content": "What is a list?"},
     {"role": "assistant", "content": "An ordered, mutable sequence."}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "What is a tuple?"},
     {"role": "assistant", "content": "An immutable sequence."},
     {"role": "user", "content": "And a set?"},
     {"role": "assistant", "content": "An unordered collection of unique items."}],
]


def run(ds, tmp_path):
    return ds.collect(tmp_path / "work", workers=1, progress=False)


def test_the_type_string_names_the_structural_type():
    assert to_arrow_type("messages") == MESSAGES
    assert type_name(MESSAGES) == "messages"
    other_order = pa.list_(pa.struct([("content", pa.large_string()), ("role", pa.string()),
                                      ("weight", pa.int64())]))
    assert is_messages(other_order) and is_compatible(other_order, MESSAGES)
    assert not is_compatible(pa.list_(pa.struct([("from", pa.string()),
                                                  ("value", pa.string())])), MESSAGES)
    assert not is_compatible(pa.string(), MESSAGES)


@pytest.mark.parametrize("roles, problem", [
    (["user", "assistant"], None),
    (["system", "user", "assistant", "user", "assistant"], None),
    (["user", "assistant", "tool", "assistant"], None),
    (["assistant"], "not 'user'"),
    (["user", "user", "assistant"], "two 'user' turns"),
    (["user", "system", "assistant"], "system message that is not the first"),
    (["user", "assistant", "user"], "last message is 'user'"),
    (["user", "tool", "assistant"], "tool message after 'user'"),
    (["user", "bot"], "role 'bot'"),
    (["system"], "only a system message"),
])
def test_role_rules(roles, problem):
    found = role_order_problem(roles)
    assert (found is None) if problem is None else (problem in found)


def test_conversation_problems_in_order():
    assert conversation_problem(None) == "empty_conversation"
    assert conversation_problem([]) == "empty_conversation"
    assert conversation_problem([{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": " \n"}]) == "empty_turn"
    assert conversation_problem([{"role": "user", "content": ""}]) == "bad_roles"
    assert conversation_problem([{"role": "user", "content": "hi"}],
                                final_assistant=False) is None


def test_openai_chat_jsonl_reads_as_messages_and_is_normalized(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"content": m["content"], "role": m["role"]} for m in chat]}
        for chat in CHATS])
    source = dm.Dataset.read(path)
    assert is_messages(source.schema["messages"])  # JSON's field order: content, role
    table = run(source.apply("to_messages", format="openai", output="chat"), tmp_path)
    assert table.schema.field("chat").type == MESSAGES
    assert table["chat"].to_pylist() == CHATS


def test_sharegpt_in_and_out(tmp_path):
    speakers = {"user": "human", "assistant": "gpt", "system": "system"}
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [
        {"conversations": [{"from": speakers[m["role"]], "value": m["content"]} for m in chat]}
        for chat in CHATS])
    ds = dm.Dataset.read(path).apply("to_messages", format="sharegpt")
    assert run(ds, tmp_path)["messages"].to_pylist() == CHATS
    back = run(ds.drop("conversations").apply("from_messages", format="sharegpt"), tmp_path)
    assert back["conversations"].to_pylist() == [
        [{"from": speakers[m["role"]], "value": m["content"]} for m in chat] for chat in CHATS]


def test_sharegpt_unknown_speaker_is_a_row_error(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"conversations": [{"from": "narrator", "value": "once"}]}])
    ds = dm.Dataset.read(path).apply("to_messages", format="sharegpt")
    with pytest.raises(OperationError, match="narrator"):
        run(ds, tmp_path)
    kept = run(dm.Dataset.read(path).apply("to_messages", format="sharegpt", on_error="skip"),
               tmp_path)
    assert kept.num_rows == 1


def test_alpaca_in_and_out(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Name a prime.", "input": "", "output": "7"}])
    ds = dm.Dataset.read(path).apply("to_messages", format="alpaca", system="Be exact.")
    chats = run(ds, tmp_path)["messages"].to_pylist()
    assert chats[0] == [{"role": "system", "content": "Be exact."},
                        {"role": "user", "content": "Translate to French.\n\ncat"},
                        {"role": "assistant", "content": "chat"}]
    assert chats[1][1] == {"role": "user", "content": "Name a prime."}
    back = run(ds.select("messages").apply("from_messages", format="alpaca"), tmp_path)
    assert back.select(["instruction", "output", "system"]).to_pylist()[1] == {
        "instruction": "Name a prime.", "output": "7", "system": "Be exact."}


def test_alpaca_refuses_multi_turn_conversations(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHATS[1]}])
    ds = dm.Dataset.read(path).apply("from_messages", format="alpaca")
    with pytest.raises(OperationError, match="Alpaca holds one user turn"):
        run(ds, tmp_path)


def test_preference_pairs_round_trip(tmp_path):
    rows = [{"prompt": "Best sort for nearly sorted data?", "chosen": "Insertion sort.",
             "rejected": "Bogosort."}]
    path = write_jsonl(tmp_path / "pref.jsonl", rows)
    ds = dm.Dataset.read(path).apply("preference_to_messages", system="Be helpful.")
    table = run(ds, tmp_path)
    assert table["chosen_messages"].to_pylist()[0] == [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": rows[0]["prompt"]},
        {"role": "assistant", "content": "Insertion sort."}]
    assert table["rejected_messages"].to_pylist()[0][-1]["content"] == "Bogosort."
    back = ds.select("chosen_messages", "rejected_messages").apply("messages_to_preference")
    with pytest.raises(OperationError, match="one user turn"):  # the system prompt
        run(back, tmp_path)
    plain = dm.Dataset.read(path).apply("preference_to_messages") \
        .select("chosen_messages", "rejected_messages").apply("messages_to_preference")
    assert run(plain, tmp_path).select(["prompt", "chosen", "rejected"]).to_pylist() == rows


def test_consuming_messages_from_a_wrong_column_fails_when_built(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": "not a conversation"}])
    with pytest.raises(SchemaError, match="consumes messages"):
        dm.Dataset.read(path).apply("validate_chat")


def test_messages_survive_parquet(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CHATS])
    out = tmp_path / "out"
    dm.Dataset.read(path).apply("to_messages", format="openai", output="m") \
        .write(out).run(tmp_path / "work", workers=1, progress=False)
    again = dm.Dataset.read(out)
    assert again.schema["m"] == MESSAGES
    assert json.loads(json.dumps(run(again, tmp_path)["m"].to_pylist())) == CHATS
