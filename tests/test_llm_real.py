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


def test_judge_by_logprobs_falls_back_on_a_server_without_them(tmp_path, smol_server):
    """`transformers serve` ignores `logprobs`: the judge asks for the JSON instead, once
    per row more, and counts it (a 135M model's JSON then follows on_error)."""
    path = write_jsonl(tmp_path / "a.jsonl", [{"q": "2 + 2", "a": "4"}])
    before = smol_server.requests
    dm.Dataset.read(path).apply(
        "llm_judge", base_url=smol_server.base_url, model=smol_server.model, rubric="r",
        prompt="{{ q }} = {{ a }}", min_score=1, max_score=5, scoring="logprobs",
        max_tokens=8, parse_retries=0, on_error="skip").collect(
        tmp_path / "w", workers=1, progress=False)
    assert smol_server.requests - before == 2
    assert counters(tmp_path / "w", "llm_judge")["logprobs_unusable"] == 1


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


def test_judge_and_classify_score_by_logprobs_on_one_shared_model(tmp_path):
    """With backend="transformers" the judge reads the scores' probabilities as the next
    tokens after "Score:": a score in range, its probability, the expected score, from
    probabilities that sum to 1 over the scale; deterministic, cached like replies; the
    judge and the classifier share one loaded model; a cached re-run asks nothing."""
    from datamill.ops.llm import local

    rows = [{"q": "What is 2 + 2?", "a": "2 + 2 equals 4."},
            {"q": "What is 2 + 2?", "a": "Bananas are purple."}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)

    def pipeline(**extra):
        return dm.Dataset.read(path).apply(
            "llm_judge", backend="transformers", model=smollm2_gguf(), min_score=1,
            max_score=5, rubric="A correct answer scores high.",
            prompt="Question: {{ q }}\nAnswer: {{ a }}", **extra).apply(
            "llm_classify", backend="transformers", model=smollm2_gguf(),
            labels=["correct", "wrong"], confidence_column="p",
            prompt="Question: {{ q }}\nAnswer: {{ a }}")

    loads = local.loads
    table = pipeline().collect(tmp_path / "w", workers=1, progress=False)
    assert local.loads - loads <= 1  # both steps, one model (none if loaded already)
    assert table["rationale"].null_count == 2
    for r in table.to_pylist():
        assert 1 <= r["score"] <= 5 and 1 <= r["score_expected"] <= 5
        assert 0.2 <= r["score_confidence"] <= 1 and r["label"] in ("correct", "wrong")
        assert 0.5 <= r["p"] <= 1
    judged = counters(tmp_path / "w", "llm_judge")
    assert judged["requests"] == 2 and judged["prompt_tokens"] > 2 * 20
    saved = [json.loads(f.read_text()) for f in (tmp_path / "w" / "llm-cache").rglob("*.json")]
    scales = [s["probabilities"] for s in saved if len(s["probabilities"]) == 5]
    assert len(scales) == 2 and all(abs(sum(p.values()) - 1) < 1e-6 for p in scales)
    assert all(set(p) == {"1", "2", "3", "4", "5"} for p in scales)
    # the same scores again from a fresh workdir (deterministic), with the model kept loaded
    loads = local.loads
    again = pipeline().collect(tmp_path / "w2", workers=1, progress=False)
    assert local.loads == loads
    assert again.to_pylist() == table.to_pylist()
    # the scoring mode is in the key: asked for JSON instead, the judge asks the model again
    pipeline(scoring="json", max_tokens=8, parse_retries=0, on_error="skip").collect(
        tmp_path / "w", workers=1, progress=False)
    assert counters(tmp_path / "w", "llm_judge").get("requests") == 2


def test_exact_probabilities_split_a_label_from_its_continuations():
    """"1" and "10" share the first token: P(exactly "1") is P("1") less P("10")."""
    import math

    from datamill.ops.llm.local import exact_probabilities

    seqs = {"1": (5, 1), "2": (5, 2), "10": (5, 1, 0)}
    logp = {"1": math.log(0.5), "2": math.log(0.3), "10": math.log(0.2)}
    got = exact_probabilities(seqs, logp)
    assert got == pytest.approx({"1": 0.3, "2": 0.3, "10": 0.2})
