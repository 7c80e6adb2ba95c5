"""llm_extract, llm_judge, llm_classify and llm_preference against the fault-injecting
server, whose replies the tests script (tests/llm_server.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

import datamill as dm
from datamill.errors import ArgumentError, DatamillError

from .conftest import write_jsonl
from .llm_server import LLMServer


def common(server):
    return {"base_url": server.base_url, "model": "tiny", "concurrency": 2}


def run(ds, work, **options):
    return ds.collect(work, workers=1, progress=False, **options)


def step_record(work, name):
    manifest = json.loads((work / "manifest.json").read_text())
    return next(s for d in manifest["datasets"] for s in d["steps"] if s["name"] == name)


def last_user(body):
    return body["messages"][-1]["content"]


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


def test_extract_types_columns_from_a_pydantic_model(tmp_path):
    def reply(body):
        text = last_user(body)
        name = text.split()[0]
        return "```json\n" + json.dumps({"name": name, "age": len(name), "tags": ["x", name]}) \
            + "\n```"

    with LLMServer(reply=reply) as srv:
        path = write_jsonl(tmp_path / "p.jsonl", [{"bio": "Ada wrote programs"},
                                                  {"bio": "Grace found a bug"}])
        ds = dm.Dataset.read(path).apply("llm_extract", schema=Person, prompt="{{ bio }}",
                                         **common(srv))
        assert {c: str(t) for c, t in ds.schema.items()} == {
            "bio": "string", "name": "string", "age": "int64", "tags": "list<item: string>"}
        table = run(ds, tmp_path / "w")
        assert table.select(["name", "age", "tags"]).to_pylist() == [
            {"name": "Ada", "age": 3, "tags": ["x", "Ada"]},
            {"name": "Grace", "age": 5, "tags": ["x", "Grace"]}]
        body = srv.bodies[0]
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"]["properties"]["age"] == {
            "title": "Age", "type": "integer"}
        assert "JSON schema" in body["messages"][0]["content"]


def test_extract_asks_again_then_follows_on_error(tmp_path):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    def reply(body):
        if "bad" in body["messages"][1]["content"]:
            return "not json at all"
        if len(body["messages"]) == 2:  # first attempt of the others: wrong type
            return '{"n": "three"}'
        return '{"n": 3}'

    with LLMServer(reply=reply) as srv:
        path = write_jsonl(tmp_path / "p.jsonl", [{"t": "ok"}, {"t": "bad"}, {"t": "fine"}])
        ds = dm.Dataset.read(path).apply("llm_extract", schema=schema, prompt="{{ t }}",
                                         parse_retries=2, response_format="none",
                                         on_error="skip", **common(srv))
        table = run(ds, tmp_path / "w")
        assert table.to_pylist() == [{"t": "ok", "n": 3}, {"t": "fine", "n": 3}]
        assert srv.requests == 2 * 2 + 3  # two rows asked twice, the bad one three times
        assert "response_format" not in srv.bodies[0]
        retry = next(b for b in srv.bodies if len(b["messages"]) == 4)
        assert "n: 'three' is not of type 'integer'" in retry["messages"][-1]["content"]
        record = step_record(tmp_path / "w", "llm_extract")
        assert record["errors"] == 1 and record["counters"]["invalid_replies"] == 5
        with pytest.raises(DatamillError, match=r"InvalidReply: the reply is not valid JSON "
                                                r"\(asked 3 times; last reply: 'not json"):
            run(dm.Dataset.read(path).apply("llm_extract", schema=schema, prompt="{{ t }}",
                                            response_format="none", **common(srv)),
                tmp_path / "w2")


def test_extract_refuses_a_schema_without_properties(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"t": "x"}])
    with pytest.raises(ArgumentError, match="JSON schema of an object"):
        dm.Dataset.read(path).apply("llm_extract", schema={"type": "string"}, prompt="{{ t }}",
                                    base_url="http://127.0.0.1:9/v1", model="m")


def test_judge_scores_on_a_rubric_and_refuses_out_of_range(tmp_path):
    def reply(body):
        answer = body["messages"][1]["content"]  # the item (a retry adds messages after it)
        if "11" in answer and len(body["messages"]) == 2:
            return json.dumps({"rationale": "too good", "score": 11})  # out of range first
        return json.dumps({"rationale": f"graded {answer}", "score": len(answer) % 10 + 1})

    with LLMServer(reply=reply) as srv:
        path = write_jsonl(tmp_path / "a.jsonl", [{"q": "1+1", "a": "2"},
                                                  {"q": "5+6", "a": "11"}])
        ds = dm.Dataset.read(path).apply("llm_judge", rubric="Correct arithmetic scores high.",
                                         prompt="{{ q }} = {{ a }}", **common(srv))
        table = run(ds, tmp_path / "w")
        assert table["score"].to_pylist() == [len("1+1 = 2") % 10 + 1, len("5+6 = 11") % 10 + 1]
        assert table["rationale"].to_pylist()[0] == "graded 1+1 = 2"
        system = srv.bodies[0]["messages"][0]["content"]
        assert "Correct arithmetic scores high." in system and "from 1 to 10" in system
        assert srv.requests == 3  # the score of 11 was asked again


def test_judge_by_server_logprobs_and_the_json_fallback(tmp_path):
    """scoring="logprobs" against a server: one request per row for the first token's
    top_logprobs (the spellings " 4" and "4" add up, other tokens are left out); a server
    that sends no logprobs is asked for the JSON instead (counted `logprobs_unusable`);
    a scale whose scores begin others (1..10) is refused when built."""
    import math

    ask_json = json.dumps({"rationale": "fine", "score": 2})
    with LLMServer(reply=lambda body: ask_json) as srv:
        srv.top_logprobs = lambda body: [(" 4", math.log(0.6)), ("4", math.log(0.1)),
                                         ("3", math.log(0.2)), ("Hello", math.log(0.1))]
        path = write_jsonl(tmp_path / "a.jsonl", [{"q": "1+1", "a": "2"}])
        ds = dm.Dataset.read(path).apply(
            "llm_judge", rubric="r", prompt="{{ q }} = {{ a }}", min_score=1, max_score=5,
            scoring="logprobs", **common(srv))
        row = run(ds, tmp_path / "w").to_pylist()[0]
        assert row["score"] == 4 and row["rationale"] is None
        assert row["score_confidence"] == pytest.approx(0.7 / 0.9)
        assert row["score_expected"] == pytest.approx((4 * 0.7 + 3 * 0.2) / 0.9)
        body = srv.bodies[0]
        assert (body["logprobs"], body["top_logprobs"], body["max_tokens"]) == (True, 20, 1)
        assert srv.requests == 1
        srv.top_logprobs = None  # a server without logprobs: the JSON path
        row = run(ds, tmp_path / "w2").to_pylist()[0]
        assert (row["score"], row["rationale"], row["score_expected"]) == (2, "fine", None)
        assert srv.requests == 3
        assert step_record(tmp_path / "w2", "llm_judge")["counters"]["logprobs_unusable"] == 1
        with pytest.raises(DatamillError, match="'1' begins '10'"):
            dm.Dataset.read(path).apply("llm_judge", rubric="r", prompt="{{ q }}",
                                        scoring="logprobs", **common(srv))


def test_classify_matches_labels_and_asks_again(tmp_path):
    replies = {"I love it": "Positive.", "awful": "negative", "meh": "It is positive or "
               "negative", "so-so": "**neutral**"}

    def reply(body):
        text = last_user(body)
        if len(body["messages"]) > 2:
            return "neutral"
        return replies[text]

    with LLMServer(reply=reply) as srv:
        path = write_jsonl(tmp_path / "r.jsonl", [{"review": k} for k in replies])
        ds = dm.Dataset.read(path).apply("llm_classify", labels=["positive", "negative",
                                                                 "neutral"],
                                         prompt="{{ review }}", **common(srv))
        table = run(ds, tmp_path / "w")
        assert table["label"].to_pylist() == ["positive", "negative", "neutral", "neutral"]
        assert srv.requests == 5  # "positive or negative" names two labels: asked again
        assert "positive, negative, neutral" in srv.bodies[0]["messages"][0]["content"]
    with pytest.raises(ArgumentError, match="two or more"):
        dm.Dataset.read(path).apply("llm_classify", labels=["only"], prompt="{{ review }}",
                                    base_url="http://127.0.0.1:9/v1", model="m")


def test_preference_pairs_for_dpo(tmp_path):
    def reply(body):
        text = last_user(body)
        a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        b = text.split("Response B:\n")[1]
        if "flip" in text:  # a position-biased judge: always A
            return json.dumps({"rationale": "first", "better": "A"})
        better = "A" if len(a) >= len(b) else "B"
        return json.dumps({"rationale": "longer is better here", "better": better})

    rows = [{"q": "Name a colour", "x": "red", "y": "a deep red"},
            {"q": "Say hi", "x": "hello there", "y": "hi"},
            {"q": "flip", "x": "one", "y": "two"},
            {"q": "Same", "x": "s", "y": "s"}]
    with LLMServer(reply=reply) as srv:
        path = write_jsonl(tmp_path / "p.jsonl", rows)
        ds = dm.Dataset.read(path).apply("llm_preference", prompt="{{ q }}", response_a="x",
                                         response_b="y", **common(srv))
        result = ds.run(tmp_path / "w", workers=1, progress=False)
        table = ds.collect(tmp_path / "w", workers=1, progress=False)
        assert table.select(["prompt", "chosen", "rejected"]).to_pylist() == [
            {"prompt": "Name a colour", "chosen": "a deep red", "rejected": "red"},
            {"prompt": "Say hi", "chosen": "hello there", "rejected": "hi"}]
        assert result.step("llm_preference")["dropped"] == {"inconsistent_preference": 1,
                                                           "identical_responses": 1}
        assert srv.requests == 6  # both orders for three pairs, none for identical ones


def docs_reply(body):
    """Replies that fit what each operation of docs/llm.md asks."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if "one of these labels" in system:
        return "science"
    if "valid for this JSON schema:\n" in system:
        schema = json.loads(system.split("valid for this JSON schema:\n", 1)[1])
        props = schema["properties"]
        if "better" in props:  # the longer response, whichever place it has
            text = last_user(body)
            a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
            b = text.split("Response B:\n")[1]
            return json.dumps({"rationale": "longer", "better": "A" if len(a) > len(b) else "B"})
        if "score" in props:
            return json.dumps({"rationale": "fine", "score": 8})
        dummy = {"string": "x", "integer": 3, "number": 0.5, "boolean": True, "array": ["k"]}
        return json.dumps({k: dummy[p.get("type", "string")] for k, p in props.items()})
    return "echo: " + last_user(body)


