"""`datamill explore`: every route of pages 1-4 at the HTTP level, on real workdirs."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("starlette")  # the `explore` extra (declared in `test`)

from .explore_fixtures import (  # noqa: F401
    XSS_IMG,
    XSS_SHORT,
    image_workdir,
    text_workdir,
)

BASE = "http://127.0.0.1:8765"


@pytest.fixture(autouse=True)
def _stats_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Column statistics are cached outside the workdir: here, in the test's folder."""
    monkeypatch.setenv("DATAMILL_EXPLORE_CACHE", str(tmp_path / "stats-cache"))


@pytest.fixture(scope="module")
def client(text_workdir: Path, image_workdir: Path):  # noqa: F811
    from starlette.testclient import TestClient

    from datamill.explore.app import create_app

    return TestClient(create_app([text_workdir, image_workdir]), base_url=BASE)


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]


def cells(page: str) -> list[str]:
    """The text of every table cell of the page."""
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r'<td class="(?:text|num)">(.*?)</td>', page, re.S)]


# --- page 1: workdirs and the run overview ---------------------------------------------
def test_index_lists_the_workdirs(client, text_workdir: Path) -> None:  # noqa: F811
    r = client.get("/")
    assert r.status_code == 200
    assert str(text_workdir) in r.text
    assert "/run/0/" in links(r.text) and "/run/1/" in links(r.text)


def test_one_workdir_redirects_to_its_overview(text_workdir: Path) -> None:  # noqa: F811
    from starlette.testclient import TestClient

    from datamill.explore.app import create_app

    r = TestClient(create_app([text_workdir]), base_url=BASE).get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/run/0/"


def test_overview_shows_graph_funnel_and_steps(client) -> None:
    r = client.get("/run/0/")
    assert r.status_code == 200
    page = r.text
    assert page.count('class="chart graph"') == 1 and page.count('class="chart funnel"') == 1
    for step in ("read_jsonl", "redact_pii", "text_length_filter", "python_map",
                 "drop_duplicates"):
        assert f"/run/0/step/{step}/" in links(page)
    # the funnel's drop segments lead to the dropped rows of each reason
    assert "/run/0/step/text_length_filter/dropped?reason=too_few_words" in links(page)
    assert "/run/0/step/drop_duplicates/dropped?reason=duplicate" in links(page)
    assert "9 dropped (too_few_words)" in page  # the segment's tooltip
    assert "email 7" in page  # redact_pii's counters
    assert "computed" in page


# --- page 2: a step, its dropped and quarantined rows --------------------------------
def test_step_page_spec_arguments_counters_and_samples(client) -> None:
    r = client.get("/run/0/step/text_length_filter/")
    assert r.status_code == 200
    page = r.text
    assert "min_words" in page  # an argument, with its description from the spec
    assert "too_few_words: 9 rows" in page
    assert "/run/0/step/text_length_filter/dropped?reason=too_few_words" in links(page)
    section = page.split("too_few_words: 9 rows")[1].split("<h2>")[0]
    assert section.count('<tr data-href="/run/0/row/') == 5  # a sample of 5 rows
    texts = re.findall(r'<td class="text">\s*([^<]*?)\s*</td>', section)
    assert html.escape(XSS_SHORT) in texts  # the one-word texts, escaped
    pii = client.get("/run/0/step/redact_pii/").text
    assert "rows_with_pii 7" in pii and "pii_counts" in pii


def test_dropped_rows_are_paged_with_their_content(client) -> None:
    url = "/run/0/step/text_length_filter/dropped"
    first = client.get(url, params={"reason": "too_few_words", "size": 4})
    assert first.status_code == 200
    assert "9 rows, showing 1–4" in first.text
    second = client.get(url, params={"reason": "too_few_words", "size": 4, "page": 2})
    assert "showing 9–9" in second.text
    ids = set()
    for page in (0, 1, 2):
        text = client.get(url, params={"reason": "too_few_words", "size": 4,
                                       "page": page}).text
        ids |= set(re.findall(r'href="/run/0/row/(\d+)"', text))
    assert len(ids) == 9  # every dropped row once, across pages
    dups = client.get("/run/0/step/drop_duplicates/dropped").text
    assert "duplicate" in dups and "cluster_id" in dups


