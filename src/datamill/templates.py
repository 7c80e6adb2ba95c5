"""The code `datamill ops new` writes: a working operation of each kind over a `text`
column, and its tests (`datamill.testing.check_operation`, values, the entry point)."""

from __future__ import annotations

_HEADER = '''"""The datamill {kind} operation `{name}`: replace the example logic with
yours; keep the docstrings and argument descriptions up to date (they are the README and
`datamill ops show`)."""

from __future__ import annotations

from typing import Any

from datamill import Arguments, Field, {base}


'''

_MAP = '''class {cls}Args(Arguments):
    min_length: int = Field(1, ge=1, description="Count only the words of at least this many "
                                                 "characters.")


class {cls}(MapOperation):
    """Count the words of `text` that have at least `min_length` characters.

    A word is a run of non-space characters; a null text counts none."""

    name = "{name}"
    version = "1"
    Args = {cls}Args
    consumes = {{"text": "string"}}
    produces = {{"{name}": "int64"}}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        pattern = r"\\S{{" + str(self.args.min_length) + ",}}"
        counts = pc.count_substring_regex(batch["text"], pattern=pattern)
        return {{"{name}": pc.fill_null(counts, 0).cast("int64")}}
'''

_FILTER = '''class {cls}Args(Arguments):
    min_words: int = Field(3, ge=1, description="Rows whose text has fewer words than this "
                                                "are dropped.")


class {cls}(FilterOperation):
    """Keep the rows whose `text` has at least `min_words` words.

    Each dropped row records why: `{name}:empty` (a null or blank text) or
    `{name}:too_short`."""

    name = "{name}"
    version = "1"
    Args = {cls}Args
    consumes = {{"text": "string"}}

    def process(self, batch: Any) -> Any:
        import pyarrow.compute as pc

        words = pc.fill_null(pc.count_substring_regex(batch["text"], pattern="\\\\S+"), 0)
        counts = words.to_numpy() if hasattr(words, "to_numpy") else words
        keep = counts >= self.args.min_words
        reasons = ["" if kept else "{name}:empty" if n == 0 else "{name}:too_short"
                   for kept, n in zip(keep.tolist(), counts.tolist())]
        return keep, reasons
'''

_EXPAND = '''class {cls}Args(Arguments):
    max_lines: int | None = Field(None, ge=1, description="Keep at most this many lines of "
                                                          "each text (default: all).")


class {cls}(ExpandOperation):
    """One row per non-blank line of `text`, stripped, in the column `line`.

    A null or blank text gives no row. Each child keeps its parent's other columns and the
    parent's id in `_parent_id`."""

    name = "{name}"
    version = "1"
    Args = {cls}Args
    consumes = {{"text": "string"}}
    produces = {{"line": "string"}}

    def process(self, batch: Any) -> Any:
        parents, lines = [], []
        for row, text in enumerate(batch["text"].to_pylist()):
            found = [line.strip() for line in (text or "").splitlines() if line.strip()]
            for line in found[:self.args.max_lines]:
                parents.append(row)
                lines.append(line)
        return {{"_parent_index": parents, "line": lines}}
'''

