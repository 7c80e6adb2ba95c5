"""normalize_text: Unicode forms, mojibake, whitespace, boilerplate rules."""

from __future__ import annotations

import datamill as dm

from .conftest import write_jsonl

RAW = [
    "Cafe\u0301 \u00a0 menu\x07\r\n\r\n\r\n\r\nWe use cookies to improve your experience.\n"
    "Real   content\tline.\nRead more »\n",
    "\uff21\uff22\uff23 \ufb01le",
    "The Mona Lisa doesn\u00c3\u00a2\u00e2\u201a\u00ac\u00e2\u201e\u00a2t have eyebrows.",
    None,
]


def test_normalize_defaults(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in RAW])
    ds = dm.Dataset.read(path, schema={"text": "string"}).apply("normalize_text")
    assert ds.lineage()["text"] == "normalize_text"
    out = ds.collect(tmp_path / "w", workers=1, progress=False)["text"].to_pylist()
    assert out[0] == "Caf\u00e9 menu\n\nReal content line."
    assert out[1] == "\uff21\uff22\uff23 \ufb01le"  # NFC keeps compatibility characters
    assert out[3] is None


def test_normalize_nfkc_mojibake_and_custom_rules(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in RAW])
    ds = dm.Dataset.read(path, schema={"text": "string"}).apply(
        "normalize_text", unicode_form="NFKC", fix_mojibake=True, boilerplate=[r"^Real"])
    out = ds.collect(tmp_path / "w", workers=1, progress=False)["text"].to_pylist()
    assert out[1] == "ABC file"
    assert out[2] == "The Mona Lisa doesn't have eyebrows."
    assert "Real" not in out[0] and "cookies" in out[0]
