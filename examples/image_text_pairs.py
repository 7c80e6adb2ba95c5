"""Image–text pairs for training, LAION-style, from real photos with planted trouble.

    datamill run examples/image_text_pairs.py
    datamill inspect datamill-work                   # the funnel, with a reason for every drop
    datamill search examples/output/image_text_pairs.lancedb "a cat" -k 3

Input: WebDataset shards in img2dataset's layout (KEY.jpg, KEY.txt alt text, KEY.json), written
once into examples/data/image_text_pairs/ from the photos inside the scikit-image wheel (no
download), with what a crawl brings besides: near duplicates (a half-size copy, a JPEG
recompressed at quality 30, a copy cropped by 1%, a PNG re-encoding), a photo with GPS EXIF,
a truncated JPEG, an empty file, a text file and an SVG with a script named .jpg, a
decompression bomb (a 20 KB PNG of 10,000 x 10,000 pixels), a thumbnail and a strip too wide.

Chain: read_webdataset -> image_info -> image_filter -> strip_image_metadata -> image_dedup
-> resize_images -> embed_images (CLIP) -> caption_images -> image_text_similarity ->
image_text_filter -> write_webdataset + write_lancedb.

Models: set IMAGE_PAIRS_CLIP to a CLIP model directory (e.g. openai/clip-vit-base-patch32
downloaded once) and IMAGE_PAIRS_CAPTIONER to a captioner (e.g.
Salesforce/blip-image-captioning-base). Without them the example builds tiny random stand-ins
(examples/stand_in_models.py) so the chain runs anywhere; their scores and captions mean
nothing, so the similarity filter then keeps every pair (IMAGE_PAIRS_MIN_SIMILARITY sets it).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import datamill as dm

HERE = Path(__file__).parent
DATA = HERE / "data" / "image_text_pairs"
MODELS = HERE / "data" / "stand_in_models"
OUT = HERE / "output"

# scikit-image sample -> the alt text a crawl would pair it with
PHOTOS = {
    "astronaut": "astronaut Eileen Collins in an orange flight suit, a flag behind her",
    "chelsea": "a ginger tabby cat looking to the side",
    "coffee": "a cup of coffee on a saucer with a spoon",
    "rocket": "a rocket standing on its launch pad",
    "hubble_deep_field": "the Hubble deep field: hundreds of galaxies on black",
    "retina": "a fundus photograph of a human retina",
    "immunohistochemistry": "a microscope image of stained tissue",
    "grass": "a close-up of a lawn",
    "logo": "the scikit-image logo",
    "brick": "a brick wall",
    "coins": "a grid of old coins",
    "page": "a page of printed text",
    "clock": "a clock blurred by motion",
    "moon": "the surface of the moon",
    "camera": "a photographer with a camera on a tripod",
}


def _photo(name: str):
    import skimage.data
    from PIL import Image

    image = Image.fromarray(getattr(skimage.data, name)())
    return image.convert("RGBA" if image.mode in ("RGBA", "LA") else "RGB")


def _encode(image, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _bomb(side: int = 10_000) -> bytes:
    """A valid 1-bit PNG of side x side zeros: a few KB that would decode to side² pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def _gps_jpeg(image) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 30.0), 3: "E", 4: (4.0, 53.0, 10.0)}  # GPS
    return _encode(image, exif=exif.tobytes(), quality=90)


