"""The explorer at scale: every page's p95 latency and the server's RSS on a workdir of 1M rows.

    python benchmarks/explore_scale.py [--docs 1000000] [--words 400] [--requests 20]

Data: `--docs` generated web-like documents (text of about `--words` words, lognormal, in
paragraphs ending with a full stop in 90% of them; 3% exact copies), as JSON Lines in
benchmarks/data/. The workdir is made by running a real pipeline over them, twice (the second
run with Gopher's `min_doc_words` moved from 50 to 30, so that the last run can be compared
with the first):

    read_jsonl(materialize) -> gopher_quality_stats -> fineweb_stats -> gopher_quality_filter
      -> fineweb_filter -> drop_duplicates(text)

Then `datamill explore` serves it in a child process (the real server, uvicorn, 127.0.0.1);
each page is requested once to warm it (its column statistics computed and cached, its
id arrays loaded), then `--requests` times; the p50/p95 latency of each page and the
server's RSS (sampled every 0.1 s during the whole session, peak and end) go to
benchmarks/results/explore_scale.json. Targets (issue 13): p95 <= 500 ms once warm, RSS <
500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from _common import DATA_DIR, REPO, TextGenerator, dir_size, print_table, write_results

P95_TARGET_MS = 500
RSS_TARGET_MB = 500


def data_path(docs: int, words: int) -> Path:
    return DATA_DIR / f"explore-{docs}-{words}w.jsonl"


def generate(docs: int, words: int) -> Path:
    """JSON Lines documents (`url`, `text`), written once (deterministic)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json  # noqa: F401

    path = data_path(docs, words)
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    gen = TextGenerator(seed=13)
    rng = np.random.default_rng(13)
    tmp = path.with_suffix(".tmp")
    batch = 50_000
    with open(tmp, "wb") as fh:
        for start in range(0, docs, batch):
            n = min(batch, docs - start)
            counts = np.clip(rng.lognormal(np.log(words), 0.9, n), 5, 20 * words).astype(int)
            texts = gen.texts(counts, paragraph_every=40)
            # paragraphs end with a full stop, except in 10% of the documents
            stopped = pc.replace_substring(texts, " \n\n ", ".\n\n")
            texts = pc.if_else(pa.array(rng.random(n) < 0.9), stopped, texts)
            # 3% exact copies of one of the batch's first 2,000 documents
            pick = np.nonzero(rng.random(n) < 0.03)[0]
            pick = pick[pick >= 2000]
            if len(pick):
                texts = texts.to_pylist()
                for i, j in zip(pick, rng.integers(0, 2000, len(pick))):
                    texts[i] = texts[j]
                texts = pa.array(texts, pa.string())
            urls = pc.binary_join_element_wise(
                "https://example.org/page/", pa.array(np.arange(start, start + n).astype(str)),
                "")
            table = pa.table({"url": urls, "text": texts})
            for row in table.to_pylist():
                fh.write(json.dumps(row).encode() + b"\n")
            print(f"generated {start + n:,} documents", flush=True)
    os.replace(tmp, path)
    return path


def pipeline(data: Path, min_doc_words: int):
    sys.path.insert(0, str(REPO / "src"))
    from datamill import Dataset

    return (Dataset.read(str(data), materialize=True)
            .apply("gopher_quality_stats").apply("fineweb_stats")
            .apply("gopher_quality_filter", min_doc_words=min_doc_words)
            .apply("fineweb_filter")
            .apply("drop_duplicates", columns=["text"]))


def build_workdir(data: Path, workdir: Path, workers: int) -> dict:
    """Run the pipeline with min_doc_words=50, then 30 (the last run); wall times."""
    out = {}
    done = workdir / ".explore_scale_done"
    if done.exists():
        return json.loads(done.read_text())
    for min_words in (50, 30):
        t0 = time.perf_counter()
        pipeline(data, min_words).run(workdir, workers=workers, progress=False)
        out[f"run_min_doc_words_{min_words}_s"] = round(time.perf_counter() - t0, 1)
        print(f"ran the pipeline (min_doc_words={min_words}) in "
              f"{out[f'run_min_doc_words_{min_words}_s']} s", flush=True)
    done.write_text(json.dumps(out))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.last = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    rss += child.memory_info().rss
            except Exception:  # noqa: BLE001  (the server ended)
                return
            self.last = rss
            self.peak = max(self.peak, rss)
            time.sleep(0.1)


def get(url: str) -> tuple[int, float, int]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    return status, (time.perf_counter() - t0) * 1000, len(body)


