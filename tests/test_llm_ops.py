"""The LLM operations against a fault-injecting OpenAI-compatible server on loopback
(tests/llm_server.py): requests, the response cache, retries and budgets, counters, and bad
input. Assertions count requests at the server, never time."""

from __future__ import annotations

import json

import pytest

import datamill as dm
from datamill.errors import ArgumentError, DatamillError, PipelineError, SchemaError

from .conftest import write_jsonl
from .llm_server import LLMServer

QUESTIONS = [f"What is {i} plus {i}?" for i in range(8)]


@pytest.fixture
def server():
    with LLMServer() as srv:
        yield srv


def questions(tmp_path, n=8):
    return write_jsonl(tmp_path / "q.jsonl", [{"question": q, "n": i}
                                             for i, q in enumerate(QUESTIONS[:n])])


def generate(path, server, **args):
    options = {"base_url": server.base_url, "model": "tiny",
               "prompt": "Q: {{ question }}", **args}
    return dm.Dataset.read(path).apply("llm_generate", **options)


def run(ds, work, **options):
    return ds.collect(work, workers=1, progress=False, **options)


def counters(work, step="llm_generate"):
    manifest = json.loads((work / "manifest.json").read_text())
    for d in manifest["datasets"]:
        for s in d["steps"]:
            if s["name"] == step:
                return s.get("counters", {}), s
    raise KeyError(step)


def test_generate_sends_the_template_and_parameters(tmp_path, server):
    path = questions(tmp_path)
    ds = generate(path, server, system="You answer {{ n }} questions.", temperature=0.2,
                  max_tokens=16, seed=7, stop=["\n"], extra_params={"top_k": 3})
    table = run(ds, tmp_path / "w")
    assert table["response"].to_pylist() == [f"echo: Q: {q}" for q in QUESTIONS]
    assert server.requests == len(QUESTIONS)
    body = next(b for b in server.bodies if "0 plus 0" in b["messages"][-1]["content"])
    assert body["messages"][0] == {"role": "system", "content": "You answer 0 questions."}
    assert {k: body[k] for k in ("model", "temperature", "max_tokens", "seed", "stop",
                                 "top_k")} == {"model": "tiny", "temperature": 0.2,
                                               "max_tokens": 16, "seed": 7, "stop": ["\n"],
                                               "top_k": 3}
    counts, _ = counters(tmp_path / "w")
    assert counts["requests"] == len(QUESTIONS)
    assert counts["completion_tokens"] == sum(len(f"echo: Q: {q}".split()) for q in QUESTIONS)
    assert counts["prompt_tokens"] > 0 and "cache_hits" not in counts


def test_response_cache_never_asks_twice_and_never_serves_stale(tmp_path, server):
    path = questions(tmp_path)
    work = tmp_path / "w"
    run(generate(path, server, temperature=0.0), work)
    assert server.requests == 8
    run(generate(path, server, temperature=0.0), work)  # unchanged: the step is cached
    assert server.requests == 8
    # another output column: the step recomputes, every reply comes from the response cache
    again = run(generate(path, server, temperature=0.0, output="answer"), work)
    assert server.requests == 8
    assert counters(work)[0] == {"cache_hits": 8}
    assert again["answer"].to_pylist()[0] == "echo: Q: What is 0 plus 0?"
    run(generate(path, server, temperature=0.7), work)  # a changed temperature asks again
    assert server.requests == 16
    run(generate(path, server, temperature=0.7, cache=False, output="x"), work)
    assert server.requests == 24  # cache=False: neither read nor written
    run(generate(path, server, temperature=0.0, system="Be brief."), work)
    assert server.requests == 32  # a changed system prompt changes every request


def test_n_samples_make_a_list_with_a_seed_each(tmp_path, server):
    path = questions(tmp_path, 3)
    table = run(generate(path, server, n=3, seed=10), tmp_path / "w")
    assert table.schema.field("response").type == dm_type("list<string>")
    assert [len(v) for v in table["response"].to_pylist()] == [3, 3, 3]
    assert server.requests == 9
    assert sorted(b["seed"] for b in server.bodies) == [10, 10, 10, 11, 11, 11, 12, 12, 12]
    # without a seed, the samples of one prompt are still cached apart
    run(generate(path, server, n=2, output="two"), tmp_path / "w")
    assert server.requests == 15


