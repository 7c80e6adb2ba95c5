"""A small web crawl, generated from text every Python install ships, written as WARC.

`examples/curate_web_text.py` curates it. The crawl is built to exercise every step:

- pages of real prose (the interpreter's help topics and long standard-library docstrings)
  wrapped in navigation, cookie banners and footers that extraction must remove;
- mirrors that serve the same article under another URL (exact duplicates) and
  re-published copies with small edits (near duplicates);
- pages in French, German and Spanish (dropped by the language filter);
- keyword spam, link farms and near-empty pages (dropped by the quality filters);
- pages on a blocked domain (dropped by the URL filter);
- contact details and leaked credentials (redacted).

Everything is derived deterministically (a fixed seed), so reruns produce the same bytes.
"""

from __future__ import annotations

import ast
import html
import io
import random
import sysconfig
from datetime import datetime, timedelta, timezone
from pathlib import Path

FOREIGN = {
    "fr": [
        "La bibliothèque standard de Python contient de nombreux modules qui facilitent le "
        "travail quotidien des développeurs. Chaque module est documenté avec soin, et les "
        "exemples montrent comment lire des fichiers, analyser des données et écrire des "
        "programmes robustes sans dépendances externes.",
        "Avant de publier une nouvelle version, l'équipe relit les notes de version, vérifie "
        "que les tests passent sur toutes les plateformes et prépare une annonce pour la liste "
        "de diffusion. Les utilisateurs peuvent ainsi mettre à jour leurs projets sereinement.",
    ],
    "de": [
        "Die Standardbibliothek von Python enthält viele Module, die die tägliche Arbeit von "
        "Entwicklerinnen und Entwicklern erleichtern. Jedes Modul ist sorgfältig dokumentiert, "
        "und die Beispiele zeigen, wie man Dateien liest, Daten auswertet und stabile Programme "
        "ohne zusätzliche Abhängigkeiten schreibt.",
        "Bevor eine neue Version veröffentlicht wird, prüft das Team die Versionshinweise, "
        "stellt sicher, dass alle Tests auf allen Plattformen bestehen, und bereitet eine "
        "Ankündigung für die Mailingliste vor.",
    ],
    "es": [
        "La biblioteca estándar de Python incluye muchos módulos que facilitan el trabajo "
        "diario de quienes programan. Cada módulo está documentado con cuidado, y los ejemplos "
        "muestran cómo leer archivos, analizar datos y escribir programas robustos sin "
        "dependencias externas.",
        "Antes de publicar una nueva versión, el equipo revisa las notas de la versión, "
        "comprueba que las pruebas pasan en todas las plataformas y prepara un anuncio para la "
        "lista de correo.",
    ],
}

SPAM_WORDS = "cheap best buy online discount free offer click now deal casino win".split()


