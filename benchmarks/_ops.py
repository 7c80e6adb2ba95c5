"""Small datamill operations used by the benchmarks (one vectorized Arrow kernel each).

They live in their own module so that their identity (part of the cache key) is the same in
every process that imports them: `_ops.TextLength`, ...
"""

from __future__ import annotations

from typing import Any, Literal

from datamill import Arguments, Field, FilterOperation, MapOperation


class ColumnArgs(Arguments):
    column: str = Field("text", description="Text column.")


class TextLength(MapOperation):
    """Length of the text in characters."""

    name = "bench_text_length"
    Args = ColumnArgs
    consumes = {"{column}": "string"}
    produces = {"{column}_length": "int32"}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        col = self.args.column
        return {f"{col}_length": pc.utf8_length(batch.column(col))}


class Lowercase(MapOperation):
    """A lowercase copy of the text."""

    name = "bench_lowercase"
    Args = ColumnArgs
    consumes = {"{column}": "string"}
    produces = {"{column}_lower": "string"}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        col = self.args.column
        return {f"{col}_lower": pc.utf8_lower(batch.column(col))}


class RegexArgs(ColumnArgs):
    pattern: str = Field(description="RE2 pattern.")
    output: str = Field("has_match", description="Output column.")


class RegexFlag(MapOperation):
    """True where the text matches a regular expression."""

    name = "bench_regex_flag"
    Args = RegexArgs
    consumes = {"{column}": "string"}
    produces = {"{output}": "bool"}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        a = self.args
        return {a.output: pc.match_substring_regex(batch.column(a.column), pattern=a.pattern)}


class MinValueArgs(Arguments):
    column: str
    min_value: int


class GreaterThan(FilterOperation):
    """Keep rows whose integer column is greater than `min_value`."""

    name = "bench_greater_than"
    Args = MinValueArgs
    consumes = {"{column}": "int32"}
    default_reason = "too_small"

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        return pc.greater(batch.column(self.args.column), self.args.min_value)


class WordCountArgs(ColumnArgs):
    pattern: str = Field(r"\S+", description="Regular expression of one word.")
    engine: Literal["re2", "polars"] = Field(
        "re2", description="Arrow's RE2 kernel, or polars' (Rust regex) on the same buffers.")


class WordCount(MapOperation):
    """Number of words (matches of `pattern`) in the text."""

    name = "bench_word_count"
    Args = WordCountArgs
    consumes = {"{column}": "string"}
    produces = {"n_words": "int32"}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        a = self.args
        if a.engine == "polars":
            import polars as pl

            counts = pl.from_arrow(batch.column(a.column)).str.count_matches(a.pattern)
            return {"n_words": counts.cast(pl.Int32).to_arrow()}
        return {"n_words": pc.count_substring_regex(batch.column(a.column), pattern=a.pattern)}
