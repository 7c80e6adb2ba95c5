"""The pipeline of the cache benchmark, importable by cache.py and loadable by the CLI
(`datamill run benchmarks/_cache_pipeline.py ...`). Configured by environment variables:

    BENCH_CACHE_INPUT    JSONL input       (default: benchmarks/data/docs-1gb.jsonl)
    BENCH_CACHE_OUTPUT   output directory  (default: benchmarks/data/work/cache-out)
    BENCH_CACHE_PATTERN  the word-count map's pattern, the argument the benchmark changes
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _ops import WordCount  # noqa: E402

from datamill import Dataset  # noqa: E402

MIN_WORDS = 100
DEFAULT_PATTERN = r"\S+"


def build(inp: str | Path, out: str | Path, pattern: str = DEFAULT_PATTERN) -> Dataset:
    return (Dataset.read(str(inp))
            .apply("text_length_filter", min_words=MIN_WORDS)
            .apply(WordCount, pattern=pattern)
            .write(str(out)))


def _from_env() -> Dataset:
    return build(os.environ.get("BENCH_CACHE_INPUT", str(HERE / "data" / "docs-1gb.jsonl")),
                 os.environ.get("BENCH_CACHE_OUTPUT", str(HERE / "data" / "work" / "cache-out")),
                 os.environ.get("BENCH_CACHE_PATTERN", DEFAULT_PATTERN))


# the CLI looks for a Dataset at module level; cache.py imports `build` and skips this
if os.environ.get("BENCH_CACHE_NO_AUTOBUILD") != "1":
    dataset = pipeline = _from_env()
