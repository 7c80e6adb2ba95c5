"""`datamill explore` in a real browser: Debian's Chromium (`/usr/bin/chromium`, which
`.ci/run` installs) driven by Playwright's Python API through `executable_path`, so no
browser is downloaded. The explorer runs on a free loopback port in a thread (uvicorn, as
`datamill explore` serves it). Checked: a click leads from the funnel to a reason to a
dropped row; the XSS payloads in the data never execute (no dialog opens) and show as text;
path-traversal attempts get a 404; no page logs an error (a Content-Security-Policy
violation would). Every page is saved as a screenshot into `$DATAMILL_SCREENSHOTS` (or the
test's temporary folder)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")  # the `explore` extra (declared in `test`)
playwright_api = pytest.importorskip("playwright.sync_api")  # declared in `test`

from .explore_fixtures import (  # noqa: E402, F401  (fixtures)
    XSS_IMG,
    XSS_SCRIPT,
    XSS_SHORT,
    image_workdir,
    text_workdir,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXT, IMAGES, DEDUP, QUALITY, SEARCH, IMAGE_DEDUP, IMAGE_SEARCH = range(7)


@pytest.fixture(scope="module")
def server(text_workdir, image_workdir, dedup_workdir,  # noqa: F811
           quality_workdirs, search_workdir, image_dedup_workdir, image_search_workdir,
           tmp_path_factory):
    """The explorer over seven workdirs, served by uvicorn in a thread: its base URL."""
    import uvicorn

    from datamill.explore.app import create_app

    os.environ.setdefault("DATAMILL_EXPLORE_CACHE", str(tmp_path_factory.mktemp("stats")))
    app = create_app([text_workdir, image_workdir, dedup_workdir, quality_workdirs["changed"],
                      search_workdir, image_dedup_workdir, image_search_workdir])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the explorer did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("DATAMILL_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


class Watched:
    """A page whose dialogs (an executed `alert`) and console errors are recorded."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser):
    w = Watched(browser)
    yield w
    w.close()


def snap(w: Watched, shots: Path, name: str) -> None:
    w.page.wait_for_load_state("load")
    w.page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_a_click_leads_from_the_funnel_to_a_reason_to_a_dropped_row(server, watched, shots):
    page = watched.page
    assert page.goto(f"{server}/run/{TEXT}/").status == 200
    snap(watched, shots, "01-overview")
    segment = page.locator("svg.funnel a[href*='reason=too_few_words']").first
    segment.click()
    page.wait_for_url("**/step/text_length_filter/dropped?reason=too_few_words")
    assert page.locator("h1").inner_text() == "Rows dropped by text_length_filter: too_few_words"
    snap(watched, shots, "03-dropped-rows")
    row = page.locator("table.rows a[href*='/row/']").first
    row_id = row.inner_text()
    row.click()
    page.wait_for_url(f"**/run/{TEXT}/row/{row_id}")
    body = page.locator("main").inner_text()
    assert "text_length_filter" in body and "too_few_words" in body
    snap(watched, shots, "06-row-lineage")
    assert watched.dialogs == [] and watched.errors == []


def test_xss_payloads_show_as_text_and_never_run(server, watched, shots, dedup_workdir):
    from datamill import dropped_rows

    cluster = dropped_rows(dedup_workdir, "minhash_dedup").to_pylist()
    pages = [f"/run/{TEXT}/step/text_length_filter/",
             f"/run/{TEXT}/step/text_length_filter/dropped",
             f"/run/{TEXT}/step/drop_duplicates/rows",
             f"/run/{TEXT}/step/drop_duplicates/rows?column=text&op=contains&value=script",
             f"/run/{TEXT}/step/drop_duplicates/stats",
             f"/run/{IMAGES}/step/image_filter/",
             f"/run/{IMAGES}/step/image_filter/dropped",
             f"/run/{SEARCH}/search?q=rockets",
             *[f"/run/{DEDUP}/duplicates/minhash_dedup/{r['cluster_id']}" for r in cluster]]
    seen = ""
    for url in pages:
        response = watched.page.goto(server + url)
        assert response.status == 200, url
        watched.page.wait_for_load_state("load")
        seen += watched.page.locator("main").inner_text()
    for payload in ("<script>alert(1)</script>", XSS_SHORT, XSS_IMG.split(" breaks")[0]):
        assert payload in seen
    assert XSS_SCRIPT.split(" is")[0] in seen
    assert watched.dialogs == []
    assert watched.errors == []
    snap(watched, shots, "xss-cluster")


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2fapp.py",
    "/run/0/step/..%2f..%2fmanifest.json/",
    "/run/0/step/%2e%2e/rows",
    "/run/0/duplicates/..%2fsteps/0",
    "/run/..%2f..%2fetc/",
    "/run/0/step/read_jsonl/thumb/0/0/..%2f..%2fetc%2fpasswd",
])
def test_path_traversal_gets_a_404(server, watched, path):
    response = watched.page.goto(server + path)
    assert response.status == 404, (path, response.url)
    assert "root:" not in watched.page.content()
    assert watched.dialogs == []


