"""Image sources and sinks: read_images, read_webdataset, Parquet with images, write_webdataset,
write_images, and batches bounded by bytes. Real photos from scikit-image, variants made here."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

import datamill as dm
from datamill.formats import guess_format
from datamill.image_type import is_image, sniff_format, storage

PIL = pytest.importorskip("PIL.Image")
skdata = pytest.importorskip("skimage.data")

SAVE_AS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "tiff": "TIFF",
           "bmp": "BMP", "heic": "HEIF", "avif": "AVIF"}
SNIFFED = {"jpg": "jpeg", "png": "png", "webp": "webp", "gif": "gif", "tiff": "tiff",
           "bmp": "bmp", "heic": "heic", "avif": "avif"}


def encode(pixels, ext: str, **options) -> bytes:
    if ext in ("heic", "avif"):
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    PIL.fromarray(pixels).save(out, SAVE_AS[ext], **options)
    return out.getvalue()


def photos() -> dict[str, object]:
    return {"astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(),
            "coffee": skdata.coffee()}


def _collect(ds: dm.Dataset, workdir: Path, workers: int = 1) -> pa.Table:
    return ds.collect(workdir, columns=["_id", *ds.schema], workers=workers, progress=False)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Every format, a nested folder, and files that are not images to skip."""
    root = tmp_path_factory.mktemp("images")
    pixels = skdata.chelsea()
    for ext in SAVE_AS:
        (root / f"chelsea.{ext}").write_bytes(encode(pixels, ext))
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "coffee.jpg").write_bytes(encode(skdata.coffee(), "jpg"))
    (root / "README.txt").write_text("photos of a cat\n")
    (root / "meta.json").write_text("{}")
    return root


def test_a_folder_reads_one_row_per_image_in_every_format(image_folder: Path,
                                                         tmp_path: Path) -> None:
    ds = dm.Dataset.read(image_folder, format="images")
    assert ds.step.op.name == "read_images"
    assert {c: str(t) for c, t in ds.schema.items()} == {"path": "string", "image": "image"}
    table = _collect(ds, tmp_path / "w")
    assert is_image(table.schema.field("image").type)
    rows = {r["path"]: r["image"] for r in table.to_pylist()}
    expected = {f"chelsea.{ext}" for ext in SAVE_AS} | {"nested/deeper/coffee.jpg"}
    assert set(rows) == expected  # README.txt and meta.json skipped
    for ext in SAVE_AS:
        data = rows[f"chelsea.{ext}"]
        assert data == (image_folder / f"chelsea.{ext}").read_bytes()  # bytes as stored
        assert sniff_format(data) == SNIFFED[ext]
        with PIL.open(io.BytesIO(data)) as im:  # what was read decodes to the photo's size
            assert im.size == (451, 300)
    ids = table.column("_id").to_pylist()
    assert len(set(ids)) == len(ids)
    again = _collect(ds, tmp_path / "w2", workers=2)  # the same ids however it is split
    assert dict(zip(again.column("path").to_pylist(), again.column("_id").to_pylist())) == \
        dict(zip(table.column("path").to_pylist(), ids))


def test_globs_lists_and_fsspec_paths(image_folder: Path, tmp_path: Path) -> None:
    glob = dm.Dataset.read(str(image_folder / "*.jpg"))  # the format from the pattern
    assert glob.step.op.name == "read_images"
    assert _collect(glob, tmp_path / "g").column("path").to_pylist() == ["chelsea.jpg"]
    listed = dm.Dataset.read([image_folder / "chelsea.png", image_folder / "chelsea.webp"],
                             format="images")
    assert len(_collect(listed, tmp_path / "l")) == 2
    import fsspec

    root = f"memory://imgio-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/a/one.png", encode(skdata.astronaut(), "png"))
    fs.pipe(f"{root}/a/two.gif", encode(skdata.coffee(), "gif"))
    fs.pipe(f"{root}/a/notes.md", b"# not an image")
    remote = _collect(dm.Dataset.read(f"{root}/a", format="images"), tmp_path / "m")
    assert sorted(remote.column("path").to_pylist()) == ["one.png", "two.gif"]
    assert [sniff_format(b) for b in remote.column("image").to_pylist()] == ["png", "gif"]


