"""`resize_images` (img2dataset's modes) and `crop_borders` (remove uniform borders)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...operation import MapOperation
from ._common import EncodeArgs, decode_in, encode_image, image_array, map_images

Resample = Literal["lanczos", "bicubic", "bilinear", "box", "nearest"]


class ResizeArgs(EncodeArgs):
    mode: Literal["no", "keep_ratio", "center_crop", "border"] = Field(
        "keep_ratio", description="no: keep the size; keep_ratio: the shorter side becomes "
        "`size`; center_crop: the shorter side becomes `size`, then the centre size x size is "
        "kept; border: the longer side becomes `size`, then it is padded to size x size.")
    size: int = Field(256, ge=1, description="Target side in pixels.")
    max_side: int | None = Field(None, ge=1, description="Then shrink (keeping the ratio) so "
                                 "that the longer side is at most this.")
    only_if_bigger: bool = Field(False, description="Never enlarge: images already smaller "
                                 "than the target keep their size.")
    border_color: tuple[int, int, int] = Field((255, 255, 255), description="Padding colour "
                                               "of mode border.")
    resample: Resample = Field("lanczos", description="Resampling filter.")


def _scaled(size: tuple[int, int], target: float, by: str) -> tuple[int, int]:
    """(w, h) scaled so that the shorter (by='min') or longer (by='max') side is target."""
    w, h = size
    side = min(w, h) if by == "min" else max(w, h)
    scale = target / side
    return max(1, round(w * scale)), max(1, round(h * scale))


class ResizeImages(MapOperation):
    """Resize images as img2dataset does (modes no, keep_ratio, center_crop, border), with an
    optional cap on the longer side, and re-encode them (JPEG, PNG or WebP at a quality). EXIF
    orientation is applied first; alpha is flattened on white for JPEG. JPEGs are decoded at
    the smallest DCT scale that still covers the target (much faster). An undecodable image
    raises for its row, which then follows the step's on_error; null stays null."""

    name = "resize_images"
    Args = ResizeArgs
    consumes = {"{column}": "image"}
    produces = {"{column}": "image"}
    in_place = True

    def target(self, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """(the size to resize to, the canvas to crop or pad to, if any)."""
        a = self.args
        if a.mode == "no":
            w, h = size
            if a.max_side is not None and max(w, h) > a.max_side:
                w, h = _scaled(size, a.max_side, "max")
            return (w, h), None
        by = "max" if a.mode == "border" else "min"
        side = a.size
        if a.only_if_bigger:
            side = min(side, max(size) if by == "max" else min(size))
        if a.mode == "keep_ratio":
            w, h = _scaled(size, side, by)
            if a.max_side is not None and max(w, h) > a.max_side:
                w, h = _scaled((w, h), a.max_side, "max")
            return (w, h), None
        if a.max_side is not None:
            side = min(side, a.max_side)
        return _scaled(size, side, by), (side, side)

    def displayed_target(self, probe: Any) -> tuple[int, int]:
        """The resize target of an image from its header (the decoder's draft size)."""
        return self.target(_shown(probe))[0]

    def resize(self, data: Any) -> bytes | None:
        from PIL import Image

        if data is None:
            return None
        a = self.args
        decoded = decode_in(data, a.column, draft=self.displayed_target)
        image = decoded.image
        (w, h), canvas = self.target(_shown(decoded.probe))
        if image.size != (w, h):
            filt = getattr(Image.Resampling, a.resample.upper())
            image = image.resize((w, h), filt, reducing_gap=3.0)
        if canvas is not None and canvas != (w, h):
            image = _fit(image, canvas, a.mode, a.border_color)
        return encode_image(image, a.format, a.quality)

    def process(self, batch: Any) -> dict:
        out = map_images(self, batch, self.args.column, self.resize)
        return {self.args.column: image_array(out)}


def _shown(probe: Any) -> tuple[int, int]:
    """The size as displayed: EXIF orientations 5-8 swap width and height."""
    turned = probe.orientation in (5, 6, 7, 8)
    return (probe.height, probe.width) if turned else (probe.width, probe.height)


def _fit(image: Any, canvas: tuple[int, int], mode: str, color: tuple[int, int, int]) -> Any:
    """Centre-crop (center_crop) or centre-pad (border) to the canvas size."""
    from PIL import Image

    cw, ch = canvas
    w, h = image.size
    if mode == "center_crop":
        left, top = max(0, (w - cw) // 2), max(0, (h - ch) // 2)
        return image.crop((left, top, left + min(cw, w), top + min(ch, h)))
    fill = color + (255,) if image.mode == "RGBA" else color
    padded = Image.new(image.mode, (max(cw, w), max(ch, h)), fill)
    padded.paste(image, ((padded.width - w) // 2, (padded.height - h) // 2))
    padded.info = image.info
    return padded


class CropBordersArgs(EncodeArgs):
    tolerance: int = Field(10, ge=0, le=255, description="A pixel is border when every "
                           "channel is within this of the border colour.")
    min_border: int = Field(1, ge=1, description="Crop only borders at least this thick.")


class CropBorders(MapOperation):
    """Remove uniform borders (letterboxing, scanner margins, padding): rows and columns at
    the edges whose pixels all lie within `tolerance` of the top-left pixel's colour. Cropped
    images are re-encoded (orientation applied); images without a border keep their bytes.
    Counters: cropped, pixels_removed. An undecodable image raises for its row (on_error)."""

    name = "crop_borders"
    Args = CropBordersArgs
    consumes = {"{column}": "image"}
    produces = {"{column}": "image"}
    in_place = True

    def box(self, image: Any) -> tuple[int, int, int, int] | None:
        """The content box (left, top, right, bottom), or None when nothing is cropped."""
        import numpy as np

        pixels = np.asarray(image).astype(np.int16)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        content = (np.abs(pixels - pixels[0, 0]) > self.args.tolerance).any(axis=2)
        rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
        if not len(rows):  # a uniform image: nothing to keep apart from the border
            return None
        h, w = content.shape
        box = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
        margins = (box[0], box[1], w - box[2], h - box[3])
        for side, margin in enumerate(margins):  # thinner than min_border: keep that side
            if 0 < margin < self.args.min_border:
                box[side] = (0, 0, w, h)[side]
        return tuple(box) if tuple(box) != (0, 0, w, h) else None

    def crop(self, data: Any) -> bytes | None:
        if data is None:
            return None
        image = decode_in(data, self.args.column).image
        box = self.box(image)
        if box is None:
            return data
        self.count("cropped")
        self.count("pixels_removed", image.width * image.height
                   - (box[2] - box[0]) * (box[3] - box[1]))
        cropped = image.crop(box)
        cropped.info = image.info
        return encode_image(cropped, self.args.format, self.args.quality)

    def process(self, batch: Any) -> dict:
        out = map_images(self, batch, self.args.column, self.crop)
        return {self.args.column: image_array(out)}