def articles(limit: int = 1000) -> list[tuple[str, str]]:
    """(title, text) pairs of real English prose from the running interpreter."""
    from pydoc_data.topics import topics

    found = [(name, text) for name, text in sorted(topics.items()) if len(text) > 800]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(stdlib.rglob("*.py")):
        parts = file.relative_to(stdlib).parts
        if parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in parts:
            continue
        try:
            tree = ast.parse(file.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in [tree, *(n for n in ast.walk(tree) if isinstance(
                n, (ast.ClassDef, ast.FunctionDef)))]:
            doc = ast.get_docstring(node)
            if doc and len(doc) > 800:
                name = file.stem if node is tree else f"{file.stem}.{node.name}"
                found.append((name, doc))
    return found[:limit]


def _page(title: str, paragraphs: list[str], lang: str = "en") -> str:
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p.strip())
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script>window.dataLayer = window.dataLayer || []; function gtag(){{}}</script></head>
<body>
<div id="cookie-banner">We use cookies to improve your experience. <a href="#">Accept all</a>
<a href="#">Manage preferences</a></div>
<nav><ul><li><a href="/">Home</a></li><li><a href="/docs">Docs</a></li>
<li><a href="/blog">Blog</a></li><li><a href="/about">About us</a></li></ul></nav>
<main><article><h1>{html.escape(title)}</h1>
{body}
</article></main>
<aside><h3>Related posts</h3><ul><li><a href="/a">Ten tips</a></li><li><a href="/b">Read more</a>
</li></ul></aside>
<footer>© 2026 Example Media. All rights reserved. <a href="/privacy">Privacy policy</a>
| <a href="/terms">Terms of use</a></footer>
</body></html>"""


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def _edit(paragraphs: list[str], rng: random.Random, rate: float = 0.03) -> list[str]:
    """A re-published copy: a few words replaced or dropped, a byline added."""
    out = []
    for para in paragraphs:
        words = para.split()
        for i in range(len(words)):
            roll = rng.random()
            if roll < rate / 2:
                words[i] = rng.choice(["also", "really", "often", "simply", "now"])
            elif roll < rate:
                words[i] = ""
        out.append(" ".join(w for w in words if w))
    return ["Republished with permission from the original author.", *out]


def _contact(rng: random.Random, n: int) -> str:
    user = rng.choice(["maria.lopez", "j.smith", "support", "dev-team", "k.tanaka"])
    phone = rng.choice(["+44 20 7946 0958", "+1 (415) 555-0132", "+49 30 901820",
                        "(212) 555-0147", "+33 1 42 68 53 00"])
    return (f"Questions about this article? Write to {user}{n}@example.com or call {phone}. "
            f"Our office answers on weekdays between nine and five.")


def _secret(rng: random.Random) -> str:
    key = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    return (f"For the example we configured the client with the access key {key} in the "
            "environment, which you should never publish in a real deployment.")


def pages(seed: int = 7, limit: int = 1000) -> list[tuple[str, str]]:
    """(url, html) for every page of the crawl, in crawl order."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for n, (title, text) in enumerate(articles(limit)):
        paras = _paragraphs(text)
        slug = title.replace(".", "-").lower()
        if n % 9 == 0:
            paras.append(_contact(rng, n))
        if n % 23 == 0:
            paras.append(_secret(rng))
        out.append((f"https://docs.example.org/{slug}", _page(title, paras)))
        if n % 10 == 0:  # a mirror: byte-identical article under another URL
            out.append((f"https://mirror.example.net/{slug}", _page(title, paras)))
        if n % 7 == 0:  # a near duplicate: a re-published, lightly edited copy
            out.append((f"https://blog.example.com/{slug}", _page(title, _edit(paras, rng))))
        if n % 15 == 0:  # the same page, on a domain the user blocks
            out.append((f"https://ads.tracker-farm.biz/{slug}", _page(title, paras)))
    for lang, texts in FOREIGN.items():
        for i in range(2):
            paras = texts[::-1] if i else texts
            out.append((f"https://{lang}.example.org/page-{i}", _page(f"{lang} {i}", paras, lang)))
    for i in range(12):  # keyword spam and link farms
        words = [rng.choice(SPAM_WORDS) for _ in range(300)]
        spam = _page("Best deals", [" ".join(words)])
        out.append((f"https://deals.example.shop/offer-{i}", spam))
        out.append((f"https://links.example.shop/{i}", _page(
            "Links", ["Click here" for _ in range(40)])))
    rng.shuffle(out)
    return out


def write_warc(path: Path, seed: int = 7, limit: int = 1000) -> Path:
    """Write the crawl as a gzipped WARC (response records with HTTP headers), once."""
    if path.exists():
        return path
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with open(tmp, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for n, (url, page) in enumerate(pages(seed, limit)):
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                       protocol="HTTP/1.1")
            date = (start + timedelta(seconds=37 * n)).strftime("%Y-%m-%dT%H:%M:%SZ")
            record = writer.create_warc_record(
                url, "response", payload=io.BytesIO(page.encode("utf-8")),
                http_headers=headers, warc_headers_dict={"WARC-Date": date})
            writer.write_record(record)
    tmp.replace(path)
    return path
