"""Thumbnails: an image cell re-encoded on the server as a small PNG.

Only raster bytes are decoded, through the safe decoder (`ops/image/decode.py`: format
sniffed from the bytes, allowlisted plugins, pixel-count guard); SVG, HTML or anything else
from the data is never sent as it is: it gets a placeholder image instead. Thumbnails are
kept in a small in-memory LRU (the steps are immutable)."""

from __future__ import annotations

import io
from typing import Any

from .lru import LRU

THUMB = 256  # largest side, pixels
MAX_PIXELS = 25_000_000  # larger images get a placeholder (decoding one costs 75 MB)
CACHE_BYTES = 32 << 20
_CACHE = LRU(nbytes=CACHE_BYTES, size=len)


def thumbnail(data: bytes | None, size: int = THUMB) -> bytes:
    """PNG bytes of the image `data` fitted in `size` x `size`, or of a placeholder when
    `data` is not a raster image that decodes safely."""

    from ..ops.image.decode import ImageDecodeError, decode_image

    try:
        if not data:
            raise ImageDecodeError("empty", "no bytes")
        image = decode_image(data, max_pixels=MAX_PIXELS, draft=(size, size))
        image.thumbnail((size, size))
    except (ImageDecodeError, OSError, ValueError):
        return placeholder(size)
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def placeholder(size: int = THUMB) -> bytes:
    """A grey image with a cross: what a cell that is no raster image shows."""
    from PIL import Image, ImageDraw

    side = max(16, size // 4)
    image = Image.new("RGB", (side, side), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    draw.line((0, 0, side, side), fill=(160, 160, 160), width=2)
    draw.line((0, side, side, 0), fill=(160, 160, 160), width=2)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def cached(key: tuple, make: Any) -> bytes:
    """`make()` once per key, within CACHE_BYTES."""
    return _CACHE.get_or_make(key, make)
