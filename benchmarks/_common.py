"""Shared helpers of the datamill benchmarks: data generators, a process-tree RSS sampler,
a child-process runner, result files and tables.

Every benchmark runs each measured variant in a fresh child process (`python <script>
--child ...`) so that (a) the parent can sample the RSS of the whole process tree (driver plus
forked workers) without counting itself, and (b) no variant profits from another's warm
imports or caches in the interpreter. The OS page cache is shared, so each benchmark runs its
variants interleaved and repeats them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = DATA_DIR / "work"
RESULT_TAG = "BENCH_RESULT "


# --------------------------------------------------------------------------------------------
# synthetic text
# --------------------------------------------------------------------------------------------
def _vocabulary(rng: Any, size: int = 30_000) -> Any:
    """Pseudo-words with a Zipf-like frequency table: mixed case, some digits, punctuation
    and accented letters. Returns (words as a pyarrow StringArray, lookup table of indices)."""
    import numpy as np
    import pyarrow as pa

    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    freq = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
                     2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07])
    freq = freq / freq.sum()
    words = []
    lengths = np.clip(rng.poisson(5.0, size) + 1, 1, 14)
    chars = rng.choice(letters, size=int(lengths.sum()), p=freq)
    pos = 0
    accents = ["é", "ü", "ß", "ø", "ñ", "ç"]
    for i, n in enumerate(lengths):
        w = "".join(chars[pos:pos + n])
        pos += n
        r = rng.random()
        if r < 0.12:
            w = w.capitalize()
        elif r < 0.14:
            w = w.upper()
        elif r < 0.16:
            w = w + accents[i % len(accents)]
        r = rng.random()
        if r < 0.06:
            w += ","
        elif r < 0.09:
            w += "."
        words.append(w)
    # a few numbers (the regex benchmarks look for 4-digit runs) and common short words
    words[:40] = ["the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "The", "on",
                  "with", "as", "was", "be", "by", "at", "this", "are", "from", "or", "an",
                  "2023", "2024", "1999", "42", "7", "100", "http", "www", "And", "In", "we",
                  "you", "not", "have", "has", "data", "It"][:40]
    # Zipf(1.1) weights -> an index lookup table: sampling is one integer draw per word
    ranks = np.arange(1, size + 1, dtype=np.float64)
    weights = ranks ** -1.1
    weights /= weights.sum()
    table_size = 1 << 22
    counts = np.maximum(np.round(weights * table_size).astype(np.int64), 1)
    lookup = np.repeat(np.arange(size, dtype=np.int32), counts)
    return pa.array(words, pa.string()), lookup


class TextGenerator:
    """Fast vectorized random text: word indices -> list array -> binary_join."""

    def __init__(self, seed: int = 0):
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.words, self.lookup = _vocabulary(self.rng)

    def texts(self, word_counts: Any, paragraph_every: int = 0) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        counts = np.asarray(word_counts, dtype=np.int64)
        total = int(counts.sum())
        idx = self.lookup[self.rng.integers(0, len(self.lookup), total)]
        words = self.words.take(pa.array(idx))
        if paragraph_every:
            # some words become a paragraph break (decoded text holds "\n\n")
            brk = self.rng.random(total) < 1.0 / paragraph_every
            words = pc.if_else(pa.array(brk), pa.scalar("\n\n"), words)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32 if total < 2**31 else np.int64)
        np.cumsum(counts, out=offsets[1:])
        lists = (pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray).from_arrays(
            pa.array(offsets), words)
        return pc.binary_join(lists, " ")


def string_array_bytes(arr: Any) -> bytes:
    """The concatenated values of a (large_)string array without nulls."""
    import numpy as np
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        return b"".join(string_array_bytes(c) for c in arr.chunks)
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offs = np.frombuffer(bufs[1], dtype=width)[arr.offset:arr.offset + len(arr) + 1]
    return bufs[2].to_pybytes()[int(offs[0]):int(offs[-1])] if len(arr) else b""


# --------------------------------------------------------------------------------------------
# RSS of a process tree
# --------------------------------------------------------------------------------------------
class TreeRssSampler:
    """Samples, every `interval` s in a thread, the summed RSS of a process and all its
    descendants (and the largest single process). Forked workers share copy-on-write pages
    with the driver, so the sum over-counts shared pages: it is an upper bound. The summed
    PSS (each shared page divided among the processes sharing it: the physical memory of
    the tree) is sampled too, where the system reports it."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_sum = 0
        self.peak_pss = 0
        self.peak_single = 0
        self.peak_procs = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        total, biggest, pss = 0, 0, 0
        for p in procs:
            try:
                rss = p.memory_info().rss
                pss += getattr(p.memory_full_info(), "pss", 0)
            except psutil.Error:
                continue
            total += rss
            biggest = max(biggest, rss)
        self.samples += 1
        self.peak_sum = max(self.peak_sum, total)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_single = max(self.peak_single, biggest)
        self.peak_procs = max(self.peak_procs, len(procs))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> dict:
        return {"peak_rss_tree_mb": round(self.peak_sum / 2**20, 1),
                "peak_pss_tree_mb": round(self.peak_pss / 2**20, 1),
                "peak_rss_single_mb": round(self.peak_single / 2**20, 1),
                "max_processes": self.peak_procs, "rss_samples": self.samples}


