"""A documentation site built from what every Python install ships, with boilerplate injected:
the labelled corpus of `extract_html` (tests/test_html.py, benchmarks/html_extraction.py).

Pages are rendered from pydoc's data: help topics (`pydoc_data.topics`) as articles, stdlib
modules (`pydoc.getdoc`, `inspect.signature`) as reference pages, and index pages that are
mostly links: a module index (link + synopsis per entry) and tables of contents (links only).
Each page's main text is known before any boilerplate is added: it is the list of blocks
rendered into the article, one heading, paragraph, list item, term or code block each.

Boilerplate is then injected around and inside the article: header, navigation, breadcrumbs,
sidebar, cookie banner, footer, and inside the article a newsletter box, an ad box, a
"related articles" list and a feedback widget, in the markup of a Sphinx theme, an HTML5
site, a div-only site, and a div-only site that marks no element as the main content. Each
injected block records its text segments as markers: a block leaks when one of its markers
shows up in the extracted text.

Scoring is token-level: tokens are the lower-cased `\\w+` runs of a text; with E the extracted
tokens and R the reference tokens as multisets, precision = |E ∩ R| / |E|, recall =
|E ∩ R| / |R|, F1 their harmonic mean (0 when nothing matches).

The generator was written before the extraction changes and is not tuned to them.
"""

from __future__ import annotations

import html
import importlib
import inspect
import random
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("topic", "module", "index", "toc")
STYLES = ("sphinx", "html5", "divs", "bare")  # markup of the site; "bare": no main marked
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3",
                "ensurepip", "msilib", "winreg", "winsound", "nt", "msvcrt", "pydoc_data",
                "xxsubtype", "xxlimited", "sre_compile", "sre_parse", "sre_constants",
                "crypt", "nis", "spwd", "ossaudiodev", "cgi", "cgitb", "imp", "asynchat",
                "asyncore", "smtpd", "distutils", "mailcap", "nntplib", "pipes", "sndhdr",
                "sunau", "telnetlib", "uu", "xdrlib", "audioop", "aifc", "chunk", "imghdr"}


@dataclass
class Page:
    name: str
    kind: str
    html: str
    blocks: list[str]  # the main text, block by block
    boilerplate: dict[str, list[str]] = field(default_factory=dict)  # block -> its markers

    @property
    def text(self) -> str:
        return "\n".join(self.blocks)


# --- scoring -----------------------------------------------------------------------------

def tokens(text: str | None) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())


def scores(extracted: str | None, reference: str) -> dict:
    """Token-level precision, recall and F1 of `extracted` against `reference`."""
    got, want = Counter(tokens(extracted)), Counter(tokens(reference))
    common = sum((got & want).values())
    precision = common / max(sum(got.values()), 1)
    recall = common / max(sum(want.values()), 1)
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _normal(text: str) -> str:
    return " ".join(tokens(text))


def leaks(extracted: str | None, page: Page) -> list[str]:
    """The injected blocks of which some marker appears in `extracted`."""
    got = f" {_normal(extracted or '')} "
    return [block for block, markers in page.boilerplate.items()
            if any(f" {m} " in got for m in markers)]


# --- main text from pydoc's data -------------------------------------------------------------

def _topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return sorted(topics.items())


def _module_names() -> list[str]:
    names = getattr(sys, "stdlib_module_names", ())
    return sorted(n for n in names if not n.startswith("_") and n not in SKIP_MODULES)


