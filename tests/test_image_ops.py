"""image_info, image_filter, resize_images, crop_borders and strip_image_metadata, run as
pipeline steps on real photos and on each bad input of issue 11: every bad image becomes a drop
reason or a quarantined row with a clear message, and the run goes on."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import datamill as dm
from datamill.ops.image.decode import decode_image, probe_image
from datamill.ops.image.metadata import strip_jpeg
from datamill.schema import is_image

from . import bad_images as bad


def bad_inputs() -> dict[str, bytes]:
    """Name -> bytes: the issue's bad inputs (the decodable odd ones included)."""
    return {
        "bomb.png": bad.png_bomb(10_000),
        "truncated.jpg": bad.truncated(bad.encode(bad.photo("astronaut"))),
        "truncated.png": bad.truncated(bad.encode(bad.photo("coffee"), "PNG")),
        "zero.jpg": b"",
        "notes.jpg": bad.TEXT_AS_JPG,
        "script.svg": bad.SVG_WITH_SCRIPT,
        "huge_header.png": bad.png_header_only(20_000, 20_000),
        "grey16.png": bad.png16(),
        "cmyk.jpg": bad.cmyk_jpeg(),
        "animated.gif": bad.animated_gif(),
        "gps.jpg": bad.exif_jpeg(gps=True, xmp=True),
    }


UNDECODABLE = {"bomb.png": "decompression_bomb", "truncated.jpg": "truncated",
               "truncated.png": "truncated", "zero.jpg": "empty", "notes.jpg": "not_an_image",
               "script.svg": "vector_refused", "huge_header.png": "decompression_bomb"}
GOOD = {"astronaut.jpg": bad.encode(bad.photo("astronaut")),
        "coffee.png": bad.encode(bad.photo("coffee"), "PNG"),
        "rocket.webp": bad.encode(bad.photo("rocket"), "WEBP", quality=85)}


def images_dataset(tmp_path, named: dict[str, bytes]) -> dm.Dataset:
    table = pa.table({"path": list(named), "image": pa.array(list(named.values()), pa.binary())})
    pq.write_table(table, tmp_path / "images.parquet")
    return dm.Dataset.read(str(tmp_path / "images.parquet")).apply("as_images",
                                                                    columns=["image"])


def by_path(table: pa.Table) -> dict[str, dict]:
    return {r["path"]: r for r in table.to_pylist()}


def test_image_info_describes_each_image_and_names_the_undecodable(tmp_path):
    named = {**GOOD, **bad_inputs()}
    rows = by_path(images_dataset(tmp_path, named).apply("image_info")
                   .collect(tmp_path / "w", progress=False))
    assert rows["astronaut.jpg"] | {"image": None} == {
        "path": "astronaut.jpg", "image": None, "image_width": 512, "image_height": 512,
        "image_format": "jpeg", "image_mode": "RGB", "image_bytes": len(GOOD["astronaut.jpg"]),
        "image_orientation": 1, "image_has_gps": False, "image_error": None}
    assert (rows["coffee.png"]["image_format"], rows["rocket.webp"]["image_format"]) == (
        "png", "webp")
    assert rows["cmyk.jpg"]["image_mode"] == "CMYK"
    assert rows["grey16.png"]["image_mode"].startswith("I")
    assert rows["gps.jpg"]["image_has_gps"] and not rows["coffee.png"]["image_has_gps"]
    header_only = {"truncated.jpg", "truncated.png"}  # their headers are sound
    for name, reason in UNDECODABLE.items():
        expected = None if name in header_only else reason
        assert rows[name]["image_error"] == expected, name
        if expected:
            assert rows[name]["image_width"] is None
    assert rows["zero.jpg"]["image_bytes"] == 0
    decoded = by_path(images_dataset(tmp_path, named).apply("image_info", decode=True)
                      .collect(tmp_path / "w2", progress=False))
    assert {n: decoded[n]["image_error"] for n in UNDECODABLE} == UNDECODABLE