def samples() -> list[tuple[str, str, bytes, str]]:
    """(key, member extension, bytes, alt text) of every sample, the planted ones included."""
    photos = {name: _photo(name) for name in PHOTOS}
    rows = [(name, "png" if img.mode == "RGBA" else "jpg",
             _encode(img, "PNG") if img.mode == "RGBA" else _encode(img, quality=90),
             PHOTOS[name]) for name, img in photos.items() if name not in ("moon", "camera")]
    astronaut, chelsea, coffee = photos["astronaut"], photos["chelsea"], photos["coffee"]
    w, h = coffee.size
    rows += [  # near duplicates of photos above
        ("astronaut_half", "jpg", _encode(astronaut.resize((256, 256)), quality=90),
         "an astronaut posing for her official portrait"),
        ("chelsea_q30", "jpg", _encode(chelsea, quality=30), "my cat Chelsea"),
        ("coffee_cropped", "jpg", _encode(coffee.crop((w // 100, h // 100, w - w // 100,
                                                       h - h // 100)), quality=90),
         "coffee time"),
        ("rocket_png", "png", _encode(photos["rocket"], "PNG"), "rocket launch pad"),
    ]
    moon = _encode(photos["moon"], quality=90)
    rows += [  # what a crawl brings besides
        ("camera_gps", "jpg", _gps_jpeg(photos["camera"]), PHOTOS["camera"]),
        ("moon_truncated", "jpg", moon[: len(moon) // 2], PHOTOS["moon"]),
        ("empty", "jpg", b"", "an empty file"),
        ("text_named_jpg", "jpg", b"name,value\nnot an image,1\n", "a spreadsheet"),
        ("svg_script", "jpg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>'
         b"alert(document.cookie)</script></svg>", "an icon"),
        ("bomb", "png", _bomb(), "a blank square"),
        ("thumbnail", "jpg", _encode(chelsea.resize((48, 32)), quality=90), "tiny cat"),
        ("strip", "jpg", _encode(photos["brick"].resize((800, 80)), quality=90),
         "a banner of bricks"),
    ]
    return rows


def generate(folder: Path = DATA, shards: int = 2) -> Path:
    """Write the samples as `shards` WebDataset tar files (once)."""
    if folder.is_dir() and any(folder.glob("*.tar")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rows = samples()
    for s in range(shards):
        tmp = folder / f"{s:05d}.tar.tmp"
        with tarfile.open(tmp, "w") as tar:
            for key, ext, data, text in rows[s::shards]:
                meta = json.dumps({"key": key, "source": "scikit-image"}).encode()
                for suffix, body in ((ext, data), ("txt", text.encode()), ("json", meta)):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
        tmp.replace(folder / f"{s:05d}.tar")
    return folder


def models() -> tuple[str, str, float]:
    """(CLIP model, captioner, minimum similarity): real ones from the environment, or the
    stand-ins with a threshold that keeps every pair."""
    clip, captioner = os.environ.get("IMAGE_PAIRS_CLIP"), os.environ.get("IMAGE_PAIRS_CAPTIONER")
    threshold = os.environ.get("IMAGE_PAIRS_MIN_SIMILARITY")
    if not clip or not captioner:
        import stand_in_models

        print("image_text_pairs: no IMAGE_PAIRS_CLIP / IMAGE_PAIRS_CAPTIONER set: using tiny "
              "random stand-in models (scores and captions are meaningless)")
        clip = clip or stand_in_models.tiny_clip(MODELS / "clip")
        captioner = captioner or stand_in_models.tiny_blip(MODELS / "blip")
        return clip, captioner, float(threshold) if threshold else -1.0
    return clip, captioner, float(threshold) if threshold else 0.28


def build(data: Path, out: Path, clip: str, captioner: str,
          min_similarity: float) -> list[dm.Dataset]:
    pairs = (
        dm.Dataset.read(str(data), format="webdataset")
        .apply("image_info")
        .apply("image_filter", min_side=64, min_aspect=0.25, max_aspect=4.0)
        .apply("strip_image_metadata")
        .apply("image_dedup", threshold=6, keep="most_pixels")
        .apply("resize_images", mode="keep_ratio", size=256, format="jpeg", quality=90)
        .apply("embed_images", model=clip)
        .apply("caption_images", model=captioner, output="generated_caption",
               max_new_tokens=20)
        .apply("image_text_similarity", model=clip, text="caption", embedding="embedding")
        .apply("image_text_filter", min_similarity=min_similarity)
    )
    return [pairs.write(str(out / "image_text_pairs"), format="webdataset"),
            pairs.write(str(out / "image_text_pairs.lancedb"), format="lancedb", table="images")]


def pipeline() -> list[dm.Dataset]:
    """What `datamill run examples/image_text_pairs.py` runs."""
    clip, captioner, threshold = models()
    return build(generate(), OUT, clip, captioner, threshold)
