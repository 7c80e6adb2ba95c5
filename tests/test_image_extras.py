"""Opt-in image extras whose models ship inside their wheels: NSFW detection (nudenet) and text
in images (rapidocr). Real models on real photos from the scikit-image wheel; the filters'
thresholds and drop reasons also on score columns the tests control (no NSFW test data)."""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import PipelineError
from datamill.image_type import as_image
from datamill.reader import read_table

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")
from PIL import Image, ImageDraw, ImageFont  # noqa: E402


def jpeg(image: Image.Image | np.ndarray) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def with_text(name: str, text: str, xy: tuple[int, int], size: int) -> bytes:
    """A scikit-image photo with `text` drawn on it in Pillow's default font."""
    img = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    ImageDraw.Draw(img).text(xy, text, fill=(255, 255, 255),
                             font=ImageFont.load_default(size=size))
    return jpeg(img)


def dataset(tmp_path: Path, file_name: str, **columns) -> dm.Dataset:
    file = tmp_path / f"{file_name}.parquet"
    pq.write_table(pa.table(columns), file)
    return dm.Dataset.read(str(file))


def images(values: list) -> pa.Array:
    return as_image(pa.array(values, pa.binary()))


def collect(ds: dm.Dataset, work: Path) -> pa.Table:
    ds.collect(work, workers=1, progress=False)
    return read_table(work, ds.step, list(ds.step.columns))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(self, address, *args):
        raise AssertionError(f"network access to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# --- NSFW: nudenet ---------------------------------------------------------------------------
@pytest.fixture
def nudenet():
    return pytest.importorskip("nudenet")


def test_our_labels_are_nudenets(nudenet) -> None:
    from datamill.ops.image.nsfw import LABELS

    assert list(LABELS) == list(getattr(nudenet.nudenet, "__labels"))


def test_safe_photos_score_low_and_faces_are_labelled(tmp_path, nudenet, no_network) -> None:
    photos = [jpeg(getattr(skdata, n)()) for n in ("astronaut", "chelsea", "coffee")]
    ds = dataset(tmp_path, "in", image=images([*photos, None, b"not an image"]),
                 name=["astronaut", "chelsea", "coffee", "null", "broken"])
    out = collect(ds.apply("nsfw_score", on_error="quarantine"), tmp_path / "w")
    assert out.schema.field("nsfw_score").type == pa.float32()
    assert out.schema.field("nsfw_labels").type == pa.list_(pa.string())
    rows = {r["name"]: r for r in out.to_pylist()}
    assert set(rows) == {"astronaut", "chelsea", "coffee", "null"}
    for name in ("astronaut", "chelsea", "coffee"):
        assert rows[name]["nsfw_score"] < 0.2
    # the detector does see the astronaut's face, which is not an explicit class
    assert "FACE_FEMALE" in rows["astronaut"]["nsfw_labels"]
    assert rows["chelsea"]["nsfw_labels"] == [] and rows["coffee"]["nsfw_labels"] == []
    assert rows["null"]["nsfw_score"] is None and rows["null"]["nsfw_labels"] is None
    quarantined = dm.quarantined_rows(tmp_path / "w")
    assert "not_an_image" in quarantined["_error"][0].as_py()


def test_scored_classes_drive_the_filter(tmp_path, nudenet) -> None:
    """The detector's own output through the filter: scoring the face class drops the
    astronaut (a real detection) and keeps the cat."""
    ds = dataset(tmp_path, "in", image=images([jpeg(skdata.astronaut()), jpeg(skdata.chelsea())]),
                 name=["astronaut", "chelsea"])
    ds = ds.apply("nsfw_score", classes=["FACE_FEMALE", "FACE_MALE"], labels_output=None)
    scored = collect(ds, tmp_path / "w")
    assert "nsfw_labels" not in scored.column_names
    score = dict(zip(scored["name"].to_pylist(), scored["nsfw_score"].to_pylist()))
    assert score["astronaut"] > 0.5 and score["chelsea"] == 0.0
    filtered = ds.apply("nsfw_filter", max_score=0.5)
    result = filtered.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("nsfw_filter")["dropped"] == {"nsfw": 1}
    assert dm.dropped_rows(tmp_path / "w", columns=["name"])["name"].to_pylist() == ["astronaut"]


def test_nsfw_filter_threshold_and_nulls(tmp_path) -> None:
    scores = pa.array([0.1, 0.9, None, 0.5, 0.51], pa.float32())
    ds = dataset(tmp_path, "s", nsfw_score=scores, id=list(range(5)))
    kept = ds.apply("nsfw_filter", max_score=0.5).collect(tmp_path / "a", progress=False)
    assert kept["id"].to_pylist() == [0, 2, 3]
    result = ds.apply("nsfw_filter", max_score=0.5, keep_null=False).run(
        tmp_path / "b", workers=1, progress=False)
    assert result.step("nsfw_filter")["dropped"] == {"nsfw": 2, "no_nsfw_score": 1}


def test_nsfw_model_file_and_version_are_in_the_cache_key(tmp_path, nudenet, monkeypatch) -> None:
    from datamill.ops.image import nsfw

    path, version = nsfw.nudenet_model()
    copy = tmp_path / "320n.onnx"
    shutil.copy(path, copy)
    model = {"version": version}
    monkeypatch.setattr(nsfw, "nudenet_model", lambda: (copy, model["version"]))
    ds = dataset(tmp_path, "in", image=images([jpeg(skdata.coffee())]))

    def key() -> str:
        return ds.apply("nsfw_score").step.key

    before = key()
    assert key() == before
    copy.write_bytes(copy.read_bytes() + b"\0")
    changed = key()
    assert changed != before
    model["version"] = "999"
    assert key() != changed


def test_a_missing_extra_fails_when_the_pipeline_is_built(tmp_path, monkeypatch) -> None:
    from datamill.ops.image import nsfw, ocr

    def missing():
        raise ImportError("needs it: pip install 'datamill[x]'")

    monkeypatch.setattr(nsfw, "nudenet_model", missing)
    monkeypatch.setattr(ocr, "rapidocr_models", missing)
    ds = dataset(tmp_path, "in", image=images([b"x"]))
    with pytest.raises(PipelineError, match=r"nsfw_score.*pip install"):
        ds.apply("nsfw_score")
    with pytest.raises(PipelineError, match=r"image_text_area.*pip install"):
        ds.apply("image_text_area")


# --- text in images: rapidocr ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ocr_run(tmp_path_factory):
    """One OCR run over a scanned page, two photos with text drawn on them, two plain photos
    and a null, network access refused throughout."""
    pytest.importorskip("rapidocr")
    tmp = tmp_path_factory.mktemp("ocr")
    named = {
        "page": jpeg(skdata.page()),
        "watermarked": with_text("coffee", "SAMPLE WATERMARK", (20, 150), 48),
        "captioned": with_text("chelsea", "stock photo 2024", (10, 240), 36),
        "chelsea": jpeg(skdata.chelsea()),
        "coffee": jpeg(skdata.coffee()),
        "null": None,
    }
    ds = dataset(tmp, "in", image=images(list(named.values())), name=list(named))
    ds = ds.apply("image_text_area")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", lambda self, address, *a: (_ for _ in ()).throw(
            AssertionError(f"network access to {address!r}")))
        out = collect(ds, tmp / "w")
    return tmp, ds, {r["name"]: r for r in out.to_pylist()}


