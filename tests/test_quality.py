"""Quality ops: stat columns, threshold filters and their reasons, C4 cleaning, bad words, the
fast tokenizer, and bad input (empty, junk, a 50 MB document)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import datamill as dm
from datamill.errors import ArgumentError
from datamill.ops.quality import apply_quality_filters
from datamill.ops.quality.c4 import DATA, load_badwords
from datamill.ops.quality.tokenize import SpacyTokenizer, featurize, sentence_counts

from .conftest import write_jsonl

PROSE = ("The committee met on Monday to review the proposal, and it agreed that the plan "
         "should go ahead with a few changes. Members of the public were invited to comment "
         "on the draft before the end of the month. The final version will be published "
         "next week, along with a summary of the responses that have been received. Most of "
         "the comments were positive, although some residents raised concerns about traffic "
         "and the cost of the work. The council said it would study those points carefully.")
LIST = "\n".join("- the important announcement of the day" for i in range(60))
SPAM = "\n".join(["The best way to save money is to buy the watches that we have."] * 20)
CODE = "def f(x):\n    return {x: x + 1 for x in range(10)}\n" * 5


def _run(tmp_path, rows, build, name="w"):
    path = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    ds = build(dm.Dataset.read(path, schema={"id": "int64", "text": "string"}))
    out = ds.collect(tmp_path / name, workers=1, progress=False)
    dropped = dm.dropped_rows(tmp_path / name)
    return ds, out, dropped


def test_gopher_quality_stats_are_typed_columns(tmp_path):
    rows = [{"id": 0, "text": PROSE}, {"id": 1, "text": "Hi... #tag #two ..."}]
    ds, out, _ = _run(tmp_path, rows, lambda d: d.apply("gopher_quality_stats", prefix="q_"))
    schema = ds.schema
    assert schema["q_words"] == "int64" and schema["q_mean_word_length"] == "float64"
    assert out["q_words"][0].as_py() > 80 and out["q_stop_words"][0].as_py() >= 4
    # "Hi ... # tag # two ...": 7 tokens, 2 hashes, 2 ellipses, 3 non-symbol words
    assert out["q_words"][1].as_py() == 7
    assert out["q_non_symbol_words"][1].as_py() == 3
    assert out["q_hash_ratio"][1].as_py() == pytest.approx(2 / 7)
    assert out["q_ellipsis_lines_ratio"][1].as_py() == 1.0
    assert out["q_mean_word_length"][1].as_py() == pytest.approx((2 + 3 + 3) / 3)


def test_filters_name_the_rule_and_read_the_stat_columns(tmp_path):
    rows = [{"id": 0, "text": PROSE}, {"id": 1, "text": "too short"},
            {"id": 2, "text": LIST}, {"id": 3, "text": SPAM}, {"id": 4, "text": ""}]

    def build(d):
        d = d.apply("gopher_quality_stats").apply("gopher_quality_filter", min_doc_words=20)
        return d.apply("gopher_repetition_stats").apply("gopher_repetition_filter")

    ds, out, dropped = _run(tmp_path, rows, build)
    assert out["id"].to_pylist() == [0]
    reasons = dict(zip(dropped["_id"].to_pylist(), dropped["_reason"].to_pylist()))
    by_text = {r["id"]: reasons[i] for i, r in zip(sorted(reasons), rows[1:])}
    assert by_text[1] == "gopher_quality:too_few_words"
    assert by_text[2] == "gopher_quality:bullet_lines"
    assert by_text[3].startswith("gopher_repetition:dup_")
    assert by_text[4] == "gopher_quality:too_few_words"
    # the filter consumed the stat columns, not the text
    assert "gopher_words" in ds.step.parent.parent.consumed


def test_filter_computes_stats_itself_when_columns_are_missing(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate([PROSE, LIST, SPAM, CODE, "x"])]
    _, direct, _ = _run(tmp_path, rows, lambda d: d.apply("gopher_quality_filter")
                        .apply("fineweb_filter").apply("c4_filter"), name="a")
    _, staged, _ = _run(tmp_path, rows, lambda d: d.apply("gopher_quality_stats")
                        .apply("gopher_quality_filter").apply("fineweb_stats")
                        .apply("fineweb_filter").apply("c4_stats").apply("c4_filter"), name="b")
    assert direct["id"].to_pylist() == staged["id"].to_pylist() == [0]


def test_changing_a_threshold_reuses_the_stats(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": PROSE}, {"text": LIST}])

    def pipeline(limit):
        return (dm.Dataset.read(path).apply("gopher_quality_stats")
                .apply("gopher_quality_filter", max_bullet_lines_ratio=limit, min_doc_words=5))

    first = pipeline(0.9).run(tmp_path / "w", workers=1, progress=False)
    second = pipeline(1.0).run(tmp_path / "w", workers=1, progress=False)
    cached = {s["name"]: s["cached"] for s in second.steps}
    assert cached["gopher_quality_stats"] and not cached["gopher_quality_filter"]
    rows = {s["name"]: s["rows_out"] for s in first.steps}, {s["name"]: s["rows_out"]
                                                             for s in second.steps}
    assert rows[0]["gopher_quality_filter"] == 1 and rows[1]["gopher_quality_filter"] == 2


def test_c4_cleans_lines_in_place_and_counts_sentences(tmp_path):
    text = ("Click here\nThe first line is fine and ends well. It has two sentences.\n"
            "This website uses cookies to work.\nPlease enable javascript to continue.\n"
            "A line without an end\nA cited claim is here.[1]\nShort one.\n"
            "Three more words. And more. Then done!")
    rows = [{"id": 0, "text": text}, {"id": 1, "text": "Lorem ipsum dolor sit amet, ok."}]
    ds, out, dropped = _run(tmp_path, rows, lambda d: d.apply("c4_stats", clean=True)
                            .apply("c4_filter", min_num_sentences=5))
    assert ds.lineage()["text"] == "c4_stats"
    assert out["text"].to_pylist() == [
        "The first line is fine and ends well. It has two sentences.\nA cited claim is here."
        "\nThree more words. And more. Then done!"]
    assert out["c4_sentences"].to_pylist() == [6] and out["c4_lines_kept"].to_pylist() == [3]
    assert dropped["_reason"].to_pylist() == ["c4:lorem_ipsum"]


def test_badwords_shipped_list_user_list_and_keep_fraction(tmp_path):
    words = load_badwords("en")
    assert len(words) > 350 and "porn" in words
    assert (DATA / "README.md").read_text().count("CC-BY-4.0") >= 1
    rows = [{"id": 0, "text": "A clean sentence about gardens."},
            {"id": 1, "text": "Free PORN here"}, {"id": 2, "text": "pornography"},
            {"id": 3, "text": "the word xylophone"}, {"id": 4, "text": "Sussex county"}]
    _, out, dropped = _run(tmp_path, rows, lambda d: d.apply("c4_badwords_stats")
                           .apply("c4_badwords_filter"), name="en")
    assert out["id"].to_pylist() == [0, 3, 4]  # words match whole, not inside "Sussex"
    assert set(dropped["_reason"].to_pylist()) == {"c4:badwords"}
    mine = tmp_path / "mine.txt"
    mine.write_text("xylophone\n# a comment\n", encoding="utf-8")
    _, out, _ = _run(tmp_path, rows, lambda d: d.apply("c4_badwords_filter",
                                                       words_file=str(mine)), name="mine")
    assert out["id"].to_pylist() == [0, 1, 2, 4]
    _, out, _ = _run(tmp_path, rows, lambda d: d.apply("c4_badwords_filter",
                                                       keep_fraction=1.0), name="all")
    assert out.num_rows == 5


def test_arguments_are_validated(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": PROSE}])
    with pytest.raises(ArgumentError, match="tokenizer"):
        dm.Dataset.read(path).apply("gopher_quality_stats", tokenizer="nltk")
    with pytest.raises(ArgumentError, match="did you mean 'min_doc_words'"):
        dm.Dataset.read(path).apply("gopher_quality_filter", min_doc_word=3)
    with pytest.raises(ArgumentError, match="no bad-words list shipped"):
        dm.Dataset.read(path).apply("c4_badwords_filter", language="xx")


FAST_CASES = [
    "Hello, world! It's a test... Don't stop (really) -- ok?!",
    "e.g. U.S. Mr. Smith's 3.14 1,000 $5.00 well-known 10-20 end.Next a/b foo@bar.com",
    "Visit https://example.com/a?b=1, or www.example.org.",
    "isn't cannot he's John's James' it's that's let's 5km 5min 1990s 3rd COVID-19",
    "“Hello,” she said. (see [1]); 'quote'. «Oui» wait...what ..hm ?!? !!!",
    "foo_bar __init__ self.x = y[0] + f(z); naïve café Привет, мир! 東京。",
    # a single letter or an abbreviation before an ellipsis: the dots stay together
    "Plan a... then b.. or c.... and i.e... also Mr... a. b. e.g. Dr. x...y z...",
]


@pytest.mark.parametrize("text", FAST_CASES)
def test_fast_tokenizer_matches_spacy_on_common_text(text):
    fast = featurize([text])
    ref = featurize([" ".join(SpacyTokenizer().words(text))], rules=False)
    assert fast.hash.tolist() == ref.hash.tolist()
    assert sentence_counts(fast).tolist() == SpacyTokenizer().sentence_counts([text]).tolist()


def test_bad_input_empty_whitespace_junk_and_nulls(tmp_path):
    junk = bytes(range(256)).decode("latin-1") * 8
    rows = [{"id": 0, "text": ""}, {"id": 1, "text": "   \n\t \n"}, {"id": 2, "text": junk},
            {"id": 3, "text": None}, {"id": 4, "text": "\x00\ufffd\U0001f600" * 50},
            {"id": 5, "text": PROSE}]
    _, out, dropped = _run(tmp_path, rows, lambda d: apply_quality_filters(d))
    assert out["id"].to_pylist() == [5] or out.num_rows == 0
    assert len(dropped) == 5 + (1 - out.num_rows)
    _, stats, _ = _run(tmp_path, rows, lambda d: d.apply("gopher_quality_stats")
                       .apply("gopher_repetition_stats").apply("fineweb_stats")
                       .apply("c4_stats"), name="s")
    assert stats["gopher_words"].to_pylist()[:2] == [0, 0]
    assert math.isnan(stats["gopher_dup_para_frac"][0].as_py())
    assert stats["fineweb_lines"].to_pylist()[:2] == [0, 0]


def test_a_50mb_document_finishes_in_bounded_memory(tmp_path):
    import resource

    from datamill.ops.quality import (
        C4Stats,
        FineWebStats,
        GopherQualityStats,
        GopherRepetitionStats,
    )

    # 50 MB of long junk words (a base64-like blob) with some lines and sentences
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/",
                            dtype=np.uint8)
    raw = letters[rng.integers(0, len(letters), 50_000_000)]
    raw[rng.integers(0, len(raw), 800_000)] = ord(" ")
    raw[rng.integers(0, len(raw), 100_000)] = ord("\n")
    raw[rng.integers(0, len(raw), 100_000)] = ord(".")
    text = raw.tobytes().decode("ascii")
    column = pa.array([text, "short doc."])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for op in (GopherQualityStats(), GopherRepetitionStats(), C4Stats(), FineWebStats()):
        stats = op.compute(column)
        assert all(len(v) == 2 for v in stats.values())
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mb < 3000, grew_mb


def test_docs_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "quality.md").read_text()
    block = re.findall(r"```python\n(.*?)```", doc, flags=re.S)[0]
    write_jsonl(tmp_path / "docs" / "a.jsonl", [{"text": PROSE}, {"text": LIST}])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "docs/quality.md", "exec"), namespace)  # noqa: S102
    out = namespace["ds"].collect(tmp_path / "w", workers=1, progress=False)
    assert out.num_rows == 0 or "fineweb_list_ratio" in out.column_names
    assert "gopher_mean_word_length" in namespace["ds"].schema


# --- the vectorized fast paths agree with plain Python definitions ----------------------------
EDGE_TEXTS = [
    "", "  ", "a", "x y x y x y x y x y x y x y z", "a b c a b c a b c a b c d e a b c",
    "\n\nSame para.\n\nSame para.\n\nOther.\n\n", "l1\nl2\nl1\n\n\nl1", "é\nè\né\u2028é",
    "Mr. Smith went home.[1] It was 5km away!\r\nHe said: don't go.\r\n  Indented line is kept. "
    "Really.\n",
    "We walked [edit] far. We walked far. We walked far.\nWe walked far. We walked far now.\n",
]


def _corpus_texts() -> list[str]:
    from .quality_corpus import generate

    return generate(300, seed=11) + EDGE_TEXTS + [SPAM, LIST, PROSE + "\n" + PROSE]


def _words(texts: list[str]) -> list[list[str]]:
    tok = featurize(texts)
    return [[t[s:s + n] for s, n in zip(tok.start[tok.offsets[d]:tok.offsets[d + 1]].tolist(),
                                        tok.length[tok.offsets[d]:tok.offsets[d + 1]].tolist())]
            for d, t in enumerate(texts)]


def test_token_starts_locate_the_tokens():
    texts = _corpus_texts()
    tok = featurize(texts)
    words = [w for doc in _words(texts) for w in doc]
    assert featurize([" ".join(words)], rules=False).hash.tolist() == tok.hash.tolist()


def test_ngram_repetition_matches_the_reference_scan():
    from collections import Counter

    from datamill.ops.quality.gopher import ngram_repetition

    texts = _corpus_texts()
    top, dup = ngram_repetition(featurize(texts), [2, 3, 4], [5, 6, 7, 8, 9, 10])
    for d, words in enumerate(_words(texts)):
        for n in (2, 3, 4):
            grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            best = max(Counter(grams).items(), key=lambda kv: kv[1]) if grams else None
            want = best[1] * (sum(map(len, best[0])) + n - 1) if best else 0
            assert top[n][d] == want, (d, n)
        for n in range(5, 11):  # datatrove's scan: a repeat counts and skips n positions
            seen, i, want = set(), 0, 0
            while i < len(words) - n + 1:
                gram = tuple(words[i:i + n])
                if gram in seen:
                    want += sum(map(len, gram))
                    i += n
                else:
                    seen.add(gram)
                    i += 1
            assert dup[n][d] == want, (d, n)


def test_line_and_paragraph_duplicates_match_python():
    import random
    import re

    from datamill.ops.quality import GopherRepetitionStats

    rng = random.Random(2)  # runs of newlines anywhere, spaces around them, other scripts
    pieces = ["\n", "\n\n", "\n\n\n", " ", "\u3000", "a", "b", "é", "ab", "x y", "…", "\r\n"]
    texts = _corpus_texts() + ["", "\n", "\n\n", "\na\n", "a\n\n\nb\n\na\n\n\nb"] + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    got = GopherRepetitionStats().stats(texts)
    for d, text in enumerate(texts):
        for kind, parts in (("para", re.split(r"\n{2,}", text.strip())),
                            ("line", re.split(r"\n+", text))):
            seen: set = set()
            dup = chars = 0
            for part in parts:
                if part in seen:
                    dup, chars = dup + 1, chars + len(part)
                seen.add(part)
            if not text:
                assert math.isnan(got[f"dup_{kind}_frac"][d])
                continue
            assert got[f"dup_{kind}_frac"][d] == pytest.approx(dup / len(parts))
            assert got[f"dup_{kind}_char_frac"][d] == pytest.approx(chars / len(text))


def test_c4_takes_line_tokens_from_the_documents_tokens():
    from datamill.ops.quality import C4Stats, tokenize

    texts = _corpus_texts()
    op = C4Stats(clean=True)
    tokenize._CACHE.clear()
    alone = op.stats(texts)  # kept lines tokenized on their own
    tokenize.features_of(texts, "fast")
    assert tokenize.cached_features(texts, "fast") is not None
    reused = op.stats(texts)  # kept lines' tokens taken from the cached document tokens
    tokenize._CACHE.clear()
    for key in alone:
        assert alone[key].tolist() == reused[key].tolist(), key


_SPACES = "\t\x1f \xa0\u1680\u2000\u2005\u200a\u202f\u205f\u3000"


def test_later_steps_reuse_tokens_of_any_subset_of_the_batch(monkeypatch):
    from datamill.ops.quality import tokenize

    texts = _corpus_texts()
    fresh = featurize(texts)
    tokenize._CACHE.clear()
    monkeypatch.setattr(tokenize, "CACHE_CHARS", 10**9)
    for lo in range(0, len(texts), 50):  # a first step tokenizes the batch in slices
        tokenize.features_of(texts[lo:lo + 50], "fast")
    picked = [i for i in range(len(texts)) if i % 3 != 1][::-1][:200]  # across the slices
    calls = []
    monkeypatch.setattr(tokenize.FastTokenizer, "features", lambda self, t: calls.append(t))
    got = tokenize.features_of([texts[i].encode().decode() for i in picked], "fast")
    want = fresh.take(np.array(picked))
    tokenize._CACHE.clear()
    assert not calls  # nothing tokenized again
    assert got.offsets.tolist() == want.offsets.tolist()
    for field in tokenize.FIELDS:
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field


def test_chunked_grouping_numbers_groups_as_one_table():
    from datamill.ops.quality import gopher

    rng = np.random.default_rng(4)
    doc = np.sort(rng.integers(0, 400, 60_000))
    keys = rng.integers(0, 50, len(doc)).astype(np.uint64) * np.uint64(1 << 20) + doc.astype(
        np.uint64)  # equal keys only within a document
    assert gopher._factorize(keys, doc).tolist() == gopher._factorize(keys).tolist()


def test_bullet_and_ellipsis_lines_counted_over_bytes_match_python():
    import random

    from datamill.ops.quality import GopherQualityStats

    rng = random.Random(5)
    alphabet = [*_SPACES, "\n", "\n", "-", "•", ".", "...", "…", "a", "é", "“", "\u200b", "#",
                "\r", "\u2028", "\x85"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
             for _ in range(3000)]
    texts += [" " * 9 + "- deep\nend...   \t   \t  ", "\u3000" * 6 + "•\n…" + "\xa0" * 7]
    got = GopherQualityStats().stats(texts)
    exotic = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    for d, text in enumerate(texts):
        lines = text.splitlines()
        if any(c in text for c in exotic):  # counted by Python's own rules
            bullets = sum(s.lstrip().startswith(("•", "-")) for s in lines)
            dots = sum(s.rstrip().endswith(("...", "…")) for s in lines)
        else:
            bullets = sum(s.lstrip(_SPACES).startswith(("•", "-")) for s in lines)
            dots = sum(s.rstrip(_SPACES).endswith(("...", "…")) for s in lines)
        if not lines:
            assert math.isnan(got["bullet_lines_ratio"][d])
            continue
        assert got["bullet_lines_ratio"][d] == bullets / len(lines), repr(text)
        assert got["ellipsis_lines_ratio"][d] == dots / len(lines), repr(text)


def test_c4_phrase_rules_see_citations_cut_and_any_case():
    from datamill.ops.quality import C4Stats

    texts = ["Enable Java[1]Script to see this page now.\nA normal line of text here.",
             "We use \u212aookies... no. Our COOKIE POLICY is here for you.\nKept line is here.",
             "Lorem [edit]ipsum dolor sit amet.\nOther words are here too.",
             "No phrase at all in this line.\nNor in this one at all."]
    got = C4Stats().stats(texts)
    assert got["lines_kept"].tolist() == [1, 1, 2, 2]
    assert got["lorem_ipsum"].tolist() == [False, False, True, False]  # "Lorem ipsum" once cut


def test_special_words_split_everywhere_in_a_batch():
    texts = ["I dont know, gonna go.", "", "Cannot stop; wont stop. dont"] * 400
    words = _words(texts)
    assert words[0] == ["I", "do", "nt", "know", ",", "gon", "na", "go", "."]
    assert words[1] == []
    assert words[2] == ["Can", "not", "stop", ";", "wo", "nt", "stop", ".", "do", "nt"]
    assert words == [words[0], words[1], words[2]] * 400


def test_token_flags_look_past_the_first_character():
    texts = ["#tag 5km ... 12 --a «» (x) '' é."]
    tok = featurize(texts)
    words = _words(texts)[0]
    flags = {w: (a, s, p) for w, a, s, p in zip(words, tok.alpha.tolist(), tok.symbol.tolist(),
                                                tok.punct.tolist())}
    assert flags["#"] == (False, True, True)
    assert flags["tag"] == (True, False, False)
    assert flags["5"] == (False, False, False)
    assert flags["..."] == (False, True, True)
    assert flags["«"] == (False, True, True)
    assert flags["x"] == (True, False, False)
    assert flags["--a"] == (True, False, False)  # a letter after punctuation
    assert flags["''"] == (False, True, True)


def test_quality_pass_tokenizes_each_batch_once_in_bounded_memory(tmp_path, monkeypatch):
    """The whole quality chain: every stats op gets batches of about its `batch_bytes` of
    text (smaller than the pass's), the token cache never holds more than CACHE_CHARS, and
    yet each document is tokenized once (the later stats steps of a batch find its tokens
    cached)."""
    from datamill.executors import rowwise
    from datamill.ops.quality import tokenize
    from datamill.ops.quality._base import StatsOperation

    from .quality_corpus import generate

    texts = generate(1500, seed=3)
    path = write_jsonl(tmp_path / "docs.jsonl",
                       [{"id": i, "text": t} for i, t in enumerate(texts)])
    tokenized, held, batches = [], [], []
    features = tokenize.FastTokenizer.features
    add = tokenize._TokenCache.add
    process = StatsOperation.process

    def counting_features(self, batch):
        tokenized.append(sum(map(len, batch)))
        return features(self, batch)

    def counting_add(self, *args):
        add(self, *args)
        held.append(self.size)

    def counting_process(self, batch):
        batches.append((type(self).__name__, batch.nbytes))
        return process(self, batch)

    monkeypatch.setattr(tokenize.FastTokenizer, "features", counting_features)
    monkeypatch.setattr(tokenize._TokenCache, "add", counting_add)
    monkeypatch.setattr(StatsOperation, "process", counting_process)
    tokenize._CACHE.clear()
    ds = apply_quality_filters(dm.Dataset.read(path, schema={"id": "int64", "text": "string"}))
    ds.collect(tmp_path / "w", columns=["id"], workers=1, progress=False)
    tokenize._CACHE.clear()
    budget = StatsOperation.batch_bytes
    assert budget < rowwise.BATCH_BYTES
    longest = max(len(t.encode()) for t in texts)
    first = [b for name, b in batches if name == "GopherQualityStats"]
    assert len(first) >= sum(len(t.encode()) for t in texts) // budget
    assert max(b for _, b in batches) <= budget + longest + 64  # budget + at most one row
    assert 0 < max(held) <= tokenize.CACHE_CHARS
    assert sum(tokenized) == sum(map(len, texts))  # every document tokenized exactly once
