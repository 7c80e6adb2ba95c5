"""detect_language and language_filter: accuracy on real multilingual prose (passages of
Debian's translated manual pages, committed under tests/data/langid/), the filter's reasons,
and bad input."""

from __future__ import annotations

import json
import random
import re
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

import datamill as dm
from datamill.errors import ArgumentError, PipelineError
from datamill.ops.langid import DetectLanguage, LanguageFilter

from .conftest import write_jsonl

SAMPLE = Path(__file__).parent / "data" / "langid" / "debian_manpages.jsonl"


def _passages() -> list[dict]:
    assert SAMPLE.exists(), (
        f"{SAMPLE} is missing: regenerate it with `python benchmarks/langid_accuracy.py "
        f"--per-language 25 --write-sample {SAMPLE}` (needs the Debian manpages-* packages)")
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def _accuracy(rows: list[dict], predicted: list[str]) -> tuple[float, dict[str, float]]:
    hits, totals = Counter(), Counter()
    for r, p in zip(rows, predicted):
        totals[r["lang"]] += 1
        hits[r["lang"]] += p == r["lang"]
    return sum(hits.values()) / len(rows), {k: hits[k] / totals[k] for k in totals}


def test_sample_is_real_multilingual_prose():
    rows = _passages()
    counts = Counter(r["lang"] for r in rows)
    assert len(counts) >= 12 and min(counts.values()) >= 20, counts
    assert all(len(r["text"]) >= 100 and r["package"] for r in rows)


def test_default_backend_is_95_percent_accurate_in_a_pipeline(tmp_path):
    rows = _passages()
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": r["text"], "lang": r["lang"]}
                                               for r in rows])
    out = dm.Dataset.read(path).apply("detect_language").collect(
        tmp_path / "w", workers=1, progress=False)
    assert out.schema.field("language_score").type == pa.float32()
    overall, per_language = _accuracy(rows, out["language"].to_pylist())
    assert overall >= 0.95, per_language
    assert min(per_language.values()) >= 0.85, per_language
    scores = out["language_score"].to_pylist()
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_lingua_backend_is_95_percent_accurate():
    rows = random.Random(0).sample(_passages(), 150)
    op = DetectLanguage(backend="lingua_low")
    op.setup()
    out = op.process(pa.table({"text": [r["text"] for r in rows]}))
    overall, per_language = _accuracy(rows, out["language"].to_pylist())
    assert overall >= 0.95, per_language


def test_language_filter_reasons_and_threshold_tuning(tmp_path):
    rows = [r for r in _passages() if r["lang"] in ("de", "fr", "en")]
    docs = [{"text": r["text"], "lang": r["lang"]} for r in rows]
    docs += [{"text": "", "lang": "und"}, {"text": None, "lang": "und"},
             {"text": "Bonjour", "lang": "fr"}]  # too short to be sure of
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    base = dm.Dataset.read(path, schema={"text": "string", "lang": "string"}).apply(
        "detect_language")
    strict = base.apply("language_filter", languages=["de", "FR"], min_score=0.9)
    result = strict.run(tmp_path / "w", workers=1, progress=False)
    kept = strict.collect(tmp_path / "w")
    assert set(kept["lang"].to_pylist()) == {"de", "fr"}
    assert min(kept["language_score"].to_pylist()) >= 0.9
    dropped = result.step("language_filter")["dropped"]
    assert dropped["wrong_language"] >= 25 + 2  # the English passages, empty and null
    assert dropped.get("low_language_score", 0) >= 1  # "Bonjour"
    # a looser threshold reruns only the filter: the detection is cached
    loose = base.apply("language_filter", languages=["de", "fr"], min_score=0.0)
    again = loose.run(tmp_path / "w", workers=1, progress=False)
    assert base._step.key in again.cached
    assert "low_language_score" not in again.step("language_filter")["dropped"]


