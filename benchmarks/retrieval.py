"""Retrieval benchmarks: a chunking sweep with and without cache reuse, and LanceDB index
build time and query latency at 100k vectors.

    python benchmarks/retrieval.py [--docs 40] [--sizes 384 768] [--overlaps 0 96]
                                   [--vectors 100000] [--queries 500] [--skip-sweep]
                                   [--skip-latency] [--dedup]

Sweep: the Python docs corpus of examples/python_docs_rag.py (its first `--docs` documents),
chunk_text -> embed_text (all-MiniLM-L6-v2, CPU) -> write_lancedb for each size x overlap,
evaluated with the derived queries (`datamill.evaluate.sweep`). Three ways:
  shared_cold   every variant in ONE fresh workdir (prefixes shared: the source step)
  separate      each variant in its own fresh workdir (no reuse at all)
  shared_warm   the same sweep again in the shared workdir (everything cached; evaluation only)
  plus_model    the sweep extended with a second model name (the same weights under another
                path) in the shared workdir: its chunking comes from the cache

Latency: `--vectors` synthetic 384-d unit vectors (no model: `vectors/50` random unit
centres, each vector a centre plus Gaussian noise, normalized; queries are stored vectors
plus a little noise; uniformly random vectors, with no structure at all, are the worst case
of any ANN index and not what embeddings look like) written by write_lancedb
in 10 Parquet partitions, 2 workers, with the default IVF-HNSW-SQ index and with none
(brute force); then `--queries` random unit vectors searched (k=10) through
datamill.search's LanceIndex, one at a time: p50 / p95 / mean in milliseconds, and recall@10
of the ANN index against brute force.

Dedup (`--dedup`): semantic_dedup over those vectors plus 1% planted near-copies (cosine
~0.99), 2 workers: wall time, rows dropped, pairs compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

from _common import DATA_DIR, RESULTS_DIR, WORK_DIR, fresh_dir, print_table, write_results

REPO = Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location("python_docs_rag_bench",
                                                  REPO / "examples" / "python_docs_rag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_sweep(args: argparse.Namespace) -> dict:
    import datamill as dm
    from datamill.evaluate import sweep

    ex = _example()
    root = fresh_dir(WORK_DIR / "retrieval-sweep")
    corpus = ex.python_docs(root / "docs.jsonl", limit=args.docs)
    queries = ex.python_docs_queries(corpus)
    model = ex.default_model()
    other = root / "minilm-other-name"
    other.symlink_to(model, target_is_directory=True)
    names = {model: "m1", str(other): "m2"}
    _warm_up(model)

    def build(size: int, overlap: int, model: str, db: str = "index") -> dm.Dataset:
        return ex.build_index(corpus, size, overlap, model, db=root / db,
                              table=f"s{size}_o{overlap}_{names[model]}")

    grid = {"size": args.sizes, "overlap": args.overlaps, "model": [model]}
    common = dict(queries=queries, k=10, match="doc_id", workers=2)
    out: dict = {"docs": args.docs, "grid": {**grid, "model": ["all-MiniLM-L6-v2"]}}

    start = time.perf_counter()
    cold = sweep(build, grid, workdir=root / "shared", output=root / "sweep", **common)
    out["shared_cold_s"] = time.perf_counter() - start
    out["table"] = [{**r, "model": names[r["model"]]} for r in cold.to_pylist()]

    start = time.perf_counter()
    for n, setting in enumerate(cold.select(list(grid)).to_pylist()):
        def alone(db: str = f"separate-{n}", **s) -> dm.Dataset:
            return build(**s, db=db)

        sweep(alone, {k: [v] for k, v in setting.items()}, workdir=root / f"separate-{n}",
              **common)
    out["separate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    warm = sweep(build, grid, workdir=root / "shared", **common)
    out["shared_warm_s"] = time.perf_counter() - start
    out["shared_warm_computed_steps"] = sum(warm.column("computed_steps").to_pylist())

    start = time.perf_counter()
    more = sweep(build, {**grid, "model": [str(other)]}, workdir=root / "shared", **common)
    out["plus_model_s"] = time.perf_counter() - start
    out["plus_model_steps"] = [(r["computed_steps"], r["cached_steps"]) for r in more.to_pylist()]
    out["chunks"] = {f"s{r['size']}_o{r['overlap']}": _rows(root / "index", r)
                     for r in cold.to_pylist()}
    print_table(out["table"], [*grid, "recall@10", "mrr", "ndcg@10", "build_seconds",
                               "computed_steps", "cached_steps"], "sweep (shared workdir, cold)")
    print_table([{k: round(v, 1) for k, v in out.items() if k.endswith("_s")}],
                ["shared_cold_s", "separate_s", "shared_warm_s", "plus_model_s"],
                "sweep wall seconds")
    return out


def _rows(db: Path, row: dict) -> int:
    from datamill.search import open_index

    index = open_index(str(db), f"s{row['size']}_o{row['overlap']}_m1")
    try:
        return index.table.count_rows()
    finally:
        index.close()


def _unit(v):
    import numpy as np

    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _warm_up(model: str) -> None:
    """Import torch, sentence-transformers and lancedb and load the model once, so that the
    first measured variant does not pay for it alone."""
    import lancedb  # noqa: F401
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(model, device="cpu").encode(["warm up"])


def bench_latency(args: argparse.Namespace) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import datamill as dm
    from datamill.search import open_index

    dim, n = 384, args.vectors
    data = DATA_DIR / f"vectors-{n}-{dim}-clustered"
    if not data.exists():
        tmp = fresh_dir(data.with_suffix(".tmp"))
        rng = np.random.default_rng(0)
        centers = _unit(rng.standard_normal((n // 50, dim)))
        for p, rows in enumerate(np.array_split(np.arange(n), 10)):
            near = centers[rng.integers(0, len(centers), len(rows))]
            v = _unit(near + 0.06 * rng.standard_normal((len(rows), dim)))
            pq.write_table(pa.table({
                "n": pa.array(rows, pa.int64()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)}),
                tmp / f"part-{p:02d}.parquet")
        tmp.rename(data)
    rng = np.random.default_rng(1)
    sample = pq.read_table(data, columns=["embedding"]).column(0).combine_chunks()
    picked = sample.take(pa.array(rng.choice(n, args.queries, replace=False)))
    queries = _unit(picked.flatten().to_numpy().reshape(args.queries, dim)
                    + 0.03 * rng.standard_normal((args.queries, dim)))
    out: dict = {"vectors": n, "dim": dim, "queries": args.queries}
    found: dict[str, list] = {}
    rows = []
    for index in ("auto", "none"):
        root = fresh_dir(WORK_DIR / f"retrieval-latency-{index}")
        start = time.perf_counter()
        dm.Dataset.read(data).write(str(root / "db"), format="lancedb", table="vectors",
                                    index=index).run(root / "work", workers=2, progress=False)
        build_s = time.perf_counter() - start
        idx = open_index(str(root / "db"), "vectors")
        try:
            idx.search(queries[0], 10)  # open files, warm caches
            times, found[index] = [], []
            for q in queries:
                t = time.perf_counter()
                hits = idx.search(q, 10)
                times.append((time.perf_counter() - t) * 1000)
                found[index].append({h.id for h in hits})
        finally:
            idx.close()
        rows.append({"index": "ivf_hnsw_sq" if index == "auto" else "none (brute force)",
                     "build_s": build_s, "p50_ms": float(np.percentile(times, 50)),
                     "p95_ms": float(np.percentile(times, 95)),
                     "mean_ms": float(np.mean(times))})
        shutil.rmtree(root, ignore_errors=True)
    recall = np.mean([len(a & b) / 10 for a, b in zip(found["auto"], found["none"])])
    rows[0]["recall@10_vs_exact"] = float(recall)
    out["rows"] = rows
    print_table(rows, ["index", "build_s", "p50_ms", "p95_ms", "mean_ms", "recall@10_vs_exact"],
                f"LanceDB, {n:,} x {dim}-d vectors, k=10, one query at a time")
    return out


def bench_dedup(args: argparse.Namespace) -> dict:
    """semantic_dedup over the latency vectors plus 1% planted near-copies (cosine ~0.99)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import datamill as dm

    dim, n = 384, args.vectors
    source = DATA_DIR / f"vectors-{n}-{dim}-clustered"
    if not source.exists():
        raise SystemExit(f"{source} is missing: run the latency part first")
    root = fresh_dir(WORK_DIR / "retrieval-dedup")
    rng = np.random.default_rng(2)
    planted = 0
    for p, file in enumerate(sorted(source.glob("*.parquet"))):
        t = pq.read_table(file)
        pick = rng.choice(t.num_rows, t.num_rows // 100, replace=False)
        v = t.column("embedding").combine_chunks().take(pa.array(pick))
        v = v.flatten().to_numpy().reshape(len(pick), dim)
        copies = _unit(v + 0.004 * rng.standard_normal(v.shape))
        planted += len(pick)
        extra = pa.table({"n": pa.array(np.arange(len(pick)) + 10 * n + p * n, pa.int64()),
                          "embedding": pa.FixedSizeListArray.from_arrays(
                              pa.array(copies.reshape(-1)), dim)})
        pq.write_table(pa.concat_tables([t, extra.cast(t.schema)]), root / file.name)
    start = time.perf_counter()
    result = dm.Dataset.read(root).apply("semantic_dedup").run(root / "work", workers=2,
                                                                progress=False)
    seconds = time.perf_counter() - start
    record = result.step("semantic_dedup")
    out = {"rows": n + planted, "planted": planted, "seconds": seconds,
           "dropped": record.get("dropped", {}), "counters": record.get("counters", {})}
    print_table([{"rows": out["rows"], "planted": planted, "dropped":
                  sum(out["dropped"].values()), "seconds": seconds,
                  "compared_pairs": out["counters"].get("compared_pairs")}],
                ["rows", "planted", "dropped", "seconds", "compared_pairs"],
                "semantic_dedup (threshold 0.95, 2 workers)")
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--overlaps", type=int, nargs="+", default=[0, 96])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--dedup", action="store_true", help="also time semantic_dedup")
    args = parser.parse_args()
    results: dict = {}
    if args.dedup:
        results["semantic_dedup"] = bench_dedup(args)
    if not args.skip_sweep:
        results["sweep"] = bench_sweep(args)
    if not args.skip_latency:
        results["latency"] = bench_latency(args)
    previous = RESULTS_DIR / "retrieval.json"
    if previous.exists() and (args.skip_sweep or args.skip_latency):  # keep the other part
        kept = json.loads(previous.read_text())
        results = {**{k: kept[k] for k in ("sweep", "latency", "semantic_dedup")
                      if k in kept}, **results}
    print(f"\nresults: {write_results('retrieval', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
