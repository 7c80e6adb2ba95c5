"""What running an operation in its own environment costs: the same map in the workers'
process against in a worker of its environment (docs/environments.md).

    python benchmarks/isolated_env.py [--docs 200000] [--workers 2] [--repeat 2]

Variants, each in a fresh child process, interleaved:

  inprocess   a vectorized map (word counts, pyarrow.compute) run by the pool's workers
  isolated    the same map with `requirements` (a set the environment satisfies from the
              packages installed here, so pip installs nothing): each worker sends its
              batches to a worker of the environment through Arrow IPC and back

The environment is made before the clock starts (it is cached per machine). Reported: wall
time of the run (cold workdir), the ratio, and the start of an environment's worker (a run
of one row). Ratios matter, not absolute times (shared machine; see `cpu_probe`).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from _common import (
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

import datamill as dm

WORDS = "the of and to in is data model text pipeline cache row file worker unit".split()
REQUIREMENTS = ("six",)  # installed here: the environment adds nothing


def _count(batch):
    import pyarrow.compute as pc

    return {"words": pc.list_value_length(pc.utf8_split_whitespace(batch["text"]))}


class WordsHere(dm.MapOperation):
    """Words per text, in the workers' own process."""

    name = "bench_words_here"
    consumes = {"text": "string"}
    produces = {"words": "int64"}

    def process(self, batch):
        return _count(batch)


class WordsIsolated(WordsHere):
    """Words per text, in a worker of the environment of REQUIREMENTS."""

    name = "bench_words_isolated"
    requirements = REQUIREMENTS


def _corpus(docs: int) -> Path:
    path = DATA_DIR / f"isolated_env-{docs}.jsonl"
    if not path.exists():
        rng = random.Random(0)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for n in range(docs):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200)))
                fh.write(json.dumps({"n": n, "text": text}) + "\n")
    return path


def _child(variant: str, docs: int, workers: int) -> None:
    op = WordsIsolated if variant.startswith("isolated") else WordsHere
    source = _corpus(docs) if not variant.endswith("one_row") else _corpus(1)
    read = dm.Dataset.read(source).apply(op)
    work = fresh_dir(WORK_DIR / f"isolated_env-{variant}")
    start = time.perf_counter()
    read.run(work, workers=workers, progress=False)
    report_child({"variant": variant, "wall_s": round(time.perf_counter() - start, 3)})


def main() -> None:
    parser = bench_parser(__doc__, docs=200_000, workers=2, repeat=2, child={})
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.docs, args.workers)
        return
    from datamill.environments import ensure_environment

    _corpus(args.docs)
    _corpus(1)
    ensure_environment(list(REQUIREMENTS))
    runs: dict[str, list[dict]] = {"inprocess": [], "isolated": [], "inprocess_one_row": [],
                                   "isolated_one_row": []}
    for _ in range(args.repeat):
        for variant in runs:
            runs[variant].append(run_child([sys.argv[0], "--child", variant, "--docs",
                                            str(args.docs), "--workers", str(args.workers)]))
    rows = [{"variant": v, "wall_s_median": median([r["wall_s"] for r in rs]),
             "wall_s_min": min(r["wall_s"] for r in rs),
             "cpu_s_median": median([r["cpu_s"] for r in rs])} for v, rs in runs.items()]
    by = {r["variant"]: r for r in rows}
    ratio = by["isolated"]["wall_s_median"] / by["inprocess"]["wall_s_median"]
    start = by["isolated_one_row"]["wall_s_median"] - by["inprocess_one_row"]["wall_s_median"]
    print_table(rows, list(rows[0]), title=f"{args.docs} docs, {args.workers} workers")
    print(f"\nisolated / in-process wall time: {ratio:.2f}x; an environment's workers start "
          f"in ~{start:.2f} s more (one-row runs)")
    write_results("isolated_env", {"docs": args.docs, "workers": args.workers, "runs": runs,
                                   "summary": rows, "ratio_isolated_over_inprocess":
                                   round(ratio, 3), "worker_start_s": round(start, 3)})


if __name__ == "__main__":
    main()
