"""The explorer's security, each item at the HTTP level: loopback by default, a token for any
other host, the Host header, escaping, thumbnails only, no path outside the workdirs,
read-only, the CSP and the other headers, capped request and page sizes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from .explore_fixtures import image_workdir, text_workdir  # noqa: F401

BASE = "http://127.0.0.1:8765"


@pytest.fixture(autouse=True)
def _stats_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAMILL_EXPLORE_CACHE", str(tmp_path / "stats-cache"))


@pytest.fixture(scope="module")
def app(text_workdir: Path, image_workdir: Path):  # noqa: F811
    from datamill.explore.app import create_app

    return create_app([text_workdir, image_workdir])


@pytest.fixture(scope="module")
def client(app):
    from starlette.testclient import TestClient

    return TestClient(app, base_url=BASE)


def raw(app, path: bytes, method: str = "GET", host: bytes = b"127.0.0.1:8765",
        headers: list | None = None, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Call the ASGI app with `path` exactly as sent (no client normalizing `..`)."""
    from urllib.parse import unquote_to_bytes

    raw_path, _, query = path.partition(b"?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "raw_path": raw_path,
             "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
             "root_path": "", "query_string": query, "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8765),
             "headers": [(b"host", host), *(headers or [])]}
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, out


# --- binding and the access token ---------------------------------------------------------
def test_binds_loopback_by_default(text_workdir: Path, tmp_path: Path) -> None:  # noqa: F811
    from datamill.cli import build_parser

    assert build_parser().parse_args(["explore", "wd"]).host == "127.0.0.1"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           "DATAMILL_EXPLORE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "datamill.cli", "explore", str(text_workdir),
                             "--port", "0", "--no-browser"], stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stderr.readline()
        url = re.search(r"(http://\S+)", line).group(1)
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/run/0/") as r:
                    assert r.status == 200 and b"text_length_filter" in r.read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the explorer did not answer")
        listening = [ln for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if ln.split()[1].endswith(f":{port:04X}") and ln.split()[3] == "0A"]
        assert listening and all(ln.split()[1].startswith("0100007F:") for ln in listening)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_another_host_requires_the_token(text_workdir: Path) -> None:  # noqa: F811
    from starlette.testclient import TestClient

    from datamill.explore.app import create_app
    from datamill.explore.security import COOKIE

    app = create_app([text_workdir], host="10.1.2.3", token="s3cret-token")
    c = TestClient(app, base_url="http://10.1.2.3:8765")
    assert c.get("/run/0/").status_code == 403
    assert c.get("/run/0/", params={"token": "wrong"}).status_code == 403
    assert c.get("/static/style.css").status_code == 403  # every route
    r = c.get("/run/0/", params={"token": "s3cret-token", "size": "3"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/run/0/?size=3"  # token gone
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=s3cret-token") and "HttpOnly" in cookie \
        and "SameSite=Strict" in cookie
    c.cookies.set(COOKIE, "s3cret-token")
    assert c.get("/run/0/").status_code == 200
    c.cookies.set(COOKIE, "s3cret-tokex")
    assert c.get("/run/0/").status_code == 403
    # a path starting with // must not redirect to another site
    status, headers, _ = raw(app, b"//evil.example/x?token=s3cret-token",
                             host=b"10.1.2.3:8765")
    assert status == 303 and headers["location"].startswith("/evil.example")


def test_serve_makes_a_token_for_another_host(text_workdir: Path, monkeypatch) -> None:  # noqa: F811
    from datamill.explore import server

    made = {}

    def fake_create_app(paths, host, token):
        made.update(host=host, token=token)
        raise SystemExit  # stop before serving

    monkeypatch.setattr("datamill.explore.app.create_app", fake_create_app)
    with pytest.raises(SystemExit):
        server.serve([text_workdir], host="0.0.0.0", port=0, open_browser=False)
    assert made["host"] == "0.0.0.0" and len(made["token"]) >= 24
    with pytest.raises(SystemExit):
        server.serve([text_workdir], host="127.0.0.1", port=0, open_browser=False)
    assert made["token"] is None


# --- the Host header (DNS rebinding) ------------------------------------------------------
def test_host_header_is_checked(app, text_workdir: Path) -> None:  # noqa: F811
    for host in (b"127.0.0.1:8765", b"localhost:8765", b"localhost", b"[::1]:8765",
                 b"LOCALHOST:1"):
        assert raw(app, b"/run/0/", host=host)[0] == 200, host
    for host in (b"evil.example", b"evil.example:8765", b"127.0.0.1.evil.example:8765",
                 b"localhost.evil.example", b"", b"127.0.0.1:80@evil.example",
                 b"localhost:x", b"[::1]evil", b"localhost."):
        status, _, body = raw(app, b"/run/0/", host=host)
        assert status == 400 and b"text_length_filter" not in body, host
    from datamill.explore.app import create_app

    named = create_app([text_workdir], host="explore.lan", token="t")
    assert raw(named, b"/", host=b"explore.lan:8765")[0] == 403  # known host: token asked
    assert raw(named, b"/", host=b"other.lan:8765")[0] == 400
    wildcard = create_app([text_workdir], host="0.0.0.0", token="t")
    assert raw(wildcard, b"/", host=b"192.168.1.20:8765")[0] == 403  # an IP: no rebinding
    assert raw(wildcard, b"/", host=b"evil.example")[0] == 400


# --- read-only, request sizes -------------------------------------------------------------
def test_only_get_and_head(client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        r = client.request(method, "/run/0/")
        assert r.status_code == 405, method
        assert r.headers["allow"] == "GET, HEAD"
    head = client.head("/run/0/")
    assert head.status_code == 200 and head.content == b""


def test_request_sizes_are_capped(app) -> None:
    status, _, _ = raw(app, b"/run/0/", headers=[(b"content-length", b"5")], body=b"hello")
    assert status == 413
    status, _, _ = raw(app, b"/run/0/", headers=[(b"transfer-encoding", b"chunked")])
    assert status == 413
    assert raw(app, b"/run/0/?" + b"x=1&" * 2000)[0] == 414


def test_the_workdirs_are_never_written(client, text_workdir: Path,  # noqa: F811
                                        image_workdir: Path) -> None:  # noqa: F811
    def snapshot(root: Path) -> dict:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(root.rglob("*"))}

    before = {d: snapshot(d) for d in (text_workdir, image_workdir)}
    pages = ["/", "/run/0/", "/run/1/"]
    for run, wd in ((0, text_workdir), (1, image_workdir)):
        from datamill.explore.workdir import RunView

        for name in RunView(wd).steps:
            base = f"/run/{run}/step/{name}"
            pages += [f"{base}/", f"{base}/dropped", f"{base}/quarantine",
                      f"{base}/stats?part=page", f"{base}/rows"]
    for url in pages:
        assert client.get(url).status_code == 200, url
    after = {d: snapshot(d) for d in (text_workdir, image_workdir)}
    assert after == before


# --- no path outside the workdirs ---------------------------------------------------------
TRAVERSALS = [b"/static/../app.py", b"/static/%2e%2e/app.py", b"/static/..%2fapp.py",
              b"/static/%2e%2e%2f%2e%2e%2fmanifest.json", b"/static/vendor/htmx.LICENSE",
              b"/static/..%2f..%2f..%2f..%2fetc%2fpasswd", b"/static//etc/passwd",
              b"/static/%2fetc%2fpasswd", b"/run/0/step/..%2f..%2fetc/",
              b"/run/0/step/%2e%2e/", b"/run/0/step/../../manifest.json",
              b"/run/0/../../etc/passwd", b"/run/0/step/steps%2f..%2f..%2fmanifest.json/rows",
              b"/run/..%2f0/", b"/run/-1/", b"/run/2/", b"/run/0/step/read_jsonl/thumb/0/0/"
              b"..%2f..%2fmanifest.json", b"/run/0/step/read_jsonl/qthumb/0/0/_raw",
              b"/manifest.json", b"/steps/", b"/etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd"]


@pytest.mark.parametrize("path", TRAVERSALS, ids=lambda p: p.decode())
def test_no_path_outside_the_workdirs(app, path: bytes) -> None:
    status, headers, body = raw(app, path)
    assert status == 404
    assert b"root:" not in body and b"cache_key" not in body and b"import " not in body


def test_a_symlink_out_of_the_workdir_is_refused(text_workdir: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from datamill.explore.app import create_app
    from datamill.explore.workdir import RunView

    copy = tmp_path / "work"
    shutil.copytree(text_workdir, copy, symlinks=True)
    outside = tmp_path / "outside"
    key = RunView(copy).steps["python_map"].key
    shutil.move(copy / "steps" / key, outside)  # the step's folder now lies outside ...
    (copy / "steps" / key).symlink_to(outside)  # ... reached through a symlink
    secret = tmp_path / "secret.parquet"
    shutil.copy(outside / "part-00000.parquet", secret)
    filt = RunView(copy).steps["redact_pii"].key
    part = copy / "steps" / filt / "part-00000.parquet"
    part.unlink()
    part.symlink_to(secret)  # a file of another step, a symlink to a file outside
    c = TestClient(create_app([copy]), base_url=BASE)
    for url in ("/run/0/step/python_map/", "/run/0/step/python_map/rows",
                "/run/0/step/python_map/quarantine", "/run/0/step/python_map/stats?part=grid",
                "/run/0/step/redact_pii/rows", "/run/0/step/drop_duplicates/rows"):
        r = c.get(url)
        assert r.status_code in (404, 500), url
        assert "outside the workdir" in r.text, url
        assert "unlucky" not in r.text and "0.45" not in r.text, url


# --- escaping, inline scripts, headers ----------------------------------------------------
def test_pages_carry_the_security_headers(client) -> None:
    urls = ["/", "/run/0/", "/run/0/step/python_map/", "/static/style.css",
            "/static/vendor/htmx.min.js", "/run/9/", "/nope"]
    thumbs = re.findall(r'src="(/run/1/step/[^"]+/thumb/[^"]+)"',
                        client.get("/run/1/step/image_info/rows").text)
    for url in [*urls, thumbs[0]]:
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, url
        assert "unsafe-inline" not in csp and "default-src 'none'" in csp, url
        assert r.headers["x-content-type-options"] == "nosniff", url
    assert client.get("/run/0/").headers["cache-control"] == "no-store"


def test_no_inline_script_or_style_in_any_page(client) -> None:
    pages = ["/", "/run/0/", "/run/1/", "/run/0/step/text_length_filter/",
             "/run/0/step/python_map/stats?part=page", "/run/0/step/drop_duplicates/rows",
             "/run/1/step/image_filter/dropped", "/run/0/step/python_map/quarantine"]
    for url in pages:
        page = client.get(url).text
        for tag in re.findall(r"<script[^>]*>(.*?)</script>", page, re.S):
            assert tag.strip() == "", url
        assert all("src=" in t for t in re.findall(r"<script[^>]*>", page)), url
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), url  # no event handler attribute
        assert not re.search(r"<[^>]+\sstyle\s*=", page) and "<style" not in page, url
        assert "javascript:" not in page, url


def test_svg_and_html_bytes_are_never_served(client, image_workdir: Path) -> None:  # noqa: F811
    from io import BytesIO

    from PIL import Image

    from datamill.explore.media import placeholder

    page = client.get("/run/1/step/image_filter/dropped",
                      params={"reason": "vector_refused"}).text
    (src,) = re.findall(r'src="(/run/1/step/[^"]+/thumb/[^"]+)"', page)
    r = client.get(src.replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == placeholder()  # the SVG is refused, a placeholder shown
    assert Image.open(BytesIO(r.content)).format == "PNG"
    # a column that is no image: still a PNG (a placeholder), never the text
    rows = client.get("/run/1/step/image_info/rows").text
    first = re.findall(r'/run/1/step/image_info/thumb/(\d+)/(\d+)/image', rows)[0]
    r = client.get(f"/run/1/step/image_info/thumb/{first[0]}/{first[1]}/path")
    assert r.headers["content-type"] == "image/png" and r.content == placeholder()
    assert client.get(f"/run/1/step/image_info/thumb/{first[0]}/99999/image").status_code \
        == 404
    assert client.get(f"/run/1/step/image_info/thumb/{first[0]}/0/_id").status_code == 404
