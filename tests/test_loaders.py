"""Loaders for text curation: HTML (main content), WARC, PDF, Markdown, Hugging Face datasets.

Every input is built here: pages with navigation and footers around an article, WARC files
written with warcio, PDFs written by hand (a valid file with a text layer), datasets saved
with `save_to_disk`. Bad input: malformed HTML, truncated WARC records, encrypted, corrupt
and empty PDFs, empty files.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import InputError, OperationError, PipelineError
from datamill.io.files import ROW_BITS

from .conftest import write_jsonl

ARTICLE = [
    "Good coffee starts with fresh beans. Buy whole beans roasted within the last few weeks "
    "and grind them just before brewing, because ground coffee loses its aroma in minutes.",
    "The ratio of coffee to water matters more than the method. Start with sixty grams of "
    "coffee per litre of water and adjust to taste: more for a stronger cup, less for less.",
    "Water should sit between ninety and ninety-six degrees Celsius. Boiling water scorches "
    "the grounds and brings out bitter compounds that hide the sweetness of the bean.",
]
BOILERPLATE = ["Subscribe to our newsletter", "Ten mugs you must own", "Cookie settings",
               "All rights reserved", "Log in to your account"]


def page(title: str, paragraphs: list[str], lang: str = "en", extra: str = "") -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title} | The Daily Bean</title>
<link rel="canonical" href="https://example.org/{title.lower().replace(' ', '-')}">
<meta property="article:published_time" content="2024-03-05T10:00:00Z"></head>
<body>
<div class="cookie-banner">We use cookies. <a href="/cookies">Cookie settings</a></div>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
<li><a href="/login">Log in to your account</a></li></ul></nav></header>
<aside class="sidebar"><h3>Popular posts</h3><ul><li><a href="/a">Ten mugs you must own</a>
</li><li><a href="/b">Our favourite grinders</a></li></ul></aside>
<main><article><h1>{title}</h1>
{body}
{extra}
</article></main>
<footer><p>Subscribe to our newsletter</p><p>Copyright 2024 The Daily Bean. All rights
reserved.</p><p><a href="/privacy">Privacy policy</a></p></footer>
</body></html>"""


TABLE = ("<table><tr><th>Method</th><th>Grind</th></tr>"
         "<tr><td>French press</td><td>coarse</td></tr></table>")


def collect(ds: dm.Dataset, workdir: Path, columns: list[str] | None = None) -> pa.Table:
    return ds.collect(workdir, columns=columns, workers=1, progress=False)


# --- HTML --------------------------------------------------------------------------------

@pytest.fixture
def html_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    (folder / "blog").mkdir(parents=True)
    (folder / "index.html").write_text(page("Brewing coffee at home", ARTICLE, extra=TABLE))
    (folder / "blog" / "tea.htm").write_text(
        page("Tea", ["Green tea wants cooler water than black tea, around seventy to eighty "
                     "degrees, and a shorter steep of two minutes at most.",
                     "Loose leaves unfold better than tea bags and can be steeped twice."],
             lang="en-GB"), encoding="utf-8")
    return folder


def test_read_html_keeps_the_main_content_and_drops_boilerplate(tmp_path, html_dir):
    assert dm.Dataset.read(html_dir)._step.op.name == "read_html"  # a folder of HTML
    (html_dir / "notes.txt").write_text("not html")  # a mixed folder reads as text...
    assert dm.Dataset.read(html_dir)._step.op.name == "read_text_files"
    ds = dm.Dataset.read(html_dir, format="html")  # ...unless told: only HTML files then
    table = collect(ds, tmp_path / "w", columns=["_id", "path", "url", "title", "text",
                                                 "language", "date"])
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == ["blog/tea.htm", "index.html"]
    coffee = rows[1]
    for paragraph in ARTICLE:
        assert paragraph in coffee["text"]
    assert "French press | coarse" in coffee["text"]  # tables kept by default
    for text in (r["text"] for r in rows):
        for junk in BOILERPLATE:
            assert junk not in text
    assert coffee["title"] == "Brewing coffee at home"
    assert coffee["url"] == "https://example.org/brewing-coffee-at-home"
    assert str(coffee["date"]) == "2024-03-05"
    assert [r["language"] for r in rows] == ["en-GB", "en"]
    assert [r["_id"] for r in rows] == [0, 1 << ROW_BITS]  # file ordinals: stable ids
    again = collect(dm.Dataset.read(html_dir, format="html"), tmp_path / "w2",
                    columns=["_id", "text"])
    assert again.to_pylist() == table.select(["_id", "text"]).to_pylist()

    no_tables = collect(dm.Dataset.read(html_dir / "index.html", include_tables=False),
                        tmp_path / "w3")
    assert "French press" not in no_tables["text"][0].as_py()
    raw = collect(dm.Dataset.read(html_dir / "index.html", format="text"), tmp_path / "w4")
    assert "<nav>" in raw["text"][0].as_py()  # format="text" keeps the markup


