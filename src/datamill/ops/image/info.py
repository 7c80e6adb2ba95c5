"""`image_info`: what each image is (size, format, mode, orientation, GPS), or why it is not."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ...operation import MapOperation
from ._common import ImageColumnArgs, image_values
from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode, probe_image

FIELDS = {"width": "int64", "height": "int64", "format": "string", "mode": "string",
          "bytes": "int64", "orientation": "int64", "has_gps": "bool", "error": "string"}


class ImageInfoArgs(ImageColumnArgs):
    prefix: str = Field("image_", description="Prefix of the produced column names.")
    max_pixels: int | None = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="More pixels than this (from the header) is "
        "reported as error `decompression_bomb`; None: no limit but Pillow's own.")
    decode: bool = Field(False, description="Also decode the pixels, so truncated and "
                         "corrupt files are reported (slower); otherwise only the header is "
                         "read.")


class ImageInfo(MapOperation):
    """Describe each image from its header: `image_width`, `image_height` (as displayed, EXIF
    orientation applied), `image_format` (jpeg, png, ...), `image_mode` (RGB, CMYK, P, ...),
    `image_bytes`, `image_orientation` (EXIF, 1-8), `image_has_gps`, and `image_error`: null,
    or why the image cannot be used (empty, not_an_image, vector_refused, unsupported_format,
    decompression_bomb, truncated, corrupt, null_image). Undecodable rows are kept, with the
    other columns null, so `image_filter` or a python filter can drop them."""

    name = "image_info"
    Args = ImageInfoArgs
    consumes = {"{column}": "image"}

    def resolve_produces(self, schema: dict) -> dict:
        return self._template({self.args.prefix + k: t for k, t in FIELDS.items()})

    def describe(self, data: Any) -> dict:
        a = self.args
        if data is None:
            return {"bytes": None, "error": "null_image"}
        try:
            probe = probe_image(data)
            if a.decode:
                decode(data, max_pixels=a.max_pixels, draft=(1, 1))
            elif a.max_pixels is not None and probe.pixels > a.max_pixels:
                raise ImageDecodeError("decompression_bomb", "")
        except ImageDecodeError as exc:
            return {"bytes": len(data), "error": exc.reason}
        turned = probe.orientation in (5, 6, 7, 8)
        return {"width": probe.height if turned else probe.width,
                "height": probe.width if turned else probe.height,
                "format": probe.format, "mode": probe.mode, "bytes": len(data),
                "orientation": probe.orientation, "has_gps": probe.has_gps, "error": None}

    def process(self, batch: Any) -> dict:
        rows = [self.describe(v) for v in image_values(batch, self.args.column)]
        for row in rows:
            if row["error"]:
                self.count(f"error_{row['error']}")
        return {self.args.prefix + k: [r.get(k) for r in rows] for k in FIELDS}
