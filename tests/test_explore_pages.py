"""`datamill explore` pages 5-8 at the HTTP level, on workdirs of real runs: duplicate
clusters, threshold what-if, search, comparison of two runs; every route with its bad
parameters, and the data's XSS payloads escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("starlette")  # the `explore` extra (declared in `test`)

from datamill import dropped_rows  # noqa: E402

from .explore_runs import XSS  # noqa: E402

BASE = "http://127.0.0.1:8765"
DEDUP, CHANGED, AT_50, SEARCH, IMAGES, IMAGE_SEARCH = range(6)



@pytest.fixture(autouse=True)
def _explore_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the explorer derives (what-if inputs, statistics) is cached outside the
    workdir: here, in the test's folder."""
    monkeypatch.setenv("DATAMILL_EXPLORE_CACHE", str(tmp_path / "explore-cache"))

@pytest.fixture(scope="module")
def client(dedup_workdir, quality_workdirs, search_workdir, image_dedup_workdir,
           image_search_workdir):
    from starlette.testclient import TestClient

    from datamill.explore.app import create_app

    return TestClient(create_app([dedup_workdir, quality_workdirs["changed"],
                                  quality_workdirs["at_50"], search_workdir,
                                  image_dedup_workdir, image_search_workdir]), base_url=BASE)


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]


def srcs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'src="([^"]+)"', page)]


def ok(client, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[-800:])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def no_raw_payload(page: str) -> None:
    assert "<script>alert" not in page and "onerror=alert" not in page.replace("&", "")


@pytest.mark.parametrize("path", ["duplicates", "whatif", "search", "compare"])
def test_every_run_page_links_the_new_pages(client, path) -> None:
    assert f"/run/{DEDUP}/{path}" in "".join(links(ok(client, f"/run/{DEDUP}/")))


# --- page 5: duplicate clusters -----------------------------------------------------------
def test_clusters_of_each_dedup_step(client, dedup_workdir) -> None:
    page = ok(client, f"/run/{DEDUP}/duplicates")
    assert "drop_duplicates" in page and "minhash_dedup" in page
    found = [u for u in links(page) if u.startswith(f"/run/{DEDUP}/duplicates/drop_duplicates/")]
    kept = {r["cluster_id"] for r in dropped_rows(dedup_workdir, "drop_duplicates").to_pylist()}
    assert {int(u.rsplit("/", 1)[1]) for u in found} == kept
    page = ok(client, f"/run/{DEDUP}/duplicates?step=minhash_dedup&size=3&page=1")
    assert "clusters 4–6 of 10" in page
    assert len({u for u in links(page)
                if u.startswith(f"/run/{DEDUP}/duplicates/minhash_dedup/")}) == 3
    assert "?step=minhash_dedup&size=3&page=2" in links(page)


def test_a_cluster_highlights_the_changed_word_escaped(client, dedup_workdir) -> None:
    rows = dropped_rows(dedup_workdir, "minhash_dedup").to_pylist()
    pages = [ok(client, f"/run/{DEDUP}/duplicates/minhash_dedup/{r['cluster_id']}")
             for r in rows]
    for page, r in zip(pages, rows):
        table = page[page.index('<table class="grid cluster">'):]
        assert table.count("<ins>") == 1 and table.count("<del>") == 1
        assert f"/run/{DEDUP}/row/{r['_id']}" in links(page)
        assert f"/run/{DEDUP}/row/{r['cluster_id']}" in links(page)
        no_raw_payload(page)
    with_payload = [p for p in pages if html.escape(XSS, quote=False) in p
                    or html.escape(XSS) in p]
    assert len(with_payload) == 1
    table = with_payload[0][with_payload[0].index('<table class="grid cluster">'):]
    inserted = re.search(r"<ins>(.*?)</ins>", table).group(1)
    assert html.unescape(inserted) == XSS


def test_image_clusters_show_thumbnails_made_on_the_server(client) -> None:
    page = ok(client, f"/run/{IMAGES}/duplicates")
    found = sorted({u for u in links(page)
                    if u.startswith(f"/run/{IMAGES}/duplicates/image_dedup/")})
    assert len(found) == 3
    cluster = ok(client, found[0])
    thumbs = [u for u in srcs(cluster) if "/thumb/" in u]
    assert len(thumbs) == 2  # the kept photo and its smaller JPEG copy
    for u in thumbs:
        r = client.get(u)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG")


