"""What setting bad input aside costs: reading with errors='skip', and re-running after a fix.

    python benchmarks/row_errors.py [--mb 40] [--files 4] [--repeat 3]

Reader (in this process, every partition read through the operation, interleaved, repeated):

  jsonl_raise_s / jsonl_skip_s   a clean JSONL file, errors='raise' / 'skip' (the lenient
                                 path only differs once a chunk fails to parse)
  jsonl_bad_s                    the same file with one broken line per 4 MiB, errors='skip'
                                 (each failing 16 MiB chunk is bisected)
  csv_raise_s / csv_bad_s        a clean CSV file, errors='raise'; the same with one broken
                                 record in its first MiB, errors='skip' (from there on the file
                                 is split by Python's csv module, parsed by Arrow in groups)

Pipeline (read -> text_length_filter -> a word-count map -> Parquet, 2 workers, `--files`
files): `cold_s` a run into a fresh workdir; `after_fix_s` the same run after one file's
bad line was fixed (the other files' partitions are adopted from the first run), with the
partitions computed by each run counted.

Ratios matter, not absolute times (shared machine).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from _common import WORK_DIR, fresh_dir, print_table, write_results

WORDS = ("the of and to in is that for it with as was on be by data model text a an "
         "pipeline cache row file line value column error quarantine skip read write").split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))


def _jsonl(path: Path, mb: float, bad_every: int | None, seed: int = 0) -> int:
    rng = random.Random(seed)
    lines, size, n = [], 0, 0
    while size < mb * 2**20:
        line = json.dumps({"n": n, "text": _text(rng)})
        if bad_every and n and n % bad_every == 0:
            line = line[: len(line) // 2]  # cut short
        lines.append(line)
        size += len(line) + 1
        n += 1
    path.write_text("\n".join(lines) + "\n")
    return n


def _csv(path: Path, mb: float, bad_at: int | None, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows, size, n = ["n,text"], 0, 0
    while size < mb * 2**20:
        row = f"{n},{_text(rng)}"
        if bad_at is not None and n == bad_at:
            row += ",an extra field"
        rows.append(row)
        size += len(row) + 1
        n += 1
    path.write_text("\n".join(rows) + "\n")


def _read_all(op) -> int:
    rows = 0
    for part in op.partitions():
        for table in op.read(part, None):
            rows += table.num_rows
    op.take_rejected()
    return rows


def _timed(make) -> float:
    op = make()
    start = time.perf_counter()
    _read_all(op)
    return time.perf_counter() - start


def bench_readers(data: Path, mb: float, repeat: int) -> dict:
    from datamill.io.csv import ReadCsv
    from datamill.io.jsonl import ReadJsonl

    clean, bad = data / "clean.jsonl", data / "bad.jsonl"
    lines = _jsonl(clean, mb, None)
    per_line = mb * 2**20 / lines
    _jsonl(bad, mb, bad_every=int(4 * 2**20 / per_line))
    clean_csv, bad_csv = data / "clean.csv", data / "bad.csv"
    _csv(clean_csv, mb, None)
    _csv(bad_csv, mb, bad_at=int(2**20 / per_line))
    schema = {"n": "int64", "text": "string"}
    variants = {
        "jsonl_raise_s": lambda: ReadJsonl(path=str(clean), schema=schema),
        "jsonl_skip_s": lambda: ReadJsonl(path=str(clean), schema=schema, errors="skip"),
        "jsonl_bad_s": lambda: ReadJsonl(path=str(bad), schema=schema, errors="skip"),
        "csv_raise_s": lambda: ReadCsv(path=str(clean_csv), schema=schema),
        "csv_bad_s": lambda: ReadCsv(path=str(bad_csv), schema=schema, errors="skip"),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeat):
        for name, make in variants.items():
            times[name].append(_timed(make))
    out = {k: round(statistics.median(v), 3) for k, v in times.items()}
    out["jsonl_skip_vs_raise"] = round(out["jsonl_skip_s"] / out["jsonl_raise_s"], 2)
    out["jsonl_bad_vs_raise"] = round(out["jsonl_bad_s"] / out["jsonl_raise_s"], 2)
    out["csv_bad_vs_raise"] = round(out["csv_bad_s"] / out["csv_raise_s"], 2)
    out["bad_jsonl_lines"] = _read_rejected(variants["jsonl_bad_s"])
    return out


def _read_rejected(make) -> int:
    op = make()
    count = 0
    for part in op.partitions():
        for _table in op.read(part, None):
            count += len(op.take_rejected())
    return count + len(op.take_rejected())


def bench_fix(data: Path, mb: float, files: int) -> dict:
    import datamill as dm

    folder = fresh_dir(data / "files")
    for k in range(files):
        _jsonl(folder / f"part-{k}.jsonl", mb / files, None, seed=k)
    broken = folder / "part-1.jsonl"
    good_text = broken.read_text()
    lines = good_text.splitlines()
    lines[len(lines) // 2] = lines[len(lines) // 2][:20]
    broken.write_text("\n".join(lines) + "\n")

    def pipeline():
        return (dm.Dataset.read(folder, on_error="skip", block_size=4 * 2**20)
                .apply("text_length_filter", min_words=30)
                .map(lambda batch: {"words": [len(t.split()) for t in batch["text"]
                                              .to_pylist()]}, produces={"words": "int64"})
                .write(data / "fix-out"))

    workdir = fresh_dir(WORK_DIR / "row_errors")
    start = time.perf_counter()
    first = pipeline().run(workdir, workers=2, progress=False)
    cold = time.perf_counter() - start
    broken.write_text(good_text)
    start = time.perf_counter()
    again = pipeline().run(workdir, workers=2, progress=False)
    after = time.perf_counter() - start
    stats = (workdir / "steps" / again.step("read_jsonl")["cache_key"]).glob("stats-*.json")
    adopted = sum("adopted_from" in json.loads(f.read_text()) for f in stats)
    return {"cold_s": round(cold, 3), "after_fix_s": round(after, 3),
            "after_fix_vs_cold": round(after / cold, 2),
            "partitions": first.step("read_jsonl").get("partition_count"),
            "partitions_adopted": adopted,
            "bad_lines_first_run": first.step("read_jsonl")["errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = fresh_dir(WORK_DIR / "row_errors_data")
    readers = bench_readers(data, args.mb, args.repeat)
    fix = bench_fix(data, args.mb, args.files)
    print_table([readers], list(readers), title=f"readers ({args.mb} MB)")
    print_table([fix], list(fix), title=f"re-run after fixing 1 of {args.files} files")
    print(write_results("row_errors", {"mb": args.mb, "files": args.files,
                                       "repeat": args.repeat, "readers": readers,
                                       "fix": fix}))


if __name__ == "__main__":
    main()
