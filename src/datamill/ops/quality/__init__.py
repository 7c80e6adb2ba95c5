"""Quality filters from the literature: Gopher quality and repetition, C4 (with its bad-words
list) and FineWeb. Each family has a `*_stats` map (typed stat columns, for analysis and
threshold tuning) and a `*_filter` (thresholds, published defaults, one drop reason per rule).
See docs/quality.md."""

from __future__ import annotations

from typing import Any

from .c4 import C4BadWordsFilter, C4BadWordsStats, C4Filter, C4Stats
from .fineweb import FineWebFilter, FineWebStats
from .gopher import (
    GopherQualityFilter,
    GopherQualityStats,
    GopherRepetitionFilter,
    GopherRepetitionStats,
)

__all__ = [
    "C4BadWordsFilter", "C4BadWordsStats", "C4Filter", "C4Stats", "FineWebFilter",
    "FineWebStats", "GopherQualityFilter", "GopherQualityStats", "GopherRepetitionFilter",
    "GopherRepetitionStats", "apply_quality_filters",
]


def apply_quality_filters(dataset: Any, column: str = "text", tokenizer: str = "fast",
                          badwords: bool = False) -> Any:
    """Apply, in datatrove's order, Gopher quality, Gopher repetition, C4 (cleaning the text
    of kept documents) and FineWeb: each family's stats then its filter with the published
    defaults. With `badwords=True`, the C4 bad-words filter comes after C4."""
    common = {"column": column, "tokenizer": tokenizer}
    ds = dataset.apply("gopher_quality_stats", **common).apply("gopher_quality_filter", **common)
    ds = ds.apply("gopher_repetition_stats", **common).apply("gopher_repetition_filter", **common)
    ds = ds.apply("c4_stats", clean=True, **common).apply("c4_filter", **common)
    if badwords:
        ds = ds.apply("c4_badwords_stats", column=column).apply("c4_badwords_filter",
                                                                column=column)
    return ds.apply("fineweb_stats", **common).apply("fineweb_filter", **common)