def test_quarantined_rows_show_their_error(client) -> None:
    r = client.get("/run/0/step/python_map/quarantine")
    assert r.status_code == 200
    assert "row 13 is unlucky" in r.text
    assert "1 rows, showing 1–1" in r.text
    step = client.get("/run/0/step/python_map/").text
    assert "row 13 is unlucky" in step


def test_image_steps_show_thumbnails_never_the_data_bytes(client) -> None:
    from io import BytesIO

    from PIL import Image

    page = client.get("/run/1/step/image_filter/").text
    assert "too_small: 1 rows" in page and "vector_refused: 1 rows" in page
    thumbs = re.findall(r'src="(/run/1/step/[^"]+/thumb/[^"]+)"', page)
    assert len(thumbs) == 2  # the tiny image and the SVG, dropped
    for src in thumbs:
        r = client.get(html.unescape(src))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(BytesIO(r.content)).format == "PNG"
        assert b"<svg" not in r.content and b"alert" not in r.content
    rows = client.get("/run/1/step/image_info/rows").text
    kept = re.findall(r'src="(/run/1/step/image_info/thumb/[^"]+)"', rows)
    assert len(kept) == 4
    image = Image.open(BytesIO(client.get(html.unescape(kept[0])).content))
    assert max(image.size) <= 256 and image.size != (48, 48)  # a real thumbnail


def test_quarantined_images_show_as_thumbnails(client) -> None:
    from io import BytesIO

    from PIL import Image

    from datamill.explore.media import placeholder

    page = client.get("/run/1/step/python_map/quarantine").text
    assert "coffee is not allowed here" in page
    (src,) = re.findall(r'src="(/run/1/step/python_map/qthumb/[^"]+)"', page)
    r = client.get(html.unescape(src))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content != placeholder()
    image = Image.open(BytesIO(r.content))
    assert max(image.size) == 256  # the 600 x 400 photo, fitted
    assert client.get(html.unescape(src).replace("/0/image", "/9/image")).status_code == 404


# --- page 3: column statistics ---------------------------------------------------------
def test_column_statistics_are_computed_once_per_step(client) -> None:
    from datamill.explore import stats

    stats._MEMORY.clear()
    key = client.app.app.state.explorer.runs[0].steps["python_map"].key
    before = stats.COMPUTED[key]
    shell = client.get("/run/0/step/python_map/stats")  # nothing cached: the page at once
    assert shell.status_code == 200 and stats.COMPUTED[key] == before
    assert 'hx-get="/run/0/step/python_map/stats?part=grid"' in shell.text
    assert 'hx-trigger="load"' in shell.text and "Computing the statistics" in shell.text
    grid = client.get("/run/0/step/python_map/stats", params={"part": "grid"})
    assert grid.status_code == 200 and "<html" not in grid.text  # a fragment, for htmx
    assert stats.COMPUTED[key] == before + 1
    r = client.get("/run/0/step/python_map/stats")  # cached now: the whole page
    assert r.status_code == 200 and "hx-get" not in r.text
    page = r.text
    for name in ("score", "words", "text", "lang", "pii_counts.email"):
        assert f"<h3>{name} " in page
    assert page.count('class="chart hist"') >= 4
    assert 'column=lang&amp;op=eq&amp;value=' in page  # top values link to the row browser
    assert stats.COMPUTED[key] == before + 1  # served from memory
    stats._MEMORY.clear()
    assert "<h3>score " in client.get("/run/0/step/python_map/stats").text
    assert stats.COMPUTED[key] == before + 1  # served from the cache folder


def test_statistics_values(text_workdir: Path) -> None:  # noqa: F811
    from datamill.explore.stats import compute
    from datamill.explore.workdir import RunView

    run = RunView(text_workdir)
    by_name = {f["name"]: f for f in compute(run, "python_map")}
    words = by_name["words"]
    assert words["count"] == 50 and words["nulls"] == 0
    assert sum(words["counts"]) == 50
    assert words["low"] >= 3  # text_length_filter kept rows of 3 words or more
    lang = by_name["lang"]
    assert {v for v, _n in lang["top"]} == {"en", "fr", "de"}
    assert sum(n for _v, n in lang["top"]) == 50


