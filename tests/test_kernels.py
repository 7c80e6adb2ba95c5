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


C4_EDGES = [
    "", "\n", "\n\n\n", "a b c.\r\nd e f.\r\n", "a b c.\rd e f.\r", "x y z.\x0bq r s.\x0c",
    "one two three.\x1cfour five six.\x1d\x1e",
    "one two three.\x85four five six.\u2028seven eight nine.\u2029",
    "\tone two three.\t\n\u00a0four five six.\u00a0", "\u3000one\u2003two three.\u3000",
    "...\n!!!\n. . .\n\"'\n?",
    "see this here [1].\nand this [edit] one.\n[citation needed] a b c.\n",
    "word " + "x" * 1001 + " end.\nok ok ok.",
    "Please enable JavaScript to see it.\nThis site uses cookies.\nRead our Privacy Policy today.",
    "Lorem ipsum dolor sit amet.\nA line { with curly.\nLOREM IPSUM DOLOR.",
    "a { b c javascript.\nx { y cookie policy z.",
    "coo\u212aie policy is here.", "JAVASCR\u0130PT is here ok.", "a b c...\nd e f..\n",
    "a b c]\n[1] x y z.\n x y z. [2]\n", "java[1]script here now.", "\x1fa b c.\x1f",
    "a b\u2028c.", "a\u00a0b\u00a0c.", "\U0001F600 \U0001F600 x.", "word\u200bword word.",
    "x y z.\r\n", "x y z.\x85", "a\r\n\r\nb c d.", "fine line here.\n" * 3,
    "é è ê.\nПривет мир вот.\n東京 東京 東京。\n", "a [\u0661\u0662] b c.",
    "[1]\n[edit].\n  [2] a b c."]
C4_PIECES = ["a", "b", "cd", " ", "  ", "\t", "\n", "\r", "\r\n", ".", "...", "!", "?", "'", '"',
             "[", "]", "[1]", "[edit]", "{", "\u00a0", "\u2028", "\x85", "\x0b", "\x1c", "\x1f",
             "lorem ipsum", "javascript", "Cookie Policy", "\u212a", "\u0130", "é", "東京",
             "x" * 12, "\u3000", "use cookies", "Terms of Use"]
C4_ARGS = [{}, {"clean": True}, {"clean": True, "max_word_length": 10, "min_words_per_line": 2},
           {"filter_no_terminal_punct": False, "min_words_per_line": -1,
            "remove_citations": False},
           {"clean": True, "filter_javascript": False, "filter_policy": False,
            "max_word_length": 0},
           {"clean": True, "filter_no_terminal_punct": False, "min_words_per_line": 0}]


def _c4(texts: list[str], args: dict, cached: bool) -> dict:
    from datamill.ops.quality import C4Stats, GopherQualityStats, tokenize

    table = pa.table({"text": texts})
    tokenize._CACHE.clear()
    if cached:  # the documents' tokens at hand, as after the Gopher ops of the chain
        GopherQualityStats().process(table)
    out = C4Stats(**args).process(table)
    return {k: np.asarray(v).tolist() for k, v in out.items()}


@pytest.mark.parametrize("args", C4_ARGS)
def test_c4_line_rules_are_the_same_with_and_without_kernels(texts, args, monkeypatch) -> None:
    sample = texts + C4_EDGES
    for cached in (False, True):
        fast = _c4(sample, args, cached)
        monkeypatch.setattr(kernels, "library", lambda: None)
        slow = _c4(sample, args, cached)
        monkeypatch.undo()
        assert fast == slow
    if args.get("max_word_length") != 0:  # (0: no line with a word is kept)
        assert any(slow["c4_lorem_ipsum"]) and any(slow["c4_curly_bracket"])
        assert max(slow["c4_lines_kept"]) > 0


