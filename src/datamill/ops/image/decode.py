"""Safe decoding of encoded image bytes with Pillow; every image operation decodes through here.

API (import from ``datamill.ops.image.decode``):

``decode_image(data, *, max_pixels=DEFAULT_MAX_PIXELS, formats=None, draft=None,
apply_orientation=True) -> PIL.Image.Image``
    Decodes the first frame to RGB, or RGBA when the image has transparency. CMYK, YCbCr, LAB,
    palette, 1-bit, 16- and 32-bit grey and float images are converted (16-bit scaled, not
    clipped); EXIF orientation is applied. ``draft=(w, h)`` lets JPEG decode at a reduced DCT
    scale no smaller than (w, h) (after orientation), which is much faster for thumbnails; it
    may also be a function of the ``ImageProbe`` returning (w, h) or None.
``decode(data, ...) -> Decoded``
    The same, plus the ``ImageProbe`` of the source (format, size, metadata found).
``probe_image(data) -> ImageProbe``
    Reads the header only (no pixel decoding): format, width, height, mode, frames, EXIF
    orientation, has_gps, and which metadata kinds are present (exif, xmp, iptc, gps, comment,
    icc). Width and height are as stored, before orientation.
``ImageDecodeError``
    The one exception raised for bad images; ``.reason`` is a short code usable as a drop
    reason: ``empty``, ``not_an_image``, ``vector_refused``, ``unsupported_format``,
    ``decompression_bomb``, ``truncated``, ``corrupt``. It is a ``ValueError`` (not a
    ``DatamillError``), so a map operation that lets it escape has the row handled by the
    step's ``on_error``.

Safety: the format is sniffed from the bytes (``datamill.image_type.sniff_format``) and only
raster formats on the allowlist (``ALLOWED_FORMATS``) are handed to Pillow, and only the plugin
of the sniffed format, so SVG, HTML, PDF, PostScript/EPS (Ghostscript) and WMF are never
rendered. The pixel count is checked from the header before any pixel is decoded: above
``max_pixels`` the image is a ``decompression_bomb`` (Pillow's own guard, which raises above
``2 * PIL.Image.MAX_IMAGE_PIXELS`` while opening, also maps there; its warning is silenced here
because this check replaces it). Truncated files fail with ``truncated``;
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

from ...image_type import sniff_format

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS: about 0.25 GiB of RGB

# sniffed format -> Pillow plugins allowed to open it
ALLOWED_FORMATS: dict[str, tuple[str, ...]] = {
    "jpeg": ("JPEG",), "png": ("PNG",), "gif": ("GIF",), "tiff": ("TIFF",), "bmp": ("BMP",),
    "ico": ("ICO",), "webp": ("WEBP",), "heic": ("HEIF",), "heif": ("HEIF",),
    "avif": ("AVIF", "HEIF"),
}
REASONS = ("empty", "not_an_image", "vector_refused", "unsupported_format",
           "decompression_bomb", "truncated", "corrupt")

# vector or scriptable formats sniff_format does not name: PDF, PostScript/EPS, WMF/EMF
_VECTOR_MAGIC = (b"%PDF", b"%!PS", b"\xc5\xd0\xd3\xc6", b"\xd7\xcd\xc6\x9a", b"\x01\x00\x00\x00")
_GPS_IFD = 0x8825
_ORIENTATION = 0x0112
# EXIF orientation -> the PIL.Image.Transpose value that undoes it
_TRANSPOSE = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}


class ImageDecodeError(ValueError):
    """An image that cannot be decoded safely; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")

    def __reduce__(self):
        return (_restore_error, (self.reason, str(self)))


def _restore_error(reason: str, text: str) -> ImageDecodeError:
    error = ImageDecodeError.__new__(ImageDecodeError)
    ValueError.__init__(error, text)
    error.reason = reason
    return error


@dataclass(frozen=True)
class ImageProbe:
    """What the header says. `metadata` lists the kinds present (exif, xmp, iptc, gps,
    comment, icc)."""

    format: str  # sniffed name: jpeg, png, gif, tiff, bmp, ico, webp, heic, heif, avif
    width: int
    height: int
    mode: str
    frames: int = 1
    orientation: int = 1
    has_gps: bool = False
    metadata: frozenset[str] = field(default_factory=frozenset)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Decoded:
    image: Any  # PIL.Image.Image, RGB or RGBA, oriented
    probe: ImageProbe


_heif_registered = False


def _plugins(fmt: str) -> list[str]:
    """The Pillow plugins for a sniffed format that this Pillow has (HEIF via pillow-heif)."""
    global _heif_registered
    from PIL import Image

    Image.init()
    if fmt in ("heic", "heif", "avif") and not _heif_registered:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:
            pass
        _heif_registered = True
    return [p for p in ALLOWED_FORMATS.get(fmt, ()) if p in Image.OPEN]


def _sniff(data: Any, formats: Any) -> tuple[str, list[str]]:
    if data is None or len(data) == 0:
        raise ImageDecodeError("empty", "no bytes")
    fmt = sniff_format(data)
    if fmt == "svg" or (fmt is None and bytes(data[:4]).startswith(_VECTOR_MAGIC)):
        raise ImageDecodeError("vector_refused",
                               f"{fmt or 'a vector or scriptable format'} is never rendered")
    if fmt is None or fmt == "html":
        what = "HTML" if fmt == "html" else f"unrecognised bytes {bytes(data[:8])!r}"
        raise ImageDecodeError("not_an_image", f"{what} ({len(data)} bytes)")
    if formats is not None and fmt not in formats:
        raise ImageDecodeError("unsupported_format",
                               f"{fmt} is not among the allowed formats {sorted(formats)}")
    plugins = _plugins(fmt)
    if not plugins:
        raise ImageDecodeError("unsupported_format", f"no Pillow plugin decodes {fmt} here"
                               " (HEIC/AVIF need pillow-heif)")
    return fmt, plugins