# --- page 4: the row browser and a row's lineage -------------------------------------
def test_row_browser_pages_and_filters(client) -> None:
    r = client.get("/run/0/step/drop_duplicates/rows", params={"size": 10})
    assert r.status_code == 200 and "47 rows, showing 1–10" in r.text
    paged = [i for page in range(5) for i in re.findall(
        r'<tr data-href="/run/0/row/(\d+)"', client.get(
            "/run/0/step/drop_duplicates/rows", params={"size": 10, "page": page}).text)]
    whole = re.findall(r'<tr data-href="/run/0/row/(\d+)"', client.get(
        "/run/0/step/drop_duplicates/rows", params={"size": 50}).text)
    assert paged == whole and len(set(whole)) == 47  # across both partitions, in order
    fr = client.get("/run/0/step/drop_duplicates/rows",
                    params={"column": "lang", "op": "eq", "value": "fr", "size": 200}).text
    count = int(re.search(r"([\d,]+) rows", fr).group(1))
    langs = [c for c in cells(fr) if c in ("en", "fr", "de")]
    assert langs and set(langs) == {"fr"} and len(langs) == count
    first = client.get("/run/0/step/drop_duplicates/rows",
                       params={"column": "lang", "value": "fr", "size": 3}).text
    assert "rows or more, showing 1–3" in first and "count=all" in first  # stopped early
    row_ids = re.compile(r'<tr data-href="/run/0/row/(\d+)"')
    assert row_ids.findall(first) == row_ids.findall(fr)[:3]
    counted = client.get("/run/0/step/drop_duplicates/rows",
                         params={"column": "lang", "value": "fr", "size": 3, "count": "all"})
    assert f"{count} rows, showing 1–3" in counted.text
    ranged = client.get("/run/0/step/python_map/rows",
                        params={"column": "words", "op": "range", "low": "20", "high": "25"})
    assert ranged.status_code == 200
    contains = client.get("/run/0/step/redact_pii/rows",
                          params={"column": "text", "op": "contains", "value": "EMAIL"})
    assert contains.status_code == 200  # redacted addresses read as placeholders


def test_row_filter_errors_are_400(client) -> None:
    url = "/run/0/step/python_map/rows"
    assert client.get(url, params={"column": "words", "value": "many"}).status_code == 400
    assert client.get(url, params={"column": "nope", "value": "1"}).status_code == 400
    assert client.get(url, params={"column": "words", "op": "drop"}).status_code == 400
    assert client.get(url, params={"page": "x"}).status_code == 400


def test_page_sizes_are_capped(client) -> None:
    r = client.get("/run/0/step/read_jsonl/rows", params={"size": 100000})
    assert "showing 1–60" in r.text  # 60 rows, under the cap of 200
    from datamill.explore.app import MAX_PAGE_SIZE

    assert MAX_PAGE_SIZE == 200


def test_lineage_of_a_kept_a_dropped_and_a_quarantined_row(client) -> None:
    rows = client.get("/run/0/step/read_jsonl/rows", params={"size": 60}).text
    ids = re.findall(r'href="/run/0/row/(\d+)"', rows)
    assert len(set(ids)) == 60
    # n is each row's number in the input: find the ids of rows 3 (too short) and 13 (fails)
    by_n = _ids_by_n(client)
    short = client.get(f"/run/0/row/{by_n[3]}").text
    assert "dropped</b>: " in short and "too_few_words" in short
    assert "not reached" in short  # the steps after the drop
    failed = client.get(f"/run/0/row/{by_n[13]}").text
    assert "quarantined</b>" in failed and "row 13 is unlucky" in failed
    kept = client.get(f"/run/0/row/{by_n[0]}").text
    assert kept.count(">kept<") + kept.count(">kept ") >= 1 and "dropped</b>" not in kept
    assert "<b>score</b>" in kept and "<b>pii_counts</b>" in kept
    dup_page = client.get("/run/0/step/drop_duplicates/dropped").text
    dup = re.findall(r'<tr data-href="/run/0/row/(\d+)"', dup_page)[0]
    dup_lineage = client.get(f"/run/0/row/{dup}").text
    kept_id = re.search(r'duplicate</a>\s*of row <a href="/run/0/row/(\d+)"', dup_lineage)
    assert kept_id and kept_id.group(1) != dup
    kept_lineage = client.get(f"/run/0/row/{kept_id.group(1)}").text
    assert "dropped</b>" not in kept_lineage  # the row its duplicates were dropped for
    missing = client.get("/run/0/row/123456789")
    assert missing.status_code == 200 and "No row with id" in missing.text
    assert client.get("/run/0/row/abc").status_code == 400