_GLOBAL = '''class {cls}Args(Arguments):
    ignore_case: bool = Field(True, description="Compare the texts lowercased.")


class {cls}(GlobalOperation):
    """Drop the rows whose `text` repeats an earlier row's, once surrounding whitespace is
    stripped (and case ignored, with `ignore_case`).

    The row kept is the first in dataset order; the others are dropped with the reason
    `{name}:duplicate`. A null text is never a duplicate. Runs out of core: `scan` hashes
    each text into buckets on disk, `reduce` compares the texts within a bucket."""

    name = "{name}"
    version = "1"
    Args = {cls}Args
    consumes = {{"text": "string"}}
    default_reason = "{name}:duplicate"

    def _normalized(self, text: Any) -> Any:
        import pyarrow.compute as pc

        text = pc.utf8_trim_whitespace(text)
        return pc.utf8_lower(text) if self.args.ignore_case else text

    def scan(self, batch: Any) -> Any:
        import hashlib

        import pyarrow as pa

        normalized = self._normalized(batch["text"])
        keys = [None if t is None else int.from_bytes(
            hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            for t in normalized.to_pylist()]
        return {{"_key": pa.array(keys, pa.uint64()), "normalized": normalized}}

    def reduce(self, bucket: Any) -> Any:
        import pyarrow as pa

        rows = sorted(bucket.select(["normalized", "_part", "_pos", "_id"]).to_pylist(),
                      key=lambda r: (r["normalized"], r["_part"], r["_pos"]))
        dropped = [r for prev, r in zip([None, *rows], rows)
                   if prev is not None and prev["normalized"] == r["normalized"]]
        return {{"_id": pa.array([r["_id"] for r in dropped], pa.int64()),
                "_part": pa.array([r["_part"] for r in dropped], pa.int32()),
                "_pos": pa.array([r["_pos"] for r in dropped], pa.int64()),
                "_reason": pa.array([self.default_reason] * len(dropped), pa.string())}}
'''

_BODIES = {"map": ("MapOperation", _MAP), "filter": ("FilterOperation", _FILTER),
           "expand": ("ExpandOperation", _EXPAND), "global": ("GlobalOperation", _GLOBAL)}


def operation_module(name: str, cls: str, kind: str) -> str:
    base, body = _BODIES[kind]
    return _HEADER.format(kind=kind, name=name, base=base) + body.format(name=name, cls=cls)


_TEST_HEADER = '''"""Tests of `{name}`: its contract (datamill.testing), its values, its
entry point, its README."""

from __future__ import annotations

import pyarrow as pa

from datamill import registry
from datamill.testing import check_operation
from {package} import {cls}

SAMPLE = pa.table({{"text": ["one two three four", "tiny", None, "  ", "Alpha beta\\nGamma",
                            "one two three four", "ONE TWO THREE FOUR "]}})


def test_contract():
    check_operation({cls}, SAMPLE)


def test_published_through_the_entry_point():
    assert registry.get("{name}") is {cls}


def test_readme_shows_the_spec():
    """README.md's section is the operation's spec (`datamill ops readme {name} -o README.md`
    rewrites it)."""
    from pathlib import Path

    from datamill.packaging import readme_section

    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert readme_section({cls}) in readme.read_text(encoding="utf-8")


def test_arguments_are_checked():
    import pytest

    from datamill import ArgumentError

    with pytest.raises(ArgumentError):
        {cls}(no_such_argument=1)


'''

_TESTS = {
    "map": '''def test_values():
    out = check_operation({cls}, SAMPLE, min_length=4).output
    assert out["{name}"].to_pylist() == [2, 1, 0, 0, 3, 2, 2]
''',
    "filter": '''def test_values():
    checked = check_operation({cls}, SAMPLE, min_words=2)
    assert checked.output["text"].to_pylist() == [
        "one two three four", "Alpha beta\\nGamma", "one two three four", "ONE TWO THREE FOUR "]
    assert sorted(checked.dropped["_reason"].to_pylist()) == [
        "{name}:empty", "{name}:empty", "{name}:too_short"]
''',
    "expand": '''def test_values():
    out = check_operation({cls}, SAMPLE, max_lines=1).output
    assert out["line"].to_pylist() == [
        "one two three four", "tiny", "Alpha beta", "one two three four", "ONE TWO THREE FOUR"]
''',
    "global": '''def test_values():
    checked = check_operation({cls}, SAMPLE)
    assert checked.output["text"].to_pylist() == [
        "one two three four", "tiny", None, "  ", "Alpha beta\\nGamma"]
    assert checked.dropped["_reason"].to_pylist() == ["{name}:duplicate"] * 2
    strict = check_operation({cls}, SAMPLE, ignore_case=False)
    assert strict.output.num_rows == 6
''',
}


def test_module(name: str, cls: str, kind: str, package: str) -> str:
    return (_TEST_HEADER.format(name=name, cls=cls, package=package)
            + _TESTS[kind].format(name=name, cls=cls))