def test_a_folder_of_images_is_guessed(image_folder: Path, tmp_path: Path) -> None:
    only = tmp_path / "only"
    only.mkdir()
    for name, pixels in photos().items():
        (only / f"{name}.jpg").write_bytes(encode(pixels, "jpg"))
    assert guess_format(str(only)) == "images"
    assert guess_format(str(only / "astronaut.jpg")) == "images"
    assert guess_format(str(image_folder)) == "text"  # mixed: say format="images"


def test_bad_files_are_read_as_bytes_and_sniffed_or_refused(tmp_path: Path) -> None:
    """By default a file that is not an image is a row (the image operations drop it with a
    reason); with check_format=True it follows `errors`, naming the file."""
    folder = tmp_path / "bad"
    folder.mkdir()
    good = encode(skdata.astronaut(), "jpg")
    png = encode(skdata.coffee(), "png")
    (folder / "good.jpg").write_bytes(good)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a jpeg\n")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "truncated.png").write_bytes(png[:1000])
    (folder / "script.png").write_text('<svg xmlns="http://www.w3.org/2000/svg">'
                                       "<script>alert(1)</script></svg>")
    table = _collect(dm.Dataset.read(folder, format="images"), tmp_path / "w")
    sniffed = {r["path"]: sniff_format(r["image"]) for r in table.to_pylist()}
    assert sniffed == {"good.jpg": "jpeg", "empty.jpg": None, "text.jpg": None,
                       "truncated.jpg": "jpeg", "truncated.png": "png", "script.png": "svg"}
    # truncated files sniff as what they start as: decoding finds the damage
    with pytest.raises(dm.InputError, match=r"empty\.jpg: not an image \(empty, 0 bytes\)"):
        _collect(dm.Dataset.read(folder, format="images", check_format=True), tmp_path / "r")
    strict = dm.Dataset.read(folder, format="images", check_format=True, on_error="quarantine")
    result = strict.run(tmp_path / "q", progress=False)
    kept = _collect(strict, tmp_path / "q").column("path").to_pylist()
    assert sorted(kept) == ["good.jpg", "truncated.jpg", "truncated.png"]
    assert result.step("read_images")["errors"] == 3
    quarantined = pa.concat_tables(
        [pa.parquet.read_table(p) for p in (tmp_path / "q").rglob("quarantine*.parquet")])
    reasons = " ".join(str(v) for v in quarantined.to_pylist())
    assert "text.jpg" in reasons and "svg markup" in reasons and "empty" in reasons
    keep = _collect(dm.Dataset.read(folder, format="images", check_format=True,
                                    errors="keep"), tmp_path / "k")
    errors = {r["path"]: r["error"] for r in keep.to_pylist()}
    assert errors["good.jpg"] is None and "unknown bytes" in errors["text.jpg"]
    assert keep.filter(pa.compute.is_valid(keep.column("error"))).column("image").null_count \
        == 3


def test_an_added_image_is_the_only_one_read_again(tmp_path: Path) -> None:
    """Partitions of unchanged files are kept on a rerun, as for other file readers."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, pixels in photos().items():
        (folder / f"{name}.png").write_bytes(encode(pixels, "png"))
    log = tmp_path / "log"
    def pipeline() -> dm.Dataset:
        return dm.Dataset.read(folder, format="images", bytes_per_partition=1).apply(
            LogPaths, log=str(log))

    first = pipeline().run(tmp_path / "w", workers=1, progress=False)
    assert first.step("read_images")["rows_out"] == 3
    assert sorted(log.read_text().split()) == ["astronaut.png", "chelsea.png", "coffee.png"]
    log.unlink()
    (folder / "zebra.png").write_bytes(encode(skdata.chelsea()[::2, ::2], "png"))
    second = pipeline().run(tmp_path / "w", workers=1, progress=False)
    assert second.step("read_images")["rows_out"] == 4
    assert log.read_text().split() == ["zebra.png"]


class LogPaths(dm.MapOperation):
    name = "test_image_io_log_paths"
    consumes = {"path": "string", "image": "image"}
    produces = {"size": "int64"}

    class Args(dm.Arguments):
        log: str

    def process(self, batch):
        with open(self.args.log, "a") as fh:
            fh.write("".join(f"{p}\n" for p in batch["path"].to_pylist()))
        return {"size": pa.compute.binary_length(storage(batch["image"]))}


def test_the_sources_and_sinks_examples_run(tmp_path: Path, monkeypatch) -> None:
    import re

    text = (Path(__file__).parent.parent / "docs" / "images.md").read_text()
    section = text[text.index("## Sources and sinks"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/images.md", "exec"), namespace)  # noqa: S102