def test_screenshots_of_every_page(server, watched, shots, dedup_workdir,
                                   image_workdir):  # noqa: F811
    from datamill import dropped_rows

    kept = dropped_rows(dedup_workdir, "minhash_dedup").to_pylist()[0]["cluster_id"]
    photo = dropped_rows(image_workdir, "image_filter").to_pylist()[0]["_id"]
    pages = {
        "00-workdirs": "/",
        "02-step": f"/run/{TEXT}/step/text_length_filter/",
        "04-quarantine": f"/run/{TEXT}/step/python_map/quarantine",
        "05-column-stats": f"/run/{TEXT}/step/drop_duplicates/stats",
        "05-row-browser": f"/run/{TEXT}/step/drop_duplicates/rows",
        "07-image-step": f"/run/{IMAGES}/step/image_filter/",
        "07-image-rows": f"/run/{IMAGES}/step/image_info/rows",
        "07-image-lineage": f"/run/{IMAGES}/row/{photo}",
        "08-duplicates": f"/run/{DEDUP}/duplicates?step=minhash_dedup",
        "09-cluster": f"/run/{DEDUP}/duplicates/minhash_dedup/{kept}",
        "10-whatif-filters": f"/run/{QUALITY}/whatif",
        "11-whatif": f"/run/{QUALITY}/whatif/gopher_quality_filter?min_doc_words=30"
                     "&max_ellipsis_lines_ratio=0.5",
        "12-search": f"/run/{SEARCH}/search?q=rockets+and+launch+vehicles",
        "13-compare": f"/run/{QUALITY}/compare",
        "14-compare-rows": f"/run/{QUALITY}/compare/rows?kind=dropped_to_kept",
    }
    for name, url in pages.items():
        response = watched.page.goto(server + url)
        assert response.status == 200, (url, response.status)
        snap(watched, shots, name)
    assert len(list(shots.glob("*.png"))) >= len(pages)
    assert watched.dialogs == [] and watched.errors == []


def test_thumbnails_load_in_the_browser(server, watched, shots, image_dedup_workdir):
    """Thumbnails (PNGs re-encoded on the server) decode in the browser: a step's dropped
    photos, an image cluster beside its near copy, the hits of an image index."""
    from datamill import dropped_rows

    kept = dropped_rows(image_dedup_workdir, "image_dedup").to_pylist()[0]["cluster_id"]
    for name, url in (("07-image-thumbs", f"/run/{IMAGES}/step/image_filter/"),
                      ("09-image-cluster", f"/run/{IMAGE_DEDUP}/duplicates/image_dedup/{kept}"),
                      ("12-image-search", f"/run/{IMAGE_SEARCH}/search?q=a+cat")):
        assert watched.page.goto(server + url).status == 200
        watched.page.wait_for_function(  # lazy images do not hold the load event back
            "() => [...document.querySelectorAll('img.thumb')].every(e => e.complete)",
            timeout=60_000)
        widths = watched.page.eval_on_selector_all(
            "img.thumb", "els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths), (url, widths)
        snap(watched, shots, name)
    assert watched.dialogs == [] and watched.errors == []
