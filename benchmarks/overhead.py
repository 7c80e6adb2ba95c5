"""Framework overhead: five cheap vectorized row-wise steps, Parquet -> Parquet.

    python benchmarks/overhead.py [--rows 5000000] [--repeat 3] [--workers 2] [--profile]

Steps: (a) `text_length` = utf8_length(text), (b) `text_lower` = utf8_lower(text),
(c) `has_number` = match_substring_regex(text, "[0-9]{4}"), (d) keep text_length > 150,
(e) rename text -> content. Output: zstd Parquet.

Variants (each in a fresh child process, interleaved, `--repeat` times):
  pyarrow          one hand-written pass: iter_batches -> compute -> filter -> rename -> writer
  polars           scan_parquet -> with_columns -> filter -> rename -> sink_parquet (2 threads)
  datamill_w{N}    Dataset.read(...).apply(...)x4.rename(...).write(...).run(workers=N),
                   fresh workdir each time (also with workers=1 for reference)

Target: datamill (workers=2) / pyarrow <= 1.5.
`--profile` records the datamill variant with py-spy (--subprocesses; flamegraph SVG and
collapsed stacks) and with pyinstrument (workers=1, in-process), and prints the hottest
datamill functions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    DATA_DIR,
    RESULTS_DIR,
    WORK_DIR,
    TextGenerator,
    dir_size,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

PATTERN = "[0-9]{4}"
MIN_LENGTH = 150
ROW_GROUP = 262_144
OUT_ROW_GROUP = 131_072  # datamill's Parquet sink writes row groups of this size


def input_path(rows: int) -> Path:
    return DATA_DIR / f"overhead-{rows}.parquet"


def generate(rows: int, seed: int = 0) -> Path:
    """Parquet with `id`, `text` (~100-300 chars of mixed-case words), `lang`, `score`;
    row groups of 256k rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = input_path(rows)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = TextGenerator(seed)
    rng = np.random.default_rng(seed + 1)
    langs = pa.array(["en", "de", "fr", "es", "it", "nl"])
    tmp = path.with_suffix(".tmp")
    start = time.perf_counter()
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("lang", pa.string()),
                        ("score", pa.float64())])
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for lo in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - lo)
            text = gen.texts(rng.integers(18, 56, n))
            table = pa.table({
                "id": pa.array(np.arange(lo, lo + n, dtype=np.int64)),
                "text": text,
                "lang": langs.take(pa.array(rng.integers(0, len(langs), n))),
                "score": pa.array(rng.random(n)),
            }, schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    tmp.rename(path)
    print(f"generated {path} ({rows:,} rows, {path.stat().st_size / 2**20:.0f} MiB) in "
          f"{time.perf_counter() - start:.1f}s", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# variants (run in a child process)
# --------------------------------------------------------------------------------------------
def run_pyarrow(inp: Path, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pf = pq.ParquetFile(inp)
    writer = None
    rows_out = 0
    for batch in pf.iter_batches(batch_size=65_536):
        text = batch.column("text")
        length = pc.utf8_length(text)
        table = pa.Table.from_batches([batch])
        table = table.append_column("text_length", length)
        table = table.append_column("text_lower", pc.utf8_lower(text))
        table = table.append_column("has_number", pc.match_substring_regex(text, PATTERN))
        table = table.filter(pc.greater(length, MIN_LENGTH))
        table = table.rename_columns(["content" if c == "text" else c
                                      for c in table.schema.names])
        if writer is None:
            writer = pq.ParquetWriter(out / "part-0.parquet", table.schema, compression="zstd")
        writer.write_table(table, row_group_size=OUT_ROW_GROUP)
        rows_out += table.num_rows
    writer.close()
    return {"rows_out": rows_out}


def run_polars(inp: Path, out: Path) -> dict:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    target = out / "part-0.parquet"
    (pl.scan_parquet(inp)
     .with_columns(pl.col("text").str.len_chars().cast(pl.Int32).alias("text_length"),
                   pl.col("text").str.to_lowercase().alias("text_lower"),
                   pl.col("text").str.contains(PATTERN).alias("has_number"))
     .filter(pl.col("text_length") > MIN_LENGTH)
     .rename({"text": "content"})
     .sink_parquet(target, compression="zstd", row_group_size=OUT_ROW_GROUP))
    return {"rows_out": pl.scan_parquet(target).select(pl.len()).collect().item()}


def build_datamill(inp: Path, out: Path):
    from _ops import GreaterThan, Lowercase, RegexFlag, TextLength

    from datamill import Dataset

    return (Dataset.read(str(inp))
            .apply(TextLength, column="text")
            .apply(Lowercase, column="text")
            .apply(RegexFlag, column="text", pattern=PATTERN, output="has_number")
            .apply(GreaterThan, column="text_length", min_value=MIN_LENGTH)
            .rename(text="content")
            .write(str(out)))


def run_datamill(inp: Path, out: Path, workdir: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    ds = build_datamill(inp, out)
    t1 = time.perf_counter()
    result = ds.run(workdir, workers=workers, progress=False)
    t2 = time.perf_counter()
    steps = {s["name"]: {"seconds": s.get("seconds"), "wall_seconds": s.get("wall_seconds"),
                         "rows_out": s.get("rows_out")}
             for s in result.manifest["datasets"][0]["steps"]}
    sink = result.manifest["datasets"][0]["steps"][-1]
    return {"build_s": round(t1 - t0, 4), "run_s": round(t2 - t1, 4),
            "rows_out": sink.get("rows_out"), "steps": steps,
            "workdir_mb": round(dir_size(workdir) / 2**20, 1)}


def child(args: argparse.Namespace) -> None:
    inp = input_path(args.rows)
    tag = args.child
    out = fresh_dir(WORK_DIR / f"overhead-out-{tag}")
    workdir = WORK_DIR / f"overhead-wd-{tag}"
    if workdir.exists():
        shutil.rmtree(workdir)
    # import what every variant uses before the clock starts (interpreter warm-up is not
    # what this benchmark measures; at 5M rows it would be ~1% anyway)
    import numpy  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    if tag == "polars":
        import polars  # noqa: F401
    elif tag.startswith("datamill"):
        import _ops  # noqa: F401

        import datamill.executors.local  # noqa: F401
        import datamill.registry

        datamill.registry.load_all()
    start = time.perf_counter()
    if tag == "pyarrow":
        info = run_pyarrow(inp, out)
    elif tag == "polars":
        info = run_polars(inp, out)
    else:
        info = run_datamill(inp, out, workdir, args.workers)
    wall = time.perf_counter() - start
    info.update(variant=tag, wall_s=round(wall, 4), output_mb=round(dir_size(out) / 2**20, 1))
    info["columns"] = _output_columns(out)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    report_child(info)


def _output_columns(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    files = sorted(out.glob("*.parquet"))
    return pq.read_schema(files[0]).names if files else []


# --------------------------------------------------------------------------------------------
# profiling
# --------------------------------------------------------------------------------------------
def profile(args: argparse.Namespace) -> dict:
    """py-spy over the datamill variant (driver + workers), and pyinstrument in-process."""
    me = [sys.executable, str(Path(__file__).resolve()), "--rows", str(args.rows)]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    py_spy = shutil.which("py-spy")
    if py_spy:
        for fmt, target in (("flamegraph", RESULTS_DIR / "overhead.svg"),
                            ("raw", RESULTS_DIR / "overhead.collapsed.txt")):
            cmd = [py_spy, "record", "--subprocesses", "--rate", "100", "--format", fmt,
                   "-o", str(target), "--", *me, "--child", f"datamill_w{args.workers}",
                   "--workers", str(args.workers)]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            out[fmt] = str(target)
        out["hot"] = summarize_collapsed(RESULTS_DIR / "overhead.collapsed.txt")
    else:
        print("py-spy not installed; skipping", flush=True)
    try:
        import pyinstrument  # noqa: F401

        target = RESULTS_DIR / "overhead.pyinstrument.txt"
        cmd = [sys.executable, "-m", "pyinstrument", "--outfile", str(target), "-r", "text",
               str(Path(__file__).resolve()), "--rows", str(args.rows),
               "--child", "datamill_w1", "--workers", "1"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out["pyinstrument"] = str(target)
    except ImportError:
        print("pyinstrument not installed; skipping", flush=True)
    return out


def summarize_collapsed(path: Path, top: int = 25) -> dict:
    """Inclusive and self samples per function from py-spy's collapsed stacks."""
    from collections import Counter

    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        seen = set()
        for f in frames:
            name = _frame_name(f)
            if name not in seen:
                inclusive[name] += n
                seen.add(name)
        own[_frame_name(frames[-1])] += n

    def pct(c: int) -> float:
        return round(100.0 * c / max(total, 1), 1)

    dm_inclusive = [(f, pct(c)) for f, c in inclusive.most_common() if "datamill" in f][:top]
    self_top = [(f, pct(c)) for f, c in own.most_common(top)]
    print(f"\npy-spy: {total} samples (all processes)")
    print_table([{"function": f, "inclusive_%": p} for f, p in dm_inclusive],
                ["function", "inclusive_%"], "datamill functions by inclusive time")
    print_table([{"function": f, "self_%": p} for f, p in self_top],
                ["function", "self_%"], "functions by self time")
    return {"samples": total, "datamill_inclusive_pct": dm_inclusive, "self_pct": self_top}


def _frame_name(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; drop the line number
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    file = loc.rsplit(":", 1)[0]
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif "/src/" in file:
        file = file.split("/src/", 1)[1]
    return f"{name} ({file})" if file else name


# --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-polars", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the datamill variant (py-spy, pyinstrument)")
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep outputs and workdirs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    generate(args.rows)
    variants = ["pyarrow"] + ([] if args.no_polars else ["polars"]) + \
        [f"datamill_w{args.workers}"] + (["datamill_w1"] if args.workers != 1 else [])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    if not args.profile_only:
        for r in range(args.repeat):
            for v in variants:
                workers = 1 if v == "datamill_w1" else args.workers
                res = run_child([__file__, "--rows", str(args.rows), "--child", v,
                                 "--workers", str(workers)])
                runs[v].append(res)
                print(f"  round {r + 1}/{args.repeat} {v:<12} {res['wall_s']:7.2f}s  "
                      f"cpu={res['cpu_s']:.1f}s  rows_out={res['rows_out']:,}  "
                      f"peak_rss={res['peak_rss_tree_mb']:.0f}MB",
                      flush=True)
    summary = []
    base = median([x["wall_s"] for x in runs["pyarrow"]]) if runs["pyarrow"] else None
    base_min = min((x["wall_s"] for x in runs["pyarrow"]), default=None)
    for v, rs in runs.items():
        if not rs:
            continue
        walls = [x["wall_s"] for x in rs]
        row = {"variant": v, "median_s": median(walls), "min_s": min(walls),
               "max_s": max(walls), "ratio_vs_pyarrow": median(walls) / base if base else None,
               "ratio_min_vs_min": min(walls) / base_min if base_min else None,
               "cpu_s": median([x["cpu_s"] for x in rs]) if "cpu_s" in rs[0] else None,
               "peak_rss_mb": max(x["peak_rss_tree_mb"] for x in rs),
               "rows_out": rs[0]["rows_out"]}
        if v.startswith("datamill"):
            row["workdir_mb"] = rs[0].get("workdir_mb")
            row["build_s"] = median([x["build_s"] for x in rs])
        summary.append(row)
    base_cpu = next((s["cpu_s"] for s in summary if s["variant"] == "pyarrow"), None)
    for row in summary:
        row["cpu_ratio"] = row["cpu_s"] / base_cpu if base_cpu and row["cpu_s"] else None
    if summary:
        print_table(summary, ["variant", "median_s", "min_s", "max_s", "ratio_vs_pyarrow",
                              "ratio_min_vs_min", "cpu_s", "cpu_ratio", "peak_rss_mb", "rows_out",
                              "workdir_mb"],
                    f"overhead: {args.rows:,} rows, 5 steps, Parquet -> Parquet "
                    f"(target: datamill_w{args.workers} / pyarrow <= 1.5)")
        dm = next((s for s in summary if s["variant"] == f"datamill_w{args.workers}"), None)
        rows_seen = {s["rows_out"] for s in summary}
        if len(rows_seen) != 1:
            print(f"WARNING: variants disagree on output rows: {rows_seen}")
        if dm and dm["ratio_vs_pyarrow"] is not None:
            verdict = "PASS" if dm["ratio_vs_pyarrow"] <= 1.5 else "FAIL"
            print(f"\ndatamill_w{args.workers} / pyarrow = {dm['ratio_vs_pyarrow']:.2f}x "
                  f"(target <= 1.5x): {verdict}")
    payload = {"rows": args.rows, "repeat": args.repeat, "workers": args.workers,
               "input": str(input_path(args.rows)),
               "input_mb": round(input_path(args.rows).stat().st_size / 2**20, 1),
               "target": {"datamill_over_pyarrow_max": 1.5},
               "summary": summary, "runs": runs}
    if args.profile or args.profile_only:
        payload["profile"] = profile(args)
    if not args.profile_only or not (RESULTS_DIR / "overhead.json").exists():
        path = write_results("overhead", payload)
    else:  # keep the timings of an earlier run, add the profile
        old = json.loads((RESULTS_DIR / "overhead.json").read_text())
        old["profile"] = payload["profile"]
        path = write_results("overhead", {k: v for k, v in old.items()
                                          if k not in ("benchmark", "command", "finished",
                                                       "environment")})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