def _module(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform-specific or broken: not in the corpus
            return None


def _paragraphs(doc: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _synopsis(obj) -> str:
    import pydoc

    paragraphs = _paragraphs(pydoc.getdoc(obj) or "")
    return paragraphs[0] if paragraphs else ""


def topic_article(title: str, doc: str) -> list[tuple[str, str]]:
    """(tag, text) blocks of a help topic: headings, paragraphs and code blocks."""
    blocks = []
    for raw in re.split(r"\n\s*\n", doc.strip("\n")):
        lines = raw.rstrip().split("\n")
        if len(lines) >= 2 and re.fullmatch(r"([*=~^-])\1{3,}", lines[-1].strip()):
            blocks.append(("h2", " ".join(" ".join(lines[:-1]).split())))
        elif lines[0].startswith("   "):
            blocks.append(("pre", "\n".join(line[3:] for line in lines)))
        elif raw.strip():
            blocks.append(("p", " ".join(raw.split())))
        if len(blocks) >= 25:
            break
    return [("h1", title.replace("-", " ").title())] + blocks


def module_reference(name: str, module) -> list[tuple[str, str]]:
    import pydoc

    paragraphs = _paragraphs(pydoc.getdoc(module) or "")
    blocks = [("h1", f"{name} — {paragraphs[0]}" if paragraphs else name)]
    blocks += [("p", p) for p in paragraphs[1:8]]
    members = []
    for attr in sorted(getattr(module, "__all__", None) or dir(module)):
        obj = getattr(module, attr, None)
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != name or not _synopsis(obj):
            continue
        try:
            signature = f"{attr}{inspect.signature(obj)}"
        except (TypeError, ValueError):
            signature = f"{attr}(...)"
        members.append((signature, _synopsis(obj)))
    if members:
        blocks.append(("h2", "Functions and classes"))
        for term, summary in members[:15]:
            blocks += [("dt", term), ("dd", summary)]
    return blocks


def module_index(letter: str, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return ([("h1", f"Python Module Index — {letter.upper()}"),
             ("p", f"Modules of the standard library whose names start with "
                   f"{letter.upper()}, with a one-line synopsis of each.")]
            + [("li-link-desc", f"{name}\x00{synopsis}") for name, synopsis in entries])


def table_of_contents(title: str, sections: list[tuple[str, list[str]]]) -> list:
    blocks = [("h1", title)]
    for heading, links in sections:
        blocks.append(("h2", heading))
        blocks += [("li-link", link) for link in links]
    return blocks


# --- rendering ---------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def render_main(blocks: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """HTML fragments of the article and its reference text, block by block."""
    out, texts, in_list = [], [], None
    for tag, text in blocks:
        wanted = "ul" if tag.startswith("li") else "dl" if tag in ("dt", "dd") else None
        if in_list != wanted:
            if in_list:
                out.append(f"</{in_list}>")
            if wanted:
                out.append(f'<{wanted} class="simple">')
            in_list = wanted
        if tag == "li-link-desc":
            name, synopsis = text.split("\x00")
            out.append(f'<li><a href="library/{name}.html"><code>{html.escape(name)}</code>'
                       f"</a> — {html.escape(synopsis)}</li>")
            texts.append(f"{name} — {synopsis}" if synopsis else name)
            continue
        if tag == "li-link":
            out.append(f'<li><a href="{_slug(text)}.html">{html.escape(text)}</a></li>')
        elif tag == "dt":
            out.append(f"<dt><code>{html.escape(text)}</code></dt>")
        elif tag == "pre":
            out.append(f"<pre>{html.escape(text)}</pre>")
        elif tag.startswith("h"):
            out.append(f'<{tag} id="{_slug(text)}">{html.escape(text)}</{tag}>')
        else:
            out.append(f"<{tag}>{html.escape(text)}</{tag}>")
        texts.append(text)
    if in_list:
        out.append(f"</{in_list}>")
    return out, texts


NAV = ["Downloads and installers", "Documentation home", "Community forums", "Success stories",
       "Release news", "Upcoming events", "Developer guide", "Job board", "Package index",
       "Governance and steering", "Donate to the foundation", "Security advisories"]
RELATED = ["Understanding decorators in depth", "A gentle tour of asyncio",
           "Ten idioms for cleaner loops", "Packaging your first library",
           "Profiling slow scripts step by step", "Typing hints for busy teams",
           "When to reach for dataclasses", "Unicode strings without tears"]
NEWSLETTER = [("Get the weekly Python digest", "Join forty thousand developers who receive "
               "our newsletter every Friday morning."),
              ("Never miss a release", "Sign up for release announcements and security "
               "notices delivered straight to your inbox."),
              ("Stay in the loop", "Subscribe for tutorials, conference talks and tips, "
               "one email a month, unsubscribe anytime.")]
ADS = [("Deploy apps in seconds with CloudRunner", "Start your free trial today, no credit "
        "card required."),
       ("Hire vetted backend engineers this week", "TalentHub matches you with senior "
        "developers in forty eight hours."),
       ("Master concurrency in our live bootcamp", "Eight weeks of mentoring, enrol before "
        "seats run out.")]
COOKIE = ["We use cookies to improve your experience and measure traffic on this website.",
          "This site stores cookies on your device to personalise content and analyse usage."]


def _links(items: list[str]) -> str:
    return "".join(f'<li><a href="/{_slug(i)}/">{i}</a></li>' for i in items)


def boilerplate(rng: random.Random, style: str, page_title: str) -> dict[str, str]:
    """HTML of each boilerplate block for one page, in one markup style."""
    nav = rng.sample(NAV, rng.randint(6, 10))
    news_title, news_text = rng.choice(NEWSLETTER)
    ad_title, ad_text = rng.choice(ADS)
    related = rng.sample(RELATED, 4)
    prev_next = rng.sample(RELATED, 2)
    blocks = {
        "header": {"sphinx": '<div class="header-wrapper"><div class="header"><a href="/">'
                             'Example Docs 3 documentation</a><form class="search" '
                             'action="search.html"><input type="text" name="q">'
                             '<input type="submit" value="Go"></form></div></div>',
                   "html5": '<header class="site-header"><a class="logo" href="/">Example '
                            'Docs 3 documentation</a><form role="search"><input type="search"'
                            ' placeholder="Search the docs"></form></header>',
                   "divs": '<div id="top-bar"><a href="/">Example Docs 3 documentation</a>'
                           '<span class="tagline">Batteries included since forever</span>'
                           '</div>'}[style],
        "nav": {"sphinx": f'<div class="related" role="navigation"><h3>Navigation</h3><ul>'
                          f'{_links(nav)}</ul></div>',
                "html5": f'<nav class="main-nav"><ul>{_links(nav)}</ul></nav>',
                "divs": f'<div id="menu"><ul class="menu-items">{_links(nav)}</ul></div>'
                }[style],
        "footer": {"sphinx": '<div class="footer">© Copyright 2001-2025, Example Software '
                             'Foundation. Last updated on Jan 05, 2025. <a href="/bugs/">'
                             'Found a bug?</a> Created using Sphinx 7.2.6.</div>',
                   "html5": '<footer><p>© 2001-2025 Example Software Foundation. All rights '
                            'reserved.</p><ul><li><a href="/privacy/">Privacy policy</a></li>'
                            '<li><a href="/legal/">Legal statements</a></li></ul></footer>',
                   "divs": '<div id="bottom"><p>Copyright Example Software Foundation, all '
                           'rights reserved. Hosted by friendly volunteers.</p><p><a '
                           'href="/privacy/">Privacy policy</a> | <a href="/terms/">Terms of '
                           'service</a></p></div>'}[style],
    }
    if rng.random() < 0.5:
        blocks["breadcrumbs"] = (f'<div class="breadcrumbs"><a href="/">Start page'
                                 f'</a> » <a href="/library/">Library reference</a> » '
                                 f'{html.escape(page_title[:30])}</div>')
    if rng.random() < 0.7:
        side = (f'<h3>Previous topic</h3><p><a href="/p/">{prev_next[0]}</a></p><h3>Next '
                f'topic</h3><p><a href="/n/">{prev_next[1]}</a></p><h3>This page</h3><ul>'
                f'<li><a href="/src/">Show page source</a></li><li><a href="/bugs/">Report '
                f'a documentation bug</a></li></ul>')
        blocks["sidebar"] = {"sphinx": f'<div class="sphinxsidebar" role="navigation">{side}'
                                       f'</div>',
                             "html5": f'<aside class="sidebar">{side}</aside>',
                             "divs": f'<div id="leftcol" class="col-side">{side}</div>'}[style]
    if rng.random() < 0.5:
        text = rng.choice(COOKIE)
        blocks["cookie"] = rng.choice([
            f'<div id="cookie-banner" class="cookie-consent"><p>{text}</p><button>Accept all '
            f'cookies</button><button>Manage my preferences</button></div>',
            f'<div class="gdpr-notice" role="dialog"><p>{text} <a href="/cookies/">Read our '
            f'cookie policy</a></p><button>I agree</button></div>'])
    if rng.random() < 0.6:
        form = ('<form action="/subscribe" method="post"><input type="email" name="email" '
                'placeholder="you@example.com"><button type="submit">Subscribe</button></form>')
        blocks["newsletter"] = rng.choice([
            f'<div class="newsletter-signup"><h3>{news_title}</h3><p>{news_text}</p>{form}'
            f'</div>',
            f'<aside class="subscribe-box"><h4>{news_title}</h4><p>{news_text}</p>{form}'
            f'</aside>',
            f'<section class="promo cta"><h3>{news_title}</h3><p>{news_text}</p>{form}'
            f'</section>',
            f'<div class="box"><p><strong>{news_title}</strong></p><p>{news_text}</p>{form}'
            f'</div>'])
    if rng.random() < 0.6:
        blocks["ad"] = rng.choice([
            f'<div class="ad-container"><span class="ad-label">Advertisement</span><a href='
            f'"https://ads.example.net/c?id=7"><p>{ad_title}</p><p>{ad_text}</p></a></div>',
            f'<aside class="sponsored"><p>Sponsored</p><h4>{ad_title}</h4><p>{ad_text}</p>'
            f'</aside>',
            f'<div id="div-gpt-ad-1234-0" class="adslot"><p>{ad_title}</p><p>{ad_text}</p>'
            f'</div>',
            f'<div class="advert"><a href="https://ads.example.net/c?id=9" rel="sponsored">'
            f'{ad_title}. {ad_text}</a></div>'])
    if rng.random() < 0.6:
        blocks["related"] = rng.choice([
            f'<div class="related-posts"><h3>Related articles</h3><ul>{_links(related)}</ul>'
            f'</div>',
            f'<section class="see-also-more"><h2>You might also like</h2><ul>{_links(related)}'
            f'</ul></section>',
            f'<div class="more-reading"><p>Read next:</p><ul>{_links(related)}</ul></div>'])
    if rng.random() < 0.3:
        blocks["feedback"] = ('<div class="feedback"><p>Was this page helpful?</p><button>Yes, '
                              'thanks</button><button>Not really</button></div>')
    return blocks


def markers(fragment: str, main_text: str) -> list[str]:
    """The text segments (two tokens or more) of a boilerplate block not in the main text."""
    main = f" {_normal(main_text)} "
    segments = re.split(r"<[^>]+>|\s[|»]\s", fragment)
    found = []
    for segment in segments:
        normal = _normal(html.unescape(segment))
        if len(normal.split()) >= 2 and f" {normal} " not in main:
            found.append(normal)
    return found


def assemble(title: str, main: list[str], blocks: dict[str, str], rng: random.Random,
             style: str) -> str:
    """The page: boilerplate around the article, and some inside it."""
    inside = main[:]
    for name in ("newsletter", "ad"):
        if name in blocks:  # between two top-level blocks of the article, never first
            depth, gaps = 0, []  # nor inside a list
            for i, fragment in enumerate(inside):
                depth += fragment in ('<ul class="simple">', '<dl class="simple">')
                depth -= fragment in ("</ul>", "</dl>")
                if depth == 0 and i >= 1:
                    gaps.append(i + 1)
            inside.insert(rng.choice(gaps or [len(inside)]), blocks[name])
    tail = "".join(blocks.get(n, "") for n in ("related", "feedback"))
    article = "\n".join(inside) + tail
    if style == "sphinx":
        body = (f'{blocks["header"]}{blocks["nav"]}{blocks.get("breadcrumbs", "")}'
                f'<div class="document"><div class="documentwrapper"><div class="bodywrapper">'
                f'<div class="body" role="main">{article}</div></div></div>'
                f'{blocks.get("sidebar", "")}</div>{blocks["footer"]}')
    elif style == "html5":
        body = (f'{blocks["header"]}{blocks["nav"]}<main>{blocks.get("breadcrumbs", "")}'
                f'<article>{article}</article>{blocks.get("sidebar", "")}</main>'
                f'{blocks["footer"]}')
    elif style == "divs":
        body = (f'{blocks["header"]}{blocks["nav"]}<div id="wrap">'
                f'{blocks.get("sidebar", "")}<div id="content" class="col-main">'
                f'{blocks.get("breadcrumbs", "")}{article}</div></div>{blocks["footer"]}')
    else:  # no element marks the main content
        body = (f'{blocks["header"]}{blocks["nav"]}<div class="page-wrap">'
                f'{blocks.get("sidebar", "")}<div class="col-b">'
                f'{blocks.get("breadcrumbs", "")}{article}</div></div>{blocks["footer"]}')
    cookie = blocks.get("cookie", "")
    body = f"{cookie}{body}" if rng.random() < 0.5 else f"{body}{cookie}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
            f'{html.escape(title)} — Example Docs 3 documentation</title><link rel="stylesheet"'
            f' href="/static/site.css"><script src="/static/site.js"></script></head>\n<body>'
            f'{body}<script>window.analytics && analytics.page();</script></body></html>')


def unmark(fragment: str) -> str:
    """A boilerplate block without its class, id and role attributes: only its tags and
    its shape tell what it is."""
    return re.sub(r'\s(?:class|id|role)="[^"]*"', "", fragment)


def corpus(n: int, seed: int = 0, unmarked: bool = False) -> list[Page]:
    """n pages, the four kinds in turn (topic, module, index, toc), deterministic per
    seed (and per interpreter version: the text comes from its docstrings). `unmarked`
    strips the injected blocks' class, id and role attributes (a harder set: most sites
    name their furniture)."""
    rng = random.Random(seed)
    topics = _topics()
    modules = _module_names()
    letters = sorted({m[0] for m in modules})
    pages: list[Page] = []
    attempts = 0
    while len(pages) < n and attempts < 20 * n:
        attempts += 1
        kind = KINDS[len(pages) % len(KINDS)]
        if kind == "topic":
            name, doc = rng.choice(topics)
            blocks = topic_article(name, doc)
        elif kind == "module":
            name = rng.choice(modules)
            module = _module(name)
            if module is None or not _synopsis(module):
                continue
            blocks = module_reference(name, module)
        elif kind == "index":
            letter = rng.choice(letters)
            name = f"modindex-{letter}"
            chosen = [m for m in modules if m[0] == letter][:40]
            entries = [(m, _synopsis(mod).split(". ")[0]) for m in chosen
                       if (mod := _module(m)) is not None]
            if len(entries) < 3:
                continue
            blocks = module_index(letter, entries)
        else:
            picked = sorted(rng.sample(topics, 24))
            sections = [(f"Language reference part {i + 1}",
                         [t.replace("-", " ").title() for t, _ in picked[i * 8:(i + 1) * 8]])
                        for i in range(3)]
            name = f"contents-{len(pages)}"
            blocks = table_of_contents("Contents of the language reference", sections)
        main, texts = render_main(blocks)
        style = rng.choice(STYLES)
        title = texts[0]
        injected = boilerplate(rng, "divs" if style == "bare" else style, title)
        if unmarked:
            injected = {k: unmark(v) for k, v in injected.items()}
        page_html = assemble(title, main, injected, rng, style)
        reference = "\n".join(texts)
        pages.append(Page(name=f"{len(pages):04d}-{kind}-{_slug(name)}", kind=kind,
                          html=page_html, blocks=texts,
                          boilerplate={k: markers(v, reference) for k, v in injected.items()}))
    return pages