def test_image_info_applies_orientation_to_the_size(tmp_path):
    rows = by_path(images_dataset(tmp_path, {"turned.jpg": bad.exif_jpeg(orientation=6)})
                   .apply("image_info", prefix="").collect(tmp_path / "w", progress=False))
    assert (rows["turned.jpg"]["width"], rows["turned.jpg"]["height"],
            rows["turned.jpg"]["orientation"]) == (300, 451, 6)


def test_image_filter_drops_each_bad_input_with_its_reason(tmp_path):
    named = {**GOOD, **bad_inputs()}
    ds = images_dataset(tmp_path, named).apply("image_filter")
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    step = result.step("image_filter")
    expected = {}
    for reason in UNDECODABLE.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert step["dropped"] == expected
    assert step["rows_out"] == len(named) - len(UNDECODABLE)
    dropped = dm.dropped_rows(tmp_path / "w")
    assert sorted(dropped["_reason"].to_pylist()) == sorted(UNDECODABLE.values())
    kept = ds.collect(tmp_path / "w", progress=False)
    assert sorted(kept["path"].to_pylist()) == sorted(set(named) - set(UNDECODABLE))
    assert is_image(kept.schema.field("image").type)


def test_image_filter_rules_each_have_a_reason(tmp_path):
    from PIL import Image as PILImage

    def sized(w, h, fmt="PNG"):
        return bad.encode(PILImage.new("RGB", (w, h), (90, 120, 30)), fmt)

    named = {"ok": sized(400, 300), "small": sized(50, 400), "big": sized(3000, 2000),
             "few": sized(200, 200), "wide": sized(1200, 200), "tall": sized(200, 1200),
             "gif": sized(400, 300, "GIF"), "turned": bad.exif_jpeg(orientation=6)}
    ds = images_dataset(tmp_path, named).apply(
        "image_filter", min_side=100, max_side=2000, min_pixels=50_000, min_aspect=0.5,
        max_aspect=2.0, formats=["png", "jpeg"])
    result = ds.run(tmp_path / "w", progress=False)
    assert result.step("image_filter")["dropped"] == {
        "too_small": 1, "too_large": 1, "too_few_pixels": 1, "too_wide": 1, "too_tall": 1,
        "format_not_allowed": 1}
    kept = ds.collect(tmp_path / "w", progress=False)
    assert sorted(kept["path"].to_pylist()) == ["ok", "turned"]
    too_tall = images_dataset(tmp_path, {"turned": bad.exif_jpeg(orientation=6)}).apply(
        "image_filter", max_aspect=1.0)  # 451 x 300 stored, 300 x 451 shown: kept
    assert too_tall.collect(tmp_path / "w2", progress=False).num_rows == 1
    with pytest.raises(dm.ArgumentError, match="min_side=10 is greater than max_side=5"):
        images_dataset(tmp_path, named).apply("image_filter", min_side=10, max_side=5)
    with pytest.raises(dm.ArgumentError, match="unknown format"):
        images_dataset(tmp_path, named).apply("image_filter", formats=["jpg"])


@pytest.mark.parametrize("on_error", ["skip", "quarantine"])
def test_map_ops_on_bad_inputs_follow_on_error_and_the_run_goes_on(tmp_path, on_error):
    named = {**GOOD, **bad_inputs()}
    ds = images_dataset(tmp_path, named).apply("resize_images", size=64, on_error=on_error)
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    assert result.step("resize_images")["errors"] == len(UNDECODABLE)
    out = by_path(ds.collect(tmp_path / "w", progress=False))
    assert set(out) == set(named) - set(UNDECODABLE)
    for name, row in out.items():
        image = decode_image(row["image"])
        assert min(image.size) == 64, name
    if on_error == "quarantine":
        q = by_path(dm.quarantined_rows(tmp_path / "w"))
        assert set(q) == set(UNDECODABLE)
        for name, reason in UNDECODABLE.items():
            assert f"ImageDecodeError: {reason}: column 'image'" in q[name]["_error"]
            assert q[name]["image"] == named[name]  # the row kept, to replay it


