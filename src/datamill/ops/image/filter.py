"""`image_filter`: keep images by size, pixel count, aspect ratio and format; drop the
undecodable ones with their reason."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ...operation import FilterOperation
from ._common import ImageColumnArgs, image_values
from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageProbe, decode, probe_image

FORMATS = ("jpeg", "png", "gif", "tiff", "bmp", "ico", "webp", "heic", "heif", "avif")


class ImageFilterArgs(ImageColumnArgs):
    min_side: int | None = Field(None, ge=1, description="Drop when the shorter side is "
                                 "smaller (reason too_small).")
    max_side: int | None = Field(None, ge=1, description="Drop when the longer side is larger "
                                 "(too_large).")
    min_pixels: int | None = Field(None, ge=1, description="Drop when width x height is "
                                   "smaller (too_few_pixels).")
    max_pixels: int | None = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Drop when width x height, read from the header, "
        "is larger (decompression_bomb); None: only Pillow's own limit.")
    min_aspect: float | None = Field(None, gt=0, description="Drop when width / height is "
                                     "smaller (too_tall).")
    max_aspect: float | None = Field(None, gt=0, description="Drop when width / height is "
                                     "larger (too_wide).")
    formats: list[str] | None = Field(None, description="Keep only these formats "
                                      "(format_not_allowed), e.g. ['jpeg', 'png', 'webp'].")
    decode: bool = Field(True, description="Decode the pixels too, so truncated and corrupt "
                         "files are dropped here (JPEG at 1/8 scale, cheap); False reads only "
                         "the header.")

    @model_validator(mode="after")
    def _check(self) -> ImageFilterArgs:
        for low, high in (("min_side", "max_side"), ("min_pixels", "max_pixels"),
                          ("min_aspect", "max_aspect")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low}={lo} is greater than {high}={hi}")
        unknown = sorted(set(self.formats or ()) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; known: {list(FORMATS)}")
        return self


class ImageFilter(FilterOperation):
    """Keep images within size, pixel-count, aspect-ratio and format bounds. Sizes are as
    displayed (EXIF orientation applied). One drop reason per rule: too_small, too_large,
    too_few_pixels, decompression_bomb, too_tall, too_wide, format_not_allowed; undecodable
    images are dropped with their decoding reason (empty, not_an_image, vector_refused,
    unsupported_format, truncated, corrupt), and null ones as null_image."""

    name = "image_filter"
    Args = ImageFilterArgs
    consumes = {"{column}": "image"}

    def rule(self, probe: ImageProbe) -> str | None:
        """The first rule this image breaks, or None."""
        a = self.args
        width, height = probe.width, probe.height
        if probe.orientation in (5, 6, 7, 8):
            width, height = height, width
        if a.formats is not None and probe.format not in a.formats:
            return "format_not_allowed"
        if a.max_pixels is not None and probe.pixels > a.max_pixels:
            return "decompression_bomb"
        if a.min_side is not None and min(width, height) < a.min_side:
            return "too_small"
        if a.max_side is not None and max(width, height) > a.max_side:
            return "too_large"
        if a.min_pixels is not None and probe.pixels < a.min_pixels:
            return "too_few_pixels"
        aspect = width / height
        if a.min_aspect is not None and aspect < a.min_aspect:
            return "too_tall"
        if a.max_aspect is not None and aspect > a.max_aspect:
            return "too_wide"
        return None

    def check(self, data: Any) -> str | None:
        if data is None:
            return "null_image"
        try:
            reason = self.rule(probe_image(data))
            if reason is None and self.args.decode:
                decode(data, max_pixels=None, draft=(1, 1), apply_orientation=False)
            return reason
        except ImageDecodeError as exc:
            return exc.reason

    def process(self, batch: Any) -> Any:
        import numpy as np

        reasons = np.array([self.check(v) for v in image_values(batch, self.args.column)],
                           dtype=object)
        return np.equal(reasons, None), reasons
