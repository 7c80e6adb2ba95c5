"""Near-duplicate removal: datamill's `minhash_dedup` against datatrove's 4-stage MinHash.

    python benchmarks/minhash_vs_datatrove.py --docs 10000 [--datatrove-spacy-cache]
    python benchmarks/minhash_vs_datatrove.py --datamill-only --docs 100000
    python benchmarks/minhash_vs_datatrove.py --datamill-only --docs 1000000

A `--datamill-only` run compares its wall time with the earlier `--datamill-only` results of
smaller corpora (`scaling`: actual / linear extrapolation; the goal is <= 1.2 from 100k).

Both read the same generated corpus (benchmarks/dedup_corpus.py: ~2,000-character documents
with known exact and near-duplicate clusters), split into `--files` JSONL files, with the same
parameters: word 5-gram shingles, 14 bands x 8 rows, seed 1, `--workers` processes (2).

- datamill: `Dataset.read(files).apply("minhash_dedup").run(workers=2)`.
- datatrove 0.10: MinhashDedupSignature (2 tasks), MinhashDedupBuckets (14 tasks: it needs a
  multiple of the band count), MinhashDedupCluster (1 task: it must), MinhashDedupFilter
  (2 tasks), each a LocalPipelineExecutor with 2 workers (start method fork).
  Its xxhash wrapper is patched to encode strings (xxhash 4 refuses `str`).
  `--datatrove-spacy-cache` replaces its English word tokenizer's per-document call
  (a spaCy pipeline run inside a fresh memory zone) by the loaded spaCy tokenizer alone, which
  yields the same tokens.

Each tool runs in a child process; the parent samples the RSS of the child's whole process
tree (driver + workers; an upper bound, since forked workers share pages). Quality: pairwise
precision/recall/F1 of each tool's clusters (kept row + the rows dropped in its favour)
against the corpus's ground-truth clusters. Results: benchmarks/results/minhash_*.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DATA_DIR,
    WORK_DIR,
    bench_parser,
    fresh_dir,
    print_table,
    report_child,
    run_child,
    write_results,
)
from dedup_corpus import pair_scores, write_corpus  # noqa: E402

NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1


def corpus_files(docs: int, files: int, seed: int) -> list[Path]:
    """The corpus as `files` JSONL files (consecutive slices, so dataset order is kept)."""
    folder = DATA_DIR / f"dedup-{docs}-s{seed}"
    whole = folder / "corpus.jsonl"
    write_corpus(whole, docs, seed)
    parts = [folder / f"part-{k}-of-{files}.jsonl" for k in range(files)]
    if not all(p.exists() for p in parts):
        step = -(-docs // files)
        with open(whole, "rb") as src:
            for p in parts:
                tmp = p.with_name(p.name + ".tmp")
                with open(tmp, "wb") as out:
                    for _, line in zip(range(step), src):
                        out.write(line)
                tmp.replace(p)
    return parts


def truth(files: list[Path]) -> dict[str, int]:
    out = {}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                out[row["id"]] = row["cluster"]
    return out


# --- children --------------------------------------------------------------------------------
def child_datamill(files: list[Path], workers: int, work: Path, labels: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import datamill as dm
    from datamill.reader import read_table

    ds = dm.Dataset.read([str(f) for f in files]).apply(
        "minhash_dedup", ngram=NGRAM, bands=BANDS, rows_per_band=ROWS, seed=SEED)
    start = time.perf_counter()
    result = ds.run(work, workers=workers, cache=False, progress=False)
    wall = time.perf_counter() - start
    record = result.step("minhash_dedup")
    source = read_table(work, ds.steps[0], ["_id", "id"])
    dropped = dm.dropped_rows(work, "minhash_dedup")
    label = dict(zip(source["_id"].to_pylist(), source["_id"].to_pylist()))
    label.update(zip(dropped["_id"].to_pylist(), dropped["cluster_id"].to_pylist()))
    pq.write_table(pa.table({"id": source["id"],
                             "label": [f"c{label[i]}" for i in source["_id"].to_pylist()]}),
                   labels)
    report_child({"wall_s": round(wall, 3), "rows_in": record["rows_in"],
                  "rows_out": record["rows_out"], "dropped": record["dropped"]})


def _patch_spacy_tokenizer() -> None:
    """Tokenize with the loaded spaCy tokenizer only (no sentencizer, no memory zone per
    document): the same tokens, without rebuilding spaCy's string store for every document."""
    from datatrove.utils import word_tokenizers as wt

    def word_tokenize(self: Any, text: str) -> list[str]:
        nlp = self.tokenizer
        nlp.max_length = len(text) + 10
        return wt.strip_strings([token.text for token in nlp.tokenizer(text)])

    wt.SpaCyTokenizer.word_tokenize = word_tokenize


