"""Memory of the quality-filter pipeline (the datamill side of quality_vs_datatrove.py) for
two source trees of datamill, alternating, so that a change is measured against its base in
one run on the same machine.

    python benchmarks/quality_memory.py [--docs 100000] [--rounds 2] [--before SRC] [--after SRC]

`--before`/`--after` are `src` folders put on PYTHONPATH (e.g. a `git archive` of the base
commit); the default `--after` is this checkout's. Reports per run: wall and CPU seconds, kept
documents, the peak summed RSS and PSS of the process tree (driver and 2 workers) and the
largest single process; writes results/quality_memory.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quality_vs_datatrove as quality  # noqa: E402
from _common import REPO, median, print_table, run_child, write_results  # noqa: E402

KEYS = ("wall_s", "cpu_s", "kept", "peak_rss_tree_mb", "peak_pss_tree_mb",
        "peak_rss_single_mb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", help="src folder of the base (omit: measure --after only)")
    parser.add_argument("--after", default=str(REPO / "src"))
    args = parser.parse_args()
    quality.corpus(args.docs)
    trees = {"after": args.after, **({"before": args.before} if args.before else {})}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 else list(trees)[::-1]  # alternate who goes first
        for name in order:
            res = run_child([quality.__file__, "--docs", str(args.docs), "--child", "datamill",
                             "fast"], env={"PYTHONPATH": trees[name]})
            runs[name].append({k: res[k] for k in KEYS})
            print(name, runs[name][-1], flush=True)
    summary = [{"variant": name, "src": trees[name],
                **{k: median([x[k] for x in rs]) for k in ("wall_s", "cpu_s")},
                **{k: max(x[k] for x in rs) for k in KEYS[3:]}, "kept": rs[0]["kept"]}
               for name, rs in runs.items()]
    print_table(summary, ["variant", "wall_s", "cpu_s", "kept", *KEYS[3:]],
                f"quality filters, datamill, {args.docs:,} docs, 2 workers")
    path = write_results("quality_memory", {"docs": args.docs, "rounds": args.rounds,
                                            "summary": summary, "runs": runs})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