def test_c4_line_rules_equal_the_python_loop_on_random_texts(monkeypatch) -> None:
    rng = random.Random(5)
    sample = ["".join(rng.choice(C4_PIECES) for _ in range(rng.randint(0, 40)))
              for _ in range(1500)]
    for args in C4_ARGS:
        fast = _c4(sample, args, True)
        monkeypatch.setattr(kernels, "library", lambda: None)
        slow = _c4(sample, args, True)
        monkeypatch.undo()
        assert fast == slow, args


def test_c4_python_rules_follow_splitlines_and_strip() -> None:
    """The twin itself, on the edge cases: lines as str.splitlines() cuts them, stripped as
    str.strip() does, kept by the C4 rules."""
    from datamill.ops.quality.c4 import C4StatsArgs
    from datamill.ops.quality.c4_lines import python_rules

    got = python_rules(C4_EDGES, None, C4StatsArgs())
    assert got.n_lines.tolist() == [len(t.splitlines()) for t in C4_EDGES]
    kept = {(C4_EDGES[d], line) for d, line in zip(got.doc.tolist(), got.lines())}
    assert ("a b c.\r\nd e f.\r\n", "d e f.") in kept
    assert ("one two three.\x85four five six.\u2028seven eight nine.\u2029",
            "seven eight nine.") in kept
    assert ("\u3000one\u2003two three.\u3000", "one\u2003two three.") in kept
    assert ("see this here [1].\nand this [edit] one.\n[citation needed] a b c.\n",
            "see this here .") in kept
    assert not any("javascript" in line.lower() or "cookies" in line for _, line in kept)
    assert not any(line.endswith("...") for _, line in kept)
    assert ("a b c...\nd e f..\n", "d e f..") in kept
    lorem = {C4_EDGES[i] for i in np.flatnonzero(got.lorem)}
    assert lorem == {C4_EDGES[14]}
    # the '{' of a line dropped for a policy phrase counts (datatrove's order), not after
    # a javascript one
    assert got.curly[15] and got.curly[14]


FINEWEB_EDGES = ["", "\n", "a", " \n\t\n\u3000\n", "x.\nx.\nx.\n", "dup line\r\ndup line\r\n",
                 "end。\nend!\nend\u2049\nend\U00011047\nend \nend.\u00a0",
                 "é" * 40 + "\n" + "é" * 20,
                 "same\n same\nsame \nsame\n", "\x85\n\u2028\nq\x1cq\n", "a\n\n\nb\n\n\nb"]


@pytest.mark.parametrize("args", [{}, {"stop_chars": ".x\u00e9", "short_line_length": 3}])
def test_fineweb_line_counts_are_the_same_with_and_without_kernels(texts, args,
                                                                   monkeypatch) -> None:
    from datamill.ops.quality import FineWebStats

    rng = random.Random(9)
    pieces = ["a", "b", ".", "!", "。", " ", "\t", "\n", "\n\n", "\r\n", "\u00a0", "\u3000",
              "x" * 31, "dup.\n", "é", "\x85"]
    sample = texts + C4_EDGES + FINEWEB_EDGES + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(1000)]
    table = pa.table({"text": sample})
    fast = FineWebStats(**args).process(table)
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = FineWebStats(**args).process(table)
    for name in slow:
        np.testing.assert_array_equal(np.asarray(fast[name]), np.asarray(slow[name]),
                                      err_msg=name)
    assert (slow["fineweb_char_dup_ratio"] > 0).any()