def dm_type(name):
    from datamill.schema import to_arrow_type

    return to_arrow_type(name)


def test_typed_output_parses_and_asks_again_when_it_cannot(tmp_path):
    replies = iter(["about 42", "none", "7"] + ["3"] * 10)
    with LLMServer(reply=lambda body: next(replies)) as srv:
        path = questions(tmp_path, 2)
        table = run(generate(path, srv, output_type="int64", concurrency=1, batch_rows=1),
                    tmp_path / "w")
        assert table["response"].to_pylist() == [42, 7]
        assert srv.requests == 3
        retry = srv.bodies[2]["messages"]  # the model is told why its reply was refused
        assert retry[-2] == {"role": "assistant", "content": "none"}
        assert "number" in retry[-1]["content"]
        assert counters(tmp_path / "w")[0]["invalid_replies"] == 1


@pytest.mark.parametrize("fault", ["429", "500", "503", "malformed", "truncated", "html",
                                   "nochoices"])
def test_each_fault_is_retried_and_counted(tmp_path, server, fault):
    server.plan = [fault, fault]
    path = questions(tmp_path, 4)
    table = run(generate(path, server, concurrency=1, max_retries=3), tmp_path / "w")
    assert table["response"].to_pylist() == [f"echo: Q: {q}" for q in QUESTIONS[:4]]
    assert server.requests == 6 and server.faults[fault] == 2
    counts, _ = counters(tmp_path / "w")
    kind = {"malformed": "bad_json", "nochoices": "bad_json", "html": "bad_content_type",
            "truncated": "truncated"}.get(fault, f"http_{fault}")
    assert counts[f"failed_{kind}"] == 2 and counts["retries"] == 2
    assert counts["requests"] == 6


def test_slow_replies_time_out_and_are_retried(tmp_path, server):
    server.plan = ["slow"]
    server.slow = 5.0
    path = questions(tmp_path, 2)
    table = run(generate(path, server, concurrency=1, timeout=0.5), tmp_path / "w")
    assert table.num_rows == 2
    counts, _ = counters(tmp_path / "w")
    assert counts["failed_timeout"] == 1 and counts["retries"] == 1


def test_a_storm_of_429s_backs_off_and_completes(tmp_path, server):
    server.storm = (40, "429")
    path = questions(tmp_path)
    table = run(generate(path, server, concurrency=4, max_retries=20), tmp_path / "w")
    assert table.num_rows == 8 and server.faults["429"] == 40
    counts, _ = counters(tmp_path / "w")
    assert counts["failed_http_429"] == 40 and counts["requests"] == 48


def test_concurrency_caps_requests_in_flight(tmp_path):
    with LLMServer(delay=0.2) as srv:
        path = write_jsonl(tmp_path / "q.jsonl", [{"question": str(i)} for i in range(24)])
        run(generate(path, srv, concurrency=4, batch_rows=3), tmp_path / "w")
        assert srv.requests == 24
        assert srv.max_in_flight == 4  # batches overlap to keep 4 busy, never more


def test_rows_that_keep_failing_follow_on_error(tmp_path, server):
    rows = [{"question": "fine"}, {"question": "[fault:500] broken"}, {"question": "ok"}]
    server.reply = lambda body: ("echo: " + body["messages"][-1]["content"])
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    # the broken row's first attempt fails and max_retries=0 gives up at once
    with pytest.raises(DatamillError, match=r"step 'llm_generate', row _id=\d+.*http_500"):
        run(generate(path, server, max_retries=0), tmp_path / "raise")
    server.per_prompt.clear()
    before = server.requests
    table = run(generate(path, server, max_retries=0, on_error="quarantine"), tmp_path / "q")
    assert table["question"].to_pylist() == ["fine", "ok"]
    assert server.requests - before == 3  # nothing asked twice for the row-by-row pass
    counts, step = counters(tmp_path / "q")
    assert step["errors"] == 1 and counts["failed_http_500"] == 1
    assert counts["requests"] == 3
    quarantined = dm.quarantined_rows(tmp_path / "q")
    assert quarantined["question"].to_pylist() == ["[fault:500] broken"]
    assert "http_500" in quarantined["_error"].to_pylist()[0]


