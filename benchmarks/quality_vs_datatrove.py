"""Quality filters: datamill vs datatrove 0.10.1, same documents, same rules, 2 workers each.

    python benchmarks/quality_vs_datatrove.py [--docs 100000] [--repeat 1]
        [--datatrove-spacy-cache both|on|off] [--tokenizer fast|spacy] [--skip-datatrove]

Input: `data/quality-<docs>/shard-{0,1}.jsonl`, the generated web-like corpus of
tests/quality_corpus.py (~2,000 characters a document; two shards so that both sides can use
two workers). Pipelines:

* datatrove: LocalPipelineExecutor(tasks=2, workers=2): JsonlReader -> GopherQualityFilter ->
  GopherRepetitionFilter -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter
  (uncompressed). With the spaCy cache on, a first step patches spaCy in each worker so its
  tokenizer keeps its cache between documents (datatrove tokenizes inside a spaCy memory zone,
  which disables that cache; this is the "faster" figure).
* datamill: Dataset.read(shards) -> the four families' `*_stats` + `*_filter` ops
  (`apply_quality_filters`, C4 cleaning the text as datatrove does) -> write JSONL, with
  `run(workers=2)` in a fresh workdir.

Each variant runs in a fresh child process; docs/s counts input documents over the wall time
of the run (imports excluded). The kept document ids of both sides are compared.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    DATA_DIR,
    WORK_DIR,
    bench_parser,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

NAME = "quality_vs_datatrove"


def corpus(docs: int) -> Path:
    folder = DATA_DIR / f"quality-{docs}"
    done = folder / "_DONE"
    if done.exists():
        return folder
    from tests.quality_corpus import generate

    fresh_dir(folder)
    texts = generate(docs, seed=0)
    half = (docs + 1) // 2
    for shard, (lo, hi) in enumerate([(0, half), (half, docs)]):
        with open(folder / f"shard-{shard}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(lo, hi):
                fh.write(json.dumps({"id": str(i), "text": texts[i]}, ensure_ascii=False) + "\n")
    done.write_text(json.dumps({"docs": docs, "chars": sum(map(len, texts))}))
    return folder


def _spacy_cache_step(data, rank: int = 0, world_size: int = 1):
    """A datatrove pipeline step that, in its worker, makes spaCy keep its tokenizer cache
    (no memory zones) and then passes documents through unchanged."""
    import spacy.language

    spacy.language.Language.memory_zone = lambda self, mem=None: contextlib.nullcontext()
    yield from data


def child_datatrove(folder: Path, out: Path, spacy_cache: bool) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    steps = [JsonlReader(str(folder), glob_pattern="shard-*.jsonl")]
    if spacy_cache:
        steps.append(_spacy_cache_step)
    steps += [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(),
              FineWebQualityFilter(), JsonlWriter(str(out / "data"), compression=None)]
    executor = LocalPipelineExecutor(pipeline=steps, tasks=2, workers=2,
                                     logging_dir=str(out / "logs"), skip_completed=False)
    start = time.perf_counter()
    executor.run()
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), **kept_ids(out / "data")}


def kept_ids(folder: Path) -> dict:
    """The ids in the JSONL files a run wrote to `folder`."""
    kept = []
    for f in sorted(folder.glob("*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            kept += [json.loads(line)["id"] for line in fh]
    return {"kept": len(kept), "kept_ids": sorted(kept)}


def child_datamill(folder: Path, out: Path, tokenizer: str) -> dict:
    import datamill as dm
    from datamill.ops.quality import apply_quality_filters

    shards = sorted(str(p) for p in folder.glob("shard-*.jsonl"))
    ds = dm.Dataset.read(shards, schema={"id": "string", "text": "string"})
    ds = apply_quality_filters(ds, tokenizer=tokenizer).select("id", "text")
    ds = ds.write(str(out / "data"), format="jsonl")
    start = time.perf_counter()
    ds.run(out / "work", workers=2, progress=False)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), **kept_ids(out / "data")}


def main() -> None:
    parser = bench_parser(__doc__, docs=100_000, repeat=1,
                          child={"nargs": 2, "metavar": ("VARIANT", "OPTION")})
    parser.add_argument("--datatrove-spacy-cache", choices=["both", "on", "off"], default="both",
                        help="run datatrove with spaCy's tokenizer cache kept between "
                             "documents (on), as released (off), or both")
    parser.add_argument("--tokenizer", choices=["fast", "spacy"], default="fast")
    parser.add_argument("--skip-datatrove", action="store_true")
    args = parser.parse_args()
    folder = corpus(args.docs)
    if args.child:
        variant, option = args.child
        out = fresh_dir(WORK_DIR / f"{NAME}-{variant}-{option}")
        if variant == "datatrove":
            result = child_datatrove(folder, out, option == "on")
        else:
            result = child_datamill(folder, out, option)
        report_child(result)
        return

    variants = [("datamill", args.tokenizer)]
    if not args.skip_datatrove:
        modes = {"both": ["on", "off"], "on": ["on"], "off": ["off"]}[args.datatrove_spacy_cache]
        variants += [("datatrove", m) for m in modes]
    runs: dict[tuple, list] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for variant, option in variants:
            print(f"running {variant} ({option}) on {args.docs} docs...", flush=True)
            res = run_child([__file__, "--docs", str(args.docs), "--child", variant, option],
                            timeout=6 * 3600)
            runs[(variant, option)].append(res)
    rows = []
    ids = {}
    for (variant, option), results in runs.items():
        wall = median([r["wall_s"] for r in results])
        label = (f"datamill (tokenizer={option})" if variant == "datamill"
                 else f"datatrove (spaCy cache {option})")
        ids[(variant, option)] = set(results[0]["kept_ids"])
        rows.append({"variant": label, "wall_s": wall, "docs_per_s": round(args.docs / wall, 1),
                     "kept": results[0]["kept"], "peak_rss_mb": results[0]["peak_rss_tree_mb"],
                     "cpu_s": results[0]["cpu_s"]})
    base = rows[0]["docs_per_s"]
    for row in rows:
        row["datamill_speedup"] = round(base / row["docs_per_s"], 2)
    ours = ids[("datamill", args.tokenizer)]
    agreement = {}
    for key, kept in ids.items():
        if key[0] == "datatrove":
            agreement[key[1]] = round(1 - len(ours ^ kept) / args.docs, 5)
    print_table(rows, ["variant", "wall_s", "docs_per_s", "datamill_speedup", "kept",
                       "peak_rss_mb", "cpu_s"],
                title=f"quality filters, {args.docs} docs, 2 workers")
    if agreement:
        print(f"keep/drop agreement with datatrove: {agreement}")
    for r in runs.values():
        for res in r:
            res.pop("kept_ids", None)
    path = write_results(NAME, {"docs": args.docs, "tokenizer": args.tokenizer, "rows": rows,
                                "agreement_with_datatrove": agreement,
                                "runs": {f"{k[0]}-{k[1]}": v for k, v in runs.items()}})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