def test_gopher_quality_line_counts_are_the_same_with_and_without_kernels(texts,
                                                                          monkeypatch) -> None:
    from datamill.ops.quality import GopherQualityStats

    rng = random.Random(13)
    pieces = ["a", "b", "#", ".", "..", "...", "…", "-", "•", " ", "\t", "\x1f", "\u00a0",
              "\u2003", "\u3000", "\u202f", "\n", "\n\n", "\r\n", "\x85", "\u2028", "\x0b",
              " " * 9, "\u00a0" * 5, "- item", "• item", "end...", "end…"]
    sample = texts + C4_EDGES + FINEWEB_EDGES + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    table = pa.table({"text": sample})
    fast = GopherQualityStats().process(table)
    monkeypatch.setattr(kernels, "library", lambda: None)
    slow = GopherQualityStats().process(table)
    for name in slow:
        np.testing.assert_array_equal(np.asarray(fast[name]), np.asarray(slow[name]),
                                      err_msg=name)
    assert (slow["gopher_bullet_lines_ratio"] > 0).any()
    assert (slow["gopher_ellipsis_lines_ratio"] > 0).any()


def test_a_library_built_from_older_sources_warns_and_falls_back(monkeypatch) -> None:
    class Old:  # a build without the newer kernels
        ngram_repetition = part_duplicates = token_hashes = token_bits = rule_starts = \
            type("Fn", (), {})()

    monkeypatch.setattr(kernels.ctypes, "CDLL", lambda path: Old())
    kernels.library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="older _kernels.c"):
            assert kernels.library() is None
    finally:
        kernels.library.cache_clear()


def test_letter_check_equals_the_numpy_twin(texts, monkeypatch) -> None:
    from datamill.ops import langid_backends

    rng = random.Random(3)
    odd = ["", None, "12345 678", "\x00\x01\x02abc", "\ufffd\ufffd\ufffdab", "\ue000" * 5 + "a",
           "😀 emoji and words 😀", "𝐀𝐁𝐂 math letters", "\U000f0000" * 3 + "abc",
           "a" * 3000, "1" * 1999 + "a" + "b" * 50, "é" * 700 + "1" * 1400, " \t\n ",
           "東京都" * 800, "Привет, мир! " * 200]
    column = pa.array(texts + odd + ["".join(t) for t in
                                     (_random_texts(rng) for _ in range(300))])
    for max_chars, min_letters in ((2000, 0.3), (7, 0.5), (1, 0.3)):
        fast = langid_backends.undetermined_column(column, max_chars, min_letters)
        want = langid_backends.undetermined(
            pc.utf8_slice_codeunits(column, 0, max_chars).to_pylist(), min_letters)
        assert fast.tolist() == want, (max_chars, min_letters)
        monkeypatch.setattr(kernels, "library", lambda: None)
        slow = langid_backends.undetermined_column(column, max_chars, min_letters)
        monkeypatch.undo()
        assert slow.tolist() == want
    assert 0 < sum(want) < len(want)


def test_minhash_signatures_equal_the_numpy_path(texts) -> None:
    """The C signatures equal minhash's numpy path, also on every whitespace and
    punctuation character Arrow's split and trim know, long tokens (BLAKE2b: the numpy
    path's), nulls, empty and short documents, for several n-gram sizes and seeds."""
    from datamill.ops import minhash

    rng = random.Random(3)
    spaces = [" ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000",
              "\u200a", "\u2028", "\u202f", "\u205f", "\u3000", "\u200b", "\x80"]
    pieces = [*spaces, *minhash.PUNCTUATION, "word", "İstanbul", "ÉCOLE", "x" * 70,
              "é" * 40, "\U0001F600" * 20, "a", "\u0301", "ß"]
    mixed = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
             for _ in range(2000)]
    column = pa.array(texts + mixed + [None, "", "   ", "...", "a b c d", "a b c d e"])
    for ngram, bands, rows, seed in ((5, 14, 8, 1), (1, 4, 3, 7), (3, 5, 5, 2)):
        op = minhash.MinHashDedup(ngram=ngram, bands=bands, rows_per_band=rows, seed=seed)
        sig, signed = op.signatures(column)
        want_sig, want_signed = op.vector_signatures(column)
        np.testing.assert_array_equal(signed, want_signed)
        np.testing.assert_array_equal(sig, want_sig, err_msg=f"ngram={ngram}")
    assert len(signed) < len(column)  # documents without tokens are not signed
