"""Curate a web crawl into clean, deduplicated, anonymized English text.

    pip install -e '.[curation]'
    datamill run examples/curate_web_text.py --workdir examples/work/curate
    datamill inspect examples/work/curate            # the funnel: rows kept per step, and why

The crawl is generated once, as a gzipped WARC, from text every Python install ships
(see `web_corpus.py`): real prose wrapped in page boilerplate, with mirrors, re-published
copies, foreign-language pages, spam, a blocked domain and leaked contact details.

WARC -> main-content extraction -> normalization -> URL filter -> language ID -> Gopher, C4
and FineWeb quality filters -> PII redaction -> exact dedup -> MinHash near dedup -> Parquet.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from web_corpus import write_warc  # noqa: E402

from datamill import Dataset  # noqa: E402


def build(crawl: Path, output: Path) -> Dataset:
    """The curation pipeline from a WARC file to a Parquet folder."""
    return (
        Dataset.read(crawl)                                       # one row per HTML response
        .apply("extract_html", column="html", on_error="quarantine")
        .drop("html")
        .apply("normalize_text", column="text")                   # NFC, whitespace, boilerplate
        .apply("url_filter", blocked_domains=["tracker-farm.biz"])
        .apply("text_length_filter", min_words=50)
        .apply("detect_language")                                 # `language`, `language_score`
        .apply("language_filter", languages=["en"], min_score=0.5)
        .apply("gopher_quality_stats")                            # statistics are columns...
        .apply("gopher_repetition_stats")
        .apply("fineweb_stats")
        # Gopher's alpha-words rule (80% of tokens, punctuation included, hold a letter) drops
        # most code-heavy pages: the crawl's API docstrings are full of examples.
        .apply("gopher_quality_filter")                           # ...the decisions read them
        .apply("gopher_repetition_filter")
        .apply("fineweb_filter")
        .apply("c4_filter")
        .apply("redact_pii", column="text")                       # <EMAIL>, <PHONE>, <SECRET>...
        .apply("drop_duplicates", columns=["text"], normalize=True)
        .apply("minhash_dedup", column="text")                    # 5-grams, 14 bands x 8 rows
        .write(output, format="parquet")
    )


pipeline = build(write_warc(HERE / "data" / "crawl.warc.gz"),
                 HERE / "output" / "curated_web_text")

if __name__ == "__main__":
    result = pipeline.run(workdir=HERE / "work" / "curate")
    print(result.summary())
