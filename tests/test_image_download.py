"""`download_images` against a real HTTP server on loopback (tests/image_server.py): real
photos, and every fault becomes its drop reason while the run goes on. Assertions count rows,
requests and bytes; none measures time."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

import datamill as dm
from datamill.image_type import is_image, sniff_format
from datamill.ops.image.fetch import FetchSettings, fetch_urls, opted_out, retry_after

from .conftest import write_jsonl
from .image_server import ImageServer, closed_port, self_signed_tls, unanswered_port

pytest.importorskip("httpx")

# short enough for the drips and hangs to end soon, long enough for a loaded machine
FAST = {"connect_timeout": 5.0, "read_timeout": 4.0, "timeout": 5.0, "backoff": 0.01}


@pytest.fixture(scope="module")
def server():
    with ImageServer() as srv:
        yield srv


def download(tmp_path, urls, workers=1, **args):
    """Run read -> download_images over `urls` (in `workers` files: a unit each); (kept
    table, {url: reason}, step stats)."""
    rows = [{"url": u, "n": i} for i, u in enumerate(urls)]
    for w in range(workers):
        write_jsonl(tmp_path / "in" / f"urls-{w}.jsonl", rows[w::workers])
    ds = dm.Dataset.read(str(tmp_path / "in")).apply("download_images", **{**FAST, **args})
    result = ds.run(tmp_path / "w", workers=workers, progress=False)
    kept = ds.collect(tmp_path / "w", progress=False)
    dropped = dm.dropped_rows(tmp_path / "w", columns=["url"])
    reasons = dict(zip(dropped["url"].to_pylist(), dropped["_reason"].to_pylist()))
    return kept, reasons, result.step("download_images")


def test_every_fault_is_its_drop_reason(tmp_path, server):
    faults = {
        "/status/404": "http_404", "/status/403": "http_403", "/status/500": "http_500",
        "/loop/a": "too_many_redirects", "/truncated": "truncated", "/html": "not_an_image",
        "/svg": "vector_refused", "/empty": "empty", "/big": "too_large",
        "/big?chunked=1": "too_large", "/drip?interval=0.05": "timeout", "/hang": "timeout",
        "/robots/noai": "opted_out", "/robots/noimageai": "opted_out",
        "/robots/datamill:%20noai": "opted_out",
    }
    good = ["/img/chelsea.png", "/img/rocket.jpg", "/img/no_time_for_that_tiny.gif",
            "/redirect/3", "/robots/otherbot:%20noai", "/robots/nofollow"]
    refused = f"http://127.0.0.1:{closed_port()}/img/a.png"
    urls = [server.url(p) for p in [*faults, *good]] + [refused, "ftp://example.org/a.png"]
    before = dict(server.hits)
    kept, reasons, step = download(tmp_path, urls, retries=1, max_bytes=8 * 2**20)

    expected = {server.url(p): r for p, r in faults.items()}
    expected[refused] = "connection_error"
    expected["ftp://example.org/a.png"] = "invalid_url"
    assert reasons == expected
    assert step["rows_in"] == len(urls) and step["rows_out"] == len(good)
    assert kept["url"].to_pylist() == [server.url(p) for p in good]
    assert is_image(kept.schema.field("image").type)
    images = kept["image"].to_pylist()
    # the bytes are the served files; the format comes from the bytes (PNGs are sent as
    # Content-Type image/jpeg)
    assert images[0] == server.images["chelsea.png"] and sniff_format(images[0]) == "png"
    assert images[1] == server.images["rocket.jpg"]
    assert sniff_format(images[2]) == "gif"
    assert kept["final_url"].to_pylist()[3] == server.url("/redirect/0")
    assert step["counters"]["redirected"] == 1
    assert step["counters"]["bytes_downloaded"] == sum(len(b) for b in images)
    # 5xx retried once (retries=1): two requests; a 404 is not retried
    hits = {p: server.hits[p] - before.get(p, 0) for p in ("/status/500", "/status/404")}
    assert hits == {"/status/500": 2, "/status/404": 1}


def test_large_bodies_are_aborted_mid_stream(server):
    before = dict(server.sent)
    got = fetch_urls([server.url("/big?chunked=1"), server.url("/big")],
                     FetchSettings(max_bytes=2 * 2**20, timeout=10))
    assert [g.reason for g in got] == ["too_large", "too_large"]
    # the 200 MB body was cut off: the server pushed at most what the sockets buffer
    assert server.sent["/big"] - before.get("/big", 0) < 64 * 2**20


def test_retry_after_is_honoured_and_capped(tmp_path, server):
    urls = [server.url("/flaky/429/2/a?after=0"), server.url("/flaky/503/1/b"),
            server.url("/flaky/429/1/c?after=3600"), server.url("/flaky/429/5/d?after=0")]
    kept, reasons, step = download(tmp_path, urls, retries=2, max_retry_wait=5)
    assert kept["url"].to_pylist() == urls[:2]
    assert reasons == {urls[2]: "http_429", urls[3]: "http_429"}
    assert server.hits["/flaky/429/2/a"] == 3  # two 429s waited out, then the image
    assert server.hits["/flaky/503/1/b"] == 2
    assert server.hits["/flaky/429/1/c"] == 1  # an hour away: given up at once
    assert server.hits["/flaky/429/5/d"] == 3  # 1 + retries
    assert step["counters"]["retries"] == 2 + 1 + 0 + 2


def test_slow_and_hanging_servers_do_not_stall_the_run(tmp_path, server):
    """Two workers, 240 good URLs among slow drips and hanging connections: every row
    finishes, each stalled URL is cut off as a timeout, the others are kept."""
    stalls = [server.url(f"/drip?interval=0.05&k={i}") for i in range(4)]
    stalls += [server.url(f"/hang?k={i}") for i in range(4)]
    names = sorted(server.images)
    good = [server.url(f"/img/{names[i % len(names)]}?k={i}") for i in range(240)]
    urls = [u for pair in zip(good[::30], [*stalls]) for u in pair]
    urls += [u for u in good if u not in urls]
    sent_before = server.sent["/drip"]
    kept, reasons, step = download(tmp_path, urls, workers=2, concurrency=4, per_host=4,
                                   timeout=3.0, batch_rows=64)
    assert step["units"] == 2 and step["rows_in"] == 248 and step["rows_out"] == 240
    assert sorted(kept["url"].to_pylist()) == sorted(good)
    assert reasons == {u: "timeout" for u in stalls}
    assert server.sent["/drip"] - sent_before < 4 * 10**6  # cut off long before the end


def test_batches_overlap_so_a_slow_url_holds_up_no_other(tmp_path, server):
    """Batches of 8 URLs, the first with a drip: while it drips (until the 3 s timeout),
    the following batches download. Without overlap only its own batch's 7 other URLs
    could (the count is of requests, not of time)."""
    drip = server.url("/drip?interval=0.05&k=overlap")
    urls = [drip] + [server.url(f"/img/horse.png?o={i}") for i in range(63)]
    kept, reasons, step = download(tmp_path, urls, batch_rows=8, batches_in_flight=4,
                                   timeout=3.0)
    assert reasons == {drip: "timeout"} and step["rows_out"] == 63
    target = "/drip?interval=0.05&k=overlap"
    for _ in range(400):  # the server's drip handler ends at its next write after the cut
        if target in server.during:
            break
        time.sleep(0.05)
    assert server.during[target] >= 3 * 8  # 3 more batches
    assert kept["url"].to_pylist() == urls[1:]  # in order


def test_concurrency_per_host_and_per_worker(server):
    urls = [server.url(f"/slow/{n}?delay=0.05", host=h) for n in list(server.images)[:12]
            for h in ("127.0.0.1", "localhost")]
    server.max_in_flight.clear()
    server.max_total_in_flight = 0
    got = fetch_urls(urls, FetchSettings(per_host=2, concurrency=3, timeout=20))
    assert all(g.data is not None for g in got)
    hosts = {f"127.0.0.1:{server.port}", f"localhost:{server.port}"}
    assert set(server.max_in_flight) == hosts
    assert max(server.max_in_flight.values()) <= 2  # per host
    assert 2 <= server.max_total_in_flight <= 3  # per worker, and used


def test_opt_out_directives(server):
    paths = ["/robots/noai", "/robots/noimageindex", "/robots/otherbot:%20noai",
             "/robots/mybot:%20noimageai", "/robots/noarchive,%20nosnippet"]
    urls = [server.url(p) for p in paths]
    default = fetch_urls(urls, FetchSettings())
    assert [g.reason for g in default] == ["opted_out", "opted_out", None, None, None]
    as_mybot = fetch_urls(urls, FetchSettings(user_agent="MyBot/2.0 (+https://x.test)"))
    assert [g.reason for g in as_mybot] == ["opted_out", "opted_out", None, "opted_out", None]
    ignoring = fetch_urls(urls, FetchSettings(opt_out=()))
    assert all(g.data is not None for g in ignoring)


def test_connect_timeout_and_tls(tmp_path, server):
    with unanswered_port() as port:
        got = fetch_urls([f"http://127.0.0.1:{port}/a.png"],
                         FetchSettings(connect_timeout=0.5, read_timeout=30, timeout=30))
    assert got[0].reason == "timeout"
    with ImageServer(server.images, tls=self_signed_tls(str(tmp_path))) as secure:
        url = secure.url("/img/chelsea.png")
        assert url.startswith("https://")
        checked = fetch_urls([url], FetchSettings(timeout=10))
        unchecked = fetch_urls([url], FetchSettings(timeout=10, verify_tls=False))
    assert checked[0].reason == "tls_error"  # a self-signed certificate
    assert unchecked[0].data == server.images["chelsea.png"]


def test_headers_parsing():
    assert opted_out(["noindex, nofollow"], "datamill", ["noindex"])
    assert not opted_out(["unavailable_after: 25 Jun 2030 15:00:00 PST"], "datamill",
                         ["noai"])
    assert opted_out(["*: noai"], "datamill", ["noai"])
    assert retry_after("7") == 7.0 and retry_after("junk") is None and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now


def test_rerun_uses_the_step_cache(tmp_path, server):
    url = server.url("/img/camera.png?cache=1")
    path = write_jsonl(tmp_path / "urls.jsonl", [{"url": url}])
    ds = dm.Dataset.read(str(path)).apply("download_images", **FAST)
    first = ds.collect(tmp_path / "w", progress=False)
    hits = server.hits["/img/camera.png"]
    again = ds.collect(tmp_path / "w", progress=False)
    assert server.hits["/img/camera.png"] == hits  # served from the step cache
    assert again["image"].to_pylist() == first["image"].to_pylist()
    ds.run(tmp_path / "w", cache=False, progress=False)
    assert server.hits["/img/camera.png"] == hits + 1


def test_arguments_and_columns(tmp_path, server):
    path = write_jsonl(tmp_path / "urls.jsonl", [{"link": server.url("/img/coins.png")}])
    ds = dm.Dataset.read(str(path)).apply("download_images", column="link", output="photo",
                                          final_url_column=None, **FAST)
    table = ds.collect(tmp_path / "w", progress=False)
    assert table.column_names == ["link", "photo"]
    assert table["photo"].to_pylist() == [server.images["coins.png"]]
    with pytest.raises(dm.ArgumentError, match="per_host"):
        dm.Dataset.read(str(path)).apply("download_images", column="link", per_host=0)
    with pytest.raises(dm.SchemaError):
        dm.Dataset.read(str(path)).apply("download_images")  # no `url` column


def test_null_and_malformed_urls_are_invalid(tmp_path, server):
    malformed = ["http://[::1", "http://127.0.0.1:99999/x", "https://", "javascript:x()",
                 "//127.0.0.1/x", "http:///path"]
    table = pa.table({"url": [server.url("/img/moon.png"), None, "", *malformed]})
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "in.parquet")
    ds = dm.Dataset.read(str(tmp_path / "in.parquet")).apply("download_images", **FAST)
    result = ds.run(tmp_path / "w", progress=False)
    assert result.step("download_images")["dropped"] == {"invalid_url": 2 + len(malformed)}


def test_the_docs_example_runs(tmp_path, server, monkeypatch):
    import re
    from pathlib import Path

    import pyarrow.parquet as pq

    text = (Path(__file__).parent.parent / "docs" / "images.md").read_text()
    section = text[text.index("## Downloading images"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.table({"url": [server.url("/img/coffee.png"), server.url("/status/404")],
                             "caption": ["a cup", "gone"]}), "pairs.parquet")
    namespace: dict = {}
    exec(compile(blocks[0], "docs/images.md", "exec"), namespace)  # noqa: S102
    assert namespace["dropped"] == {"http_404": 1}


def test_download_on_ray_as_locally(tmp_path, server, ray_cluster):
    urls = [server.url(p) for p in ("/img/astronaut.png", "/status/404", "/html",
                                    "/redirect/2", "/robots/noai", "/img/camera.png")]
    rows = [{"url": u} for u in urls]
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:3])
    write_jsonl(tmp_path / "in" / "b.jsonl", rows[3:])
    ds = dm.Dataset.read(str(tmp_path / "in")).apply("download_images", **FAST)
    local = ds.run(tmp_path / "local", workers=2, progress=False)
    ray = ds.run(tmp_path / "ray", executor="ray", address=ray_cluster.address, progress=False)
    keys = ("rows_in", "rows_out", "dropped")
    assert {k: ray.step("download_images")[k] for k in keys} == {
        k: local.step("download_images")[k] for k in keys} == {
        "rows_in": 6, "rows_out": 3,
        "dropped": {"http_404": 1, "not_an_image": 1, "opted_out": 1}}
    tables = [ds.collect(tmp_path / w, progress=False) for w in ("local", "ray")]
    assert tables[0]["image"].to_pylist() == tables[1]["image"].to_pylist()