def test_read_html_malformed_empty_and_binary_files(tmp_path):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "a_malformed.html").write_text(
        "<html><body><div><p>Unclosed paragraph about brewing with a moka pot on the stove"
        "<p>Second paragraph <b>never closes its bold<table><tr><td>cell text</body>")
    (folder / "b_empty.html").write_bytes(b"")
    (folder / "c_binary.html").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 4)
    (folder / "d_latin1.html").write_bytes(
        "<html><head><meta charset='iso-8859-1'></head><body><p>Un café crème, s'il vous "
        "plaît, et une part de gâteau.</p></body></html>".encode("latin-1"))

    with pytest.raises(InputError) as info:
        collect(dm.Dataset.read(folder), tmp_path / "w1")
    assert "c_binary.html" in str(info.value) and "not HTML" in str(info.value)
    assert "errors='skip'" in str(info.value)

    skipped = collect(dm.Dataset.read(folder, errors="skip"), tmp_path / "w2").to_pylist()
    assert [r["path"] for r in skipped] == ["a_malformed.html", "b_empty.html",
                                            "d_latin1.html"]
    malformed, empty, latin = skipped
    assert "moka pot" in malformed["text"] and "cell text" in malformed["text"]
    assert empty["text"] is None and empty["title"] is None  # nothing to extract: null
    assert "café crème" in latin["text"]

    kept = collect(dm.Dataset.read(folder, errors="keep"), tmp_path / "w3").to_pylist()
    assert len(kept) == 4
    binary = kept[2]
    assert binary["path"] == "c_binary.html" and binary["text"] is None
    assert "c_binary.html" in binary["error"] and "not HTML" in binary["error"]
    assert all(r["error"] is None for r in kept if r is not binary)


def test_extract_html_from_a_column_respects_on_error(tmp_path):
    rows = [{"url": "https://example.org/a", "html": page("Brewing", ARTICLE)},
            {"url": "https://example.org/b", "html": "<div><p>A bare fragment that still "
                                                     "holds a sentence worth keeping.</p>"},
            {"url": "https://example.org/c", "html": None},
            {"url": "https://example.org/d", "html": "<html><head></head><body></body></html>"},
            {"url": "https://example.org/e", "html": "\x00\x01binary\x00" * 10}]
    src = write_jsonl(tmp_path / "pages.jsonl", rows)
    ds = dm.Dataset.read(src)

    with pytest.raises(OperationError) as info:
        collect(ds.apply("extract_html"), tmp_path / "w1")
    assert "extract_html" in str(info.value) and "column 'html': binary data, not HTML" in \
        str(info.value)
    assert info.value.row_id is not None

    out = ds.apply("extract_html", on_error="quarantine")
    assert list(out.schema)[-2:] == ["text", "title"]
    table = collect(out, tmp_path / "w2").to_pylist()
    assert [r["url"][-1] for r in table] == ["a", "b", "c", "d"]  # e quarantined
    assert all(p in table[0]["text"] for p in ARTICLE)
    assert "Subscribe to our newsletter" not in table[0]["text"]
    assert table[0]["title"] == "Brewing"
    assert table[1]["text"] == "A bare fragment that still holds a sentence worth keeping."
    assert table[2]["text"] is None and table[3]["text"] is None  # nothing to extract

    in_place = ds.apply("extract_html", output="html", title=None, on_error="skip")
    assert "title" not in in_place.schema
    texts = collect(in_place, tmp_path / "w3")["html"].to_pylist()
    assert texts[1].startswith("A bare fragment")


# --- WARC --------------------------------------------------------------------------------

