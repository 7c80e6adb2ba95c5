"""The LLM operations against a real OpenAI-compatible server (`transformers serve` with
SmolLM2-135M-Instruct, tests/transformers_server.py) and the local transformers backend.
A 135M model's prose is not asserted, only structure and behaviour: requests counted at the
server, the cache, the types, the same greedy replies from the server and the local backend."""

from __future__ import annotations

import json

import pytest

import datamill as dm
from datamill.errors import DatamillError

from .conftest import write_jsonl
from .transformers_server import smollm2_gguf

PROMPTS = ["What is the capital of France?", "Name a colour.", "Say hello."]


def counters(work, name):
    manifest = json.loads((work / "manifest.json").read_text())
    return next(s for d in manifest["datasets"] for s in d["steps"]
                if s["name"] == name).get("counters", {})


def test_generate_against_transformers_serve(tmp_path, smol_server):
    path = write_jsonl(tmp_path / "q.jsonl", [{"q": p} for p in PROMPTS])
    before = smol_server.requests

    def pipeline(**extra):
        return dm.Dataset.read(path).apply(
            "llm_generate", base_url=smol_server.base_url, model=smol_server.model,
            prompt="{{ q }}", max_tokens=6, temperature=0.0, concurrency=3, **extra)

    table = pipeline().collect(tmp_path / "w", workers=1, progress=False)
    answers = table["response"].to_pylist()
    assert len(answers) == 3 and all(isinstance(a, str) and a.strip() for a in answers)
    assert smol_server.requests - before == 3
    counts = counters(tmp_path / "w", "llm_generate")
    assert counts["requests"] == 3 and 3 <= counts["completion_tokens"] <= 18
    assert counts["prompt_tokens"] > 3 * 5
    # unchanged: the step is cached; another output column: served by the response cache
    pipeline().collect(tmp_path / "w", workers=1, progress=False)
    again = pipeline(output="again").collect(tmp_path / "w", workers=1, progress=False)
    assert again["again"].to_pylist() == answers
    assert smol_server.requests - before == 3
    assert counters(tmp_path / "w", "llm_generate") == {
        "cache_hits": 3}


def test_wrong_model_is_refused_before_the_run(tmp_path, smol_server):
    path = write_jsonl(tmp_path / "q.jsonl", [{"q": "hi"}])
    before = smol_server.requests
    ds = dm.Dataset.read(path).apply("llm_generate", base_url=smol_server.base_url,
                                     model="gpt-nope", prompt="{{ q }}", step_name="gen")
    with pytest.raises(DatamillError, match=r"step 'gen'.*does not serve the model 'gpt-nope'"):
        ds.collect(tmp_path / "w", workers=1, progress=False)
    assert smol_server.requests == before


def test_local_backend_replies_as_the_server_does(tmp_path, smol_server):
    """backend="transformers" loads the GGUF in the worker; greedy replies equal the
    server's (same weights, same chat template), and are cached alike."""
    path = write_jsonl(tmp_path / "q.jsonl", [{"q": p} for p in PROMPTS[:2]])
    local = dm.Dataset.read(path).apply("llm_generate", backend="transformers",
                                        model=smollm2_gguf(), prompt="{{ q }}", max_tokens=6,
                                        temperature=0.0)
    table = local.collect(tmp_path / "w", workers=1, progress=False)
    counts = counters(tmp_path / "w", "llm_generate")
    assert counts["requests"] == 2 and counts["completion_tokens"] <= 12
    served = dm.Dataset.read(path).apply(
        "llm_generate", base_url=smol_server.base_url, model=smol_server.model,
        prompt="{{ q }}", max_tokens=6, temperature=0.0).collect(
        tmp_path / "w2", workers=1, progress=False)
    assert table["response"].to_pylist() == served["response"].to_pylist()
    assert len(list((tmp_path / "w" / "llm-cache").rglob("*.json"))) == 2


def test_gguf_conversion_is_done_once_per_file(tmp_path, smol_server):
    """The server's folder came from `gguf_to_transformers`: asked again for the same file,
    it returns the folder without converting (nothing rewritten); another folder name is a
    fresh conversion only when asked for."""
    from datamill.ops.llm.gguf import DONE, file_digest, gguf_to_transformers

    folder = smol_server.folder
    marker = json.loads((folder / DONE).read_text())
    assert marker["sha256"] == file_digest(smollm2_gguf())
    assert json.loads((folder / "config.json").read_text())["architectures"] == [
        "LlamaForCausalLM"]
    stamps = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    assert gguf_to_transformers(smollm2_gguf()) == folder
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == stamps
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        gguf_to_transformers(tmp_path / "missing.gguf")