def _ids_by_n(client) -> dict[int, int]:
    page = client.get("/run/0/step/read_jsonl/rows", params={"size": 60}).text
    out = {}
    for row in re.findall(r"<tr data-href=\"/run/0/row/(\d+)\">(.*?)</tr>", page, re.S):
        values = cells(row[1])
        out[int(values[3])] = int(row[0])  # columns: id, partition, text, n, lang
    return out


# --- the static report -------------------------------------------------------------------
def test_report_is_one_self_contained_file(text_workdir: Path, image_workdir: Path,  # noqa: F811
                                           tmp_path: Path) -> None:
    from datamill.cli import main

    out = tmp_path / "report.html"
    assert main(["report", str(text_workdir), "-o", str(out)]) == 0
    page = out.read_text()
    assert "<script" not in page.lower()  # no script at all, and the payloads are escaped
    assert html.escape(XSS_SHORT) in page  # the dropped row, shown as text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert 'http-equiv="Content-Security-Policy"' in page
    assert 'class="chart funnel"' in page and "too_few_words" in page
    assert "row 13 is unlucky" in page
    images = tmp_path / "images.html"
    assert main(["report", str(image_workdir), "-o", str(images)]) == 0
    # the two dropped images and the quarantined photo, inline
    assert images.read_text().count('src="data:image/png;base64,') == 3
    assert main(["report", str(text_workdir), "-o", str(text_workdir / "r.html")]) == 1
    assert not (text_workdir / "r.html").exists()


def test_explore_command_checks_the_workdirs(tmp_path: Path, capsys) -> None:
    from datamill.cli import main

    assert main(["explore", str(tmp_path / "none"), "--no-browser"]) == 1
    assert "no such workdir" in capsys.readouterr().err


# --- the payloads in the data are escaped everywhere --------------------------------------
def test_xss_payloads_are_escaped_on_every_page(client) -> None:
    by_n = _ids_by_n(client)
    pages = ["/run/0/step/read_jsonl/rows?size=60", "/run/0/step/redact_pii/stats?part=page",
             f"/run/0/row/{by_n[5]}", f"/run/0/row/{by_n[6]}", f"/run/0/row/{by_n[3]}",
             "/run/0/step/text_length_filter/", "/run/0/step/text_length_filter/dropped",
             "/run/0/step/read_jsonl/rows?column=text&op=contains&value=script"]
    for url in pages:
        page = client.get(url).text
        assert "<script>alert" not in page and "<img src=x" not in page, url
        assert re.search(r"alert\([125]\)", page), url  # shown, as text
    searched = client.get("/run/0/step/read_jsonl/rows",
                          params={"column": "text", "op": "contains", "value": XSS_IMG[:20]})
    assert '"><img' not in searched.text and "1 rows" in searched.text


# --- sources read in place -------------------------------------------------------------
def test_a_source_read_in_place_is_mirrored_once_outside_the_workdir(client, tmp_path: Path,
                                                                    text_workdir: Path  # noqa: F811
                                                                    ) -> None:
    from datamill.explore import mirror, reading

    reading._IDS.clear()
    before = len(mirror.MIRRORED)
    first = client.get("/run/0/step/read_jsonl/rows", params={"size": 50}).text
    assert "60 rows, showing 1–50" in first  # 25 rows of the first file, 25 of the second
    made = mirror.MIRRORED[before:]
    assert len(made) == 2
    files = sorted((tmp_path / "stats-cache" / "sources").glob("*.parquet"))
    assert len(files) == 2 and not any(text_workdir in f.parents for f in files)
    client.get("/run/0/step/read_jsonl/rows", params={"size": 10, "page": 5})
    client.get("/run/0/step/drop_duplicates/rows", params={"column": "lang", "value": "de"})
    assert len(mirror.MIRRORED) == before + 2  # read from the mirrors since


