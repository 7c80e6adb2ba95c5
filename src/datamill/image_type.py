"""The image column type: encoded image bytes that datamill knows are images.

An Arrow extension type named ``datamill.image`` over ``binary`` or ``large_binary``. It survives
Parquet (the name is kept in the file's Arrow schema) and pickling (Ray, worker processes), and
``consumes={"image": "image"}`` lets an operation require one. Importing this module registers
the type with pyarrow, so files written with it read back as images.
"""

from __future__ import annotations

import pyarrow as pa

NAME = "datamill.image"


class ImageType(pa.ExtensionType):
    """Encoded image bytes (JPEG, PNG, WebP, ...); decoded only inside operations."""

    def __init__(self, storage: pa.DataType | None = None):
        storage = pa.binary() if storage is None else storage
        if storage not in (pa.binary(), pa.large_binary()):
            raise TypeError(f"an image column stores binary or large_binary, not {storage}")
        super().__init__(storage, NAME)

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls(storage_type)

    def __str__(self) -> str:
        return "image" if self.storage_type == pa.binary() else "image<large_binary>"


def _register() -> None:
    try:
        pa.register_extension_type(ImageType())
    except pa.ArrowKeyError:  # already registered (module reloaded)
        pass


_register()


def is_image(t) -> bool:
    return isinstance(t, ImageType)


def as_image(values) -> pa.Array | pa.ChunkedArray:
    """Mark a binary array (or chunked array) as images, without copying the bytes."""
    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([as_image(c) for c in values.chunks], ImageType(
            values.type.storage_type if is_image(values.type) else values.type))
    if is_image(values.type):
        return values
    return pa.ExtensionArray.from_storage(ImageType(values.type), values)


def storage(values):
    """The plain binary array under an image array (other arrays unchanged)."""
    if isinstance(values, pa.ChunkedArray) and is_image(values.type):
        return pa.chunked_array([c.storage for c in values.chunks], values.type.storage_type)
    if isinstance(values, pa.ExtensionArray):
        return values.storage
    return values


# what a folder listing of images keeps, and the formats that are raster images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff",
                  ".bmp", ".heic", ".heif", ".avif")
RASTER_FORMATS = frozenset({"jpeg", "png", "gif", "tiff", "bmp", "ico", "webp", "heic", "heif",
                            "avif"})

# (format, magic bytes at offset 0); WebP, HEIC and AVIF are checked below
_MAGIC = (
    ("jpeg", b"\xff\xd8\xff"),
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("gif", b"GIF87a"), ("gif", b"GIF89a"),
    ("tiff", b"II*\x00"), ("tiff", b"MM\x00*"),
    ("bmp", b"BM"),
    ("ico", b"\x00\x00\x01\x00"),
)
_HEIF_BRANDS = {b"heic": "heic", b"heix": "heic", b"hevc": "heic", b"heim": "heic",
                b"heis": "heic", b"mif1": "heif", b"msf1": "heif", b"avif": "avif",
                b"avis": "avif"}


def sniff_format(data: bytes | None) -> str | None:
    """The image format of encoded bytes from their first bytes, never from a name or header:
    jpeg, png, gif, tiff, bmp, ico, webp, heic, heif, avif; "svg" and "html" for markup that is
    not a raster image (to be refused); None when unknown."""
    if not data:
        return None
    head = bytes(data[:64])
    for fmt, magic in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(head[8:12])
    text = bytes(data[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "svg"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return None