def test_on_error_raise_names_the_reason(tmp_path):
    ds = images_dataset(tmp_path, {**GOOD, "notes.jpg": bad.TEXT_AS_JPG}).apply(
        "crop_borders")
    with pytest.raises(dm.OperationError, match=r"crop_borders.*not_an_image: column 'image'"):
        ds.run(tmp_path / "w", progress=False)


def test_resize_modes_follow_img2dataset(tmp_path):
    photo = bad.encode(bad.photo("coffee"))  # 600 x 400
    expected = {("no", None): (600, 400), ("keep_ratio", None): (384, 256),
                ("center_crop", None): (256, 256), ("border", None): (256, 256),
                ("no", 300): (300, 200), ("keep_ratio", 300): (300, 200),
                ("center_crop", 100): (100, 100)}
    for (mode, max_side), size in expected.items():
        ds = images_dataset(tmp_path, {"c": photo}).apply("resize_images", mode=mode,
                                                          max_side=max_side, format="png")
        out = ds.collect(tmp_path / f"w-{mode}-{max_side}", progress=False)
        assert is_image(out.schema.field("image").type)  # outputs stay the image type
        image = decode_image(out["image"][0].as_py())
        assert image.size == size, (mode, max_side)
        assert probe_image(out["image"][0].as_py()).format == "png"
    bordered = np.asarray(decode_image(
        images_dataset(tmp_path, {"c": photo}).apply("resize_images", mode="border",
                                                      format="png", border_color=(0, 0, 255))
        .collect(tmp_path / "wb", progress=False)["image"][0].as_py()))
    assert bordered[0, 128].tolist() == [0, 0, 255]  # 256 x 171 centred: padding above
    assert bordered[128, 128].tolist() != [0, 0, 255]


def test_resize_only_if_bigger_quality_and_orientation(tmp_path):
    small = bad.encode(Image.new("RGB", (100, 80), (200, 10, 10)))
    turned = bad.exif_jpeg(orientation=6)  # shown 300 x 451
    out = by_path(images_dataset(tmp_path, {"small": small, "turned": turned}).apply(
        "resize_images", size=200, only_if_bigger=True, quality=50, format="webp")
        .collect(tmp_path / "w", progress=False))
    assert decode_image(out["small"]["image"]).size == (100, 80)
    assert decode_image(out["turned"]["image"]).size == (200, 301)
    assert probe_image(out["turned"]["image"]).format == "webp"
    sizes = {}
    for quality in (20, 95):  # each dataset runs before the next rewrites the input file
        resized = images_dataset(tmp_path, {"t": turned}).apply("resize_images", size=200,
                                                                quality=quality)
        sizes[quality] = len(resized.collect(tmp_path / f"q{quality}", progress=False)[
            "image"][0].as_py())
    assert sizes[20] < sizes[95]


def test_resize_flattens_alpha_for_jpeg_and_keeps_it_for_png(tmp_path):
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    named = {"a": bad.encode(rgba, "PNG")}
    jpeg = images_dataset(tmp_path, named).apply("resize_images", size=50).collect(
        tmp_path / "j", progress=False)["image"][0].as_py()
    assert decode_image(jpeg).getpixel((10, 10)) == (255, 255, 255)
    png = images_dataset(tmp_path, named).apply("resize_images", size=50, format="png"
                                                ).collect(tmp_path / "p", progress=False)
    assert decode_image(png["image"][0].as_py()).mode == "RGBA"


def letterboxed(border: int = 40, tint: int = 0) -> bytes:
    photo = bad.photo("chelsea")  # 300 x 451
    h, w, _ = photo.shape
    canvas = np.full((h + 2 * border, w, 3), tint, np.uint8)
    canvas[border:border + h] = photo
    return bad.encode(canvas, "PNG")


