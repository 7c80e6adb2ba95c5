"""Image sources and sinks: read_images, read_webdataset, Parquet with images, write_webdataset,
write_images, and batches bounded by bytes. Real photos from scikit-image, variants made here."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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
        [pq.read_table(p) for p in (tmp_path / "q").rglob("quarantine*.parquet")])
    reasons = " ".join(str(v) for v in quarantined.to_pylist())
    assert "text.jpg" in reasons and "svg markup" in reasons and "empty" in reasons
    keep = _collect(dm.Dataset.read(folder, format="images", check_format=True,
                                    errors="keep"), tmp_path / "k")
    errors = {r["path"]: r["error"] for r in keep.to_pylist()}
    assert errors["good.jpg"] is None and "unknown bytes" in errors["text.jpg"]
    assert keep.filter(pa.compute.is_valid(keep.column("error"))).column("image").null_count \
        == 3


def test_files_that_are_not_images_are_dropped_downstream_with_reasons(tmp_path: Path) -> None:
    """What read_images leaves to the image operations: image_filter drops each bad file
    with its reason, and the good ones flow on."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = encode(skdata.coffee(), "jpg")
    (folder / "good.jpg").write_bytes(good)
    (folder / "good.heic").write_bytes(encode(skdata.chelsea(), "heic"))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a jpeg\n")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "script.png").write_text("<svg><script>alert(1)</script></svg>")
    ds = dm.Dataset.read(folder, format="images").apply("image_filter")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("read_images")["rows_out"] == 6
    reasons = {r["_id"]: r["_reason"] for r in dm.dropped_rows(tmp_path / "w").to_pylist()}
    read = _collect(dm.Dataset.read(folder, format="images"), tmp_path / "p")
    paths = dict(zip(read.column("_id").to_pylist(), read.column("path").to_pylist()))
    assert {paths[i]: why for i, why in reasons.items()} == {
        "empty.jpg": "empty", "text.jpg": "not_an_image", "truncated.jpg": "truncated",
        "script.png": "vector_refused"}
    assert sorted(_collect(ds, tmp_path / "w").column("path").to_pylist()) == [
        "good.heic", "good.jpg"]


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
    section = section[:section.find("\n## ", 3) if "\n## " in section[3:] else None]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/images.md", "exec"), namespace)  # noqa: S102


# --- batches bounded by bytes -------------------------------------------------------------

class ImageBatchSpy(dm.MapOperation):
    """Records (rows, image bytes, bytes of each image) of every batch it is called with."""

    name = "test_image_io_batch_spy"
    consumes = {"image": "image"}
    produces = {"n_bytes": "int64"}
    seen: list[tuple[int, int, list[int]]] = []

    def process(self, batch):
        lengths = pa.compute.binary_length(storage(batch["image"])).cast(pa.int64())
        sizes = lengths.to_pylist()
        ImageBatchSpy.seen.append((batch.num_rows, sum(sizes), sizes))
        return {"n_bytes": lengths}


class SmallBatches(ImageBatchSpy):
    name = "test_image_io_small_batches"
    batch_bytes = 300_000
    produces = {"n_bytes_small": "int64"}
    seen: list[tuple[int, int, list[int]]] = []

    def process(self, batch):
        sizes = pa.compute.binary_length(storage(batch["image"])).cast(pa.int64())
        SmallBatches.seen.append((batch.num_rows, pa.compute.sum(sizes).as_py(), []))
        return {"n_bytes_small": sizes}


def _varied_folder(root: Path) -> list[int]:
    """Photos from 32 to 512 pixels wide, as PNG: from 3 KB to 500 KB each."""
    root.mkdir()
    sizes = []
    for i, scale in enumerate([1, 16, 8, 2, 16, 1, 4, 16, 16, 2, 8, 1, 16, 4, 1, 1, 16, 2]):
        data = encode(skdata.astronaut()[::scale, ::scale], "png")
        (root / f"img{i:02d}.png").write_bytes(data)
        sizes.append(len(data))
    return sizes