def test_empty_whitespace_null_and_junk_are_undetermined():
    rng = random.Random(1)
    junk = [
        "",
        "   \n\t  ",
        None,
        "\x00\x01\x02\x03\x04\x05" * 50,
        "\ufffd" * 300,
        bytes(rng.randrange(256) for _ in range(2000)).decode("utf-8", errors="replace"),
        "0123 4567 89 %% $$ 3.14 -- 2024-01-01 12:00",
        "\ue000\ue001\ue002 garbage",
    ]
    for backend in ("auto", "fasttext", "langid", "lingua_low"):
        op = DetectLanguage(backend=backend)
        op.setup()
        out = op.process(pa.table({"text": pa.array(junk, pa.string())}))
        assert out["language"].to_pylist() == ["und"] * len(junk), backend
        assert out["language_score"].to_pylist() == [0.0] * len(junk), backend
    # mojibake-like Latin-1 noise does not crash, and its score stays a probability
    noise = bytes(rng.randrange(256) for _ in range(2000)).decode("latin-1")
    op = DetectLanguage()
    out = op.process(pa.table({"text": [noise]}))
    assert 0.0 <= out["language_score"][0].as_py() <= 1.0


def test_fifty_megabyte_document_is_cheap(tmp_path):
    paragraph = ("Die Konfigurationsdatei wird beim Start gelesen; fehlt sie, gelten die "
                 "Voreinstellungen des Programms. ")
    big = paragraph * (50_000_000 // len(paragraph))
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": big}) + "\n")
        fh.write(json.dumps({"text": "Ceci est un court paragraphe en français, assez long "
                                     "pour être reconnu sans hésitation."}) + "\n")
    del big
    out = dm.Dataset.read(path).apply("detect_language").collect(
        tmp_path / "w", workers=1, progress=False, columns=["language", "language_score"])
    assert out["language"].to_pylist() == ["de", "fr"]
    # only the first max_chars characters are classified (work counted: the characters the
    # classifier sees), and the document is never copied to Python
    op = DetectLanguage(max_chars=500)
    op.setup()
    seen: list[int] = []
    classify = op._classify
    op._classify = lambda texts: seen.extend(len(t or "") for t in texts) or classify(texts)
    table = pa.table({"text": [paragraph * 500_000]})
    tracemalloc.start()
    op.process(table)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seen == [500]
    assert peak < 5_000_000


def test_candidates_restrict_the_answer():
    slovak = ("Tento program skopíruje súbory do cieľového adresára a zachová ich "
              "pôvodné oprávnenia, ak je to možné.")
    for backend in ("langid", "lingua_low"):
        op = DetectLanguage(backend=backend, candidates=["cs", "pl"])
        op.setup()
        assert op.process(pa.table({"text": [slovak]}))["language"][0].as_py() == "cs"


def test_arguments_and_missing_backend(monkeypatch):
    with pytest.raises(ArgumentError, match="languages"):
        LanguageFilter(languages=[])
    with pytest.raises(ArgumentError, match="ISO 639"):
        DetectLanguage(candidates=["french"])
    with pytest.raises(PipelineError, match="xx"):
        DetectLanguage(candidates=["xx"]).setup()
    monkeypatch.setitem(sys.modules, "lingua", None)
    with pytest.raises(PipelineError, match=r"datamill\[lingua\]"):
        DetectLanguage(backend="lingua").setup()
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    with pytest.raises(PipelineError, match=r"datamill\[langid\]"):
        DetectLanguage().setup()


def test_filter_accepts_float64_scores_and_names_missing_columns(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"language": "en", "language_score": 0.99}, {"language": "en", "language_score": 0.5},
        {"language": None, "language_score": None}, {"language": "de", "language_score": 1.0}])
    ds = dm.Dataset.read(path).apply("language_filter", languages=["en"], min_score=0.8)
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("language_filter")["dropped"] == {
        "low_language_score": 1, "wrong_language": 2}
    with pytest.raises(dm.errors.SchemaError, match="language"):
        dm.Dataset.read(tmp_path / "s.jsonl").apply(
            "language_filter", languages=["en"], language_column="lang")


def test_docs_example_runs(tmp_path, monkeypatch):
    doc = Path(__file__).parent.parent / "docs" / "langid.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102
    assert namespace["table"].num_rows == 1


# --- fastText and auto ------------------------------------------------------------------------
GETTEXT = Path(__file__).parent / "data" / "langid" / "gettext_sample.jsonl"


def _gettext_rows() -> list[dict]:
    assert GETTEXT.exists(), (
        f"{GETTEXT} is missing: regenerate it with `python benchmarks/langid_accuracy.py "
        f"--source gettext --split test --per-language 12 --documents 2 --write-sample "
        f"{GETTEXT}` (reads the gettext catalogues under /usr/share/locale)")
    return [json.loads(line) for line in GETTEXT.read_text(encoding="utf-8").splitlines()]


def _hits(backend: str, rows: list[dict]) -> dict[str, int]:
    op = DetectLanguage(backend=backend)
    out = op.process(pa.table({"text": [r["text"] for r in rows]}))["language"].to_pylist()
    hits: Counter = Counter()
    for r, p in zip(rows, out):
        hits[r["kind"]] += p == r["lang"]
    return hits


def test_auto_is_at_least_as_accurate_as_py3langid_on_passages_and_documents():
    rows = _gettext_rows()
    kinds = Counter(r["kind"] for r in rows)
    assert len({r["lang"] for r in rows}) >= 40 and kinds["document"] >= 80, kinds
    auto, langid, fast = _hits("auto", rows), _hits("langid", rows), _hits("fasttext", rows)
    for kind in ("passage", "document"):
        assert auto[kind] >= langid[kind], (kind, auto, langid)
        assert auto[kind] >= fast[kind], (kind, auto, fast)
    assert auto["passage"] >= 0.95 * kinds["passage"]


def test_auto_asks_py3langid_only_about_unsure_texts(monkeypatch):
    from py3langid.langid import LanguageIdentifier

    from .quality_corpus import generate

    calls = Counter()
    decide = LanguageIdentifier._decide  # py3langid's scoring of one text

    def counted(self, text):
        calls["rank"] += 1
        return decide(self, text)

    monkeypatch.setattr(LanguageIdentifier, "_decide", counted)
    web = generate(600, seed=3)  # English web-like documents, some with other languages
    op = DetectLanguage()
    out = op.process(pa.table({"text": web}))
    assert out["language"].to_pylist().count("en") > 0.8 * len(web)
    assert 0 < calls["rank"] < 0.1 * len(web)
    # a close pair: Galician is asked about, and answered right
    calls.clear()
    galician = [r["text"] for r in _gettext_rows() if r["lang"] == "gl"]
    found = op.process(pa.table({"text": galician}))["language"].to_pylist()
    assert calls["rank"] > 0 and found.count("gl") >= 0.8 * len(galician), found


def test_fasttext_backend_labels_candidates_and_newlines():
    rows = [r for r in _passages() if r["lang"] in ("de", "fr", "ja", "ru")]
    op = DetectLanguage(backend="fasttext")
    texts = [r["text"].replace(" ", "\n", 3) for r in rows]  # fastText reads one line
    out = op.process(pa.table({"text": texts}))
    assert out["language"].to_pylist() == [r["lang"] for r in rows]
    assert all(0 < s <= 1 for s in out["language_score"].to_pylist())
    slovak = ("Tento program skopíruje súbory do cieľového adresára a zachová ich "
              "pôvodné oprávnenia, ak je to možné.")
    for backend in ("fasttext", "auto"):
        op = DetectLanguage(backend=backend, candidates=["cs", "pl"])
        result = op.process(pa.table({"text": [slovak]}))
        assert result["language"][0].as_py() == "cs"
        assert 0.5 < result["language_score"][0].as_py() <= 1.0  # renormalized over cs, pl
    with pytest.raises(PipelineError, match="xx"):
        DetectLanguage(backend="fasttext", candidates=["xx"]).setup()


def test_model_files_are_in_the_cache_key(tmp_path):
    import shutil

    from datamill.ops.langid_backends import packaged_fasttext_model

    packaged = packaged_fasttext_model()
    default = DetectLanguage().args.model_identity
    size = Path(packaged).stat().st_size
    assert default.startswith(f"{size}:")  # fastText's file, then py3langid's
    assert DetectLanguage(backend="langid").args.model_identity != default
    copy = shutil.copy(packaged, tmp_path / "lid.176.ftz")
    assert DetectLanguage(model_path=str(copy)).args.model_identity == default  # same bytes
    with open(copy, "r+b") as fh:  # another model (here: damaged) -> another identity
        fh.seek(1000)
        fh.write(b"\x00" * 16)
    changed = DetectLanguage(model_path=str(copy))
    assert changed.args.model_identity != default
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "Bonjour à tous"}])
    keys = {dm.Dataset.read(path).apply("detect_language", **kw)._step.key
            for kw in ({}, {"model_path": str(copy)}, {"backend": "langid"})}
    assert len(keys) == 3
    with pytest.raises(ArgumentError, match="model"):
        DetectLanguage(model_path=str(tmp_path / "missing.bin"))


def test_vectorized_letter_check_matches_the_regex_definition():
    from datamill.ops.langid_backends import undetermined

    letter = re.compile(r"[^\W\d_]")
    junk = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufffd\ue000-\uf8ff\ud800-\udfff"
                      r"\U000f0000-\U0010ffff]")

    def expected(text):
        if not text:
            return True
        visible = len(re.findall(r"\S", text))
        letters = len(letter.findall(text))
        return letters == 0 or letters < 0.3 * visible or len(junk.findall(text)) > 0.1 * visible

    rng = random.Random(7)
    alphabet = [chr(c) for c in [*range(0x250), *range(0x2000, 0x2100), 0x3000, 0x4E00, 0x0660,
                                 0xFFFD, 0xE000, 0x1F600, 0x20000, 0x1D400, 0x10FFFD]]
    texts = [None, "", " ", "a", "1"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.choice([1, 3, 40, 300])))
              for _ in range(1500)]
    got = undetermined(texts, 0.3)
    assert got == [expected(t) for t in texts]
    assert 0.2 < sum(got) / len(got) < 0.8  # both outcomes are exercised


def test_norwegian_bokmal_is_no_for_every_backend():
    texts = [r["text"] for r in _gettext_rows() if r["lang"] == "no" and r["kind"] == "document"]
    assert texts
    for backend in ("auto", "fasttext", "langid", "lingua_low"):
        op = DetectLanguage(backend=backend)
        found = op.process(pa.table({"text": texts}))["language"].to_pylist()
        assert found.count("no") >= len(texts) - 1, (backend, found)
    op = DetectLanguage(backend="lingua_low", candidates=["no", "da"])
    assert op.process(pa.table({"text": texts[:1]}))["language"][0].as_py() == "no"