def test_a_changed_input_is_reported_not_misread(tmp_path: Path) -> None:
    import json
    import os

    from starlette.testclient import TestClient

    from datamill import Dataset
    from datamill.explore.app import create_app

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"row number {i} here"}) + "\n"
                            for i in range(10)))
    Dataset.read(str(data)).apply("text_length_filter", min_words=4).run(
        tmp_path / "work", workers=1, progress=False)
    data.write_text(data.read_text() + json.dumps({"text": "one more row here"}) + "\n")
    os.utime(data, (1, 1))
    c = TestClient(create_app([tmp_path / "work"]), base_url=BASE)
    assert c.get("/run/0/").status_code == 200  # the overview needs only the records
    r = c.get("/run/0/step/text_length_filter/rows")
    assert r.status_code == 500 and "changed" in r.text
    assert "row number" not in r.text


def test_statistics_bin_from_a_second_pass_alike(text_workdir: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from datamill.explore import stats
    from datamill.explore.workdir import RunView

    run = RunView(text_workdir)
    kept = stats.compute(run, "python_map")
    monkeypatch.setattr(stats, "KEEP_NUMBERS", 10)  # too many to keep: read again
    again = stats.compute(run, "python_map")
    assert again == kept
    words = next(f for f in kept if f["name"] == "words")
    assert words["edges"][0] == words["low"] and sum(words["counts"]) == 50


def test_step_names_with_markup_and_url_characters(tmp_path: Path) -> None:
    import json

    from starlette.testclient import TestClient

    from datamill import Dataset
    from datamill.explore.app import create_app

    name = 'keep <b>long</b> "texts" #1?&'
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a b c d", "e", "f g h"]))
    Dataset.read(str(data)).apply("text_length_filter", min_words=3, step_name=name).run(
        tmp_path / "work", workers=1, progress=False)
    c = TestClient(create_app([tmp_path / "work"]), base_url=BASE)
    page = c.get("/run/0/").text
    assert "<b>long</b>" not in page and html.escape(name) in page
    hrefs = [h for h in links(page) if "/step/keep" in h]
    assert hrefs and all("<" not in h and "#" not in h and " " not in h for h in hrefs)
    for href in set(hrefs):
        r = c.get(href)
        assert r.status_code == 200 and "<b>long</b>" not in r.text, href
    step = c.get(next(h for h in hrefs if h.endswith("/"))).text
    assert "1 rows" in step or "too_few_words: 1 rows" in step


def test_a_reader_whose_code_changed_still_shows_the_same_files(
        text_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from starlette.testclient import TestClient

    from datamill import cache
    from datamill.explore.app import create_app

    real = cache.code_fingerprint
    monkeypatch.setattr(cache, "code_fingerprint", lambda cls: real(cls) + (
        "-changed" if getattr(cls, "name", "") == "read_jsonl" else ""))
    c = TestClient(create_app([text_workdir]), base_url=BASE)
    r = c.get("/run/0/step/drop_duplicates/rows", params={"size": 5})
    assert r.status_code == 200 and "47 rows" in r.text
    assert "the code of step &#39;read_jsonl&#39; changed since the run" in r.text


def test_concurrent_requests_get_the_same_pages(client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from datamill.explore import media, reading, stats

    urls = ["/run/0/step/drop_duplicates/rows?size=20", "/run/0/step/python_map/stats?part=grid",
            "/run/0/step/text_length_filter/", "/run/1/step/image_info/rows",
            "/run/0/step/drop_duplicates/rows?column=lang&value=de",
            "/run/1/step/image_filter/dropped", "/run/0/step/python_map/quarantine"]
    expected = {u: client.get(u).text for u in urls}
    for cache in (reading._IDS, reading._INDEXES, media._CACHE, stats._MEMORY):
        cache.clear()  # recomputed by concurrent requests
    with ThreadPoolExecutor(6) as pool:
        pages = list(pool.map(lambda u: (u, client.get(u)), urls * 3))
    for url, r in pages:
        assert r.status_code == 200 and r.text == expected[url], url


def test_the_web_stack_loads_only_for_the_explorer() -> None:
    import subprocess
    import sys

    code = ("import sys, datamill, datamill.cli; from datamill.cli import build_parser; "
            "build_parser(); print(sorted(m for m in ('starlette', 'jinja2', 'duckdb', "
            "'uvicorn', 'datamill.explore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