def test_batches_holding_images_are_cut_by_bytes(tmp_path: Path, monkeypatch) -> None:
    """Rows of a batch of images differ a hundredfold in size: the pass cuts it row by row,
    so that no batch exceeds the budget unless one image does, and each batch is as full as
    the budget allows."""
    from datamill.executors import rowwise

    sizes = _varied_folder(tmp_path / "in")
    assert sum(sizes) > rowwise.BATCH_BYTES  # one batch below, thanks to the image budget
    source = dm.Dataset.read(tmp_path / "in", format="images")
    ImageBatchSpy.seen = []
    source.apply(ImageBatchSpy).run(tmp_path / "w0", workers=1, progress=False)
    assert [n for n, _, _ in ImageBatchSpy.seen] == [len(sizes)]

    budget = 700_000
    monkeypatch.setattr(rowwise, "IMAGE_BATCH_BYTES", budget)
    ImageBatchSpy.seen = []
    table = source.apply(ImageBatchSpy).collect(tmp_path / "w1", workers=1, progress=False)
    assert table["n_bytes"].to_pylist() == sizes
    seen = ImageBatchSpy.seen
    assert sum(n for n, _, _ in seen) == len(sizes) and len(seen) >= 4
    for (n, total, _), (_, _, following) in zip(seen, [*seen[1:], (0, 0, [budget])]):
        assert total <= budget or n == 1  # within the budget, or one image alone
        assert total + following[0] > budget - 2_000  # the next image did not fit
    # a stage reading stored columns cuts the same way
    stored = source.filter(lambda b: [True] * b.num_rows, consumes=["path"])
    stored.run(tmp_path / "w2", workers=1, progress=False)
    ImageBatchSpy.seen = []
    stored.apply(ImageBatchSpy).run(tmp_path / "w2", workers=1, progress=False)
    assert [n for n, _, _ in ImageBatchSpy.seen] == [n for n, _, _ in seen]


def test_an_operation_declares_its_batch_bytes(tmp_path: Path) -> None:
    sizes = _varied_folder(tmp_path / "in")
    ImageBatchSpy.seen, SmallBatches.seen = [], []
    ds = dm.Dataset.read(tmp_path / "in", format="images").apply(SmallBatches).apply(
        ImageBatchSpy)
    ds.run(tmp_path / "w", workers=1, progress=False)
    assert sum(n for n, _, _ in SmallBatches.seen) == len(sizes)
    assert len(SmallBatches.seen) >= sum(sizes) // 300_000
    assert all(total <= 300_000 or n == 1 for n, total, _ in SmallBatches.seen)
    assert sum(n for n, _, _ in ImageBatchSpy.seen) == len(sizes)  # rows flow on, slice
    # by slice, to the next step


def test_readers_yield_batches_bounded_by_bytes(tmp_path: Path, monkeypatch) -> None:

    from datamill.io import files
    from datamill.io.images import ReadImages
    from datamill.io.parquet import ReadParquet

    sizes = _varied_folder(tmp_path / "in")
    monkeypatch.setattr(files, "READ_BATCH_BYTES", 600_000)
    reader = ReadImages(path=str(tmp_path / "in"))
    [partition] = reader.partitions()
    batches = list(reader.read(partition, None))
    assert sum(b.num_rows for b in batches) == len(sizes) and len(batches) >= 4
    for batch in batches[:-1]:  # full once past the budget: by at most its last image
        images = pa.compute.binary_length(storage(batch["image"])).to_pylist()
        assert sum(images) - images[-1] < 600_000 <= sum(images)

    images = [p.read_bytes() for p in sorted((tmp_path / "in").iterdir())] * 4
    table = pa.table({"id": list(range(len(images))),  # distinct values: no dictionary
                      "jpeg": [data + i.to_bytes(4, "big") for i, data in enumerate(images)]})
    pq.write_table(table, tmp_path / "images.parquet", row_group_size=len(sizes))
    parquet = ReadParquet(path=str(tmp_path / "images.parquet"))
    assert len(parquet.partitions()) == 1  # 4 row groups of 3 MB
    read = [b for p in parquet.partitions() for b in parquet.read(p, ["jpeg"])]
    assert sum(b.num_rows for b in read) == table.num_rows
    assert max(b.num_rows for b in read) <= len(sizes) * 600_000 // sum(sizes) + 1
    from datamill.io.parquet import _chunks  # row groups handed to Arrow at once

    meta = pq.ParquetFile(tmp_path / "images.parquet").metadata
    assert _chunks(meta, (0, 1, 2, 3)) == [[0], [1], [2], [3]]
    monkeypatch.setattr(files, "READ_BATCH_BYTES", int(2.5 * sum(sizes)))
    assert _chunks(meta, (0, 1, 2, 3)) == [[0, 1], [2, 3]]
    by_bytes = ReadParquet(path=str(tmp_path / "images.parquet"),
                           bytes_per_partition=int(2.5 * sum(sizes)))
    parts = by_bytes.partitions()
    assert [p.row_groups for p in parts] == [(0, 1), (2, 3)]
    assert [p.row_offset for p in parts] == [0, 2 * len(sizes)]