def pages(base: str, workdir: Path) -> dict[str, str]:
    """The pages to time: one URL each, with a dropped row and a duplicate cluster of the
    workdir. (Search is not timed here: embedding 1M documents is another benchmark.)"""
    sys.path.insert(0, str(REPO / "src"))
    from datamill import dropped_rows

    q = urllib.parse.quote
    dropped = dropped_rows(workdir, "gopher_quality_filter", limit=1).to_pylist()
    dup = dropped_rows(workdir, "drop_duplicates", limit=1).to_pylist()
    run = f"{base}/run/0"
    return {
        "overview": f"{run}/",
        "step": f"{run}/step/gopher_quality_filter/",
        "dropped": f"{run}/step/fineweb_filter/dropped?reason={q('fineweb:line_punct_ratio')}"
                   "&page=3",
        "column_stats": f"{run}/step/fineweb_filter/stats",  # the page, then its grid:
        "column_stats_grid": f"{run}/step/fineweb_filter/stats?part=grid",  # (htmx)
        "rows": f"{run}/step/drop_duplicates/rows?page=100",
        "rows_filtered": f"{run}/step/fineweb_filter/rows?column=gopher_words&op=range"
                         "&low=100&high=300",
        "lineage": f"{run}/row/{dropped[0]['_id']}",
        "clusters": f"{run}/duplicates?step=drop_duplicates&page=2",
        "cluster": f"{run}/duplicates/drop_duplicates/{dup[0]['cluster_id']}",
        "whatif": f"{run}/whatif/gopher_quality_filter?min_doc_words=80",
        "compare": f"{run}/compare",
        "compare_rows": f"{run}/compare/rows?kind=dropped_to_kept&page=2",
    }


def measure(workdir: Path, requests: int) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"),
           "DATAMILL_EXPLORE_CACHE": str(DATA_DIR / "explore-stats-cache")}
    server = subprocess.Popen(
        [sys.executable, "-m", "datamill.cli", "explore", str(workdir), "--port", str(port),
         "--no-browser"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = RssSampler(server.pid)
    sampler.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                get(base + "/")
                break
            except OSError:
                time.sleep(0.1)
        idle_rss = sampler.last
        urls = pages(base, workdir)
        results = {}
        for name, url in urls.items():
            status, first, size = get(url)  # warm: stats computed, ids loaded
            times = []
            for _ in range(requests):
                status, ms, size = get(url)
                times.append(ms)
            times.sort()
            results[name] = {"status": status, "first_ms": round(first, 1),
                             "p50_ms": round(times[len(times) // 2], 1),
                             "p95_ms": round(times[min(len(times) - 1,
                                                       int(0.95 * len(times)))], 1),
                             "bytes": size, "url": url[len(base):]}
            print(f"{name:14s} {status} first {first:8.1f} ms  p95 "
                  f"{results[name]['p95_ms']:7.1f} ms", flush=True)
        return {"pages": results, "rss_idle_mb": round(idle_rss / 2**20, 1),
                "rss_peak_mb": round(sampler.peak / 2**20, 1),
                "rss_end_mb": round(sampler.last / 2**20, 1)}
    finally:
        sampler.stop.set()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--words", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--rebuild", action="store_true", help="run the pipeline again")
    ap.add_argument("--build-only", action="store_true", help="make the workdir, measure nothing")
    args = ap.parse_args()
    data = generate(args.docs, args.words)
    workdir = DATA_DIR / f"explore-work-{args.docs}"
    if args.rebuild and workdir.exists():
        shutil.rmtree(workdir)
    built = build_workdir(data, workdir, args.workers)
    if args.build_only:
        return
    got = measure(workdir, args.requests)
    worst = max(p["p95_ms"] for p in got["pages"].values())
    payload = {"docs": args.docs, "input_bytes": data.stat().st_size,
               "workdir_bytes": dir_size(workdir), **built, **got,
               "worst_p95_ms": worst,
               "targets": {"p95_ms": P95_TARGET_MS, "rss_mb": RSS_TARGET_MB},
               "met": {"p95": worst <= P95_TARGET_MS,
                       "rss": got["rss_peak_mb"] < RSS_TARGET_MB}}
    print_table([{"page": k, **v} for k, v in got["pages"].items()],
                ["page", "status", "first_ms", "p50_ms", "p95_ms", "bytes"],
                title=f"{args.docs:,} documents, {data.stat().st_size / 1e9:.2f} GB input, "
                      f"workdir {payload['workdir_bytes'] / 1e9:.2f} GB")
    print(f"server RSS: idle {got['rss_idle_mb']} MB, peak {got['rss_peak_mb']} MB")
    write_results("explore_scale", payload)


if __name__ == "__main__":
    main()
