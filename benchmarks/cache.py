"""Cache: re-running an unchanged pipeline over the 1 GB JSONL input, and changing one argument.

    python benchmarks/cache.py [--gb 1] [--workers 2] [--repeat 5]

Pipeline (benchmarks/_cache_pipeline.py): read_jsonl -> text_length_filter(min_words=100)
-> word count map (pattern) -> Parquet. Measured, each in a fresh child process unless noted:

  cold                 first run into an empty workdir
  warm_inprocess       the same process calls .run() again on a rebuilt, unchanged pipeline
  warm_process         a fresh process builds the pipeline and runs it (build + .run() timed;
                       process wall includes interpreter start and imports)
  warm_cli             `datamill run benchmarks/_cache_pipeline.py:pipeline --workdir ...` and
                       `python -m datamill.cli run ...` (when the CLI exists), whole process
  changed_last_arg     the map's pattern changes: source and filter must be cached, only the
                       map (and the sink after it) rerun
  changed_then_warm    the changed pipeline again: everything cached
  changed_filter_arg   (reference) the filter's min_words changes: filter, map, sink rerun

Target: a re-run of an unchanged pipeline finishes in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    BENCH_DIR,
    REPO,
    WORK_DIR,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

TARGET_S = 2.0
CHANGED_PATTERN = r"\w+"
PIPELINE_FILE = BENCH_DIR / "_cache_pipeline.py"


def paths(gb: float) -> tuple[Path, Path, Path]:
    from scale import jsonl_path, size_label

    label = size_label(gb)
    return jsonl_path(gb), WORK_DIR / f"cache-wd-{label}", WORK_DIR / f"cache-out-{label}"


def _summary(result, t_build: float, t_run: float) -> dict:
    steps = result.manifest["datasets"][0]["steps"]
    return {"build_s": round(t_build, 4), "run_s": round(t_run, 4),
            "total_s": round(t_build + t_run, 4),
            "cached_steps": [s["name"] for s in steps if s.get("cached")],
            "rerun_steps": [s["name"] for s in steps if not s.get("cached")],
            "rows_out": steps[-1].get("rows_out")}


def _timed_run(inp: Path, out: Path, workdir: Path, pattern: str, workers: int,
               min_words: int | None = None) -> dict:
    import _cache_pipeline as cp

    t0 = time.perf_counter()
    if min_words is None:
        ds = cp.build(inp, out, pattern)
    else:  # a variant with another filter argument
        from _ops import WordCount

        from datamill import Dataset

        ds = (Dataset.read(str(inp)).apply("text_length_filter", min_words=min_words)
              .apply(WordCount, pattern=pattern).write(str(out)))
    t1 = time.perf_counter()
    result = ds.run(workdir, workers=workers, progress=False)
    t2 = time.perf_counter()
    return _summary(result, t1 - t0, t2 - t1)


def child(args: argparse.Namespace) -> None:
    os.environ["BENCH_CACHE_NO_AUTOBUILD"] = "1"
    t_import = time.perf_counter()
    import _cache_pipeline  # noqa: F401

    import datamill.executors.local  # noqa: F401
    import datamill.registry

    datamill.registry.load_all()
    import_s = time.perf_counter() - t_import
    inp, workdir, out = paths(args.gb)
    mode = args.child
    info: dict = {"mode": mode, "import_s": round(import_s, 3)}
    if mode == "cold":
        for p in (workdir, out):
            if p.exists():
                shutil.rmtree(p)
        info.update(_timed_run(inp, out, workdir, r"\S+", args.workers))
        warm = [_timed_run(inp, out, workdir, r"\S+", args.workers) for _ in range(args.repeat)]
        info["warm_inprocess"] = warm
    elif mode == "warm_process":
        info.update(_timed_run(inp, out, workdir, r"\S+", args.workers))
    elif mode in ("changed_last_arg", "changed_then_warm"):
        info.update(_timed_run(inp, out, workdir, CHANGED_PATTERN, args.workers))
    elif mode == "changed_filter_arg":
        info.update(_timed_run(inp, out, workdir, CHANGED_PATTERN, args.workers,
                               min_words=120))
    else:
        raise SystemExit(f"unknown mode {mode}")
    report_child(info)


def cli_commands(workdir: Path, workers: int) -> dict[str, list[str]]:
    """How to run the pipeline file through the CLI, if src/datamill/cli.py exists: the
    `datamill` entry point on PATH (maybe a pyenv shim) and `python -m datamill.cli`."""
    if not (REPO / "src" / "datamill" / "cli.py").exists():
        return {}
    tail = ["run", f"{PIPELINE_FILE}:pipeline", "--workdir", str(workdir),
            "--workers", str(workers), "--no-progress"]
    cmds = {"python -m datamill.cli": [sys.executable, "-m", "datamill.cli", *tail]}
    exe = shutil.which("datamill")
    if exe:
        cmds["datamill (PATH)"] = [exe, *tail]
    return cmds


def time_cli(cmd: list[str], env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env})
    wall = time.perf_counter() - start
    return {"command": " ".join(cmd), "returncode": proc.returncode,
            "process_wall_s": round(wall, 3), "stdout_tail": proc.stdout[-1500:],
            "stderr_tail": proc.stderr[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="warm re-runs to time")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from scale import generate

    meta = generate(args.gb)
    inp, workdir, out = paths(args.gb)
    common = ["--gb", str(args.gb), "--workers", str(args.workers), "--repeat", str(args.repeat)]
    results: dict = {"data": meta}

    def step(mode: str) -> dict:
        res = run_child([__file__, *common, "--child", mode])
        print(f"  {mode:<20} total {res['total_s']:8.3f}s (build {res['build_s']:.3f}s, "
              f"run {res['run_s']:.3f}s; process {res['process_wall_s']:.2f}s)  "
              f"rerun={res['rerun_steps']}", flush=True)
        return res

    results["cold"] = step("cold")
    for i, w in enumerate(results["cold"]["warm_inprocess"]):
        print(f"  warm_inprocess[{i}]    total {w['total_s']:8.3f}s (build {w['build_s']:.3f}s, "
              f"run {w['run_s']:.3f}s)  rerun={w['rerun_steps']}", flush=True)
    results["warm_process"] = [step("warm_process") for _ in range(args.repeat)]

    env = {"BENCH_CACHE_INPUT": str(inp), "BENCH_CACHE_OUTPUT": str(out)}
    cmds = cli_commands(workdir, args.workers)
    results["warm_cli"] = {}
    if not cmds:
        results["warm_cli"] = {"skipped": "src/datamill/cli.py does not exist"}
        print("  warm_cli             skipped (no src/datamill/cli.py)")
    for label, cmd in cmds.items():
        runs = [time_cli(cmd, env) for _ in range(args.repeat)]
        results["warm_cli"][label] = runs
        for r in runs:
            print(f"  warm_cli {label:<24} process {r['process_wall_s']:.3f}s "
                  f"rc={r['returncode']}", flush=True)
        if runs and runs[-1]["returncode"] != 0:
            print(runs[-1]["stderr_tail"])
        elif runs:
            print("    " + runs[-1]["stdout_tail"].replace("\n", "\n    "))

    results["changed_last_arg"] = step("changed_last_arg")
    results["changed_then_warm"] = step("changed_then_warm")
    results["changed_filter_arg"] = step("changed_filter_arg")

    # summary
    cold = results["cold"]
    warm_in = [w["run_s"] for w in cold["warm_inprocess"]]
    warm_in_total = [w["total_s"] for w in cold["warm_inprocess"]]
    warm_proc = [w["total_s"] for w in results["warm_process"]]
    warm_proc_wall = [w["process_wall_s"] for w in results["warm_process"]]
    rows = [
        {"case": "cold (first run)", "seconds": cold["total_s"], "rerun": cold["rerun_steps"]},
        {"case": "warm .run() in-process (median)", "seconds": median(warm_in),
         "target_ok(<2s)": median(warm_in) < TARGET_S,
         "rerun": cold["warm_inprocess"][0]["rerun_steps"]},
        {"case": "warm build + .run() in-process (median)", "seconds": median(warm_in_total),
         "target_ok(<2s)": median(warm_in_total) < TARGET_S},
        {"case": "warm fresh process build+run (median)", "seconds": median(warm_proc),
         "target_ok(<2s)": median(warm_proc) < TARGET_S,
         "rerun": results["warm_process"][0]["rerun_steps"]},
        {"case": "warm fresh process, whole process (median)",
         "seconds": median(warm_proc_wall), "target_ok(<2s)": median(warm_proc_wall) < TARGET_S},
    ]
    if "skipped" in results["warm_cli"]:
        rows.append({"case": "warm CLI `datamill run`", "seconds": "skipped",
                     "rerun": results["warm_cli"]["skipped"]})
    for label, runs in results["warm_cli"].items():
        if label == "skipped":
            continue
        ok = [r["process_wall_s"] for r in runs if r["returncode"] == 0]
        rows.append({"case": f"warm CLI {label}, whole process (median)",
                     "seconds": median(ok) if ok else float("nan"),
                     "target_ok(<2s)": bool(ok) and median(ok) < TARGET_S,
                     "rerun": "all cached" if ok and "computed" not in runs[-1]["stdout_tail"]
                     else ("CLI failed" if not ok else "see stdout")})
    ch = results["changed_last_arg"]
    rows.append({"case": "changed last step arg", "seconds": ch["total_s"],
                 "rerun": ch["rerun_steps"],
                 "target_ok(<2s)": f"only map+sink rerun: "
                                   f"{ch['rerun_steps'] == ['bench_word_count', 'write_parquet']}"})
    rows.append({"case": "changed arg, run again", "seconds":
                 results["changed_then_warm"]["total_s"],
                 "rerun": results["changed_then_warm"]["rerun_steps"],
                 "target_ok(<2s)": results["changed_then_warm"]["total_s"] < TARGET_S})
    rows.append({"case": "changed filter arg (reference)",
                 "seconds": results["changed_filter_arg"]["total_s"],
                 "rerun": results["changed_filter_arg"]["rerun_steps"]})
    print_table(rows, ["case", "seconds", "target_ok(<2s)", "rerun"],
                f"cache: {meta['bytes'] / 1e9:.2f} GB JSONL (target: unchanged re-run < 2 s)")
    path = write_results("cache", {"target_s": TARGET_S, "summary": rows, **results})
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