def test_a_run_without_dedup_says_so(client) -> None:
    assert "No step of this run records duplicate clusters" in ok(
        client, f"/run/{SEARCH}/duplicates")


@pytest.mark.parametrize("url, status", [
    (f"/run/{DEDUP}/duplicates?step=read_jsonl", 400),
    (f"/run/{DEDUP}/duplicates?step=%3Cscript%3E", 400),
    (f"/run/{DEDUP}/duplicates?page=abc", 400),
    (f"/run/{DEDUP}/duplicates?size=-5", 200),  # capped to at least one
    (f"/run/{DEDUP}/duplicates/minhash_dedup/123456789", 404),
    (f"/run/{DEDUP}/duplicates/read_jsonl/0", 404),
    (f"/run/{DEDUP}/duplicates/minhash_dedup/abc", 404),
    (f"/run/{DEDUP}/duplicates/..%2f..%2fmanifest.json/0", 404),
    ("/run/9/duplicates", 404),
])
def test_bad_duplicate_requests(client, url, status) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text[-500:]
    no_raw_payload(r.text)


# --- page 6: threshold what-if --------------------------------------------------------------
def test_what_if_lists_the_filters_with_stat_columns(client) -> None:
    page = ok(client, f"/run/{AT_50}/whatif")
    assert {u.rsplit("/", 1)[1] for u in links(page) if f"/run/{AT_50}/whatif/" in u} == {
        "gopher_quality_filter", "fineweb_filter"}
    assert "min_doc_words = 50" in page


def test_what_if_counts_the_flips_of_a_moved_threshold(client, quality_workdirs) -> None:
    page = ok(client, f"/run/{AT_50}/whatif/gopher_quality_filter?min_doc_words=30&sample=50")
    before = {r["_id"] for r in dropped_rows(quality_workdirs["at_50"],
                                             "gopher_quality_filter").to_pylist()}
    after = {r["_id"] for r in dropped_rows(quality_workdirs["at_30"],
                                            "gopher_quality_filter").to_pylist()}
    flipped = re.findall(r'<td class="flip-kept">dropped → kept</td><td>was ([^<]+)</td>'
                         r'<td class="num">([\d,]+)</td>', page)
    assert sum(int(n.replace(",", "")) for _r, n in flipped) == len(before - after) > 0
    sample = {int(u.rsplit("/", 1)[1]) for u in links(page) if f"/run/{AT_50}/row/" in u}
    assert sample and sample <= before ^ after | before & after
    assert 'class="changed"' in page and 'value="30"' in page
    no_raw_payload(page)


def test_what_if_with_the_run_arguments_flips_nothing(client) -> None:
    page = ok(client, f"/run/{AT_50}/whatif/fineweb_filter")
    assert "nothing flips" in page and "Sample of the rows" not in page


@pytest.mark.parametrize("url, status, message", [
    ("gopher_quality_filter?min_doc_words=abc", 400, "is not an integer"),
    ("gopher_quality_filter?min_doc_word=3", 400, "did you mean"),
    ("gopher_quality_filter?min_avg_word_length=inf", 400, "finite"),
    ("gopher_quality_filter?sample=many", 400, "sample must be a whole number"),
    ("gopher_quality_filter?min_doc_words=%3Cscript%3Ealert(1)%3C/script%3E", 400, "integer"),
    ("fineweb_stats", 404, "not a filter"),
    ("no_such_step", 404, "not a filter"),
])
def test_bad_what_if_requests(client, url, status, message) -> None:
    r = client.get(f"/run/{AT_50}/whatif/{url}")
    assert r.status_code == status and message in html.unescape(r.text), r.text[-500:]
    no_raw_payload(r.text)


# --- page 7: search -------------------------------------------------------------------------
def test_search_shows_hits_with_their_metadata_escaped(client) -> None:
    page = ok(client, f"/run/{SEARCH}/search")
    assert 'name="q"' in page and "passages" in page
    page = ok(client, f"/run/{SEARCH}/search?q=rockets+and+launch+vehicles&k=2")
    assert "2 results for" in page
    urls = re.findall(r"https://example\.org/\w+", page)
    assert len(urls) == 2 and urls[0] == "https://example.org/rockets"
    assert "Rockets " + html.escape(XSS) in page
    no_raw_payload(page)
    rows = [u for u in links(page) if f"/run/{SEARCH}/row/" in u]
    assert len(rows) == 2 and client.get(rows[0]).status_code == 200


