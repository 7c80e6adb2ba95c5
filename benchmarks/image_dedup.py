"""image_dedup's band search against comparing all pairs, at 100,000 64-bit hashes.

    python benchmarks/image_dedup.py [--hashes 100000] [--thresholds 4,6,8] [--repeat 2]
    python benchmarks/image_dedup.py --hashes 1000000 --thresholds 6 --repeat 1 --no-brute

The hashes: uniform random 64-bit values (perceptual hashes have balanced bits too), a tenth of
them copies of another with 0 to max(thresholds) + 2 bits flipped (near pairs on both sides
of every threshold, some chained into clusters), and 200 exact repeats. Each variant runs in
a fresh child process, per threshold, sides in turns (the order alternates each repeat):

- brute   every pair, vectorized numpy: XOR, popcount, compare in 64 x 16,384 tiles through
          reused buffers (`hashing.brute_force_pairs`), the fair all-pairs baseline.
- bands   the multi-index search that image_dedup runs (`hashing.near_pairs`): threshold + 1
          bands, rows sharing a band value compared in vectorized passes.
- datamill  the whole operation, `image_dedup(hash_column=..., keep="first")` on 4 Parquet
          files, 2 workers: scan, shuffle of the band rows, reduce, distributed connected
          components, apply. Its clusters are checked against those of brute force's pairs.

Reported per threshold: seconds of the search (in the child, hashes already loaded), pairs
found (equal to brute force's, else the run fails), the speed-up over brute force, the pairs
compared against all pairs, and the peak RSS of each child's process tree.
Results: benchmarks/results/image_dedup.json. `--no-brute` (for sizes where all pairs take
hours: memory and time at scale) checks the operation's clusters against the band search's
pairs instead, which equal brute force's wherever both ran; results: image_dedup-<n>.json.
`--no-datamill` measures the two searches only (image_dedup[-<n>]-search.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DATA_DIR,
    WORK_DIR,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

SEED = 20
FILES = 4


def make_hashes(n: int, max_flips: int, seed: int = SEED):
    import numpy as np

    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    for target in rng.choice(n, n // 10, replace=False).tolist():
        flips = rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False)
        hashes[target] = hashes[int(rng.integers(0, n))] ^ np.uint64(
            sum(1 << int(f) for f in flips))
    hashes[rng.choice(n, 200, replace=False)] = hashes[rng.integers(0, n, 200)]
    return hashes


def data_files(n: int, max_flips: int) -> tuple[Path, list[Path]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA_DIR / f"image-hashes-{n}-f{max_flips}-s{SEED}"
    npy = folder / "hashes.npy"
    parts = [folder / f"part-{k}.parquet" for k in range(FILES)]
    if not npy.exists() or not all(p.exists() for p in parts):
        folder.mkdir(parents=True, exist_ok=True)
        hashes = make_hashes(n, max_flips)
        for k, rows in enumerate(np.array_split(np.arange(n), FILES)):
            pq.write_table(pa.table({"n": rows, "h": pa.array(hashes[rows], pa.uint64())}),
                           parts[k])
        np.save(npy, hashes)
    return npy, parts


def digest(a, b) -> str:
    import hashlib

    import numpy as np

    return hashlib.blake2b(np.c_[a, b].astype(np.int64).tobytes(), digest_size=8).hexdigest()


# --- children --------------------------------------------------------------------------------
def child_search(kind: str, npy: Path, threshold: int, pairs_out: Path) -> None:
    import numpy as np

    from datamill.ops.image import hashing

    hashes = np.load(npy)
    search = hashing.brute_force_pairs if kind == "brute" else hashing.near_pairs
    start = time.perf_counter()
    a, b = search(hashes, threshold)
    seconds = time.perf_counter() - start
    np.save(pairs_out, np.c_[a, b])
    report_child({"seconds": round(seconds, 4), "pairs": len(a), "digest": digest(a, b)})


def child_datamill(parts: list[Path], threshold: int, work: Path, labels_out: Path) -> None:
    import numpy as np

    import datamill as dm
    from datamill.reader import read_table

    ds = dm.Dataset.read([str(p) for p in parts]).apply(
        "image_dedup", hash_column="h", keep="first", threshold=threshold)
    start = time.perf_counter()
    result = ds.run(work, workers=2, cache=False, progress=False)
    seconds = time.perf_counter() - start
    record = result.step("image_dedup")
    ids = read_table(work, ds.steps[0], ["_id"]).column("_id").to_numpy()
    index = {int(i): k for k, i in enumerate(ids.tolist())}
    dropped = dm.dropped_rows(work, "image_dedup")
    keeper = np.arange(len(ids))  # each row -> the input position of the row kept for it
    for i, c in zip(dropped["_id"].to_pylist(), dropped["cluster_id"].to_pylist()):
        keeper[index[i]] = index[c]
    np.save(labels_out, keeper)
    report_child({"seconds": round(seconds, 3), "rows_out": record["rows_out"],
                  "dropped": record["dropped"], "counters": record.get("counters", {})})


# --- parent ------------------------------------------------------------------------------------
def reference_keepers(n: int, pairs) -> object:
    """Each row -> the first row of its connected component over the brute-force pairs."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    first = np.full(label.max() + 1, n)
    np.minimum.at(first, label, np.arange(n))
    return first[label]


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--thresholds", default="4,6,8")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-datamill", action="store_true", help="the searches only")
    parser.add_argument("--no-brute", action="store_true",
                        help="no all-pairs baseline: check against the band search")
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "datamill":
            threshold, work, out, *parts = rest
            child_datamill([Path(p) for p in parts], int(threshold), Path(work), Path(out))
        else:
            npy, threshold, out = rest
            child_search(kind, Path(npy), int(threshold), Path(out))
        return

    thresholds = [int(t) for t in args.thresholds.split(",")]
    npy, parts = data_files(args.hashes, max(thresholds) + 2)
    n = args.hashes
    scratch = fresh_dir(WORK_DIR / "image_dedup")
    script = str(Path(__file__).resolve())
    rows, results = [], {}
    for threshold in thresholds:
        runs: dict[str, list[dict]] = {"brute": [], "bands": [], "datamill": []}
        kinds = (["bands"] if args.no_brute else ["brute", "bands"]) + (
            [] if args.no_datamill else ["datamill"])
        for r in range(args.repeat):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                out = scratch / f"{kind}-{threshold}.npy"
                if kind == "datamill":
                    child = ["datamill", str(threshold), str(fresh_dir(scratch / "work")),
                             str(out), *map(str, parts)]
                else:
                    child = [kind, str(npy), str(threshold), str(out)]
                runs[kind].append(run_child([script, "--child", *child], timeout=3600))
        brute, bands = runs["brute"], runs["bands"]
        reference = brute or bands
        assert {x["digest"] for x in brute + bands} == {reference[0]["digest"]}, \
            f"threshold {threshold}: the band search's pairs differ from brute force's"
        pairs = np.load(scratch / f"{'brute' if brute else 'bands'}-{threshold}.npy")
        entry = {
            "threshold": threshold, "bands": threshold + 1, "pairs": reference[0]["pairs"],
            "same_pairs_as_brute_force": bool(brute) or None,
            "bands_s": [x["seconds"] for x in bands],
            "bands_peak_rss_mb": max(x["peak_rss_tree_mb"] for x in bands),
        }
        if brute:
            entry.update({
                "brute_s": [x["seconds"] for x in brute],
                "speedup_bands": round(median([x["seconds"] for x in brute])
                                       / median([x["seconds"] for x in bands]), 1),
                "brute_peak_rss_mb": max(x["peak_rss_tree_mb"] for x in brute)})
        if runs["datamill"]:
            dm_runs = runs["datamill"]
            expected = reference_keepers(n, pairs)
            same = bool((np.load(scratch / f"datamill-{threshold}.npy") == expected).all())
            assert same, f"threshold {threshold}: image_dedup's clusters differ from the reference"
            counters = dm_runs[0]["counters"]
            entry.update({
                "datamill_s": [x["seconds"] for x in dm_runs],
                "speedup_datamill": round(median([x["seconds"] for x in brute])
                                          / median([x["seconds"] for x in dm_runs]), 1)
                if brute else None,
                f"datamill_same_clusters_as_{'brute_force' if brute else 'band_search'}": same,
                "datamill_dropped": dm_runs[0]["dropped"],
                "datamill_candidate_pairs": counters.get("candidate_pairs"),
                "candidate_share_of_all_pairs": round(
                    counters.get("candidate_pairs", 0) / (n * (n - 1) / 2), 5),
                "datamill_peak_rss_mb": max(x["peak_rss_tree_mb"] for x in dm_runs),
                "datamill_peak_pss_mb": max(x["peak_pss_tree_mb"] for x in dm_runs),
            })
        results[str(threshold)] = {"summary": entry, "runs": runs}
        rows.append(entry)
    columns = ["threshold", "pairs"] + ([] if args.no_brute else ["brute_s"]) + ["bands_s"] + (
        [] if args.no_brute else ["speedup_bands", "brute_peak_rss_mb"]) + ["bands_peak_rss_mb"]
    if not args.no_datamill:
        columns += ["datamill_s"] + ([] if args.no_brute else ["speedup_datamill"]) + [
            "candidate_share_of_all_pairs", "datamill_peak_rss_mb", "datamill_peak_pss_mb"]
    print_table(rows, columns, title=f"image_dedup, {n:,} hashes")
    name = "image_dedup" + ("" if n == 100_000 and not args.no_brute else f"-{n}") + (
        "-search" if args.no_datamill else "")
    path = write_results(name, {"hashes": n, "seed": SEED, "files": FILES,
                                         "note": "2 shared cores, other jobs running: "
                                                 "compare ratios within this run",
                                         "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