LATIN = "<html><head><title>Crème</title></head><body><p>Un café crème.</p></body></html>"
WARC_PAGES = [
    ("https://example.org/coffee", "text/html; charset=utf-8",
     page("Brewing coffee at home", ARTICLE).encode("utf-8")),
    ("https://example.org/latin", "text/html; charset=windows-1252", LATIN.encode("cp1252")),
    ("https://example.org/logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
    ("https://example.org/meta", "text/html",
     b"<html><head><meta charset='iso-8859-1'></head><body><p>Cr\xe8me br\xfbl\xe9e</p>"
     b"</body></html>"),
    ("https://example.org/sniffed", "text/html", "<p>Ünïcödé without a charset</p>".encode()),
]


def write_warc(path: Path, gz: bool, pages: list[tuple[str, str, bytes]] = WARC_PAGES) -> Path:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gz)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))
        for url, content_type, body in pages:
            request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.org")],
                                       is_http_request=True)
            writer.write_record(writer.create_warc_record(
                url, "request", payload=io.BytesIO(b""), http_headers=request))
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)],
                                       protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers,
                warc_headers_dict={"WARC-Date": "2024-03-05T10:00:00Z"}))
            writer.write_record(writer.create_warc_record(
                url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"),
                warc_content_type="application/warc-fields"))
    return path


def test_read_warc_responses_only_decoded(tmp_path):
    folder = tmp_path / "crawl"
    folder.mkdir()
    write_warc(folder / "a.warc.gz", gz=True)
    write_warc(folder / "b.warc", gz=False)
    ds = dm.Dataset.read(folder)
    assert ds._step.op.name == "read_warc" and len(ds._step.op.partitions()) == 2
    table = collect(ds, tmp_path / "w", columns=["_id", "path", "url", "date", "status",
                                                 "content_type", "charset", "html",
                                                 "record_id"])
    rows = table.to_pylist()
    urls = [u for u, ctype, _ in WARC_PAGES if ctype.startswith("text/html")]
    assert [r["url"] for r in rows] == urls * 2  # request/metadata/warcinfo/png skipped
    assert [r["path"] for r in rows] == ["a.warc.gz"] * 4 + ["b.warc"] * 4
    first = rows[0]
    assert first["status"] == 200 and first["content_type"] == "text/html"
    assert first["date"].isoformat() == "2024-03-05T10:00:00+00:00"
    assert first["record_id"].startswith("<urn:uuid:")
    assert ARTICLE[0] in first["html"]
    by_url = {r["url"]: r for r in rows[:4]}
    assert "café crème" in by_url["https://example.org/latin"]["html"]
    assert by_url["https://example.org/latin"]["charset"] == "cp1252"
    assert "Crème brûlée" in by_url["https://example.org/meta"]["html"]  # <meta charset>
    assert "Ünïcödé" in by_url["https://example.org/sniffed"]["html"]  # UTF-8 fallback
    ids = [r["_id"] for r in rows]
    assert len(set(ids)) == len(ids) and all(i >> ROW_BITS == 1 for i in ids[4:])
    again = collect(dm.Dataset.read(folder), tmp_path / "w2", columns=["_id"])
    assert again["_id"].to_pylist() == ids  # ids are record offsets: stable

    every = collect(dm.Dataset.read(folder / "b.warc", mime_types=[]), tmp_path / "w3")
    assert "https://example.org/logo.png" in every["url"].to_pylist()

    texts = collect(ds.apply("extract_html").select("url", "text"), tmp_path / "w4")
    coffee = texts.to_pylist()[0]["text"]
    assert ARTICLE[1] in coffee and "Cookie settings" not in coffee


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_warc_keeps_the_records_before_the_damage(tmp_path, gz):
    full = write_warc(tmp_path / ("full.warc.gz" if gz else "full.warc"), gz=gz)
    data = full.read_bytes()
    folder = tmp_path / "cut"
    folder.mkdir()
    name = "cut.warc.gz" if gz else "cut.warc"
    # the last response record (sniffed) is cut near its end; its metadata record is lost
    records = _offsets(full)
    response_at, next_at = records[-2:]
    (folder / name).write_bytes(data[:next_at - (30 if gz else 10)])
    write_warc(folder / ("good.warc.gz" if gz else "good.warc"), gz=gz)

    with pytest.raises(InputError) as info:
        collect(dm.Dataset.read(folder), tmp_path / "w1")
    message = str(info.value)
    assert name in message and f"byte {response_at}" in message and "truncated" in message

    skipped = collect(dm.Dataset.read(folder, errors="skip"), tmp_path / "w2")
    paths = skipped["path"].to_pylist()
    assert paths.count(name) == 3 and paths.count(f"good.{name.split('.', 1)[1]}") == 4

    kept = collect(dm.Dataset.read(folder, errors="keep"), tmp_path / "w3",
                   columns=["_id", "path", "url", "html", "error"]).to_pylist()
    damaged = [r for r in kept if r["error"]]
    assert len(damaged) == 1 and damaged[0]["url"] == "https://example.org/sniffed"
    assert damaged[0]["_id"] & ((1 << ROW_BITS) - 1) == response_at
    assert damaged[0]["html"] is None and f"byte {response_at}" in damaged[0]["error"]


