"""What the image operations share: reading an image column, naming failures, encoding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ...image_type import as_image, storage
from ...operation import Arguments
from .decode import Decoded, ImageDecodeError, decode

OutputFormat = Literal["jpeg", "png", "webp"]
_PILLOW_NAME = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


class ImageColumnArgs(Arguments):
    column: str = Field("image", description="The image column.")


class EncodeArgs(ImageColumnArgs):
    format: OutputFormat = Field("jpeg", description="Format of the re-encoded images.")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality of the re-encoding.")


def image_values(batch: Any, column: str) -> Iterator[Any]:
    """The encoded bytes of each row (None for a null), without copying the column."""
    values = storage(batch.column(column))
    chunks = values.chunks if hasattr(values, "chunks") else [values]
    for chunk in chunks:
        for scalar in chunk:
            yield scalar.as_buffer() if scalar.is_valid else None


def decode_in(data: Any, column: str, **options: Any) -> Decoded:
    """decode(), with the column named in the error (the row follows the step's on_error)."""
    try:
        return decode(data, **options)
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, f"column {column!r}: {str(exc).split(': ', 1)[1]}"
                               ) from None


def encode_image(image: Any, fmt: str, quality: int = 95) -> bytes:
    """Encode an RGB/RGBA PIL image; JPEG gets alpha flattened on white, and the ICC profile
    the decoder kept is carried over."""
    import io

    from PIL import Image

    if fmt == "jpeg" and image.mode != "RGB":
        if image.mode == "RGBA":
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image, mask=image.getchannel("A"))
            flat.info = image.info
            image = flat
        else:
            image = image.convert("RGB")
    options: dict[str, Any] = {}
    icc = image.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality
    if fmt == "png":
        options["compress_level"] = 6
    buf = io.BytesIO()
    image.save(buf, _PILLOW_NAME[fmt], **options)
    return buf.getvalue()


def map_images(op: Any, batch: Any, column: str, fn: Any) -> list[Any]:
    """`fn` on each image of the column (None stays None); returns the outputs.

    An image that raises ImageDecodeError fails the batch (the engine then calls the operation
    row by row, so that only that row follows on_error). So that the retry costs no second
    decoding, every row of the failed batch is computed first and kept, keyed by a hash of
    its bytes, with its error or output and its counts; the row-by-row calls take them from
    there. The key covers the bytes, and the operation's arguments are fixed, so a kept result
    can only be served for the same input."""
    values = list(image_values(batch, column))
    kept = op.__dict__.get("_kept_rows")
    if kept is not None and len(values) == 1 and values[0] is not None:
        hit = kept.get(_row_key(values[0]))
        if hit is not None:
            output, counts, error = hit
            for name, n in counts.items():
                op.count(name, n)
            if error is not None:
                raise error
            return [output]
    if len(values) > 1:
        op.__dict__.pop("_kept_rows", None)
    rows, failed = [], None
    for data in values:
        before = dict(op.__dict__.get("_counters", {}))
        try:
            output, error = fn(data), None
        except ImageDecodeError as exc:
            output, error = None, exc
            failed = failed or exc
        after = op.__dict__.get("_counters", {})
        counts = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
        rows.append((data, output, counts, error))
    if failed is None:
        return [output for _, output, _, _ in rows]
    if len(values) > 1:
        op.__dict__["_kept_rows"] = {_row_key(data): (output, counts, error)
                                     for data, output, counts, error in rows
                                     if data is not None}
    raise failed


def _row_key(data: Any) -> bytes:
    import hashlib

    return hashlib.blake2b(data, digest_size=16).digest() + len(data).to_bytes(8, "little")


def image_array(values: list[Any]) -> Any:
    """A list of bytes (None for null) as an `image` column."""
    import pyarrow as pa

    return as_image(pa.array([None if v is None else bytes(v) for v in values], pa.binary()))


def decode_rgb_within(data: Any, column: str, max_side: int) -> Any:
    """An RGB PIL image (transparency over white) no larger than `max_side` on either side,
    decoded safely (JPEG at the smallest DCT scale that covers it), or ImageDecodeError naming
    the column: a row error."""
    from PIL import Image

    image = decode_in(data, column, draft=(max_side, max_side)).image
    if image.mode != "RGB":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
        image = background
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image
