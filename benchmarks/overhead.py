"""Framework overhead: cheap vectorized row-wise steps against hand-written passes.

    python benchmarks/overhead.py --pipeline jsonl [--docs 100000] [--repeat 3] [--profile]
    python benchmarks/overhead.py [--rows 5000000] [--repeat 3] [--workers 2] [--profile]

`--pipeline jsonl` (issue 10): `--docs` documents in 4 JSONL files (~60 MB each at 100k docs)
-> text_length_filter(min_words=50) -> a regex word count map (`n_words`) -> zstd Parquet.
Variants: `polars` (scan_ndjson -> with_columns -> filter -> sink_parquet, all cores) and
`datamill_w{N}` (Dataset.read(files).apply(...).apply(WordCount).write(out).run(workers=N),
cache on, fresh workdir). Reports wall and CPU (driver + workers, measured around the work)
ratios datamill / polars. Target: wall ratio <= 1.2.

`--pipeline parquet` (the default):

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
import contextlib
import json
import os
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


def run_datamill(ds_builder, out: Path, workdir: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    ds = ds_builder()
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


# --------------------------------------------------------------------------------------------
# the JSONL pipeline (issue 10): JSONL -> text_length_filter -> regex word count -> Parquet
# --------------------------------------------------------------------------------------------
JSONL_FILES = 4
MIN_WORDS = 50
WORD = r"\S+"


def jsonl_dir(docs: int) -> Path:
    return DATA_DIR / f"overhead-jsonl-{docs}"


def jsonl_files(docs: int) -> list[Path]:
    return [jsonl_dir(docs) / f"shard-{i}.jsonl" for i in range(JSONL_FILES)]


def generate_jsonl(docs: int, seed: int = 0) -> list[Path]:
    """`docs` web-like documents (`id`, `url`, `title`, `lang`, `text`) in 4 JSONL files,
    ~2,400 bytes a line (60 MB a file at 100k docs); 15% are short (10-120 words), so the
    50-word filter drops about 5%."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from _common import string_array_bytes

    folder = jsonl_dir(docs)
    done = folder / "_DONE"
    if done.exists():
        return jsonl_files(docs)
    fresh_dir(folder)
    start = time.perf_counter()
    gen = TextGenerator(seed)
    rng = np.random.default_rng(seed + 3)
    langs = pa.array(["en", "en", "en", "de", "fr", "es", "ja", "pt"])
    per_file = -(-docs // JSONL_FILES)
    for i, path in enumerate(jsonl_files(docs)):
        lo, hi = i * per_file, min(docs, (i + 1) * per_file)
        with open(path, "wb") as fh:
            for b in range(lo, hi, 10_000):
                n = min(10_000, hi - b)
                short = rng.random(n) < 0.15
                words = np.where(short, rng.integers(10, 121, n), rng.integers(330, 650, n))
                ids = pc.cast(pa.array(np.arange(b, b + n)), pa.string())
                text = pc.replace_substring(gen.texts(words, paragraph_every=60), "\n", "\\n")
                line = pc.binary_join_element_wise(
                    '{"id": ', ids, ', "url": "https://www.site', ids, '.example.com/page",'
                    ' "title": "', gen.texts(rng.integers(4, 12, n)),
                    '", "lang": "', langs.take(pa.array(rng.integers(0, len(langs), n))),
                    '", "text": "', text, '"}\n', "")
                fh.write(string_array_bytes(line))
    done.write_text(json.dumps({"docs": docs, "seed": seed}))
    size = sum(f.stat().st_size for f in jsonl_files(docs))
    print(f"generated {folder} ({docs:,} docs, {size / 2**20:.0f} MiB) in "
          f"{time.perf_counter() - start:.1f}s", flush=True)
    return jsonl_files(docs)


def run_polars_jsonl(files: list[Path], out: Path) -> dict:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    target = out / "part-0.parquet"
    (pl.scan_ndjson([str(f) for f in files])
     .with_columns(pl.col("text").str.count_matches(WORD).cast(pl.Int32).alias("n_words"))
     .filter(pl.col("n_words") >= MIN_WORDS)
     .sink_parquet(target, compression="zstd", row_group_size=OUT_ROW_GROUP))
    return {"rows_out": pl.scan_parquet(target).select(pl.len()).collect().item()}


def build_datamill_jsonl(files: list[Path], out: Path, engine: str):
    from _ops import WordCount

    from datamill import Dataset

    return (Dataset.read([str(f) for f in files])
            .apply("text_length_filter", min_words=MIN_WORDS)
            .apply(WordCount, pattern=WORD, engine=engine)
            .write(str(out)))


def child(args: argparse.Namespace) -> None:
    jsonl = args.pipeline == "jsonl"
    inp = input_path(args.rows)
    files = jsonl_files(args.docs)
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

        if jsonl and args.regex == "polars":
            import polars  # noqa: F401  (the map's regex engine, as on the polars side)
        with contextlib.suppress(ImportError):  # pyarrow imports it on first use anyway
            import pandas  # noqa: F401

        import datamill.executors.local  # noqa: F401
        import datamill.registry

        datamill.registry.load_all()
    cpu0 = os.times()
    start = time.perf_counter()
    if tag == "pyarrow":
        info = run_pyarrow(inp, out)
    elif tag == "polars":
        info = run_polars_jsonl(files, out) if jsonl else run_polars(inp, out)
    else:
        builder = (lambda: build_datamill_jsonl(files, out, args.regex)) if jsonl else \
            (lambda: build_datamill(inp, out))
        info = run_datamill(builder, out, workdir, args.workers)
    wall = time.perf_counter() - start
    cpu1 = os.times()  # the workers are reaped by now: their time is in children_*
    work_cpu = sum(getattr(cpu1, f) - getattr(cpu0, f)
                   for f in ("user", "system", "children_user", "children_system"))
    info.update(variant=tag, wall_s=round(wall, 4), work_cpu_s=round(work_cpu, 3),
                output_mb=round(dir_size(out) / 2**20, 1))
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
def profile(args: argparse.Namespace, size_args: list[str], name: str) -> dict:
    """py-spy over the datamill variant (driver + workers), and pyinstrument in-process."""
    me = [sys.executable, str(Path(__file__).resolve()), *size_args]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    py_spy = shutil.which("py-spy")
    if py_spy:
        for fmt, target in (("flamegraph", RESULTS_DIR / f"{name}.svg"),
                            ("raw", RESULTS_DIR / f"{name}.collapsed.txt")):
            cmd = [py_spy, "record", "--subprocesses", "--rate", "100", "--format", fmt,
                   "-o", str(target), "--", *me, "--child", f"datamill_w{args.workers}",
                   "--workers", str(args.workers)]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            out[fmt] = str(target)
        out["hot"] = summarize_collapsed(RESULTS_DIR / f"{name}.collapsed.txt")
    else:
        print("py-spy not installed; skipping", flush=True)
    try:
        import pyinstrument  # noqa: F401

        target = RESULTS_DIR / f"{name}.pyinstrument.txt"
        cmd = [sys.executable, "-m", "pyinstrument", "--outfile", str(target), "-r", "text",
               str(Path(__file__).resolve()), *size_args,
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
    parser.add_argument("--pipeline", choices=["parquet", "jsonl"], default="parquet")
    parser.add_argument("--rows", type=int, default=5_000_000, help="parquet pipeline")
    parser.add_argument("--docs", type=int, default=100_000, help="jsonl pipeline")
    parser.add_argument("--regex", choices=["polars", "re2"], default="polars",
                        help="jsonl pipeline: the regex engine of datamill's word count map "
                             "(polars: the same kernel as the polars side)")
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

    jsonl = args.pipeline == "jsonl"
    if jsonl:
        generate_jsonl(args.docs)
        base_variant = "polars"
        name = "overhead_jsonl" + ("" if args.regex == "polars" else f"_{args.regex}")
        variants = ["polars", f"datamill_w{args.workers}"]
        size_args = ["--pipeline", "jsonl", "--docs", str(args.docs), "--regex", args.regex]
        title = (f"JSONL -> text_length_filter -> word count -> Parquet: {args.docs:,} docs "
                 f"(target: datamill_w{args.workers} / polars <= 1.2)")
        target = 1.2
    else:
        generate(args.rows)
        base_variant, name = "pyarrow", "overhead"
        variants = ["pyarrow"] + ([] if args.no_polars else ["polars"]) + \
            [f"datamill_w{args.workers}"] + (["datamill_w1"] if args.workers != 1 else [])
        size_args = ["--rows", str(args.rows)]
        title = (f"overhead: {args.rows:,} rows, 5 steps, Parquet -> Parquet "
                 f"(target: datamill_w{args.workers} / pyarrow <= 1.5)")
        target = 1.5
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    if not args.profile_only:
        for r in range(args.repeat):
            order = variants if r % 2 == 0 else variants[::-1]  # alternate who goes first
            for v in order:
                workers = 1 if v == "datamill_w1" else args.workers
                res = run_child([__file__, *size_args, "--child", v, "--workers", str(workers)])
                runs[v].append(res)
                print(f"  round {r + 1}/{args.repeat} {v:<12} {res['wall_s']:7.2f}s  "
                      f"cpu={res['work_cpu_s']:.1f}s  rows_out={res['rows_out']:,}  "
                      f"peak_rss={res['peak_rss_tree_mb']:.0f}MB", flush=True)
    summary = summarize(runs, base_variant)
    dm_name = f"datamill_w{args.workers}"
    if summary:
        print_table(summary, ["variant", "median_s", "min_s", "max_s", "wall_ratio",
                              "ratio_min_vs_min", "work_cpu_s", "cpu_ratio", "peak_rss_mb",
                              "rows_out", "workdir_mb"], title)
        dm = next((s for s in summary if s["variant"] == dm_name), None)
        rows_seen = {s["rows_out"] for s in summary}
        if len(rows_seen) != 1:
            print(f"WARNING: variants disagree on output rows: {rows_seen}")
        if dm and dm["wall_ratio"] is not None:
            verdict = "PASS" if dm["wall_ratio"] <= target else "FAIL"
            print(f"\n{dm_name} / {base_variant}: wall {dm['wall_ratio']:.2f}x "
                  f"(target <= {target}x): {verdict}; CPU {dm['cpu_ratio']:.2f}x")
    payload = {"pipeline": args.pipeline, **({"regex": args.regex} if jsonl else {}),
               "workers": args.workers, "repeat": args.repeat,
               **({"docs": args.docs, "input": str(jsonl_dir(args.docs)),
                   "input_mb": round(sum(f.stat().st_size for f in jsonl_files(args.docs))
                                     / 2**20, 1)} if jsonl else
                  {"rows": args.rows, "input": str(input_path(args.rows)),
                   "input_mb": round(input_path(args.rows).stat().st_size / 2**20, 1)}),
               "target": {f"datamill_over_{base_variant}_max": target},
               "summary": summary, "runs": runs}
    if args.profile or args.profile_only:
        payload["profile"] = profile(args, size_args, name)
    result_file = RESULTS_DIR / f"{name}.json"
    if not args.profile_only or not result_file.exists():
        path = write_results(name, payload)
    else:  # keep the timings of an earlier run, add the profile
        old = json.loads(result_file.read_text())
        old["profile"] = payload["profile"]
        path = write_results(name, {k: v for k, v in old.items()
                                    if k not in ("benchmark", "command", "finished",
                                                 "environment")})
    print(f"\nresults: {path}")


def summarize(runs: dict[str, list[dict]], base_variant: str) -> list[dict]:
    """Median/min wall, CPU (measured around the work, workers included) and peak RSS per
    variant, with ratios to `base_variant`."""
    summary = []
    for v, rs in runs.items():
        if not rs:
            continue
        walls = [x["wall_s"] for x in rs]
        row = {"variant": v, "median_s": median(walls), "min_s": min(walls),
               "max_s": max(walls), "work_cpu_s": median([x["work_cpu_s"] for x in rs]),
               "process_cpu_s": median([x["cpu_s"] for x in rs]),
               "peak_rss_mb": max(x["peak_rss_tree_mb"] for x in rs),
               "rows_out": rs[0]["rows_out"]}
        if v.startswith("datamill"):
            row["workdir_mb"] = rs[0].get("workdir_mb")
            row["build_s"] = median([x["build_s"] for x in rs])
        summary.append(row)
    base = next((s for s in summary if s["variant"] == base_variant), None)
    for row in summary:
        if base:
            row["wall_ratio"] = row["median_s"] / base["median_s"]
            row["ratio_min_vs_min"] = row["min_s"] / base["min_s"]
            row["cpu_ratio"] = row["work_cpu_s"] / base["work_cpu_s"]
            # per-round ratios (same round = same machine load), then their median
            pairs = zip(runs[row["variant"]], runs[base_variant])
            row["median_round_ratio"] = median([a["wall_s"] / b["wall_s"] for a, b in pairs])
    return summary


if __name__ == "__main__":
    main()
