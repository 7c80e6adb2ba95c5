"""`read_images`: a folder, glob or list of image files, one row per image (`path`, `image`).

The bytes are read as they are, never decoded here: decoding, checking and normalising are
the image operations' work (`image_info`, `image_filter`, ...). So a file whose bytes are not
an image (a text file named `.jpg`, zero bytes, an SVG) still becomes a row by default, and
the operation that decodes it drops it with a reason, which `datamill inspect` shows in the
funnel. With `check_format=True` such a file is bad input instead, handled by `errors`.
A file that cannot be read at all (permissions, a vanished file) always follows `errors`.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from ..errors import InputError
from ..image_type import IMAGE_SUFFIXES, RASTER_FORMATS, ImageType, sniff_format
from .documents import DocumentArgs, DocumentSource
from .files import FilePart


class ReadImagesArgs(DocumentArgs):
    check_format: bool = Field(
        False, description="False: every listed file becomes a row, and the image operations "
                           "drop those that are not images (with a reason). True: a file whose "
                           "bytes are not a raster image format is bad input (`errors`).")


class ReadImages(DocumentSource):
    """Read image files (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC, AVIF), one row per file:
    `path` (relative to the folder given) and `image` (the encoded bytes, as read).
    Folders are listed recursively, keeping the image suffixes (`suffixes=` to change)."""

    name = "read_images"
    Args = ReadImagesArgs
    default_suffixes = IMAGE_SUFFIXES

    def columns(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "image": ImageType()}

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        if self.args.check_format:
            found = sniff_format(data)
            if found not in RASTER_FORMATS:
                what = "empty" if not data else f"{found} markup" if found else "unknown bytes"
                raise InputError(f"not an image ({what}, {len(data)} bytes)", path=part.path)
        yield 0, {"path": self.relative(part.path), "image": data}
