"""`strip_image_metadata`: remove EXIF (with GPS), XMP, IPTC, comments and text chunks.

JPEG, PNG and WebP are stripped losslessly, by dropping their metadata segments or chunks and
keeping the compressed pixels byte for byte. An image whose EXIF orientation is not 1 is first
decoded, turned upright and re-encoded, since the orientation tag goes with the EXIF. Other
formats with metadata (TIFF, GIF, HEIC, AVIF) are re-encoded as `format`.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any

from ...operation import MapOperation
from ._common import EncodeArgs, decode_in, encode_image, image_array, map_images
from .decode import probe_image

_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_KEEP_APP = {0xE0, 0xEE}  # APP0 (JFIF), APP14 (Adobe: colour transform); APP2 if ICC
_PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt"}


class StripArgs(EncodeArgs):
    pass


def strip_jpeg(data: bytes) -> tuple[bytes, Counter]:
    """Drop APP1 (EXIF, XMP), APP13 (IPTC), COM and vendor APPn segments, and anything after
    the image (MPO's extra pictures); keep JFIF, Adobe and ICC. Returns (bytes, removed)."""
    removed: Counter = Counter()
    out = [data[:2]]
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data up to EOI
            # (0xFF in entropy-coded data is followed by 0x00 or a restart marker, so the
            # first FF D9 ends the image; an EXIF thumbnail's came before, in APP1)
            end = data.find(b"\xff\xd9", pos)
            end = len(data) if end < 0 else end + 2
            if data[end:].strip(b"\x00\r\n \t"):
                removed["other"] += 1  # trailing pictures (MPO) or data after the image
            out.append(data[pos:end])
            return b"".join(out), removed
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos:pos + 2 + length]
        body = segment[4:]
        kind = None
        if marker == 0xE1:
            kind = "xmp" if body.startswith(_XMP_JPEG) or b"adobe:ns:meta" in body[:80] else (
                "exif" if body.startswith(b"Exif\x00") else "other")
        elif marker == 0xED:
            kind = "iptc"
        elif marker == 0xFE:
            kind = "comment"
        elif marker == 0xE2 and not body.startswith(b"ICC_PROFILE\x00"):
            kind = "other"  # MPF (multi-picture index), FlashPix
        elif 0xE3 <= marker <= 0xEF and marker not in _KEEP_APP:
            kind = "other"
        if kind is None:
            out.append(segment)
        else:
            removed[kind] += 1
        pos += 2 + length
    raise ValueError("JPEG without image data")


def strip_png(data: bytes) -> tuple[bytes, Counter]:
    """Drop eXIf, tEXt/zTXt/iTXt (XMP, IPTC profiles, comments) and tIME; keep the rest."""
    removed: Counter = Counter()
    out = [data[:8]]
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        chunk = data[pos:pos + 12 + length]
        if kind == b"eXIf":
            removed["exif"] += 1
        elif kind in _PNG_TEXT:
            keyword = chunk[8:8 + 80].split(b"\x00", 1)[0]
            removed["xmp" if keyword == b"XML:com.adobe.xmp" else
                    "iptc" if b"iptc" in keyword.lower() else
                    "exif" if b"exif" in keyword.lower() else "text"] += 1
        elif kind == b"tIME":
            removed["other"] += 1
        else:
            out.append(chunk)
        pos += 12 + length
        if kind == b"IEND":
            break
    return b"".join(out), removed


def strip_webp(data: bytes) -> tuple[bytes, Counter]:
    """Drop the EXIF and XMP chunks of an extended WebP and clear their VP8X flags."""
    removed: Counter = Counter()
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        length = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunk = data[pos:pos + 8 + length + (length & 1)]
        if kind == b"EXIF":
            removed["exif"] += 1
        elif kind == b"XMP ":
            removed["xmp"] += 1
        else:
            chunks.append(chunk)
        pos += 8 + length + (length & 1)
    if not removed:
        return data, removed
    chunks = [c if c[:4] != b"VP8X" else c[:8] + bytes([c[8] & ~0x0C]) + c[9:] for c in chunks]
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body, removed


_STRIPPERS = {"jpeg": strip_jpeg, "png": strip_png, "webp": strip_webp}
_FORMATS_WITHOUT_METADATA = {"bmp", "ico"}


def _reencode(probe: Any) -> bool:
    """Whether the image must be re-encoded: to turn it upright, or because its format has
    metadata and no lossless stripper here."""
    return probe.orientation != 1 or (probe.format not in _STRIPPERS
                                      and probe.format not in _FORMATS_WITHOUT_METADATA
                                      and bool(probe.metadata - {"icc"}))


class StripImageMetadata(MapOperation):
    """Remove EXIF (GPS included), XMP, IPTC, comments and text chunks from images: the image
    side of anonymization. EXIF orientation is applied first (the image is turned upright and
    re-encoded as `format`); otherwise JPEG, PNG and WebP are stripped losslessly (the
    compressed pixels are kept byte for byte) and other formats that carry metadata are
    re-encoded as `format`. ICC colour profiles are kept. Counters, per kind removed:
    removed_exif, removed_gps, removed_xmp, removed_iptc, removed_comment, removed_text,
    removed_other; and images_changed, orientation_applied, reencoded. An undecodable image
    raises for its row (on_error)."""

    name = "strip_image_metadata"
    Args = StripArgs
    consumes = {"{column}": "image"}
    produces = {"{column}": "image"}
    in_place = True

    def strip(self, data: Any) -> Any:
        if data is None:
            return None
        a = self.args
        # decoding proves the image sound before it is kept; only re-encoding needs the
        # pixels at full size (a JPEG stripped losslessly is checked at 1/8 scale)
        decoded = decode_in(data, a.column, draft=lambda p: None if _reencode(p) else (1, 1))
        probe = decoded.probe
        if probe.has_gps:
            self.count("removed_gps")
        if _reencode(probe):
            for kind in sorted(probe.metadata - {"icc", "gps"}):
                self.count(f"removed_{kind}")
            self.count("orientation_applied" if probe.orientation != 1 else "reencoded")
            self.count("images_changed")
            return encode_image(decoded.image, a.format, a.quality)
        stripper = _STRIPPERS.get(probe.format)
        if stripper is None:
            return data
        try:
            out, removed = stripper(bytes(data))
            probe_image(out)
        except Exception:  # noqa: BLE001 - unusual layout: re-encode rather than keep metadata
            self.count("reencoded")
            self.count("images_changed")
            return encode_image(decode_in(data, a.column).image, a.format, a.quality)
        for kind, n in removed.items():
            self.count(f"removed_{kind}", n)
        if removed:
            self.count("images_changed")
            return out
        return data

    def process(self, batch: Any) -> dict:
        out = map_images(self, batch, self.args.column, self.strip)
        return {self.args.column: image_array(out)}
