"""url_filter: user-supplied domain blocklists and banned URL words."""

from __future__ import annotations

import datamill as dm

from .conftest import write_jsonl

URLS = [
    "https://news.example.org/2024/story",
    "https://ads.tracker.com/x",
    "http://tracker.com",
    "https://shop.example.net/casino-bonus/page",
    "https://casinoroyale-fan.example.net/film",   # "casino" is not a whole token here
    "not a url",
    None,
    "www.blocked.io/path",
]


def test_url_filter_reasons(tmp_path):
    blocklist = tmp_path / "domains.txt"
    blocklist.write_text("# our list\nblocked.io\n")
    path = write_jsonl(tmp_path / "u.jsonl", [{"url": u, "i": i} for i, u in enumerate(URLS)])
    ds = dm.Dataset.read(path, schema={"url": "string", "i": "int64"}).apply(
        "url_filter", blocked_domains=["tracker.com"], blocked_domains_file=str(blocklist),
        banned_words=["casino"])
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    kept = ds.collect(tmp_path / "w")["i"].to_pylist()
    assert kept == [0, 4]
    assert result.step("url_filter")["dropped"] == {
        "blocked_domain": 3, "banned_url_word": 1, "invalid_url": 2}