def test_ocr_finds_text_and_not_in_plain_photos(ocr_run) -> None:
    _, ds, rows = ocr_run
    page, mark, caption = rows["page"], rows["watermarked"], rows["captioned"]
    assert page["text_boxes"] >= 5 and page["text_area"] > 0.3
    assert "segmentation" in page["text_lines"]
    assert "WATERMARK" in mark["text_lines"].replace(" ", "")
    assert mark["text_boxes"] == 1 and 0.02 < mark["text_area"] < 0.3
    assert "stock photo" in caption["text_lines"]
    assert 0.01 < caption["text_area"] < 0.3
    for name in ("chelsea", "coffee"):
        assert (rows[name]["text_area"], rows[name]["text_boxes"], rows[name]["text_lines"]) \
            == (0.0, 0, "")
    assert rows["null"]["text_area"] is None and rows["null"]["text_lines"] is None


def test_text_area_filter_drops_the_images_with_text(ocr_run) -> None:
    tmp, ds, _ = ocr_run
    filtered = ds.apply("text_area_filter", max_area=0.01)
    result = filtered.run(tmp / "w", workers=1, progress=False)
    assert result.step("image_text_area")["cached"]  # computed once, by the fixture
    assert result.step("text_area_filter")["dropped"] == {"too_much_text": 3}
    assert sorted(dm.dropped_rows(tmp / "w", columns=["name"])["name"].to_pylist()) == \
        ["captioned", "page", "watermarked"]


def test_text_area_filter_thresholds_and_reasons(tmp_path) -> None:
    ds = dataset(tmp_path, "s", id=list(range(5)),
                 text_area=pa.array([0.0, 0.2, None, 0.05, 0.1], pa.float32()),
                 text_boxes=pa.array([0, 3, None, 12, 1], pa.int32()))
    kept = ds.apply("text_area_filter", max_area=0.1).collect(tmp_path / "a", progress=False)
    assert kept["id"].to_pylist() == [0, 2, 3, 4]
    result = ds.apply("text_area_filter", max_area=0.1, max_boxes=10, keep_null=False).run(
        tmp_path / "b", workers=1, progress=False)
    assert result.step("text_area_filter")["dropped"] == {
        "too_much_text": 1, "too_many_text_boxes": 1, "no_text_area": 1}


def test_detection_only_measures_without_reading(tmp_path, no_network) -> None:
    pytest.importorskip("rapidocr")
    ds = dataset(tmp_path, "in", image=images([with_text("coffee", "SAMPLE WATERMARK",
                                                         (20, 150), 48)]))
    out = collect(ds.apply("image_text_area", recognize=False, prefix="ocr_"), tmp_path / "w")
    assert "ocr_lines" not in out.column_names
    assert out["ocr_boxes"].to_pylist() == [1]
    assert 0.02 < out["ocr_area"][0].as_py() < 0.3