def _offsets(path: Path) -> list[int]:
    """Byte offsets of the last response record of a WARC file and of the record after it."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    with open(path, "rb") as fh:
        records = ArchiveIterator(fh)
        for record in records:
            record.content_stream().read()
            out.append((record.rec_type, records.get_record_offset()))
    last = max(i for i, (kind, _) in enumerate(out) if kind == "response")
    return [out[last][1], out[last + 1][1]]


def test_empty_and_garbage_warc_files(tmp_path):
    folder = tmp_path / "crawl"
    folder.mkdir()
    (folder / "empty.warc").write_bytes(b"")
    (folder / "garbage.warc.gz").write_bytes(gzip.compress(b"this is not a WARC file\n" * 3))
    write_warc(folder / "ok.warc", gz=False)
    with pytest.raises(InputError) as info:
        collect(dm.Dataset.read(folder), tmp_path / "w1")
    assert "garbage.warc.gz" in str(info.value) and "byte 0" in str(info.value)
    rows = collect(dm.Dataset.read(folder, errors="keep"), tmp_path / "w2").to_pylist()
    assert [r["path"] for r in rows] == ["garbage.warc.gz"] + ["ok.warc"] * 4
    assert rows[0]["error"] and rows[0]["html"] is None  # empty.warc: no records, no error


# --- PDF ---------------------------------------------------------------------------------

def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A valid PDF whose pages hold `pages` as text (Helvetica, one line per text line)."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        lines = [b"BT /F1 12 Tf 72 720 Td 14 TL"]
        for line in text.split("\n"):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            lines.append(b"(" + escaped.encode("latin-1") + b") Tj T*")
        stream = b"\n".join([*lines, b"ET"])
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       b"<< /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects))
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
                  + b"] /Count %d >>" % len(kids))
    info = b""
    if title:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
        info = b" /Info %d 0 R" % len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, info, xref)
    return bytes(out)


def encrypt(data: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password,
                   algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def pdf_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "a_report.pdf").write_bytes(make_pdf(
        ["Annual report (draft)\nRevenue grew in every region.", "Outlook\nSteady growth."],
        title="Annual report"))
    (folder / "b_memo.pdf").write_bytes(make_pdf(["Memo: the office closes at noon."]))
    return folder


def test_read_pdf_per_document_and_per_page(tmp_path, pdf_dir):
    ds = dm.Dataset.read(pdf_dir)
    assert ds._step.op.name == "read_pdf"
    docs = collect(ds, tmp_path / "w1", columns=["_id", "path", "text", "pages", "title"])
    assert docs.to_pylist() == [
        {"_id": 0, "path": "a_report.pdf", "pages": 2, "title": "Annual report",
         "text": "Annual report (draft)\nRevenue grew in every region.\n\nOutlook\n"
                 "Steady growth."},
        {"_id": 1 << ROW_BITS, "path": "b_memo.pdf", "pages": 1, "title": None,
         "text": "Memo: the office closes at noon."}]

    pages = collect(dm.Dataset.read(pdf_dir, per="page"), tmp_path / "w2",
                    columns=["_id", "path", "page", "text"]).to_pylist()
    assert [(r["path"], r["page"]) for r in pages] == [
        ("a_report.pdf", 1), ("a_report.pdf", 2), ("b_memo.pdf", 1)]
    assert [r["_id"] for r in pages] == [0, 1, 1 << ROW_BITS]
    assert pages[1]["text"].strip() == "Outlook\nSteady growth."


def test_bad_pdfs_are_named_and_follow_errors(tmp_path, pdf_dir):
    good = make_pdf(["Secret plans for the launch."])
    (pdf_dir / "c_encrypted.pdf").write_bytes(encrypt(good, "s3cret"))
    (pdf_dir / "d_owner_only.pdf").write_bytes(encrypt(good, ""))  # opens without password
    (pdf_dir / "e_corrupt.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    (pdf_dir / "f_truncated.pdf").write_bytes(good[: len(good) // 2])
    (pdf_dir / "g_empty.pdf").write_bytes(b"")
    (pdf_dir / "h_not_pdf.pdf").write_text("<html>a web page saved as .pdf</html>")

    for only, words in [("c_encrypted.pdf", "password"), ("e_corrupt.pdf", "corrupt PDF"),
                        ("f_truncated.pdf", "corrupt PDF"), ("g_empty.pdf", "empty file"),
                        ("h_not_pdf.pdf", "not a PDF")]:
        with pytest.raises(InputError) as info:
            collect(dm.Dataset.read(pdf_dir / only), tmp_path / f"w-{only}")
        assert only in str(info.value) and words in str(info.value)

    skipped = collect(dm.Dataset.read(pdf_dir, errors="skip"), tmp_path / "w1")
    assert skipped["path"].to_pylist() == ["a_report.pdf", "b_memo.pdf", "d_owner_only.pdf"]
    assert skipped["text"][2].as_py() == "Secret plans for the launch."

    kept = collect(dm.Dataset.read(pdf_dir, errors="keep", per="page"), tmp_path / "w2")
    errors = {r["path"]: r["error"] for r in kept.to_pylist() if r["error"]}
    assert sorted(errors) == ["c_encrypted.pdf", "e_corrupt.pdf", "f_truncated.pdf",
                              "g_empty.pdf", "h_not_pdf.pdf"]
    assert "pass password=" in errors["c_encrypted.pdf"]
    assert kept.num_rows == 4 + len(errors)

    # the step's on_error reaches a reader that has its own `errors` policy
    by_policy = dm.Dataset.read(pdf_dir, on_error="skip").write(tmp_path / "o5").run(
        workdir=tmp_path / "w5")
    assert pq.read_table(tmp_path / "o5")["path"].to_pylist() == skipped["path"].to_pylist()
    assert by_policy.steps[0]["counters"] == {"bad_input_skipped": 5}  # counted in the stats
    by_quarantine = collect(dm.Dataset.read(pdf_dir, on_error="quarantine"), tmp_path / "w6")
    assert by_quarantine["path"].to_pylist() == skipped["path"].to_pylist()
    quarantined = dm.quarantined_rows(tmp_path / "w6")  # set aside with file and reason
    assert sorted(Path(p).name for p in quarantined["_path"].to_pylist()) == sorted(errors)
    assert "pass password=" in " ".join(quarantined["_error"].to_pylist())

    opened = collect(dm.Dataset.read(pdf_dir / "c_encrypted.pdf", password="s3cret"),
                     tmp_path / "w3")
    assert opened["text"].to_pylist() == ["Secret plans for the launch."]
    with pytest.raises(InputError, match="password given is wrong"):
        collect(dm.Dataset.read(pdf_dir / "c_encrypted.pdf", password="nope"), tmp_path / "w4")


def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch, pdf_dir):
    monkeypatch.setitem(sys.modules, "pypdf", None)
    with pytest.raises(PipelineError, match=r"pip install 'datamill\[pdf\]'"):
        dm.Dataset.read(pdf_dir)


# --- Markdown and plain text -------------------------------------------------------------

MARKDOWN = """---
title: Getting started
tags: [intro]
---
# Getting *started*