def _patch_xxhash_strings() -> None:
    """datatrove 0.10 hashes shingles as `str` with xxhash (its default HashConfig), which
    xxhash 4 refuses ("Strings must be encoded before hashing"): encode them first, as
    xxhash 3 did implicitly. Needed for datatrove to run at all, not a speed-up."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    def encoded(fn: Any) -> Any:
        return lambda data: fn(data.encode("utf-8") if isinstance(data, str) else data)

    dt_xxhash.xxhash32 = encoded(xxhash.xxh32_intdigest)
    dt_xxhash.xxhash64 = encoded(xxhash.xxh64_intdigest)


def child_datatrove(files: list[Path], workers: int, work: Path, labels: Path,
                    spacy_cache: bool) -> None:
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    logging.disable(logging.WARNING)
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    _patch_xxhash_strings()
    if spacy_cache:
        _patch_spacy_tokenizer()
    fresh_dir(work)
    data = str(files[0].parent)
    pattern = f"part-*-of-{len(files)}.jsonl"
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED)

    def reader() -> JsonlReader:
        return JsonlReader(data, glob_pattern=pattern, text_key="text", id_key="id")

    def executor(pipeline: list, tasks: int, name: str) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks),
                                     logging_dir=str(work / "logs" / name),
                                     start_method="fork")

    stages = [
        ("signatures", [reader(), MinhashDedupSignature(str(work / "sigs"), config=config)],
         len(files)),
        ("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"),
                                         config=config)], BANDS),
        ("clusters", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"),
                                          config=config, save_cluster_id=True)], 1),
        ("filter", [reader(),
                    MinhashDedupFilter(str(work / "remove"), load_cluster_ids=True,
                                       exclusion_writer=JsonlWriter(str(work / "removed"))),
                    JsonlWriter(str(work / "kept"))], len(files)),
    ]
    seconds = {}
    start = time.perf_counter()
    for name, pipeline, tasks in stages:
        t = time.perf_counter()
        executor(pipeline, tasks, name).run()
        seconds[name] = round(time.perf_counter() - t, 3)
    wall = time.perf_counter() - start
    ids, label, kept = [], [], 0
    for folder in ("kept", "removed"):
        for f in sorted((work / folder).glob("*.jsonl*")):
            import gzip

            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    doc = json.loads(line)
                    cluster = doc.get("metadata", {}).get("minhash_cluster_id", -1)
                    ids.append(doc["id"])
                    label.append(f"c{cluster}" if cluster != -1 else f"d{doc['id']}")
                    kept += folder == "kept"
    pq.write_table(pa.table({"id": ids, "label": label}), labels)
    report_child({"wall_s": round(wall, 3), "stage_s": seconds, "rows_in": len(ids),
                  "rows_out": kept, "spacy_cache": spacy_cache})


# --- parent ----------------------------------------------------------------------------------
def score(labels: Path, expected: dict[str, int]) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(labels)
    got = dict(zip(table["id"].to_pylist(), table["label"].to_pylist()))
    missing = [i for i in expected if i not in got]
    if missing:
        raise RuntimeError(f"{len(missing)} documents missing from the output, e.g. {missing[:3]}")
    ids = list(expected)
    return pair_scores([got[i] for i in ids], [expected[i] for i in ids])


def main() -> None:
    parser = bench_parser(__doc__, docs=10_000, workers=2,
                          child={"choices": ["datamill", "datatrove"]})
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=2, help="JSONL files of the corpus")
    parser.add_argument("--datatrove-spacy-cache", action="store_true",
                        help="keep datatrove's spaCy tokenizer warm between documents")
    parser.add_argument("--datamill-only", action="store_true",
                        help="run datamill alone (wall time, peak RSS; the scaling goal)")
    args = parser.parse_args()

    files = corpus_files(args.docs, args.files, args.seed)
    work = WORK_DIR / f"minhash-{args.docs}"
    if args.child:
        labels = work / f"labels-{args.child}.parquet"
        if args.child == "datamill":
            child_datamill(files, args.workers, work / "datamill", labels)
        else:
            child_datatrove(files, args.workers, work / "datatrove", labels,
                            args.datatrove_spacy_cache)
        return

    fresh_dir(work)
    expected = truth(files)
    base = [str(Path(__file__).resolve()), "--docs", str(args.docs), "--seed", str(args.seed),
            "--files", str(args.files), "--workers", str(args.workers)]
    rows, results = [], {}
    tools = ["datamill"] if args.datamill_only else ["datamill", "datatrove"]
    for tool in tools:
        extra = ["--datatrove-spacy-cache"] if tool == "datatrove" and \
            args.datatrove_spacy_cache else []
        res = run_child([*base, *extra, "--child", tool])
        res.update(score(work / f"labels-{tool}.parquet", expected))
        results[tool] = res
        rows.append({"tool": tool, **res})
    payload: dict[str, Any] = {
        "docs": args.docs, "files": args.files, "workers": args.workers,
        "parameters": {"ngram": NGRAM, "bands": BANDS, "rows_per_band": ROWS, "seed": SEED},
        "datatrove_spacy_cache": args.datatrove_spacy_cache, "results": results,
        "goals": {"peak_rss_tree_mb_max": 2048}}
    if "datatrove" in results:
        ratio = results["datatrove"]["wall_s"] / results["datamill"]["wall_s"]
        payload["speedup_vs_datatrove"] = round(ratio, 2)
        payload["goals"].update(speedup_min=5.0, speedup_met=ratio >= 5.0,
                                f1_met=results["datamill"]["f1"] >= results["datatrove"]["f1"])
    name = f"minhash_datamill_{args.docs}" if args.datamill_only else \
        f"minhash_vs_datatrove_{args.docs}" + ("_spacy_cache" if args.datatrove_spacy_cache
                                               else "")
    if args.datamill_only:
        payload["goals"]["peak_rss_met"] = results["datamill"]["peak_rss_tree_mb"] < 2048
        smaller = [p for p in sorted(Path(__file__).parent.glob(
            "results/minhash_datamill_*.json")) if p.stem != name]
        for path in smaller:
            other = json.loads(path.read_text())
            if other["docs"] < args.docs:
                per_doc = other["results"]["datamill"]["wall_s"] / other["docs"]
                linear = per_doc * args.docs
                payload.setdefault("scaling", {})[str(other["docs"])] = {
                    "linear_prediction_s": round(linear, 2),
                    "actual_over_linear": round(results["datamill"]["wall_s"] / linear, 3)}
    path = write_results(name, payload)
    print_table(rows, ["tool", "wall_s", "process_wall_s", "cpu_s", "peak_rss_tree_mb",
                       "rows_out", "precision", "recall", "f1"],
                title=f"MinHash dedup, {args.docs} docs, {args.workers} workers")
    if "speedup_vs_datatrove" in payload:
        print(f"datatrove / datamill wall time: {payload['speedup_vs_datatrove']}x")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
