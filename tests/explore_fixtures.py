"""Small real workdirs for the explorer's tests: made by running real pipelines.

Import the fixtures into a test module (`from .explore_fixtures import text_workdir`) or
call the builders directly. Each workdir is built once per test session (they are read-only
for the explorer, so the tests can share them).

- `text_workdir`: 60 JSONL documents in two files (two partitions) through `redact_pii`
  (PII counters), `text_length_filter` (drops `too_few_words`), a row-wise map that
  quarantines one row (`score`, `words`), and `drop_duplicates` (drops `duplicate`). Some
  texts carry XSS payloads (`XSS_TEXTS`; rows 5 and 6 are kept, row 3 is dropped).
- `image_workdir`: photos from scikit-image (PNG and JPEG), a tiny image and an SVG file
  named `.png` holding a script, through `image_filter` (drops `too_small` and the SVG),
  `image_info`, and a map that quarantines the coffee photo.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

XSS_SCRIPT = "<script>alert(1)</script> is a script tag in this crawled page"
XSS_IMG = "\"><img src=x onerror=alert(2)> breaks out of an attribute in this page"
XSS_SHORT = "<script>alert(5)</script>"  # one word: text_length_filter drops it
XSS_TEXTS = [XSS_SCRIPT, XSS_IMG, XSS_SHORT]
EVIL_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(3)">'
            b'<script>alert(4)</script><rect width="100" height="100"/></svg>')

WORDS = ["data", "model", "pipeline", "token", "the", "a", "of", "text", "clean", "row",
         "quality", "filter", "dedup", "embedding", "index", "chunk"]


def text_rows(n: int = 60) -> list[dict]:
    """`n` documents: mostly a few words, every 7th too short, every 11th a copy of the one
    before, two XSS payloads, some with an e-mail address or a phone number, and one whose
    `n` is 13 (the map fails on it)."""
    import random

    rng = random.Random(7)
    rows = []
    for i in range(n):
        if i % 7 == 3:
            text = rng.choice(WORDS)  # one word: too_few_words
        elif i % 11 == 10 and rows:
            text = rows[-1]["text"]  # a duplicate of the previous row
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))
        if i % 9 == 1:
            text += f" write to person{i}@example.com or call +1 415 555 01{i % 100:02d}"
        rows.append({"text": text, "n": i, "lang": rng.choice(["en", "fr", "de"])})
    rows[5]["text"] = XSS_SCRIPT
    rows[6]["text"] = XSS_IMG
    rows[3]["text"] = XSS_SHORT
    return rows


def score_text(row: dict) -> dict:
    """A row-wise map: the share of long words, and the word count; fails on n == 13."""
    if row["n"] == 13:
        raise ValueError("row 13 is unlucky")
    words = row["text"].split()
    return {"score": sum(len(w) > 4 for w in words) / max(len(words), 1),
            "words": len(words)}


def build_text_workdir(root: Path, workers: int = 2) -> Path:
    """Run the text pipeline into `root / "work"` and return the workdir."""
    from datamill import Dataset

    data = root / "docs"
    data.mkdir(parents=True, exist_ok=True)
    rows = text_rows()
    for part, chunk in (("a", rows[:25]), ("b", rows[25:])):  # two files: two partitions
        (data / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chunk))
    workdir = root / "work"
    (Dataset.read(str(data))
     .apply("redact_pii")
     .apply("text_length_filter", min_words=3)
     .map(score_text, produces={"score": "float64", "words": "int64"}, row=True,
          on_error="quarantine")
     .apply("drop_duplicates", columns=["text"])
     .run(workdir, workers=workers, progress=False))
    return workdir


def check_image(row: dict) -> dict:
    """A row-wise map over images that fails on the coffee photo (quarantined)."""
    if row["path"].startswith("coffee"):
        raise ValueError("coffee is not allowed here")
    return {"checked": True}


def build_image_workdir(root: Path) -> Path:
    """Run the image pipeline into `root / "work"` and return the workdir."""
    import io

    import skimage.data
    from PIL import Image

    from datamill import Dataset

    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name, fmt in (("astronaut", "PNG"), ("chelsea", "JPEG"), ("coffee", "JPEG"),
                      ("rocket", "PNG")):
        buf = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buf, fmt)
        (folder / f"{name}.{fmt.lower().replace('jpeg', 'jpg')}").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(buf, "PNG")
    (folder / "tiny.png").write_bytes(buf.getvalue())
    (folder / "evil.png").write_bytes(EVIL_SVG)
    workdir = root / "work"
    (Dataset.read(str(folder), format="images")
     .apply("image_filter", min_side=64)
     .apply("image_info")
     .map(check_image, produces={"checked": "bool"}, row=True, on_error="quarantine")
     .run(workdir, workers=1, progress=False))
    return workdir


@pytest.fixture(scope="session")
def text_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir of the text pipeline (see the module docstring)."""
    return build_text_workdir(tmp_path_factory.mktemp("explore_text"))


@pytest.fixture(scope="session")
def image_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir of the image pipeline (see the module docstring)."""
    return build_image_workdir(tmp_path_factory.mktemp("explore_images"))