def test_crop_borders_removes_uniform_bars_and_keeps_the_rest(tmp_path):
    plain = bad.encode(bad.photo("astronaut"), "PNG")
    named = {"boxed": letterboxed(), "noisy": _noisy_letterbox(), "plain": plain,
             "blank": bad.encode(Image.new("RGB", (50, 50), (9, 9, 9)), "PNG")}
    ds = images_dataset(tmp_path, named).apply("crop_borders", format="png", tolerance=12)
    result = ds.run(tmp_path / "w", progress=False)
    counters = result.step("crop_borders")["counters"]
    assert counters["cropped"] == 2
    assert counters["pixels_removed"] == 2 * 80 * 451
    out = by_path(ds.collect(tmp_path / "w", progress=False))
    boxed = np.asarray(decode_image(out["boxed"]["image"]))
    assert boxed.shape == (300, 451, 3) and np.array_equal(boxed, bad.photo("chelsea"))
    assert decode_image(out["noisy"]["image"]).size == (451, 300)
    assert out["plain"]["image"] == plain and out["blank"]["image"] == named["blank"]


def _noisy_letterbox() -> bytes:
    """Dark bars with JPEG-like noise (values 0..8), which a tolerance of 12 still sees."""
    rng = np.random.default_rng(0)
    photo = bad.photo("chelsea")
    canvas = rng.integers(0, 9, (380, 451, 3), dtype=np.uint8)
    canvas[40:340] = photo
    return bad.encode(canvas, "PNG")


def test_strip_metadata_is_lossless_for_jpeg_and_counts_by_kind(tmp_path):
    gps = bad.exif_jpeg(gps=True, xmp=True)
    plain = bad.encode(bad.photo("astronaut"))
    ds = images_dataset(tmp_path, {"gps": gps, "plain": plain}).apply("strip_image_metadata")
    result = ds.run(tmp_path / "w", progress=False)
    counters = result.step("strip_image_metadata")["counters"]
    assert counters == {"removed_exif": 1, "removed_gps": 1, "removed_xmp": 1,
                        "images_changed": 1}
    out = by_path(ds.collect(tmp_path / "w", progress=False))
    assert out["plain"]["image"] == plain
    stripped = out["gps"]["image"]
    probe = probe_image(stripped)
    assert probe.metadata == frozenset() and not probe.has_gps
    assert b"DatamillCam" not in stripped and b"adobe:ns:meta" not in stripped
    # the compressed pixels are kept byte for byte: identical decoded pixels
    assert np.array_equal(np.asarray(decode_image(stripped)), np.asarray(decode_image(gps)))
    assert len(gps) - len(stripped) > 100


def test_strip_metadata_applies_orientation_png_and_webp(tmp_path):
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "shot at home")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>")
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    png = bad.encode(bad.photo("coffee"), "PNG", pnginfo=text, exif=exif.tobytes())
    webp = bad.encode(bad.photo("coffee"), "WEBP", exif=exif.tobytes(), xmp=b"<x:xmpmeta/>")
    turned = bad.exif_jpeg(orientation=6, gps=True)
    ds = images_dataset(tmp_path, {"png": png, "webp": webp, "turned": turned}).apply(
        "strip_image_metadata")
    counters = ds.run(tmp_path / "w", progress=False).step("strip_image_metadata")["counters"]
    assert counters == {"removed_exif": 3, "removed_gps": 3, "removed_xmp": 2,
                        "removed_text": 1, "orientation_applied": 1, "images_changed": 3}
    out = by_path(ds.collect(tmp_path / "w", progress=False))
    for name in ("png", "webp", "turned"):
        probe = probe_image(out[name]["image"])
        assert probe.metadata == frozenset() and probe.orientation == 1, name
    assert decode_image(out["turned"]["image"]).size == (300, 451)
    assert np.array_equal(np.asarray(decode_image(out["png"]["image"])), bad.photo("coffee"))
    assert b"shot at home" not in out["png"]["image"]


def test_strip_jpeg_drops_comments_iptc_and_trailing_pictures():
    base = bad.encode(bad.photo("chelsea"), comment=b"secret note")
    iptc = b"\xff\xed" + (2 + 20).to_bytes(2, "big") + b"Photoshop 3.0\x00" + b"\x00" * 6
    data = base[:2] + iptc + base[2:] + bad.encode(bad.photo("astronaut"))  # MPO-like tail
    out, removed = strip_jpeg(data)
    assert removed == {"comment": 1, "iptc": 1, "other": 1}
    assert b"secret note" not in out and out.endswith(b"\xff\xd9")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out)).convert("RGB")),
                          np.asarray(Image.open(io.BytesIO(base)).convert("RGB")))