def _open(data: Any, fmt: str, plugins: list[str]) -> Any:
    """Open (header only) with the sniffed format's plugin; Pillow's bomb guard mapped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=plugins)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("corrupt", f"{fmt} header that Pillow cannot parse") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as exc:
        raise _load_error(fmt, exc) from None


def _load_error(fmt: str, exc: BaseException) -> ImageDecodeError:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "truncated" in lowered or isinstance(exc, EOFError) or "premature end" in lowered:
        return ImageDecodeError("truncated", f"{fmt}: {text}")
    if "too large" in lowered or "decompressed data" in lowered:
        return ImageDecodeError("decompression_bomb", f"{fmt}: {text}")
    return ImageDecodeError("corrupt", f"{fmt}: {type(exc).__name__}: {text}")


def _exif(im: Any, fmt: str) -> Any:
    """The EXIF block without decoding pixels (PNG's getexif would load the image when the
    eXIf chunk comes after the pixel data; then there is none to report from the header)."""
    if fmt == "png" and "exif" not in im.info:
        return None
    try:
        return im.getexif()
    except Exception:  # noqa: BLE001 - malformed EXIF is treated as absent
        return None


def _probe_open(im: Any, fmt: str) -> ImageProbe:
    exif = _exif(im, fmt)
    orientation, has_gps, kinds = 1, False, set()
    if exif:
        kinds.add("exif")
        value = exif.get(_ORIENTATION, 1)
        orientation = value if isinstance(value, int) and 1 <= value <= 8 else 1
        try:
            has_gps = bool(exif.get_ifd(_GPS_IFD))
        except Exception:  # noqa: BLE001
            has_gps = False
    info = im.info
    if has_gps:
        kinds.add("gps")
    if info.get("xmp") or info.get("XML:com.adobe.xmp"):
        kinds.add("xmp")
    if "photoshop" in info or "iptc" in info or getattr(im, "applist", None) and any(
            m == "APP13" for m, _ in im.applist):
        kinds.add("iptc")
    if info.get("comment"):
        kinds.add("comment")
    if info.get("icc_profile"):
        kinds.add("icc")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("corrupt", f"{fmt} header gives size {width}x{height}")
    return ImageProbe(format=fmt, width=width, height=height, mode=im.mode,
                      frames=int(getattr(im, "n_frames", 1) or 1), orientation=orientation,
                      has_gps=has_gps, metadata=frozenset(kinds))


def probe_image(data: Any, *, formats: Any = None) -> ImageProbe:
    """The header's facts, without decoding pixels. Raises ImageDecodeError."""
    fmt, plugins = _sniff(data, formats)
    im = _open(data, fmt, plugins)
    try:
        return _probe_open(im, fmt)
    finally:
        im.close()


def decode(data: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, formats: Any = None,
           draft: Any = None, apply_orientation: bool = True) -> Decoded:
    """Decode the first frame safely to RGB/RGBA (see the module docstring). `draft` is
    (w, h) or a function of the ImageProbe that returns one (or None)."""
    fmt, plugins = _sniff(data, formats)
    im = _open(data, fmt, plugins)
    out = None
    try:
        probe = _probe_open(im, fmt)
        if max_pixels is not None and probe.pixels > max_pixels:
            raise ImageDecodeError(
                "decompression_bomb", f"{fmt} header gives {probe.width}x{probe.height} = "
                f"{probe.pixels:,} pixels, above max_pixels={max_pixels:,}")
        if callable(draft):
            draft = draft(probe)
        if draft is not None and fmt == "jpeg" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
            w, h = draft
            if apply_orientation and probe.orientation in (5, 6, 7, 8):
                w, h = h, w
            im.draft(im.mode if im.mode != "YCbCr" else "RGB", (max(1, w), max(1, h)))
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's fault
            raise _load_error(fmt, exc) from None
        icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA") else None
        out = _normalise(im)
        if apply_orientation and probe.orientation != 1:
            out = out.transpose(_TRANSPOSE[probe.orientation])
        out.info = {"icc_profile": icc} if icc else {}
        return Decoded(out, probe)
    finally:
        if out is not im:  # the decoded pixels live on in `out`; the source can go
            im.close()


def decode_image(data: Any, **options: Any) -> Any:
    """The decoded PIL image (RGB or RGBA, oriented, first frame); see `decode`."""
    return decode(data, **options).image


def _has_transparency(im: Any) -> bool:
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return "transparency" in im.info


def _normalise(im: Any) -> Any:
    """RGB, or RGBA when there is transparency; high bit depths scaled to 8 bits."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode in ("RGB", "RGBA"):
        if mode == "RGB" and "transparency" in im.info:
            return im.convert("RGBA")
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im)
        if mode.startswith("I;16"):
            scaled = values.astype(np.uint32) >> 8  # 16-bit full range -> 8 bits
        else:
            finite = values[np.isfinite(values)] if mode == "F" else values
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 0)
            if mode == "I" and low >= 0 and high <= 255:
                scaled = values
            elif mode == "I" and low >= 0 and high <= 65535:
                scaled = values.astype(np.uint32) >> 8
            else:  # any other range: stretch to 0..255
                span = high - low or 1.0
                scaled = (np.nan_to_num(values.astype(np.float64), nan=low) - low) * (255 / span)
        grey = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or _has_transparency(im):
        return im.convert("RGBA")
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV
