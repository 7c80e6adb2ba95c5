"""Parity of the quality filters' keep/drop decisions with datatrove 0.10.1 on 5,000 generated
web-like documents (tests/quality_corpus.py): >= 99.9% with tokenizer="spacy" (what datatrove
uses) and >= 99% with the fast default, for each of Gopher quality, Gopher repetition, C4,
FineWeb and the C4 bad-words filter (fed our shipped list)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pyarrow as pa
import pytest

from .quality_corpus import generate

datatrove = pytest.importorskip("datatrove")
spacy = pytest.importorskip("spacy")

N_DOCS = 5000
FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    # shorter than the benchmark's ~2,000 characters to keep CI fast; the mix is the same
    return generate(N_DOCS, seed=7, chars=900)


@pytest.fixture(scope="module")
def reference(corpus) -> dict[str, np.ndarray]:
    """datatrove's decisions. spaCy's memory zones are disabled while it runs: they only free
    memory (and make its tokenizer re-tokenize every word), decisions are the same."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = {"gopher_quality": GopherQualityFilter(),
               "gopher_repetition": GopherRepetitionFilter(),
               "fineweb": FineWebQualityFilter(), "c4": C4QualityFilter()}
    out = {k: np.zeros(len(corpus), dtype=bool) for k in filters}
    zone = spacy.language.Language.memory_zone
    spacy.language.Language.memory_zone = lambda self, mem=None: contextlib.nullcontext()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, text in enumerate(corpus):
                for name, f in filters.items():  # this order shares datatrove's token cache
                    out[name][i] = f.filter(Document(text=text, id=str(i))) is True
    finally:
        spacy.language.Language.memory_zone = zone
    return out


def _ours(corpus: list[str], tokenizer: str) -> dict[str, np.ndarray]:
    from datamill.ops.quality import C4Filter, FineWebFilter, GopherQualityFilter
    from datamill.ops.quality import GopherRepetitionFilter as Repetition

    table = pa.table({"text": pa.array(corpus)})
    out = {}
    for name, cls in zip(FAMILIES, (GopherQualityFilter, Repetition, C4Filter, FineWebFilter)):
        op = cls(tokenizer=tokenizer)
        op.setup()
        keep, _ = op.process(table)
        out[name] = keep
    return out


def test_the_corpus_spreads_across_the_thresholds(reference):
    for name, keep in reference.items():
        assert 0.3 < keep.mean() < 0.95, (name, keep.mean())


@pytest.mark.parametrize("tokenizer,required", [("spacy", 0.999), ("fast", 0.99)])
def test_decisions_agree_with_datatrove(corpus, reference, tokenizer, required):
    ours = _ours(corpus, tokenizer)
    for name in FAMILIES:
        agreement = float(np.mean(ours[name] == reference[name]))
        assert agreement >= required, (name, tokenizer, agreement)


def test_badwords_agree_with_datatrove(corpus, tmp_path, monkeypatch):
    import datatrove.pipeline.filters.c4_filters as c4_filters
    from datatrove.data import Document

    from datamill.ops.quality import C4BadWordsFilter
    from datamill.ops.quality.c4 import DATA

    monkeypatch.setattr(c4_filters, "cached_asset_path_or_download",
                        lambda *a, **k: str(DATA / "badwords-en.txt"))
    ref = c4_filters.C4BadWordsFilter(seed=0)
    expected = np.array([ref.filter(Document(text=t, id="x")) is True for t in corpus])
    op = C4BadWordsFilter()
    op.setup()
    keep, reasons = op.process(pa.table({"text": pa.array(corpus)}))
    assert 0.5 < expected.mean() < 1.0
    assert float(np.mean(keep == expected)) >= 0.999
