"""Safe decoding: each bad input of issue 11 fails with its reason, odd modes are normalised,
orientation is applied, and the header is read without decoding pixels."""

import pickle

import numpy as np
import pytest
from PIL import Image

from datamill.ops.image.decode import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode,
    decode_image,
    probe_image,
)

from . import bad_images as bad


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (bad.TEXT_AS_JPG, "not_an_image"),
    (b"<!DOCTYPE html><html><body>404</body></html>", "not_an_image"),
    (bad.SVG_WITH_SCRIPT, "vector_refused"),
    (b"%PDF-1.7\n1 0 obj", "vector_refused"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", "vector_refused"),
    (bad.png_header_only(20_000, 20_000), "decompression_bomb"),
    (bad.png_bomb(10_000), "decompression_bomb"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
])
def test_bad_input_fails_with_its_reason(data, reason):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert info.value.reason == reason
    assert str(info.value).startswith(reason + ": ")
    assert isinstance(info.value, ValueError)  # a row error, not a pipeline error


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_fail_as_truncated(fmt):
    whole = bad.encode(bad.photo("coffee"), fmt)
    assert decode_image(whole).size == (600, 400)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bad.truncated(whole))
    assert info.value.reason == "truncated"
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # never switched on globally


def test_the_bomb_is_refused_from_the_header_and_a_lower_limit_applies():
    bomb = bad.png_bomb(10_000)
    assert len(bomb) < 50_000
    probe = probe_image(bomb)  # the header alone: 10,000 x 10,000
    assert (probe.width, probe.height, probe.pixels) == (10_000, 10_000, 100_000_000)
    assert probe.pixels > DEFAULT_MAX_PIXELS
    photo = bad.encode(bad.photo("coffee"))
    with pytest.raises(ImageDecodeError, match="240,000 pixels, above max_pixels=100,000"):
        decode_image(photo, max_pixels=100_000)
    assert decode_image(photo, max_pixels=None).size == (600, 400)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    probe = probe_image(bad.png16())
    assert probe.mode.startswith("I")
    image = decode_image(bad.png16())
    assert image.mode == "RGB"
    row = np.asarray(image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 2  # a ramp stays a ramp
    assert np.all(np.diff(row) >= 0)


def test_cmyk_jpeg_becomes_rgb_close_to_the_original():
    image = decode_image(bad.cmyk_jpeg())
    assert image.mode == "RGB" and image.size == (451, 300)
    diff = np.abs(np.asarray(image).astype(int) - bad.photo("chelsea").astype(int))
    assert diff.mean() < 12


def test_animated_gif_gives_its_first_frame():
    probe = probe_image(bad.animated_gif())
    assert probe.format == "gif" and probe.frames == 3
    image = decode_image(bad.animated_gif())
    assert image.mode == "RGB"
    assert np.asarray(image).reshape(-1, 3).mean(axis=0).round().tolist() == [255, 0, 0]


def test_alpha_and_palette_transparency_give_rgba():
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 40))
    assert decode_image(bad.encode(rgba, "PNG")).mode == "RGBA"
    la = Image.new("LA", (8, 8), (100, 5))
    out = decode_image(bad.encode(la, "PNG"))
    assert out.mode == "RGBA" and out.getpixel((0, 0)) == (100, 100, 100, 5)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    assert decode_image(bad.encode(palette, "PNG", transparency=0)).mode == "RGBA"
    assert decode_image(bad.encode(palette, "PNG")).mode == "RGB"
    assert decode_image(bad.encode(Image.new("1", (9, 9), 1), "PNG")).getpixel((0, 0)) == (
        255, 255, 255)


@pytest.mark.parametrize("orientation, size", [(1, (451, 300)), (3, (451, 300)),
                                               (6, (300, 451)), (8, (300, 451))])
def test_exif_orientation_is_applied(orientation, size):
    data = bad.exif_jpeg(orientation=orientation)
    probe = probe_image(data)
    assert probe.orientation == orientation and (probe.width, probe.height) == (451, 300)
    upright = np.asarray(decode_image(bad.exif_jpeg(orientation=1))).astype(int)
    image = decode_image(data)
    assert image.size == size
    turned = np.asarray(image).astype(int)
    back = {1: turned, 3: np.rot90(turned, 2), 6: np.rot90(turned, 1),
            8: np.rot90(turned, -1)}[orientation]
    assert np.abs(back - upright).mean() < 3
    assert decode_image(data, apply_orientation=False).size == (451, 300)


def test_gps_and_other_metadata_are_seen_in_the_header():
    probe = probe_image(bad.exif_jpeg(gps=True, xmp=True))
    assert probe.has_gps and probe.metadata == {"exif", "gps", "xmp"}
    plain = probe_image(bad.encode(bad.photo("chelsea")))
    assert not plain.has_gps and plain.metadata == frozenset()
    decoded = decode(bad.exif_jpeg(gps=True, xmp=True))
    assert decoded.probe.has_gps and "exif" not in decoded.image.info


def test_allowed_formats_and_draft_decoding():
    data = bad.encode(bad.photo("astronaut"))  # 512 x 512
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, formats={"png"})
    assert info.value.reason == "unsupported_format"
    small = decode_image(data, draft=(100, 100))  # JPEG DCT scaling: 1/4 still >= 100
    assert small.size == (128, 128)
    webp = bad.encode(bad.photo("coffee"), "WEBP", quality=80)
    assert probe_image(webp).format == "webp" and decode_image(webp).size == (600, 400)


def test_the_error_survives_pickling_with_its_reason():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bad.TEXT_AS_JPG)
    again = pickle.loads(pickle.dumps(info.value))
    assert again.reason == "not_an_image" and str(again) == str(info.value)