def test_parquet_with_image_bytes_reads_and_writes_as_images(tmp_path: Path) -> None:

    jpegs = [encode(p, "jpg") for p in photos().values()]
    pq.write_table(pa.table({"name": list(photos()), "jpeg": jpegs}), tmp_path / "in.parquet")
    plain = dm.Dataset.read(tmp_path / "in.parquet")
    assert str(plain.schema["jpeg"]) == "binary"
    marked = dm.Dataset.read(tmp_path / "in.parquet", image_columns=["jpeg"])
    assert str(marked.schema["jpeg"]) == "image"
    marked.write(tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    [written] = sorted((tmp_path / "out").glob("part-*.parquet"))
    back = pq.read_table(written)
    assert is_image(back.schema.field("jpeg").type)  # the type survives the file
    assert storage(back["jpeg"]).to_pylist() == jpegs
    again = dm.Dataset.read(tmp_path / "out")
    assert str(again.schema["jpeg"]) == "image"
    with pytest.raises(dm.InputError, match=r"image_columns: column 'name' is string"):
        dm.Dataset.read(tmp_path / "in.parquet", image_columns=["name"]).schema  # noqa: B018
    with pytest.raises(dm.InputError, match="'missing', which the files lack"):
        dm.Dataset.read(tmp_path / "in.parquet", image_columns=["missing"])


# --- WebDataset -----------------------------------------------------------------------------

def _samples(n: int, start: int = 0) -> list[dict]:
    """img2dataset-like samples: photo variants (sizes, formats), captions, metadata."""
    names = list(photos())
    out = []
    for i in range(start, start + n):
        name = names[i % len(names)]
        ext = ("jpg", "png", "webp")[i % 3]
        pixels = photos()[name][:: 1 + i % 4, :: 1 + i % 4]
        out.append({"key": f"{i:09d}", "ext": ext, "image": encode(pixels, ext),
                    "caption": f"a photo of {name} number {i}",
                    "json": {"url": f"https://example.com/{name}/{i}.{ext}", "key": f"{i:09d}",
                             "width": int(pixels.shape[1]), "status": "success"}})
    return out


def write_shard(path: Path, samples: list[dict]) -> Path:
    """A shard as img2dataset writes it, through the webdataset package's own writer."""
    import json

    import webdataset as wds

    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write({"__key__": s["key"], s["ext"]: s["image"], "txt": s["caption"],
                        "json": json.dumps(s["json"]).encode()})
    return path


def test_webdataset_shards_read_one_row_per_sample(tmp_path: Path) -> None:
    import json

    shards = tmp_path / "shards"
    shards.mkdir()
    first, second = _samples(7), _samples(5, start=7)
    write_shard(shards / "00000.tar", first)
    write_shard(shards / "00001.tar", second)
    assert guess_format(str(shards)) == "webdataset"
    ds = dm.Dataset.read(shards)
    assert ds.step.op.name == "read_webdataset"
    assert {c: str(t) for c, t in ds.schema.items()} == {
        "shard": "string", "key": "string", "image": "image", "caption": "string",
        "json": "string"}
    table = _collect(ds, tmp_path / "w", workers=2)
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == [s["key"] for s in first + second]
    assert [r["shard"] for r in rows] == ["00000.tar"] * 7 + ["00001.tar"] * 5
    for row, sample in zip(rows, first + second):
        assert row["image"] == sample["image"] and row["caption"] == sample["caption"]
        assert json.loads(row["json"]) == sample["json"]
    assert len(set(table.column("_id").to_pylist())) == 12
    one = _collect(dm.Dataset.read(shards / "00001.tar"), tmp_path / "one")
    assert one.column("key").to_pylist() == [s["key"] for s in second]


def test_damaged_shards_keep_what_can_be_read(tmp_path: Path) -> None:
    """A truncated shard keeps the samples before the damage; a sample without an image or
    with metadata that does not parse follows `errors` alone; a file that is no tar at all
    is bad input naming it."""
    import tarfile

    shards = tmp_path / "bad"
    shards.mkdir()
    good = write_shard(shards / "a.tar", _samples(4))
    whole = write_shard(tmp_path / "whole.tar", _samples(6, start=10)).read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tar:  # cut inside the fifth sample's image
        cut = next(m for m in tar.getmembers() if m.name.startswith("000000014.")).offset_data
    (shards / "b.tar").write_bytes(whole[: cut + 100])
    odd = _samples(3, start=20)
    odd[1]["json"] = None
    with tarfile.open(shards / "c.tar", "w") as tar:
        for s in odd:
            members = {s["ext"]: s["image"], "txt": s["caption"].encode(),
                       "json": b"{not json" if s["json"] is None else b"{}"}
            if s is odd[2]:
                members = {"txt": b"a caption without its image"}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{s['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (shards / "d.tar").write_text("this is not a tar file at all, only words " * 40)
    with pytest.raises(dm.InputError, match=r"b\.tar: damaged or not a tar file after sample "
                                            r"'000000014'"):
        _collect(dm.Dataset.read(shards), tmp_path / "r")
    kept = dm.Dataset.read(shards, on_error="quarantine")
    result = kept.run(tmp_path / "q", workers=1, progress=False)
    keys = _collect(kept, tmp_path / "q").column("key").to_pylist()
    assert keys == [f"{i:09d}" for i in (0, 1, 2, 3, 10, 11, 12, 13, 20)]
    assert result.step("read_webdataset")["errors"] == 4  # b's tail, 2 samples of c, d
    assert good.exists()
    errors = _collect(dm.Dataset.read(shards, errors="keep"), tmp_path / "k")
    messages = [r["error"] for r in errors.to_pylist() if r["error"]]
    assert any("000000021.json does not parse" in m for m in messages)
    assert any("'000000022' has no image member" in m for m in messages)
    assert len(messages) == 4
    assert any(m.endswith("d.tar: damaged or not a tar file (invalid header)") for m in messages)


def test_write_webdataset_shards_that_webdataset_reads(tmp_path: Path) -> None:
    import json

    import webdataset as wds

    shards = tmp_path / "in"
    shards.mkdir()
    samples = _samples(30)
    write_shard(shards / "00000.tar", samples[:15])
    write_shard(shards / "00001.tar", samples[15:])
    target = 400_000
    pipeline = dm.Dataset.read(shards).write(tmp_path / "out", format="webdataset",
                                             target_file_size=target)
    assert pipeline.step.op.name == "write_webdataset"
    pipeline.run(tmp_path / "w", workers=2, progress=False)
    written = sorted((tmp_path / "out").glob("part-*.tar"))
    assert len(written) >= sum(len(s["image"]) for s in samples) // (2 * target)
    assert all(p.stat().st_size < target + max(len(s["image"]) for s in samples) + 10_000
               for p in written)
    back = {}
    for sample in wds.WebDataset([str(p) for p in written], shardshuffle=False):
        back[sample["__key__"]] = sample
    assert sorted(back) == [s["key"] for s in samples]
    for s in samples:
        got = back[s["key"]]
        image_ext = {"jpg": "jpg", "png": "png", "webp": "webp"}[s["ext"]]
        assert got[image_ext] == s["image"]
        assert got["txt"].decode() == s["caption"]
        meta = json.loads(got["json"])
        assert {k: meta[k] for k in s["json"]} == s["json"]  # the metadata, merged
        assert meta["caption"] == s["caption"] and meta["shard"].endswith(".tar")
    again = _collect(dm.Dataset.read(tmp_path / "out"), tmp_path / "w2")  # and datamill
    assert sorted(again.column("key").to_pylist()) == [s["key"] for s in samples]
    before = {p.name: p.read_bytes() for p in written}
    pipeline.run(tmp_path / "w3", workers=2, progress=False)  # the same rows, the same bytes
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "out").glob("part-*.tar"))} \
        == before