def test_prices_give_a_cost(tmp_path, server):
    path = questions(tmp_path, 3)
    run(generate(path, server, prices={"prompt": 0.5, "completion": 2.0}), tmp_path / "w")
    counts, _ = counters(tmp_path / "w")
    assert counts["cost_microdollars"] == round(counts["prompt_tokens"] * 0.5
                                                + counts["completion_tokens"] * 2.0)


def test_inspect_shows_the_counters(tmp_path, server):
    from datamill.cli import main

    path = questions(tmp_path, 2)
    run(generate(path, server), tmp_path / "w")
    run(generate(path, server, output="again"), tmp_path / "w")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["inspect", str(tmp_path / "w")])
    text = out.getvalue()
    assert "counters of llm_generate" in text and "cache_hits=2" in text


# --- bad input ------------------------------------------------------------------------------
def test_server_down_is_an_error_before_the_run(tmp_path):
    from .image_server import closed_port

    path = questions(tmp_path, 2)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    ds = dm.Dataset.read(path).apply("llm_generate", base_url=url, model="m",
                                     prompt="{{ question }}", step_name="answers")
    with pytest.raises(DatamillError, match=r"step 'answers'.*cannot reach the LLM server"):
        run(ds, tmp_path / "w")
    assert not list((tmp_path / "w" / "steps").glob("*/stats-*.json"))  # nothing ran


def test_wrong_model_is_refused_with_the_step(tmp_path, server):
    path = questions(tmp_path, 2)
    listed = generate(path, server, model="nope", step_name="gen")
    with pytest.raises(DatamillError, match=r"step 'gen'.*does not serve the model 'nope'"):
        run(listed, tmp_path / "w")
    assert server.requests == 0
    server.models = []  # a server that lists nothing: the first request gets its error
    ds = generate(path, server, model="nope", step_name="gen")
    with pytest.raises(DatamillError, match=r"step 'gen'.*404.*model `nope` does not exist"):
        run(ds, tmp_path / "w2")


def test_key_comes_from_the_named_variable_and_never_leaks(tmp_path, monkeypatch):
    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("DM_LLM_TEST_KEY", secret)
    with LLMServer(api_key=secret) as srv:
        path = questions(tmp_path, 2)
        ds = generate(path, srv, api_key_env="DM_LLM_TEST_KEY", step_name="gen")
        run(ds, tmp_path / "w")
        assert srv.auth_seen == [f"Bearer {secret}"] * 2
        srv.models = []  # wrong model, server's error: the key is not in it either
        with pytest.raises(DatamillError) as failed:
            run(generate(path, srv, api_key_env="DM_LLM_TEST_KEY", model="x"), tmp_path / "w")
    assert secret not in str(failed.value) and secret not in repr(ds.step.op)
    for f in (tmp_path / "w").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    monkeypatch.setenv("DM_LLM_TEST_KEY", "sk-wrong")
    with LLMServer(api_key=secret) as srv:
        with pytest.raises(DatamillError, match="refused the key from \\$DM_LLM_TEST_KEY"):
            run(generate(path, srv, api_key_env="DM_LLM_TEST_KEY", output="o"), tmp_path / "w")


def test_key_variable_unset_fails_when_built(tmp_path, monkeypatch, server):
    monkeypatch.delenv("DM_LLM_MISSING_KEY", raising=False)
    with pytest.raises(ArgumentError, match="'DM_LLM_MISSING_KEY'.*not set"):
        generate(questions(tmp_path, 1), server, api_key_env="DM_LLM_MISSING_KEY")


def test_bad_templates_fail_when_built(tmp_path, server):
    path = questions(tmp_path, 1)
    with pytest.raises(PipelineError, match="syntax error"):
        generate(path, server, prompt="Q: {{ question ")
    with pytest.raises(SchemaError, match="'questoin'.*did you mean 'question'"):
        generate(path, server, prompt="Q: {{ questoin }}")
    with pytest.raises(SchemaError, match="'topic'"):
        generate(path, server, system="About {{ topic }}")
    with pytest.raises(ArgumentError, match="base_url is required"):
        dm.Dataset.read(path).apply("llm_generate", model="m", prompt="{{ question }}")


def test_sandbox_refuses_unsafe_templates(tmp_path, server):
    path = questions(tmp_path, 1)
    ds = generate(path, server, prompt="{{ question.__class__.__mro__ }}")
    with pytest.raises(DatamillError, match="unsafe|SecurityError|access"):
        run(ds, tmp_path / "w")