Install it with `pip install datamill`. Read [the guide](https://example.org/guide)
before you begin.<br>

- first **step**
- second step

| option | meaning |
|---|---|
| workers | processes |

```python
print("hello")
```

<div class="note">raw HTML</div>

![a diagram of the pipeline](diagram.png)
"""


def test_markdown_read_as_is_or_stripped_to_plain_text(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "guide.md").write_text(MARKDOWN)
    (folder / "plain.txt").write_text("# not a heading in a .txt *file*\n")
    (folder / "empty.md").write_text("")
    ds = dm.Dataset.read(folder)
    assert ds._step.op.name == "read_text_files"
    raw = collect(ds, tmp_path / "w1").to_pylist()
    assert [r["path"] for r in raw] == ["empty.md", "guide.md", "plain.txt"]
    assert raw[1]["text"] == MARKDOWN

    stripped = collect(dm.Dataset.read(folder, markdown="strip"), tmp_path / "w2").to_pylist()
    assert stripped[0]["text"] == ""
    assert stripped[1]["text"] == (
        "Getting started\n\n"
        "Install it with pip install datamill. Read the guide\nbefore you begin.\n\n"
        "first step\nsecond step\n\n"
        "option | meaning\nworkers | processes\n\n"
        'print("hello")\n\n'
        "a diagram of the pipeline\n")
    assert stripped[2]["text"] == raw[2]["text"]  # only Markdown files are stripped


def test_text_files_skip_or_keep_undecodable_files(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    (folder / "b.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="b.txt.*not valid utf-8"):
        collect(dm.Dataset.read(folder), tmp_path / "w1")
    kept = collect(dm.Dataset.read(folder, errors="keep"), tmp_path / "w2").to_pylist()
    assert kept[0] == {"path": "a.txt", "text": "fine", "error": None}
    assert kept[1]["text"] is None and "not valid utf-8" in kept[1]["error"]


# --- Hugging Face datasets ---------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> Path:
    import datasets

    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf")
    ds = datasets.Dataset.from_dict({"text": [f"document {i}" for i in range(2500)],
                                     "label": [i % 3 for i in range(2500)],
                                     "meta": [{"source": "s", "n": i} for i in range(2500)]})
    ds.save_to_disk(str(root / "single"), num_shards=2)
    datasets.DatasetDict({"train": ds.select(range(100)), "test": ds.select(range(100, 110))}
                         ).save_to_disk(str(root / "dict"))
    for split, rows in (("train", range(0, 30)), ("test", range(30, 40))):
        folder = root / "parquet" / "default" / split
        folder.mkdir(parents=True)
        ds.select(rows).to_parquet(str(folder / "0000.parquet"))
    return root


def test_read_hf_save_to_disk_in_partitions(tmp_path, hf_folders):
    folder = hf_folders / "single"
    shards = sorted(folder.glob("*.arrow"))
    assert len(shards) > 1
    ds = dm.Dataset.read(folder, rows_per_partition=300)
    assert ds._step.op.name == "read_hf"
    assert set(ds.schema) == {"text", "label", "meta"}
    parts = ds._step.op.partitions()
    assert len(parts) > len(shards)  # files are split into groups of record batches
    table = collect(ds, tmp_path / "w1", columns=["_id", "text", "label", "meta"])
    assert table["text"].to_pylist() == [f"document {i}" for i in range(2500)]
    assert table["meta"][7].as_py() == {"source": "s", "n": 7}
    ids = table["_id"].to_pylist()
    assert len(set(ids)) == 2500 and ids[0] == 0 and ids[-1] >> ROW_BITS == len(shards) - 1
    same = collect(dm.Dataset.read(folder), tmp_path / "w2", columns=["_id"])
    assert same["_id"].to_pylist() == ids  # ids do not depend on rows_per_partition
    labels = collect(dm.Dataset.read(folder).select("label"), tmp_path / "w3")
    assert labels.column_names == ["label"] and labels.num_rows == 2500


def test_read_hf_dataset_dict_and_parquet_export(tmp_path, hf_folders):
    with pytest.raises(InputError, match=r"split= one of \['train', 'test'\]"):
        dm.Dataset.read(hf_folders / "dict")
    test = collect(dm.Dataset.read(hf_folders / "dict", split="test"), tmp_path / "w1")
    assert test["text"].to_pylist() == [f"document {i}" for i in range(100, 110)]

    parquet = dm.Dataset.read("read_hf", path=str(hf_folders / "parquet"), split="test")
    assert collect(parquet, tmp_path / "w2")["text"].to_pylist() == [
        f"document {i}" for i in range(30, 40)]
    both = collect(dm.Dataset.read("read_hf", path=str(hf_folders / "parquet")),
                   tmp_path / "w3")
    assert both.num_rows == 40
    with pytest.raises(InputError, match="split 'validation'"):
        dm.Dataset.read("read_hf", path=str(hf_folders / "parquet"), split="validation")
    with pytest.raises(PipelineError, match="either path= .* or name="):
        dm.Dataset.read("read_hf")


def test_read_hf_hub_name_reads_the_cache_files(tmp_path, hf_folders, monkeypatch):
    import datasets

    calls = []

    def load_dataset(name, config=None, split=None, revision=None):
        calls.append((name, config, split, revision))
        return datasets.load_from_disk(str(hf_folders / "dict" / "train"))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    ds = dm.Dataset.read("read_hf", name="someone/docs", split="train")
    table = collect(ds, tmp_path / "w")
    assert calls[0] == ("someone/docs", None, "train", None)
    assert table["text"].to_pylist() == [f"document {i}" for i in range(100)]


def test_loaders_are_in_the_catalogue_and_the_cli(tmp_path, capsys):
    from datamill.cli import main

    assert main(["ops", "show", "read_warc"]) == 0
    shown = capsys.readouterr().out
    assert "mime_types" in shown and "errors" in shown
    assert main(["ops", "list"]) == 0
    listed = capsys.readouterr().out
    for name in ("read_html", "extract_html", "read_warc", "read_pdf", "read_hf"):
        assert name in listed
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "bad.pdf").write_bytes(b"")
    (tmp_path / "pipeline.py").write_text(
        "from datamill import Dataset\n"
        f"pipeline = Dataset.read({str(folder)!r}, errors='skip').write({str(tmp_path / 'o')!r})"
        "\n")
    assert main(["run", str(tmp_path / "pipeline.py"), "--workdir", str(tmp_path / "w"),
                 "--workers", "1", "--no-progress"]) == 0
    lineage = json.loads((tmp_path / "o" / "_datamill_lineage.json").read_text())
    assert lineage  # the run finished although the only file was bad


@pytest.mark.parametrize("gz", [False, True])
def test_a_warc_cut_anywhere_reads_whole_records_and_reports_the_rest(tmp_path, gz):
    from datamill.io.warc import ReadWarc

    full = write_warc(tmp_path / ("full.warc.gz" if gz else "full.warc"), gz=gz)
    data = full.read_bytes()
    expected = {url: body for url, ctype, body in WARC_PAGES if ctype.startswith("text/html")}
    boundaries = set(_record_ends(full)) if not gz else set()
    cut_file = tmp_path / ("cut.warc.gz" if gz else "cut.warc")
    for cut in range(0, len(data), 13):
        cut_file.write_bytes(data[:cut])
        op = ReadWarc(path=str(cut_file), errors="keep")
        rows = [r for batch in op.read(op.partitions()[0], None) for r in batch.to_pylist()]
        good = [r for r in rows if r["error"] is None]
        for row in good:  # never a partial body
            assert row["html"].encode(row["charset"]) == expected[row["url"]]
        if not gz and cut not in boundaries:
            assert [r for r in rows if r["error"]], f"cut at byte {cut} went unnoticed"


def _record_ends(path: Path) -> list[int]:
    """Cut points that leave only whole records: each record's start, end and trailer."""
    from warcio.archiveiterator import ArchiveIterator

    ends = [0]
    with open(path, "rb") as fh:
        records = ArchiveIterator(fh)
        for record in records:
            record.content_stream().read()
            start, length = records.get_record_offset(), records.get_record_length()
            ends += [start, *range(start + length, start + length + 5)]
    return ends


def test_the_example_in_docs_loaders_runs(tmp_path, monkeypatch):
    import re

    doc = (Path(__file__).parent.parent / "docs" / "loaders.md").read_text()
    block = re.findall(r"```python\n(.*?)```", doc, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crawl").mkdir()
    pages = [(f"https://example.org/{i}", "text/html", page(f"Page {i}", ARTICLE).encode())
             for i in range(3)]
    write_warc(tmp_path / "crawl" / "a.warc.gz", gz=True, pages=pages)
    write_warc(tmp_path / "crawl" / "b.warc.gz", gz=True, pages=[
        ("https://example.org/empty", "text/html", b"<html><body></body></html>")])
    namespace: dict = {}
    exec(compile(block, "docs/loaders.md", "exec"), namespace)  # noqa: S102
    result = namespace["pages"].run(tmp_path / "work", workers=1, progress=False)
    assert result.step("text_length_filter")["dropped"] == {"null_text": 1}
    out = dm.Dataset.read(tmp_path / "out" / "pages").collect(tmp_path / "w2", workers=1,
                                                              progress=False)
    assert out.column_names == ["url", "date", "title", "text"]
    assert out["title"].to_pylist() == ["Page 0", "Page 1", "Page 2"]
