"""Main-text extraction of `extract_html` / `read_html`: link-list pages keep their text,
boxes injected inside the article (newsletter, ads, related links, feedback) go, and the
token F1 on generated documentation pages (tests/html_corpus.py) stays high. Work is
counted, not timed: the fallback extractors and the date search run only where needed."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

import datamill as dm

from .conftest import write_jsonl
from .html_corpus import corpus, leaks, scores

pytest.importorskip("trafilatura")

FURNITURE = """
<div class="cookie-consent"><p>We store cookies to remember your settings.</p>
<button>Accept all cookies</button></div>
<header><a href="/">Acme Handbook</a><nav><ul><li><a href="/guides/">All the guides</a></li>
<li><a href="/blog/">The team blog</a></li><li><a href="/jobs/">Open positions</a></li></ul>
</nav></header>
<aside class="sidebar"><h3>Popular this week</h3><ul><li><a href="/x">Choosing a kettle
</a></li><li><a href="/y">Descaling made simple</a></li></ul></aside>"""
FOOTER = ("<footer><p>Copyright 2025 Acme Handbook, all rights reserved.</p>"
          "<p><a href='/privacy'>Privacy notice</a></p></footer>")
GUIDES = [("Brewing with a French press", "coarse grounds, four minutes"),
          ("Brewing with a moka pot", "fine grounds on a low flame"),
          ("Cold brew at home", "twelve hours in the fridge"),
          ("Pour-over basics", "a slow spiral of water"),
          ("Grinding for espresso", "the finest setting that still flows"),
          ("Storing your beans", "airtight, dark and cool")]


def index_page() -> str:
    """A documentation index: a sentence, then lists that are all links (some with a
    description), the kind of page trafilatura reduces to little or nothing."""
    described = "".join(f'<li><a href="/g/{i}">{t}</a> — {d}</li>'
                        for i, (t, d) in enumerate(GUIDES))
    bare = "".join(f'<li><a href="/t/{i}">{t}</a></li>' for i, (t, _) in enumerate(GUIDES))
    return (f"<html><head><title>Guides — Acme Handbook</title></head><body>{FURNITURE}"
            f"<main><h1>All coffee guides</h1><p>Every guide in the handbook.</p>"
            f"<h2>By method</h2><ul>{described}</ul><h2>Alphabetical</h2><ul>{bare}</ul>"
            f"</main>{FOOTER}</body></html>")


ARTICLE = ["Water should sit between ninety and ninety-six degrees before it meets the "
           "grounds; boiling water scorches them and hides the sweetness of the bean.",
           "Weigh the coffee rather than scooping it: sixty grams per litre is a good start, "
           "and a little more for a stronger cup, a little less for a lighter one.",
           "Let the grounds bloom for thirty seconds so the trapped gas escapes, then pour "
           "the rest of the water in slow circles from the centre outwards."]
BOXES = {
    "newsletter": '<div class="newsletter-box"><h3>Coffee in your inbox</h3><p>Our weekly '
                  'letter for home baristas.</p><form><input type="email" name="email">'
                  '<button>Sign me up</button></form></div>',
    "unlabelled signup": '<div class="box"><p><strong>Never miss a roast</strong></p><p>Hear '
                         'about new beans first.</p><form><input type="email" name="e">'
                         '<button>Join the list</button></form></div>',
    "ad": '<div class="ad-slot"><span>Advertisement</span><p>Grinders half price at '
          'BeanMart this weekend only.</p></div>',
    "labelled ad": '<div class="box"><span>Sponsored</span><p>Try the Brewtastic kettle '
                   'free for thirty days.</p></div>',
    "related": '<div class="more"><h3>Related articles</h3><ul><li><a href="/r1">Milk '
               'frothing for beginners</a></li><li><a href="/r2">Latte art without tears</a>'
               '</li></ul></div>',
    "feedback": '<div><p>Did this guide help you?</p><button>Yes it did</button><button>No'
                '</button></div>',
}

BOX_MARKERS = ("Coffee in your inbox", "weekly letter", "Sign me up", "Never miss a roast",
               "new beans first", "Advertisement", "BeanMart", "Sponsored", "Brewtastic",
               "Related articles", "Milk frothing", "Latte art", "Did this guide help",
               "Yes it did")


def article_page() -> str:
    inside = [f"<p>{ARTICLE[0]}</p>", BOXES["newsletter"], BOXES["ad"], f"<p>{ARTICLE[1]}</p>",
              BOXES["unlabelled signup"], BOXES["labelled ad"], f"<p>{ARTICLE[2]}</p>",
              '<div class="highlight"><button>Copy</button><pre>grams = litres * 60</pre>'
              "</div>", BOXES["related"], BOXES["feedback"]]
    return (f"<html><head><title>Better filter coffee | Acme Handbook</title></head><body>"
            f"{FURNITURE}<article><header class='article-header'><h1>Better filter coffee"
            f"</h1></header>{''.join(inside)}</article>{FOOTER}</body></html>")


def extract(tmp_path: Path, pages: list[str], **args) -> list[dict]:
    src = write_jsonl(tmp_path / "pages.jsonl",
                      [{"n": i, "html": html} for i, html in enumerate(pages)])
    ds = dm.Dataset.read(src).apply("extract_html", **args)
    table = ds.collect(tmp_path / "work", workers=1, progress=False)
    return sorted(table.to_pylist(), key=lambda row: row["n"])


def test_link_list_pages_keep_their_text(tmp_path):
    [row] = extract(tmp_path, [index_page()])
    text = row["text"]
    for title, description in GUIDES:
        assert f"{title} — {description}" in text  # described links, one per line
        assert f"- {title}\n" in text + "\n"  # links alone
    assert text.startswith("All coffee guides\nEvery guide in the handbook.\nBy method")
    for furniture in ("All the guides", "Choosing a kettle", "Accept all", "Privacy notice",
                      "We store cookies", "all rights reserved"):
        assert furniture not in text
    assert row["title"] == "All coffee guides"

    [linked] = extract(tmp_path / "links", [index_page()], include_links=True)
    assert "[Cold brew at home](/g/2) — twelve hours in the fridge" in linked["text"]


def test_boxes_inside_the_article_are_removed(tmp_path):
    [row] = extract(tmp_path, [article_page()])
    text = row["text"]
    for paragraph in ARTICLE:
        assert paragraph in text
    assert "grams = litres * 60" in text  # a code block with a copy button stays
    assert "Better filter coffee" in text  # the article's own header stays
    leaked = [marker for marker in BOX_MARKERS if marker in text]
    assert not leaked, text
    assert not any(f in text for f in ("Popular this week", "The team blog", "Privacy"))


def test_token_f1_and_leaks_on_generated_pages(tmp_path):
    pages = corpus(16, seed=3)
    assert {p.kind for p in pages} == {"topic", "module", "index", "toc"}
    rows = extract(tmp_path, [p.html for p in pages])
    results = [scores(r["text"], p.text) for r, p in zip(rows, pages)]
    assert statistics.mean(r["f1"] for r in results) >= 0.95
    assert min(r["recall"] for r in results) >= 0.8  # no page loses most of its text
    assert sum(bool(leaks(r["text"], p)) for r, p in zip(rows, pages)) <= 1


def test_scores_are_token_level():
    assert scores("a b c", "a b c")["f1"] == 1.0
    half = scores("a b", "a b c d")
    assert half["precision"] == 1.0 and half["recall"] == 0.5
    assert scores(None, "a")["f1"] == 0.0 and scores("x", "a")["f1"] == 0.0
    [page] = corpus(1)
    assert leaks(page.html, page) and not leaks(page.text, page)  # markers are boilerplate


def test_fallbacks_and_date_search_run_only_where_needed(monkeypatch):
    """The cost of a page: one trafilatura main pass; the full cascade (readability,
    jusText) only when that pass keeps little of a page that is not a link list; no
    metadata pass and no date search for extract_html (title only)."""
    import htmldate
    import trafilatura
    import trafilatura.metadata

    from datamill.io.html import ExtractionArgs, Extractor

    calls = {"fast": 0, "cascade": 0, "find_date": 0, "extract_metadata": 0}
    real = trafilatura.bare_extraction

    def counting(*args, **kwargs):
        options = kwargs["options"]  # built once per worker, one for each kind of pass
        calls["fast" if options.fast else "cascade"] += 1
        assert not options.with_metadata
        return real(*args, **kwargs)

    monkeypatch.setattr(trafilatura, "bare_extraction", counting)
    monkeypatch.setattr(htmldate, "find_date", lambda *a, **k: calls.__setitem__(
        "find_date", calls["find_date"] + 1))
    monkeypatch.setattr(trafilatura.metadata, "extract_metadata", lambda *a, **k: calls.
                        __setitem__("extract_metadata", calls["extract_metadata"] + 1))
    pages = corpus(12, seed=5) + [None]
    extractor = Extractor(ExtractionArgs(), "extract_html")
    found = [extractor(p.html) for p in pages[:-1]]
    assert calls["fast"] == 12 and calls["cascade"] <= 1
    assert calls["find_date"] == calls["extract_metadata"] == 0
    assert all(f["title"] for f in found)

    # a main pass that keeps little of a page that is not a link list: the cascade runs,
    # unless fast=True
    short = type("Doc", (), {"text": "Short."})()
    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *a, **k: (
        calls.__setitem__("cascade", calls["cascade"] + 1) if not k["options"].fast else None)
        or short)
    calls["cascade"] = 0
    prose = f"<html><body><article>{'<p>A sentence of prose here.</p>' * 30}</article></body>"
    assert Extractor(ExtractionArgs(), "extract_html")(prose)["text"] == "Short."
    assert calls["cascade"] == 1
    Extractor(ExtractionArgs(fast=True), "extract_html")(prose)
    assert calls["cascade"] == 1


@pytest.mark.parametrize("wrapper", ['<form id="aspnetForm">', '<div class="top-story">'])
def test_a_wrong_guess_never_removes_most_of_the_page(wrapper):
    """A page inside one <form> (ASP.NET), or a content block named like furniture: what
    holds most of the text stays, and the navigation inside it still goes."""
    from datamill.io.html import ExtractionArgs, Extractor

    tag = wrapper[1:wrapper.index(" ")]
    page = (f"<html><body>{wrapper}<div class='nav'><a href='/'>Back to the start page</a>"
            f"</div><div><h1>Filter coffee</h1>{''.join(f'<p>{p}</p>' for p in ARTICLE)}"
            f"</div></{tag}></body></html>")
    text = Extractor(ExtractionArgs(), "extract_html")(page)["text"]
    assert all(p in text for p in ARTICLE) and "start page" not in text