KILLED_PIPELINE = '''
import sys
import datamill as dm

ds = dm.Dataset.read(sys.argv[1]).apply("llm_generate", base_url=sys.argv[3], model="tiny",
                                        prompt="Q: {{ question }}", concurrency=2,
                                        batch_rows=2)
ds.write(sys.argv[2] + "/out").run(sys.argv[2] + "/work", workers=1, progress=False)
'''


def test_a_killed_run_resumes_paying_only_for_the_rest(tmp_path):
    """One partition, so no step commits before the kill: the response cache alone saves
    the replies that arrived; the re-run asks for exactly the others."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    rows = [{"question": f"question {i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    script = tmp_path / "pipe.py"
    script.write_text(KILLED_PIPELINE)
    with LLMServer(delay=0.05) as srv:
        cmd = [sys.executable, str(script), str(path), str(tmp_path), srv.base_url]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while srv.requests < 16 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 16 <= srv.requests < 40, "the run was not killed midway"
        saved = len(list((tmp_path / "work" / "llm-cache").rglob("*.json")))
        assert srv.requests - 2 <= saved <= srv.requests  # at most the 2 in flight are lost
        before = srv.requests
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        assert srv.requests - before == 40 - saved  # the rest, nothing twice
    out = pq.read_table(sorted((tmp_path / "out").glob("*.parquet")))
    assert sorted(out["response"].to_pylist()) == sorted(f"echo: Q: {r['question']}"
                                                         for r in rows)


def test_minute_budgets_hold_requests_and_tokens():
    """RPM/TPM: never more than the budget in any window (a simulated clock)."""
    import asyncio

    from datamill.ops.llm.client import MinuteBudget

    now = [0.0]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    async def spend(budget, amounts):
        times = []
        for amount in amounts:
            await budget.take(amount)
            times.append((now[0], amount))
        return times

    rpm = MinuteBudget(3, clock=lambda: now[0], sleep=sleep)
    times = asyncio.run(spend(rpm, [1] * 7))
    assert [t for t, _ in times] == [0, 0, 0, 60, 60, 60, 120]
    now[0] = 0.0
    tpm = MinuteBudget(1000, clock=lambda: now[0], sleep=sleep)
    times = asyncio.run(spend(tpm, [400, 400, 400, 5000, 100]))
    for t, _ in times:  # tokens spent in any 60 s window ending at t stay within 1000
        assert sum(min(a, 1000) for u, a in times if t - 60 < u <= t) <= 1000
    assert [t for t, _ in times] == [0, 0, 60, 120, 180]  # a request larger than the budget
    # still goes, alone in its window


def test_budgets_and_concurrency_are_shared_by_the_workers(tmp_path, server):
    from datamill.operation import RunContext

    op = generate(questions(tmp_path, 1), server, concurrency=8, rpm=600, tpm=9000).step.op
    op.before_run(RunContext(tmp_path / "w", "gen", workers=3))
    s = op.settings()
    assert (s.concurrency, s.rpm, s.tpm) == (3, 200, 3000)


def test_on_ray_as_locally_sharing_the_response_cache(tmp_path, server, ray_cluster):
    """Ray workers get the operation without its client (made in each actor's setup) and
    share the workdir's response cache: after a local run, a Ray run of the step with another
    output column asks nothing."""
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"question": q} for q in QUESTIONS[:4]])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"question": q} for q in QUESTIONS[4:]])
    work = tmp_path / "w"

    def pipeline(**extra):
        return dm.Dataset.read(str(tmp_path / "in")).apply(
            "llm_generate", base_url=server.base_url, model="tiny", prompt="Q: {{ question }}",
            **extra)

    local = pipeline().collect(work, workers=2, progress=False)
    assert server.requests == 8
    on_ray = pipeline(output="answer").collect(work, executor="ray",
                                               address=ray_cluster.address, progress=False)
    assert server.requests == 8
    assert sorted(on_ray["answer"].to_pylist()) == sorted(local["response"].to_pylist())
    assert counters(work)[0] == {"cache_hits": 8}
    fresh = pipeline(temperature=0.5).collect(tmp_path / "w2", executor="ray",
                                              address=ray_cluster.address, progress=False)
    assert fresh.num_rows == 8 and server.requests == 16