def bench_parser(doc: str | None, *, docs: int | None = None, workers: int | None = None,
                 repeat: int | None = None, child: dict | None = None) -> argparse.ArgumentParser:
    """A benchmark's argument parser (description: the first paragraph of `doc`) with the
    options most benchmarks share, each added when given: --docs, --workers and --repeat
    (with these defaults) and the hidden --child (with these add_argument keywords)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    for name, default, text in (("--docs", docs, "documents in the generated corpus"),
                                ("--workers", workers, "worker processes"),
                                ("--repeat", repeat, "runs of each variant")):
        if default is not None:
            parser.add_argument(name, type=int, default=default, help=text)
    if child is not None:
        parser.add_argument("--child", **{"help": argparse.SUPPRESS, **child})
    return parser


def run_child(args: list[str], timeout: float | None = None, env: dict | None = None) -> dict:
    """Run `python <args>` (a benchmark script in --child mode); return the JSON it reports
    on its `BENCH_RESULT` line, plus the process wall time and peak RSS of its tree."""
    import resource

    cmd = [sys.executable, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, **(env or {})})
    with TreeRssSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"timed out: {' '.join(cmd)}\n{err[-4000:]}") from None
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the reaped workers
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-6000:]}")
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if result is None:
        raise RuntimeError(f"no result from {' '.join(cmd)}\n{out[-2000:]}\n{err[-4000:]}")
    result["process_wall_s"] = round(wall, 3)
    result["cpu_s"] = round(cpu, 2)  # user+sys of the child and its workers (incl. startup)
    result.update(sampler.as_dict())
    return result


def report_child(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# files, results, tables
# --------------------------------------------------------------------------------------------
def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _burn(n: int) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t


def cpu_probe(n: int = 10_000_000) -> dict:
    """How much two busy processes slow each other down on this machine (shared vCPUs,
    hyper-threads, steal): 1.0 = two real cores, 2.0 = one core."""
    import multiprocessing as mp

    alone = _burn(n)
    with mp.get_context("fork").Pool(2) as pool:
        both = pool.map(_burn, [n, n])
    return {"one_process_s": round(alone, 3), "two_processes_s": [round(b, 3) for b in both],
            "slowdown_when_both_busy": round(max(both) / alone, 2)}


def environment() -> dict:
    import pyarrow

    info = {"python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        import datamill

        info["datamill"] = datamill.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                            capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        info["src_dirty"] = bool(dirty)
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["cpu_probe"] = cpu_probe()
    return info


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "environment": environment(),
               **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)
    return path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)
