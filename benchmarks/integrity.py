"""What the workdir's checksums cost: at commit, when a cached file is read, and `verify`.

    python benchmarks/integrity.py [--gb 0.25] [--workers 2] [--repeat 3]

Pipeline: the cache benchmark's (read_jsonl -> text_length_filter -> word count -> Parquet),
then a downstream step (`bench_lowercase` of the text, stored) that reads the cached text
back from the workdir. Measured in this process, interleaved and repeated:

  run_s           a cold run into a fresh workdir (its commits checksum every file)
  checksum_s      checksumming every file that run committed, alone: what commit adds (the
                  sink hashes while it writes, the step files are read back once)
  downstream_s    the downstream step over the cached steps, with the read check (each file
                  read back is checksummed first) / downstream_nocheck_s: the check disabled
  verify_s        `datamill.verify` of the whole workdir

Ratios matter, not absolute times (shared machine).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from _common import WORK_DIR, bench_parser, environment, print_table, write_results


def _committed_files(workdir: Path, out: Path) -> list[Path]:
    files = [p for p in (workdir / "steps").glob("*/*.parquet")]
    return files + sorted(out.glob("*.parquet"))


def main() -> None:
    parser = bench_parser(__doc__, workers=2, repeat=3)
    parser.add_argument("--gb", type=float, default=0.25)
    args = parser.parse_args()

    from _ops import Lowercase, WordCount
    from scale import generate, jsonl_path

    import datamill.reader as reader
    from datamill import Dataset, verify
    from datamill.storage import file_checksum

    generate(args.gb)
    inp = jsonl_path(args.gb)
    workdir, out = WORK_DIR / "integrity-wd", WORK_DIR / "integrity-out"
    check = reader.check_step_file
    rows: dict[str, list[float]] = {k: [] for k in (
        "run_s", "checksum_s", "downstream_s", "downstream_nocheck_s", "verify_s")}
    size = 0
    for i in range(args.repeat):
        for p in (workdir, out):
            shutil.rmtree(p, ignore_errors=True)
        counted = (Dataset.read(str(inp)).apply("text_length_filter", min_words=100)
                   .apply(WordCount, pattern=r"\S+"))
        ds = counted.write(str(out))
        t = time.perf_counter()
        ds.run(workdir, workers=args.workers, progress=False)
        rows["run_s"].append(time.perf_counter() - t)
        files = _committed_files(workdir, out)
        size = sum(f.stat().st_size for f in files)
        t = time.perf_counter()
        for f in files:
            file_checksum(f)
        rows["checksum_s"].append(time.perf_counter() - t)
        for checked in ((True, False) if i % 2 == 0 else (False, True)):
            reader.check_step_file = check if checked else (lambda *a, **k: None)
            lower = counted.apply(Lowercase)  # a new step over the cached ones
            shutil.rmtree(workdir / "steps" / lower.step.key, ignore_errors=True)
            t = time.perf_counter()
            lower.run(workdir, workers=args.workers, progress=False)
            key = "downstream_s" if checked else "downstream_nocheck_s"
            rows[key].append(time.perf_counter() - t)
        reader.check_step_file = check
        t = time.perf_counter()
        report = verify(workdir)
        rows["verify_s"].append(time.perf_counter() - t)
        assert not report.damaged
    med = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    result = {"gb": args.gb, "workers": args.workers, "committed_mb": round(size / 2**20, 1),
              "median": med, "runs": rows,
              "checksum_share_of_run": round(med["checksum_s"] / med["run_s"], 3),
              "read_check_ratio": round(med["downstream_s"] / med["downstream_nocheck_s"], 3),
              "verify_mb_per_s": round(size / 2**20 / med["verify_s"], 1),
              "environment": environment()}
    print_table([{"measure": k, "median_s": v} for k, v in med.items()],
                ["measure", "median_s"], title=f"{result['committed_mb']} MB committed")
    print(f"checksums / run: {result['checksum_share_of_run']}, downstream with / without "
          f"the read check: {result['read_check_ratio']}, verify: "
          f"{result['verify_mb_per_s']} MB/s")
    write_results("integrity", result)


if __name__ == "__main__":
    main()
