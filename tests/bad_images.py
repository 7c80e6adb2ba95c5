"""Real photos (scikit-image's samples) and the bad inputs of issue 11, as encoded bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(name: str = "astronaut") -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def encode(image: Image.Image | np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG signature and IHDR claiming width x height RGB, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def png_bomb(side: int = 10_000) -> bytes:
    """A valid 1-bit side x side PNG of zeros: a few KB that decode to side² pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


SVG_WITH_SCRIPT = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
                   b'height="10"><script>alert(document.cookie)</script>'
                   b'<rect width="10" height="10"/></svg>')
TEXT_AS_JPG = b"name,value\nthis is a text file someone named photo.jpg\n"


def png16() -> bytes:
    """A 16-bit greyscale PNG: a horizontal ramp over the full 0..65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    return encode(Image.fromarray(ramp), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(photo("chelsea")).convert("CMYK"), "JPEG", quality=90)


def animated_gif() -> bytes:
    """Three frames: red, green, blue."""
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def exif_jpeg(*, orientation: int = 1, gps: bool = False, name: str = "chelsea",
              xmp: bool = False) -> bytes:
    """A photo with EXIF (camera make, orientation, optionally a GPS position) and XMP."""
    exif = Image.Exif()
    exif[0x010F] = "DatamillCam"  # Make
    exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 22.0, 30.0), 3: "E", 4: (4.0, 53.0, 10.0)}
    options = {"exif": exif.tobytes(), "quality": 90}
    if xmp:
        options["xmp"] = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www'
                          b'.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>')
    return encode(photo(name), "JPEG", **options)
