"""Main-text extraction quality and CPU cost: `extract_html` against plain `trafilatura.extract`.

    python benchmarks/html_extraction.py [--pages 400] [--repeat 3] [--main-dir DIR ...]
        [--profile | --profile-only] [--name NAME]

The corpus is built from the running interpreter (tests/html_corpus.py): a documentation
site of help-topic articles, module reference pages, module indexes and tables of contents
rendered from pydoc's data, with boilerplate injected (header, navigation, breadcrumbs,
sidebar, cookie banner, footer; inside the article a newsletter box, an ad box, a related
links list and a feedback widget). Each page's reference text is what was rendered into its
article before the injection. Two sets: `marked` (the boilerplate carries the class, id and
role names sites give it) and `unmarked` (those attributes stripped: a stress set). The pages
are written to benchmarks/data/html_extraction/ (HTML and reference text) for inspection.

Quality, per set and side: token-level F1 (tokens are the lower-cased `\\w+` runs; precision
and recall over token multisets; the mean of per-page F1), the share of pages whose recall
is below 0.5, and the leak rate (the share of pages where a marker of an injected block
appears in the output). Speed: pages per CPU-second (`time.process_time` summed over the
set, one process, the two sides taking turns every 25 pages; the median of `--repeat` runs
after a warm-up), for `trafilatura.extract(html)` with its defaults and for the
`extract_html` operation's `process()` on Arrow batches of 50 pages (title column on, its
default).

`--main-dir DIR [DIR ...]` adds a set of real pages, independent of the generator: .html
files under the folders that have a <main> element, the reference text being that element's
text (minus scripts and the previous/next links), `--main-pages` of them drawn at random.
mdBook sites fit, as their <main> holds exactly the chapter: the Rust books that rustup
installs (`rustup component add rust-docs`; under
~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html: book, reference,
cargo, rustc, rustdoc, nomicon, edition-guide, embedded-book, rust-by-example; the
single-page `print.html` versions are left out). rustdoc's API pages do not fit (their
<main> holds the search bar and settings). Leaks are not counted there (nothing injected).

"Before" figures come from running this script with an older datamill on the path
(`PYTHONPATH=<old checkout>/src python benchmarks/html_extraction.py --name NAME`).
Results: benchmarks/results/html_extraction.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # tests.html_corpus builds the pages
sys.path.insert(0, str(HERE))

from _common import median, print_table, write_results  # noqa: E402

DATA = HERE / "data" / "html_extraction"
BATCH = 50


def sides() -> dict:
    import pyarrow as pa
    import trafilatura

    from datamill.io.html import ExtractHtml

    op = ExtractHtml()

    def datamill_side(pages: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for start in range(0, len(pages), BATCH):
            batch = pa.record_batch({"html": pa.array(pages[start:start + BATCH])})
            out += op.process(batch)["text"].to_pylist()
        return out

    return {"trafilatura": lambda pages: [trafilatura.extract(p) for p in pages],
            "extract_html": datamill_side}


def quality(pages: list, outputs: list[str | None]) -> dict:
    from tests.html_corpus import leaks, scores

    per_page = [scores(o, p.text) for o, p in zip(outputs, pages)]
    leaked = [leaks(o, p) for o, p in zip(outputs, pages)]
    link_pages = [i for i, p in enumerate(pages) if p.kind in ("index", "toc")]
    by_kind = {kind: round(statistics.mean(s["f1"] for s, p in zip(per_page, pages)
                                           if p.kind == kind), 4)
               for kind in sorted({p.kind for p in pages})}
    return {
        "f1": round(statistics.mean(s["f1"] for s in per_page), 4),
        "precision": round(statistics.mean(s["precision"] for s in per_page), 4),
        "recall": round(statistics.mean(s["recall"] for s in per_page), 4),
        "f1_by_kind": by_kind,
        "recall_below_0.5": round(sum(s["recall"] < 0.5 for s in per_page) / len(pages), 4),
        "link_pages_recall_below_0.5": round(
            sum(per_page[i]["recall"] < 0.5 for i in link_pages) / max(len(link_pages), 1), 4),
        "leak_rate": round(sum(bool(x) for x in leaked) / len(pages), 4),
        "leaks_by_block": dict(Counter(b for x in leaked for b in x).most_common()),
    }


def speed(run: dict, html: list[str], repeat: int, chunk: int = 25) -> dict:
    """CPU seconds of each side over all pages, per repeat: the sides take turns chunk by
    chunk (the first side alternating), so that load on a shared machine hits both alike."""
    for fn in run.values():  # warm-up: imports, trafilatura's stoplists, the op's setup
        fn(html[:20])
    names = list(run)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        totals = dict.fromkeys(names, 0.0)
        for i, start in enumerate(range(0, len(html), chunk)):
            for name in (names if (r + i) % 2 == 0 else names[::-1]):
                begin = time.process_time()
                run[name](html[start:start + chunk])
                totals[name] += time.process_time() - begin
        for name in names:
            cpu[name].append(totals[name])
    out = {name: {"pages_per_cpu_s": round(len(html) / median(c), 1),
                  "cpu_ms_per_page": round(1000 * median(c) / len(html), 2),
                  "cpu_s_runs": [round(x, 3) for x in c]} for name, c in cpu.items()}
    out["cpu_ratio_extract_html_vs_trafilatura"] = round(
        median(cpu["extract_html"]) / median(cpu["trafilatura"]), 3)
    return out


def main_pages(folders: list[Path], n: int, seed: int) -> list:
    """Pages of `folders` with a <main> element, as corpus pages whose text is its text."""
    import random

    import lxml.html
    from tests.html_corpus import Page

    files = sorted((folder, f) for folder in folders for f in folder.rglob("*.html")
                   if f.name != "print.html")
    random.Random(seed).shuffle(files)
    pages = []
    for folder, path in files:
        html = path.read_text(encoding="utf-8", errors="replace")
        main = lxml.html.fromstring(html).find(".//main")
        if main is None:
            continue
        for unwanted in main.xpath('.//script | .//style | .//*[@class="nav-wrapper"]'):
            unwanted.getparent().remove(unwanted)
        text = main.text_content().strip()
        if text:
            pages.append(Page(name=f"{folder.name}/{path.relative_to(folder)}", kind="main",
                              html=html, blocks=[text]))
        if len(pages) == n:
            break
    return pages


def write_pages(name: str, pages: list) -> None:
    folder = DATA / name
    folder.mkdir(parents=True, exist_ok=True)
    for page in pages:
        (folder / f"{page.name}.html").write_text(page.html, encoding="utf-8")
        (folder / f"{page.name}.txt").write_text(page.text, encoding="utf-8")


def profile(run: dict, html: list[str]) -> str:
    text = io.StringIO()
    for name, fn in run.items():
        profiler = cProfile.Profile()
        profiler.runcall(fn, html)
        text.write(f"=== {name}: top 25 by cumulative time ===\n")
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--name", default="html_extraction", help="results file name")
    parser.add_argument("--main-dir", type=Path, nargs="+",
                        help="folders of real pages whose <main> is the reference")
    parser.add_argument("--main-pages", type=int, default=300)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile both sides once, into results/<name>.profile.txt")
    parser.add_argument("--profile-only", action="store_true",
                        help="only the profile, on the marked set")
    args = parser.parse_args()

    from tests.html_corpus import corpus

    run = sides()
    if args.profile_only:
        out = HERE / "results" / f"{args.name}.profile.txt"
        out.write_text(profile(run, [p.html for p in corpus(args.pages, args.seed)]))
        print(f"profile: {out}")
        return
    shutil.rmtree(DATA, ignore_errors=True)
    sets = {"marked": corpus(args.pages, args.seed),
            "unmarked": corpus(args.pages, args.seed, unmarked=True)}
    if args.main_dir:
        sets["main_dir"] = main_pages([d.expanduser() for d in args.main_dir],
                                      args.main_pages, args.seed)
    results: dict = {"pages": args.pages, "seed": args.seed, "sets": {},
                     "main_dir": [str(d) for d in args.main_dir or []]}
    rows = []
    for set_name, pages in sets.items():
        if set_name != "main_dir":
            write_pages(set_name, pages)
        html = [p.html for p in pages]
        entry = {side: quality(pages, fn(html)) for side, fn in run.items()}
        entry["speed"] = speed(run, html, args.repeat)
        results["sets"][set_name] = entry
        for side in run:
            rows.append({"set": set_name, "side": side, **{k: entry[side][k] for k in (
                "f1", "precision", "recall", "recall_below_0.5",
                "link_pages_recall_below_0.5", "leak_rate")},
                "pages/cpu-s": entry["speed"][side]["pages_per_cpu_s"]})
    import trafilatura

    results["trafilatura"] = trafilatura.__version__
    print_table(rows, list(rows[0]), f"HTML extraction, {args.pages} generated pages per set"
                + (f", {len(sets['main_dir'])} pages of --main-dir" if args.main_dir else ""))
    for set_name, entry in results["sets"].items():
        print(f"{set_name}: extract_html CPU / trafilatura CPU = "
              f"{entry['speed']['cpu_ratio_extract_html_vs_trafilatura']}")
    if args.profile:
        out = HERE / "results" / f"{args.name}.profile.txt"
        out.write_text(profile(run, [p.html for p in sets["marked"]]))
        print(f"profile: {out}")
    print(f"results: {write_results(args.name, results)}")


if __name__ == "__main__":
    main()