def test_the_docs_examples_of_these_operations_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "images.md").read_text()
    start = text.index("## Safe decoding")
    section = text[start:text.index("\n## ", text.index("## Inspecting"))]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/images.md", "exec"), {})  # noqa: S102


def test_a_failed_batch_is_not_decoded_twice_when_retried_row_by_row(monkeypatch):
    """The engine retries a failing batch row by row; the rows computed in the batch call
    are served from what it kept (same outputs, same counts), so each image decodes once."""
    from datamill.image_type import as_image
    from datamill.ops.image import transform
    from datamill.ops.image.decode import ImageDecodeError

    calls = []
    real = transform.decode_in
    monkeypatch.setattr(transform, "decode_in", lambda data, *a, **k: (
        calls.append(bytes(data[:16])), real(data, *a, **k))[1])
    images = [letterboxed(), bad.TEXT_AS_JPG, bad.encode(bad.photo("astronaut"), "PNG"),
              letterboxed(20)]
    batch = pa.table({"image": as_image(pa.array(images, pa.binary()))})
    op = transform.CropBorders(format="png")
    with pytest.raises(ImageDecodeError, match="not_an_image"):
        op.process(batch)
    assert len(calls) == 4  # every row computed, the bad one included
    op.take_counters()  # the engine drops the failed batch's counts
    outputs, counters = [], {}
    for i in range(4):
        try:
            outputs.append(op.process(batch.slice(i, 1))["image"][0].as_py())
        except ImageDecodeError as exc:
            outputs.append(exc.reason)
        for k, n in op.take_counters().items():
            counters[k] = counters.get(k, 0) + n
    assert len(calls) == 4  # no image decoded again
    assert counters == {"cropped": 2, "pixels_removed": 451 * (80 + 40)}
    assert outputs[1] == "not_an_image" and outputs[2] == images[2]
    fresh = transform.CropBorders(format="png")
    assert outputs[0] == fresh.process(batch.slice(0, 1))["image"][0].as_py()
    assert len(calls) == 5


def test_the_image_ops_run_on_ray_as_they_do_locally(tmp_path, ray_cluster):
    """Bad inputs on the Ray executor: the same drops with the same reasons, the same
    quarantined rows and messages, the same outputs and counters as the local executor."""
    named = {**GOOD, **bad_inputs()}

    def pipeline():
        return (images_dataset(tmp_path, named)
                .apply("image_info")
                .apply("image_filter", decode=False)  # truncated files pass: quarantined below
                .apply("strip_image_metadata", on_error="quarantine")
                .apply("resize_images", size=48))

    local = pipeline().run(tmp_path / "local", workers=2, progress=False)
    ray = pipeline().run(tmp_path / "ray", executor="ray", address=ray_cluster.address,
                         progress=False)
    for name in ("image_filter", "strip_image_metadata", "resize_images"):
        keys = ("rows_in", "rows_out", "dropped", "errors", "counters")
        assert {k: ray.step(name).get(k) for k in keys} == {
            k: local.step(name).get(k) for k in keys}, name
    assert local.step("strip_image_metadata")["errors"] == 2  # the two truncated files
    assert local.step("strip_image_metadata")["counters"]["removed_gps"] == 1
    q_local, q_ray = (by_path(dm.quarantined_rows(tmp_path / w)) for w in ("local", "ray"))
    assert set(q_local) == {"truncated.jpg", "truncated.png"}
    assert {n: r["_error"] for n, r in q_ray.items()} == {
        n: r["_error"] for n, r in q_local.items()}
    rows = [by_path(pipeline().collect(tmp_path / w, progress=False)) for w in ("local", "ray")]
    assert rows[0] == rows[1] and len(rows[0]) == len(named) - len(UNDECODABLE)