def test_write_webdataset_names_rows_it_cannot_write(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(encode(skdata.astronaut(), "jpg"))
    (folder / "text.jpg").write_text("not an image")
    ds = dm.Dataset.read(folder, format="images")
    with pytest.raises(dm.DatamillError, match=r"sample '[0-9a-f]{16}': the image is not an "
                                               r"image \(unknown bytes\)"):
        ds.write(tmp_path / "out", format="webdataset").run(tmp_path / "w", workers=1,
                                                            progress=False)
    with pytest.raises(dm.SchemaError, match="no image column 'picture'"):
        ds.write(tmp_path / "out", format="webdataset", image="picture")


def test_write_images_makes_a_folder_of_files(tmp_path: Path) -> None:
    import json


    samples = _samples(9)
    samples[4]["key"] = "../../escape.me"  # keys become safe file names
    pq.write_table(pa.table({
        "key": [s["key"] for s in samples], "image": [s["image"] for s in samples],
        "caption": [s["caption"] for s in samples],
        "json": [json.dumps(s["json"]) for s in samples]}), tmp_path / "in.parquet")
    out = tmp_path / "out"
    pipeline = dm.Dataset.read(tmp_path / "in.parquet", image_columns=["image"]).write(
        out, format="images")
    assert pipeline.step.op.name == "write_images"
    pipeline.run(tmp_path / "w", workers=1, progress=False)
    images = sorted(p for p in out.rglob("*") if p.suffix in (".jpg", ".png", ".webp"))
    assert len(images) == 9 and all(p.parent.parent == out for p in images)
    by_key = {p.stem: p for p in images}
    assert "escape_me" in by_key and not (tmp_path / "escape.me.png").exists()
    for s in samples:
        key = s["key"] if s["key"][0] != "." else "escape_me"
        path = by_key[key]
        assert path.suffix == "." + s["ext"] and path.read_bytes() == s["image"]
        assert path.with_suffix(".txt").read_text() == s["caption"]
        assert json.loads(path.with_suffix(".json").read_text())["url"] == s["json"]["url"]
    assert guess_format(str(out)) == "images"
    back = _collect(dm.Dataset.read(out), tmp_path / "back")
    assert sorted(back.column("path").to_pylist()) == sorted(
        str(p.relative_to(out)) for p in images)
    assert sorted(back.column("image").to_pylist()) == sorted(s["image"] for s in samples)

    assert pipeline.run(tmp_path / "w", workers=1, progress=False).step(
        "write_images")["cached"]
    by_key["000000002"].unlink()  # a damaged output is written again, not served as done
    result = pipeline.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("write_images")["cached"] is False
    assert by_key["000000002"].read_bytes() == samples[2]["image"]
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_image_sources_and_sinks_run_on_ray_as_they_do_locally(tmp_path: Path,
                                                               ray_cluster) -> None:
    """Shards in, image files and shards out: the Ray executor writes the same bytes."""
    shards = tmp_path / "in"
    shards.mkdir()
    samples = _samples(12)
    write_shard(shards / "00000.tar", samples[:6])
    write_shard(shards / "00001.tar", samples[6:])

    def pipeline(where: str) -> dm.Dataset:
        return dm.Dataset.read(shards).write(tmp_path / where / "shards", format="webdataset")

    def written(where: str) -> dict[str, bytes]:
        root = tmp_path / where
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(("_", "."))}

    for where, options in (("local", {"workers": 2}),
                           ("ray", {"executor": "ray", "address": ray_cluster.address})):
        ds = pipeline(where)
        dm.Dataset.read(shards).write(tmp_path / where / "files", format="images").run(
            tmp_path / f"w-{where}", progress=False, **options)
        ds.run(tmp_path / f"w-{where}", progress=False, **options)
    local, ray = written("local"), written("ray")
    assert len([n for n in local if n.startswith("files/")]) == 12 * 3
    assert local == ray


