"""Throughput of the curation loaders against the library each wraps, called in a plain loop.

    python benchmarks/loaders.py [--pages 1000] [--pdfs 100] [--hf-rows 300000]

Inputs are generated into benchmarks/data/loaders/ from text every Python install ships
(the interpreter's help topics), wrapped in navigation, sidebars and footers:

- `html`: N pages as .html files -> `read_html` vs `trafilatura.bare_extraction` per file;
- `warc`: the same pages as HTTP responses in one .warc.gz -> `read_warc` (decoding only) vs
  warcio's ArchiveIterator, and `read_warc` + `extract_html`;
- `pdf`: PDFs of 10 text pages each -> `read_pdf(per="page")` vs pypdf's extract_text;
- `hf`: a `save_to_disk` folder -> `read_hf` + a cheap map, written as Parquet.

datamill runs write Parquet into a fresh workdir (the cost of a real run: the source's
Parquet copy, the step outputs); the loops only extract. Results go to
benchmarks/results/loaders.json.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # the test helpers that write pages, WARC and PDF
sys.path.insert(0, str(HERE))

from _common import print_table, write_results  # noqa: E402

DATA = HERE / "data" / "loaders"


def prose(n: int, seed: int = 0) -> list[list[str]]:
    """n articles of 3-8 paragraphs of real prose (help topics, split on blank lines)."""
    from pydoc_data.topics import topics

    paragraphs = [p.strip().replace("\n", " ") for t in topics.values()
                  for p in t.split("\n\n") if len(p.strip()) > 200]
    rng = random.Random(seed)
    return [rng.sample(paragraphs, rng.randint(3, 8)) for _ in range(n)]


def make_inputs(pages: int, pdfs: int, hf_rows: int) -> dict:
    import html as html_lib

    from tests.test_loaders import make_pdf, page, write_warc

    shutil.rmtree(DATA, ignore_errors=True)
    (DATA / "html").mkdir(parents=True)
    articles = prose(pages)
    bodies = []
    for i, paragraphs in enumerate(articles):
        text = page(f"Article {i}", [html_lib.escape(p) for p in paragraphs])
        (DATA / "html" / f"{i:05d}.html").write_text(text)
        bodies.append((f"https://example.org/a/{i}", "text/html; charset=utf-8",
                       text.encode()))
    (DATA / "warc").mkdir()
    write_warc(DATA / "warc" / "crawl.warc.gz", gz=True, pages=bodies)
    (DATA / "pdf").mkdir()
    for i, paragraphs in enumerate(prose(pdfs * 10, seed=1)[: pdfs * 10: 10]):
        lines = [" ".join(p.split()[:12]).encode("latin-1", "replace").decode("latin-1")
                 for p in paragraphs]
        (DATA / "pdf" / f"{i:04d}.pdf").write_bytes(make_pdf(["\n".join(lines)] * 10))
    import datasets

    datasets.disable_progress_bars()
    texts = [p[0] for p in prose(1000, seed=2)]  # one paragraph each
    datasets.Dataset.from_dict({"text": [texts[i % 1000] for i in range(hf_rows)],
                                "n": list(range(hf_rows))}).save_to_disk(
        str(DATA / "hf"), num_shards=4)
    size = sum(f.stat().st_size for f in (DATA / "html").iterdir())
    return {"pages": pages, "html_mb": round(size / 2**20, 1), "pdfs": pdfs,
            "pdf_pages": pdfs * 10, "hf_rows": hf_rows}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_datamill(ds, workers: int) -> None:
    work = DATA / "work"
    shutil.rmtree(work, ignore_errors=True)
    ds.run(work, workers=workers, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--pdfs", type=int, default=100)
    parser.add_argument("--hf-rows", type=int, default=300_000)
    args = parser.parse_args()
    import pyarrow.compute as pc
    import pypdf
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    import datamill as dm

    inputs = make_inputs(args.pages, args.pdfs, args.hf_rows)
    rows = []

    def add(loader: str, variant: str, units: int, unit: str, seconds: float) -> None:
        rows.append({"loader": loader, "variant": variant, "units": units, "unit": unit,
                     "seconds": round(seconds, 2), "per_s": round(units / seconds, 1)})

    html_files = sorted((DATA / "html").iterdir())
    add("html", "trafilatura loop (1 process)", len(html_files), "pages", timed(
        lambda: [trafilatura.bare_extraction(f.read_bytes(), with_metadata=True,
                                             include_comments=False) for f in html_files]))
    for workers in (1, 2):
        add("html", f"read_html, {workers} worker(s)", len(html_files), "pages", timed(
            lambda w=workers: run_datamill(dm.Dataset.read(DATA / "html", bytes_per_partition=
                                                           2**20), w)))

    warc = DATA / "warc" / "crawl.warc.gz"

    def warcio_loop() -> None:
        with open(warc, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    record.content_stream().read().decode("utf-8")

    add("warc", "warcio loop (decode only)", args.pages, "records", timed(warcio_loop))
    add("warc", "read_warc (decode only)", args.pages, "records",
        timed(lambda: run_datamill(dm.Dataset.read(warc), 1)))
    add("warc", "read_warc + extract_html, 1 worker", args.pages, "pages",
        timed(lambda: run_datamill(dm.Dataset.read(warc).apply("extract_html"), 1)))

    pdf_files = sorted((DATA / "pdf").iterdir())
    add("pdf", "pypdf loop", args.pdfs * 10, "pages", timed(
        lambda: [p.extract_text() for f in pdf_files
                 for p in pypdf.PdfReader(io.BytesIO(f.read_bytes())).pages]))
    for workers in (1, 2):
        add("pdf", f"read_pdf per page, {workers} worker(s)", args.pdfs * 10, "pages", timed(
            lambda w=workers: run_datamill(dm.Dataset.read(DATA / "pdf", per="page",
                                                           bytes_per_partition=2**18), w)))

    hf = dm.Dataset.read(DATA / "hf").map(
        lambda b: {"chars": pc.utf8_length(b["text"])}, consumes=["text"],
        produces={"chars": "int64"})
    for workers in (1, 2):
        add("hf", f"read_hf + map, {workers} worker(s)", args.hf_rows, "rows",
            timed(lambda w=workers: run_datamill(hf, w)))

    print_table(rows, ["loader", "variant", "units", "unit", "seconds", "per_s"],
                title="loaders: throughput")
    path = write_results("loaders", {"inputs": inputs, "results": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
