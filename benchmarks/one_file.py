"""Parallel inside one file: an expensive step over a single JSON Lines file, 2 workers.

    python benchmarks/one_file.py [--docs 4000] [--workers 2] [--repeat 2]

Variants, each in a fresh child process, interleaved:

  whole   the file as one partition (what datamill did before a file was cut for the
          workers: the source's cut pinned to one unit in a fresh workdir)
  cut     the default: at least 2 x workers byte ranges

The step is CPU-bound Python per row (3,000 SHA-256 rounds of each text), so the
ratio whole/cut shows how much of the second worker one file gets. Reported per variant:
wall time, partitions, and the distinct worker processes that ran them (from the step
record). Ratios matter, not absolute times (shared machine; see `cpu_probe`).
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

WORDS = "the of and to in is data model text pipeline cache row file worker unit".split()


def _corpus(docs: int) -> Path:
    path = DATA_DIR / f"one_file-{docs}.jsonl"
    if not path.exists():
        rng = random.Random(0)
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for n in range(docs):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 150)))
                fh.write(json.dumps({"n": n, "text": text}) + "\n")
    return path


def _child(variant: str, docs: int, workers: int) -> None:
    import hashlib

    import datamill as dm
    from datamill.manifest import load_record
    from datamill.reader import pin_partitioning
    from datamill.storage import Workdir

    class Digest(dm.MapOperation):
        """A digest of `text` after 3,000 SHA-256 rounds (CPU-bound Python per row)."""

        name = "bench_one_file_digest"
        consumes = {"text": "string"}
        produces = {"digest": "string"}

        def process(self, batch):
            out = []
            for text in batch["text"].to_pylist():
                h = text.encode()
                for _ in range(3000):
                    h = hashlib.sha256(h).digest()
                out.append(h.hex())
            return {"digest": out}

    work = fresh_dir(WORK_DIR / f"one_file-{variant}")
    ds = dm.Dataset.read(_corpus(docs)).apply(Digest)
    if variant == "whole":
        pin_partitioning(Workdir(work), ds.step.chain()[0], 1)
    start = time.perf_counter()
    ds.run(work, workers=workers, progress=False)
    wall = time.perf_counter() - start
    parts = load_record(Workdir(work), ds.step)["partitions"]
    report_child({"variant": variant, "wall_s": round(wall, 3), "partitions": len(parts),
                  "workers_used": len({p["worker"] for p in parts.values()})})


def main() -> None:
    parser = bench_parser(__doc__, docs=4000, workers=2, repeat=2, child={})
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.docs, args.workers)
        return
    _corpus(args.docs)
    runs: dict[str, list[dict]] = {"whole": [], "cut": []}
    for _ in range(args.repeat):
        for variant in runs:
            runs[variant].append(run_child([sys.argv[0], "--child", variant, "--docs",
                                            str(args.docs), "--workers", str(args.workers)]))
    rows = [{"variant": v, "wall_s_median": median([r["wall_s"] for r in rs]),
             "wall_s_min": min(r["wall_s"] for r in rs), "partitions": rs[0]["partitions"],
             "workers_used": rs[0]["workers_used"],
             "cpu_s_median": median([r["cpu_s"] for r in rs])} for v, rs in runs.items()]
    speedup = rows[0]["wall_s_median"] / rows[1]["wall_s_median"]
    print_table(rows, list(rows[0]), title=f"one JSON Lines file, {args.docs} docs, "
                                           f"{args.workers} workers")
    print(f"\nwhole / cut wall time: {speedup:.2f}x")
    write_results("one_file", {"docs": args.docs, "workers": args.workers, "runs": runs,
                               "summary": rows, "speedup_whole_over_cut": round(speedup, 3)})


if __name__ == "__main__":
    main()