def test_an_image_index_shows_its_hits_as_thumbnails(client) -> None:
    page = ok(client, f"/run/{IMAGE_SEARCH}/search?q=a+photo+of+a+cat&k=4")
    assert "4 results for" in page
    assert "jpeg bytes" not in page  # the index's image bytes are never shown or sent
    thumbs = sorted({u for u in srcs(page) if "/thumb/" in u})
    assert len(thumbs) == 4 and all(f"/run/{IMAGE_SEARCH}/step/embed_images/thumb/" in u
                                    for u in thumbs)
    for u in thumbs:
        r = client.get(u)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "a cat " + html.escape(XSS) in page  # the caption, escaped
    no_raw_payload(page)


def test_a_run_without_an_index_says_so(client) -> None:
    assert "wrote no LanceDB index" in ok(client, f"/run/{DEDUP}/search?q=x")


@pytest.mark.parametrize("query, status", [
    ("q=" + "a" * 501, 400), ("q=x&index=3", 400), ("q=x&k=abc", 400), ("q=x&index=-1", 200),
    ("q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 200), ("q=+++", 200)])
def test_bad_searches(client, query, status) -> None:
    r = client.get(f"/run/{SEARCH}/search?{query}")
    assert r.status_code == status, r.text[-500:]
    no_raw_payload(r.text)


# --- page 8: compare two runs ---------------------------------------------------------------
def test_compare_the_last_run_with_the_one_before(client, quality_workdirs) -> None:
    page = ok(client, f"/run/{CHANGED}/compare")
    assert "min_doc_words: 50 -&gt; 30" in page
    da = {r["_id"] for r in dropped_rows(quality_workdirs["at_50"]).to_pylist()}
    db = {r["_id"] for r in dropped_rows(quality_workdirs["at_30"]).to_pylist()}
    counts = dict(re.findall(r'kind=(\w+)">[\w ]+</a><strong>([\d,]+)</strong>', page))
    assert int(counts["dropped_to_kept"]) == len(da - db) > 0
    assert int(counts["kept_to_dropped"]) == len(db - da)
    other = ok(client, f"/run/{CHANGED}/compare?a={AT_50}")
    assert dict(re.findall(r'kind=(\w+)">[\w ]+</a><strong>([\d,]+)</strong>', other)) == counts
    rows = [u for u in links(page) if "/compare/rows" in u and "dropped_to_kept" in u]
    listed = ok(client, rows[0] + "&size=200")
    ids = {int(u.rsplit("/", 1)[1]) for u in links(listed) if f"/run/{CHANGED}/row/" in u}
    assert ids == da - db
    no_raw_payload(listed)


def test_comparing_a_run_with_itself_shows_no_flip(client) -> None:
    page = ok(client, f"/run/{AT_50}/compare")  # one run only: itself
    assert "Both sides are the same run" in page and "No row changed its fate" in page


@pytest.mark.parametrize("url", [
    f"/run/{CHANGED}/compare?a=9", f"/run/{CHANGED}/compare?a=x",
    f"/run/{CHANGED}/compare?a_run=nope", f"/run/{CHANGED}/compare?b_run=..%2F..%2Fetc",
    f"/run/{CHANGED}/compare/rows?kind=sideways", f"/run/{CHANGED}/compare/rows?page=-x"])
def test_bad_compare_requests(client, url) -> None:
    r = client.get(url)
    assert r.status_code == 400, r.text[-500:]
    no_raw_payload(r.text)


def test_new_pages_are_read_only(client) -> None:
    for url in (f"/run/{DEDUP}/duplicates", f"/run/{AT_50}/whatif/fineweb_filter",
                f"/run/{SEARCH}/search", f"/run/{CHANGED}/compare"):
        assert client.post(url).status_code in (405, 413)


def test_nothing_is_written_to_the_workdirs(client, quality_workdirs) -> None:
    root = Path(quality_workdirs["changed"])
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    ok(client, f"/run/{CHANGED}/compare")
    ok(client, f"/run/{CHANGED}/whatif/gopher_quality_filter?min_doc_words=20")
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before