def test_py3langid_in_c_scores_exactly_as_py3langid():
    """The C byte automaton (and float32 product) gives py3langid's own scores and ranks;
    `auto`'s pick among allowed languages is the first allowed of py3langid's rank."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from datamill.ops import langid_backends
    from datamill.ops.quality import kernels

    from .quality_corpus import generate

    assert kernels.library() is not None, "the C kernels are not built"
    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ours = langid_backends.py3langid_backend(None, "detect_language")
    assert type(ours) is not LanguageIdentifier  # the kernel subclass is in use
    texts = [r["text"] for r in _gettext_rows()][::3] + generate(60, seed=5) + [
        "", "   ", "1234", "ÉCRIT EN MAJUSCULES", "\x00\x01", "東京 Привет hello"]
    best = langid_backends._best_of(ours)
    for text in texts:
        ranked = stock.rank(text[:1000])
        assert ours.rank(text[:1000]) == ranked
        allowed = {ranked[5][0], ranked[2][0], "xx"}
        assert best(text[:1000], allowed) == next((c, p) for c, p in ranked if c in allowed)
    assert best("some text", {"xx"}) is None


def test_fasttext_in_c_predicts_exactly_as_fasttext():
    """The C kernel gives fasttext-predict's labels and probabilities (the same floats), for
    the best one or two, every label (candidates), a threshold and any prefix length, on
    multilingual passages, web-like documents and edge cases ("</s>" read as a word ends the
    line, "__label__" words are skipped, every separator); the backend uses it."""
    import fasttext

    from datamill.ops import fasttext_model, langid_backends
    from datamill.ops.quality import kernels

    from .quality_corpus import generate

    assert kernels.library() is not None, "the C kernels are not built"
    path = langid_backends.packaged_fasttext_model()
    compiled = fasttext_model.load(path)
    assert compiled is not None and len(compiled.labels) == 176
    stock = fasttext.load_model(path).f
    texts = [r["text"] for r in _gettext_rows()] + [r["text"] for r in _passages()][::2] + \
        generate(300, seed=11) + [
        "", " ", "\n", "</s>", "a </s> b c", "__label__en hello", "hi __label__zz there",
        "a\tb\x00c\rd\x0be\x0cf g", "é" * 300, "東京 Привет hello 😀", "x" * 3000]
    for chars, k, threshold in ((150, 2, 0.0), (600, -1, -1.0), (40, 3, 0.1), (10**6, 1, 0.0)):
        labels, probs = compiled.predict(pa.array(texts), chars, k, threshold)
        for i, text in enumerate(texts):
            got = [(float(p), compiled.labels[j])
                   for j, p in zip(labels[i], probs[i]) if j >= 0]
            want = list(stock.predict(text[:chars].replace("\n", " ") + "\n", k, threshold,
                                      "replace"))
            assert got == want, (chars, k, text[:80])
    backend = langid_backends.FastText(None, None, 150, "detect_language")
    assert backend._compiled is not None
    assert backend.tops(texts, 2) == [backend.top(t, 2) for t in texts]
    picky = langid_backends.FastText(None, ["cs", "pl", "sk"], 150, "detect_language")
    assert picky.tops(texts[:50], 2) == [picky.top(t, 2) for t in texts[:50]]


def test_auto_on_a_whole_array_answers_as_per_text(monkeypatch):
    """`auto` classifies a batch as an Arrow array (fastText in C, Python strings only for
    the second opinions): the same languages and scores as its per-text path."""
    from .quality_corpus import generate

    texts = generate(400, seed=4) + [r["text"] for r in _gettext_rows()] + [
        r["text"] for r in _passages()] + ["", None, "   ", "12345", "</s> hi", "\x00\x01"]
    batch = pa.table({"text": texts})
    op = DetectLanguage()
    op.setup()
    assert op._classify.array is not None
    calls = Counter()
    whole = op._classify.array
    monkeypatch.setattr(op._classify, "array", lambda t: calls.update(["array"]) or whole(t))
    fast = op.process(batch)
    monkeypatch.setattr(op._classify, "array", lambda t: None)
    per_text = op.process(batch)
    assert calls["array"] == 1
    assert fast["language"].equals(per_text["language"])
    assert fast["language_score"].equals(per_text["language_score"])
    assert len(set(fast["language"].to_pylist())) > 20


def test_py3langid_model_is_unpacked_once_into_the_model_cache(tmp_path, monkeypatch):
    import py3langid.modelio

    from datamill.ops import langid_backends

    monkeypatch.setenv("DATAMILL_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(langid_backends, "_PY3LANGID_TABLES", [])
    first = langid_backends.py3langid_backend(None, "detect_language")
    (folder,) = tmp_path.iterdir()  # named by the model file's size and hash
    size, digest = langid_backends.file_identity(langid_backends.py3langid_model()).split(":")
    assert folder.name == f"py3langid-v2-{size}-{digest}"
    monkeypatch.setattr(langid_backends, "_PY3LANGID_TABLES", [])
    monkeypatch.setattr(py3langid.modelio, "load_model", lambda path: 1 / 0)  # not unpacked
    second = langid_backends.py3langid_backend(None, "detect_language")
    for text in ("Ceci est un court paragraphe en français.", "Das ist ein deutscher Satz.",
                 "", "Tämä on suomenkielinen lause."):
        assert second.rank(text) == first.rank(text)