# --- read in place -----------------------------------------------------------------------
def _in_place_folder(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for name, pixels in photos().items():
        (folder / f"{name}.jpg").write_bytes(encode(pixels, "jpg", quality=90))
    (folder / "small.png").write_bytes(encode(skdata.chelsea()[::4, ::4], "png"))
    return folder


def _two_stages(folder: Path, out: Path, **read_args) -> dm.Dataset:
    """A map in the first stage, a global step, then a sink whose stage needs `path` and
    `image` from the source again (read in place, unless materialized)."""
    return (dm.Dataset.read(folder, format="images", bytes_per_partition=1, **read_args)
            .apply("image_info")
            .drop_duplicates(["path"])
            .write(str(out)))


def _source_record(workdir: Path) -> dict:
    import json

    records = [json.loads(p.read_text()) for p in (workdir / "steps").glob("*/_SUCCESS.json")]
    return next(r for r in records if r["name"] == "read_images")


def test_read_images_reads_files_in_place_with_the_same_rows(tmp_path: Path) -> None:
    """No copy of the image bytes in the workdir; a later stage reads the files again and
    gets the same rows, ids and bytes as a materialized read."""

    folder = _in_place_folder(tmp_path)
    tables = {}
    for materialize in (False, True):
        work, out = tmp_path / f"w-{materialize}", tmp_path / f"out-{materialize}"
        ds = _two_stages(folder, out, materialize=materialize)
        ds.run(work, workers=1, progress=False)
        record = _source_record(work)
        assert record["materialized"] is materialize
        stored = list(work.glob(f"steps/{record['cache_key']}/part-*.parquet"))
        assert len(stored) == (4 if materialize else 0)
        tables[materialize] = (pq.read_table(sorted(out.glob("*.parquet"))).sort_by("path"),
                               _collect(ds, work).sort_by("_id"))
    assert tables[False][0].equals(tables[True][0])
    assert tables[False][1].equals(tables[True][1])
    written, collected = tables[False]
    assert written.column("image").to_pylist() == [
        (folder / p).read_bytes() for p in written.column("path").to_pylist()]
    assert collected.column("_id").to_pylist() == [i << 40 for i in range(4)]


def test_a_changed_or_removed_image_is_read_again(tmp_path: Path) -> None:
    """The cache key covers each file's size and time: a rerun recomputes the changed file
    (and only it) and serves its new bytes, and a removed file leaves the output."""
    import os


    folder = _in_place_folder(tmp_path)
    log = tmp_path / "log"

    def run() -> pa.Table:
        out = tmp_path / "out"
        (dm.Dataset.read(folder, format="images", bytes_per_partition=1)
         .apply(LogPaths, log=str(log)).write(str(out))
         .run(tmp_path / "w", workers=1, progress=False))
        return pq.read_table(sorted(out.glob("*.parquet"))).sort_by("path")

    run()
    log.unlink()
    changed = folder / "coffee.jpg"
    stat = changed.stat()
    new = encode(skdata.coffee()[::2, ::2], "jpg", quality=80)
    changed.write_bytes(new)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = run()
    assert log.read_text().split() == ["coffee.jpg"]
    row = second.column("path").to_pylist().index("coffee.jpg")
    assert second.column("image")[row].as_py() == new
    assert second.column("size")[row].as_py() == len(new)
    log.unlink()
    (folder / "chelsea.jpg").unlink()
    third = run()
    # the files after it move up in the listing (new row ids): the first one's unit is kept
    assert log.read_text().split() == ["coffee.jpg", "small.png"]
    assert third.column("path").to_pylist() == ["astronaut.jpg", "coffee.jpg", "small.png"]


def test_a_dataset_built_before_its_files_changed_refuses_to_run(tmp_path: Path) -> None:
    """Cache keys are made when the dataset is built: run after a file changed, it would
    serve the old results (or mix them with new rows read in place), so it stops."""
    import os

    folder = _in_place_folder(tmp_path)
    ds = dm.Dataset.read(folder, format="images").apply("image_info")
    before = _collect(ds, tmp_path / "w")
    assert _collect(ds, tmp_path / "w").equals(before)  # unchanged: served by the cache
    changed = folder / "small.png"
    changed.write_bytes(encode(skdata.coffee()[::4, ::4], "png"))
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(dm.InputError, match="changed after this dataset was built"):
        _collect(ds, tmp_path / "w")
    again = _collect(dm.Dataset.read(folder, format="images").apply("image_info"),
                     tmp_path / "w")
    row = again.column("path").to_pylist().index("small.png")
    assert again.column("image_width")[row].as_py() == skdata.coffee()[::4, ::4].shape[1]


class DeleteOnce(dm.MapOperation):
    """Deletes a file of the input while the first stage runs (as another process might)."""

    name = "test_image_io_delete_once"
    consumes = {"path": "string"}
    produces = {"seen": "int64"}

    class Args(dm.Arguments):
        victim: str

    def process(self, batch):
        Path(self.args.victim).unlink(missing_ok=True)
        return {"seen": pa.array([1] * batch.num_rows, pa.int64())}


def test_a_file_that_vanishes_under_a_run_stops_the_read_in_place(tmp_path: Path) -> None:
    """A later stage reads the files again: one that has vanished since the step read them
    (skipped by errors='skip') would shift the rows after it, so the read stops instead."""
    folder = _in_place_folder(tmp_path)
    ds = (dm.Dataset.read(folder, format="images", errors="skip")
          .drop_duplicates(["path"])
          .apply(DeleteOnce, victim=str(folder / "astronaut.jpg")))
    with pytest.raises(dm.InputError, match=r"changed while its workdir used it: unit 0 "
                                            r"reads 3 rows now, 4 when the step ran"):
        _collect(ds, tmp_path / "w")


def test_a_file_that_vanishes_during_the_first_stage_is_named(tmp_path: Path) -> None:
    folder = _in_place_folder(tmp_path)
    victim = folder / "astronaut.jpg"
    ds = dm.Dataset.read(folder, format="images").apply(DeleteOnce, victim=str(victim))
    with pytest.raises(dm.InputError, match="has gone since") as info:
        ds.run(tmp_path / "w", workers=1, progress=False)
    assert str(victim) in str(info.value)


class FailOnce(dm.MapOperation):
    """Fails on one file while a flag file exists (a run that stops half-way)."""

    name = "test_image_io_fail_once"
    consumes = {"path": "string", "image": "image"}
    produces = {"size": "int64"}

    class Args(dm.Arguments):
        flag: str
        log: str

    def process(self, batch):
        paths = batch["path"].to_pylist()
        if "coffee.jpg" in paths and Path(self.args.flag).exists():
            raise RuntimeError("stopped half-way")
        with open(self.args.log, "a") as fh:
            fh.write("".join(f"{p}\n" for p in paths))
        return {"size": pa.compute.binary_length(storage(batch["image"]))}


def test_a_resumed_run_reading_in_place_writes_identical_bytes(tmp_path: Path) -> None:
    folder = _in_place_folder(tmp_path)
    flag, log = tmp_path / "flag", tmp_path / "log"

    def pipeline(out: Path) -> dm.Dataset:
        return (dm.Dataset.read(folder, format="images", bytes_per_partition=1)
                .apply(FailOnce, flag=str(flag), log=str(log))
                .apply("resize_images", mode="keep_ratio", size=64)
                .drop_duplicates(["path"])
                .write(str(out)))

    pipeline(tmp_path / "clean").run(tmp_path / "wc", workers=1, progress=False)
    flag.touch()
    log.unlink()
    with pytest.raises(dm.DatamillError, match="stopped half-way"):
        pipeline(tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    done = log.read_text().split()
    assert done == ["astronaut.jpg", "chelsea.jpg"]  # units committed before the failure
    flag.unlink()
    log.unlink()
    pipeline(tmp_path / "out").run(tmp_path / "w", workers=1, progress=False)
    assert log.read_text().split() == ["coffee.jpg", "small.png"]  # the rest only
    clean = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert clean == sorted(p.name for p in (tmp_path / "out").iterdir())
    for name in clean:
        if name.endswith(".parquet"):
            assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name
                                                              ).read_bytes()
