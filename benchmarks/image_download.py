"""`download_images` against the loopback image server, next to what a user would write.

    python benchmarks/image_download.py [--images 10000] [--drips 100] [--repeat 2]

The server (tests/image_server.py, its own process) serves `--images` distinct JPEGs cut from
the scikit-image photos (384 px, about 30-60 KB each). Two URL lists:

  clean    the images only
  faulty   the same, plus `--drips` slow-drip URLs spread through the list (1 byte every
           0.2 s, 100 bytes: each lasts 20 s unless the client cuts it off)

Variants, each in a fresh child process, interleaved and repeated:

  datamill    read (2 JSONL files) -> download_images, 2 workers, 32 requests in flight per
              worker (per_host=32: every URL is on one host here), timeout=5 s, the default
              8 batches of 256 URLs in flight per worker
  reference   a ThreadPoolExecutor of 64 threads calling requests.get(url, timeout=10) in one
              process, keeping 200 answers: the loop a user writes (it keeps the drips'
              100 bytes too: it checks nothing)

images_s counts images kept per second of the whole run (worker start-up included);
images_per_cpu_s divides them by the CPU seconds (user + system) of the variant's process
tree. On a loaded machine the second is the fairer: a process with 64 threads gets more of a
contended CPU than one with an event loop per worker, and waits less in the run queue
(cores_used = cpu_s / wall_s shows it). datamill_*_2_cores_projected_images_s is 2 x
images_per_cpu_s: what its 2 worker processes do on 2 cores of their own. On the
faulty list, `requests`' timeout is per read: a drip that sends a byte every 0.2 s never
trips it, so each one holds a thread for 20 s; datamill cuts each off at the 5 s total
timeout while the worker's other requests go on. Ratios matter, not absolute times (shared
machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    REPO,
    WORK_DIR,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

DRIP = "/drip?interval=0.2&size=100"


def _child_datamill(args: argparse.Namespace) -> None:
    import datamill as dm

    ds = dm.Dataset.read(args.urls).apply(
        "download_images", timeout=5.0, read_timeout=5.0, connect_timeout=5.0,
        concurrency=32, per_host=32, retries=0)
    start = time.perf_counter()
    result = ds.run(args.workdir, workers=2, cache=False, progress=False)
    wall = time.perf_counter() - start
    step = result.step("download_images")
    report_child({"wall_s": round(wall, 3), "kept": step["rows_out"],
                  "dropped": step["dropped"], "step_seconds": step["seconds"]})


def _child_reference(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import requests

    urls = [json.loads(line)["url"] for f in sorted(Path(args.urls).glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    session_per_thread = {}

    def fetch(url: str) -> bytes | None:
        import threading

        session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        try:
            r = session.get(url, timeout=10)
        except requests.RequestException:
            return None
        return r.content if r.status_code == 200 else None

    start = time.perf_counter()
    with ThreadPoolExecutor(64) as pool:
        got = list(pool.map(fetch, urls))
    wall = time.perf_counter() - start
    report_child({"wall_s": round(wall, 3), "kept": sum(g is not None for g in got)})


def _start_server(images: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "image_server.py"),
                             str(images)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline())
    return proc, port


def _write_urls(folder: Path, urls: list[str], files: int = 2) -> None:
    fresh_dir(folder)
    for f in range(files):
        lines = [json.dumps({"url": u}) for u in urls[f::files]]
        (folder / f"urls-{f}.jsonl").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--drips", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", choices=["datamill", "reference"])
    ap.add_argument("--urls")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    if args.child == "datamill":
        return _child_datamill(args)
    if args.child == "reference":
        return _child_reference(args)

    server, port = _start_server(args.images)
    try:
        base = f"http://127.0.0.1:{port}"
        rows = []
        for rep in range(args.repeat):
            for lst in ("clean", "faulty"):
                urls = [f"{base}/img/v{i:05d}.jpg?r={rep}" for i in range(args.images)]
                if lst == "faulty":
                    every = max(1, args.images // max(1, args.drips))
                    for d in range(args.drips):
                        urls.insert(d * (every + 1), f"{base}{DRIP}&k={rep}-{d}")
                folder = WORK_DIR / "image_download" / f"urls-{lst}"
                _write_urls(folder, urls)
                order = ("datamill", "reference") if rep % 2 == 0 else ("reference", "datamill")
                for variant in order:
                    workdir = fresh_dir(WORK_DIR / "image_download" / "work")
                    res = run_child([__file__, "--child", variant, "--urls", str(folder),
                                     "--workdir", str(workdir)], timeout=900)
                    res.update(variant=variant, urls=lst, repeat=rep,
                               images_s=round(res["kept"] / res["wall_s"], 1),
                               images_per_cpu_s=round(res["kept"] / res["cpu_s"], 1),
                               cores_used=round(res["cpu_s"] / res["wall_s"], 2))
                    rows.append(res)
                    print(json.dumps({k: res[k] for k in ("variant", "urls", "repeat",
                                                          "kept", "wall_s", "images_s",
                                                          "cpu_s", "images_per_cpu_s",
                                                          "cores_used")}),
                          flush=True)
    finally:
        server.stdin.close()
        server.wait(30)

    summary = {}
    for lst in ("clean", "faulty"):
        for variant in ("datamill", "reference"):
            picked = [r for r in rows if r["urls"] == lst and r["variant"] == variant]
            summary[f"{variant}_{lst}_images_s"] = median([r["images_s"] for r in picked])
            summary[f"{variant}_{lst}_images_per_cpu_s"] = median(
                [r["images_per_cpu_s"] for r in picked])
        summary[f"{lst}_ratio"] = round(summary[f"datamill_{lst}_images_s"]
                                        / summary[f"reference_{lst}_images_s"], 2)
        summary[f"{lst}_cpu_ratio"] = round(summary[f"datamill_{lst}_images_per_cpu_s"]
                                            / summary[f"reference_{lst}_images_per_cpu_s"], 2)
        # two worker processes keep two cores busy when nothing else runs: the images/s of
        # 2 dedicated cores (the reference is one process, its Python bound to one core)
        summary[f"datamill_{lst}_2_cores_projected_images_s"] = round(
            2 * summary[f"datamill_{lst}_images_per_cpu_s"])
    print_table(rows, ["variant", "urls", "repeat", "kept", "wall_s", "images_s", "cpu_s",
                       "images_per_cpu_s", "cores_used", "peak_rss_tree_mb"],
                "download_images vs a ThreadPoolExecutor of requests")
    print(json.dumps(summary, indent=1))
    write_results("image_download", {
        "images": args.images, "drips": args.drips, "drip": DRIP, "summary": summary,
        "runs": rows,
        "note": "loopback server in its own process on the same 2 shared cores; the machine "
                "was loaded by other work; compare ratios within this run"})


if __name__ == "__main__":
    main()
