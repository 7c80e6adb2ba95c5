"""Basic text operations."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ..operation import Arguments, FilterOperation


def count_words(text: Any) -> Any:
    """Whitespace-separated words per string (ASCII whitespace, like RE2's \\S+), as int64
    numpy; null counts 0. Vectorized over the Arrow buffers: no per-row Python."""
    import numpy as np
    import pyarrow as pa

    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    out = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if chunk.type not in (pa.string(), pa.large_string()):
            chunk = chunk.cast(pa.large_string())
        _, offsets_buf, data_buf = chunk.buffers()
        width = np.int64 if chunk.type == pa.large_string() else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=width)[
            chunk.offset:chunk.offset + len(chunk) + 1].astype(np.int64)
        lo, hi = int(offsets[0]), int(offsets[-1])
        data = np.frombuffer(data_buf, dtype=np.uint8)[lo:hi] if data_buf is not None and hi > lo \
            else np.zeros(0, np.uint8)
        space = np.subtract(data, 9, dtype=np.uint8) <= 4  # \t \n \v \f \r
        space |= data == 32
        starts = np.empty(len(data), dtype=bool)  # a space followed by a non-space
        np.greater(space[:-1], space[1:], out=starts[1:])
        bounds = offsets - lo
        first = bounds[:-1][bounds[:-1] < len(data)]
        starts[first] = ~space[first]  # a word at the start of a string starts there
        positions = np.flatnonzero(starts)
        counts = np.diff(np.searchsorted(positions, bounds))
        if chunk.null_count:
            counts[chunk.is_null().to_numpy(zero_copy_only=False)] = 0
        out.append(counts.astype(np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


class TextLengthArgs(Arguments):
    column: str = Field("text", description="Text column to measure.")
    min_chars: int | None = Field(None, ge=0, description="Drop rows with fewer characters.")
    max_chars: int | None = Field(None, ge=0, description="Drop rows with more characters.")
    min_words: int | None = Field(None, ge=0, description="Drop rows with fewer words.")
    max_words: int | None = Field(None, ge=0, description="Drop rows with more words.")

    @model_validator(mode="after")
    def _bounds(self) -> TextLengthArgs:
        for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low}={lo} is greater than {high}={hi}")
        return self


class TextLengthFilter(FilterOperation):
    """Keep rows whose text length, in characters and/or whitespace-separated words, lies
    within the bounds. Drop reasons: too_few_chars, too_many_chars, too_few_words,
    too_many_words, null_text."""

    name = "text_length_filter"
    Args = TextLengthArgs
    consumes = {"{column}": "string"}

    def process(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow.compute as pc

        a = self.args
        text = batch.column(a.column)
        n = len(text)
        reasons = np.full(n, None, dtype=object)
        checks = []
        if a.min_chars is not None or a.max_chars is not None:
            chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
            checks += [(a.min_chars, chars, "too_few_chars", np.less),
                       (a.max_chars, chars, "too_many_chars", np.greater)]
        if a.min_words is not None or a.max_words is not None:
            words = count_words(text)
            checks += [(a.min_words, words, "too_few_words", np.less),
                       (a.max_words, words, "too_many_words", np.greater)]
        for bound, values, reason, compare in reversed(checks):
            if bound is not None:
                bad = compare(np.nan_to_num(values.astype(float), nan=0), bound)
                reasons[bad] = reason
        null = pc.is_null(text).to_numpy(zero_copy_only=False)
        reasons[null] = "null_text"
        keep = np.equal(reasons, None)
        return keep, reasons
