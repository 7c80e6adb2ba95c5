"""The compiled quality kernels (ops/quality/_kernels.c) compute exactly what their numpy
twins compute, on the web-like corpus and on edge cases; and they are built by the install."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datamill.ops.quality import gopher, kernels
from datamill.ops.quality.tokenize import featurize

from .quality_corpus import generate

PIECES = list("aAbBcCeEfgiIlmMnNoOpqrRsStTuvwWxyz0123456789     \n\n.....,,,;;::!!??''\"\"()"
               "[]{}<>-–—/\\+*^%$€£#@&_~=|…’“”«»´`§²µ") + [
    "cannot", "Cannot", "don't", "can't", "won't", "DON'T", "isn’t", "I'm", "(I'm)", "we'll",
    "We’ll", "they're", "you've", "it'd", "y'all", "o'clock", "John's", "’s", "n't", "5km",
    "10m/s", "km²", "µm", "e.g.", "Mr.", "a.", "(a.)", "U.S.", "i.e...", "3.14", "1,000",
    "COVID-19", "http://x.org/a", "www.y.com", ":)", "):", ";)", "''", "ﬁ", "é", "Привет",
    "東京", "\U0001F600", "gonna", "Dont"]
EDGES = [".", "..", "w.", "'", "", "\n", "word", "a a",
         "a\n\nb\n\na", "x\ny\nx\ny\n\n\n", "é\né\nﬁ\n",
         "the cat the cat the cat the cat the cat", "one two three " * 40,
         "\n\n\nlead\n\n\nlead\n", "Ab ab AB ab ab", "x " * 3000]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return generate(1500, seed=7) + EDGES


def _random_texts(rng: random.Random) -> list[str]:
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60)))
            for _ in range(rng.randint(1, 4))]


def test_the_install_builds_the_kernels() -> None:
    assert kernels.library() is not None, "python setup.py build_ext (pip install -e .) " \
                                          "did not build ops/quality/_kernels.c"


def test_ngram_repetition_equals_the_numpy_scan(texts, monkeypatch) -> None:
    tok = featurize(texts)
    top_n, dup_n = [2, 3, 4], [5, 6, 7, 8, 9, 10]
    fast = gopher.ngram_repetition(tok, top_n, dup_n)
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = gopher.ngram_repetition(tok, top_n, dup_n)
    for got, want in zip(fast, slow):
        assert sorted(got) == sorted(want)
        for n in want:
            np.testing.assert_array_equal(got[n], want[n], err_msg=f"n={n}")
    assert any(v.any() for v in slow[1].values())  # the corpus has repeats to find


def test_line_and_paragraph_duplicates_equal_the_numpy_twin(texts, monkeypatch) -> None:
    column = pa.array(texts)
    cases = [gopher._parts(pc.utf8_trim_whitespace(column), 2), gopher._parts(column, 1)]
    fast = [gopher._duplicates(*parts) for parts in cases]
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = [gopher._duplicates(*parts) for parts in cases]
    for got, want in zip(fast, slow):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert slow[1][0].any() and slow[1][1].any()


def test_repetition_stats_are_the_same_with_and_without_kernels(texts, monkeypatch) -> None:
    from datamill.ops.quality import GopherRepetitionStats

    table = pa.table({"text": texts})
    fast = GopherRepetitionStats().process(table)
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = GopherRepetitionStats().process(table)
    assert sorted(fast) == sorted(slow)
    for name in slow:
        np.testing.assert_array_equal(np.asarray(fast[name]), np.asarray(slow[name]),
                                      err_msg=name)


def test_token_features_are_the_same_with_and_without_kernels(texts, monkeypatch) -> None:
    from datamill.ops.quality.tokenize import FIELDS

    sample = texts + ["naïve café Привет 東京。 \U0001F600 don't gonna e.g. a... 5km", "ﬁ" * 9]
    fast = featurize(sample)
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = featurize(sample)
    np.testing.assert_array_equal(fast.offsets, slow.offsets)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


def test_tokenizer_rules_equal_the_numpy_twin_on_random_texts(monkeypatch) -> None:
    """Random mixes of the characters and words the rules look at, a batch at a time."""
    from datamill.ops.quality.tokenize import FIELDS

    built = kernels.library
    rng = random.Random(11)
    for _ in range(600):
        texts = _random_texts(rng)
        monkeypatch.setattr(kernels, "library", built)
        fast = featurize(texts)
        monkeypatch.setattr(kernels, "library", lambda: None)
        slow = featurize(texts)
        assert fast.offsets.tolist() == slow.offsets.tolist(), texts
        for name in FIELDS:
            assert getattr(fast, name).tolist() == getattr(slow, name).tolist(), (name, texts)


@pytest.mark.parametrize("text", [".", "'", "w.", "..", "a.", ""])
def test_a_batch_of_one_tiny_text(text, monkeypatch) -> None:
    fast = featurize([text])
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = featurize([text])  # (read before the text's start: a batch of "." crashed)
    assert fast.hash.tolist() == slow.hash.tolist()
    assert fast.length.tolist() == slow.length.tolist() == [len(text)] * (len(text) > 0)