def test_the_docs_examples_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "llm.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "questions.jsonl", [{"question": "Why is the sky blue?"},
                                               {"question": "Who built Rome?"}])
    with LLMServer(reply=docs_reply, models=("tiny",), api_key="sk-docs") as srv:
        monkeypatch.setenv("LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("LLM_MODEL", "tiny")
        monkeypatch.setenv("LLM_API_KEY", "sk-docs")
        namespace: dict = {}
        exec(compile(blocks[0], "docs/llm.md", "exec"), namespace)  # noqa: S102
        assert namespace["table"]["answer"].to_pylist()[0] == "echo: Question: Why is the sky " \
                                                              "blue?"
        exec(compile(blocks[1], "docs/llm.md", "exec"), namespace)  # noqa: S102
        rated = namespace["rated"].collect("llm-work", progress=False)
        assert rated.select(["topic", "difficulty", "keywords", "score", "label"]).to_pylist()[0] \
            == {"topic": "x", "difficulty": 3, "keywords": ["k"], "score": 8,
                "label": "science"}
        pairs = namespace["pairs"].collect("llm-work", progress=False)
        assert pairs.select(["prompt", "chosen", "rejected"]).to_pylist()[0] == {
            "prompt": "Why is the sky blue?",
            "chosen": "echo: Answer briefly: Why is the sky blue?",
            "rejected": "echo: Question: Why is the sky blue?"}
        exec(compile(blocks[2], "docs/llm.md", "exec"), namespace)  # noqa: S102
        assert str(namespace["local"].schema["local_answer"]) == "string"
