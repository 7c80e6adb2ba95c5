"""The image column type: parsing, compatibility, Parquet and pickle round trips, and a
pipeline that marks, stores and reads back images."""

import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamill import Dataset, SchemaError, map_operation
from datamill.image_type import ImageType, as_image, storage
from datamill.schema import is_compatible, is_image, to_arrow_type, type_name


def test_image_parses_and_prints_as_image():
    t = to_arrow_type("image")
    assert is_image(t) and t.storage_type == pa.binary()
    assert type_name(t) == "image"
    assert to_arrow_type("image<large_binary>").storage_type == pa.large_binary()
    assert not is_image(pa.binary())
    with pytest.raises(TypeError, match="binary or large_binary"):
        ImageType(pa.string())


def test_compatibility_image_is_binary_but_binary_is_not_image():
    image, large = to_arrow_type("image"), to_arrow_type("image<large_binary>")
    assert is_compatible(image, image) and is_compatible(large, image)
    assert is_compatible(image, pa.binary()) and is_compatible(image, pa.large_binary())
    assert not is_compatible(pa.binary(), image)
    assert not is_compatible(image, pa.string())


def test_parquet_and_pickle_keep_the_type(tmp_path):
    table = pa.table({"image": as_image(pa.array([b"\x89PNG", None])), "n": [1, 2]})
    pq.write_table(table, tmp_path / "x.parquet")
    back = pq.read_table(tmp_path / "x.parquet")
    assert is_image(back.schema.field("image").type)
    assert back.column("image").to_pylist() == [b"\x89PNG", None]
    assert is_image(pickle.loads(pickle.dumps(back)).schema.field("image").type)
    assert storage(back.column("image")).type == pa.binary()


@map_operation(consumes={"image": "image"}, produces={"size": "int64"})
def image_size(batch):
    return [len(b) if b is not None else 0 for b in storage(batch.column("image")).to_pylist()]


def test_operations_can_require_images(tmp_path):
    pq.write_table(pa.table({"image": [b"abc", b"de"]}), tmp_path / "in.parquet")
    plain = Dataset.read(str(tmp_path / "in.parquet"))
    with pytest.raises(SchemaError, match=r"has type binary .*consumes image.*as_images"):
        plain.apply(image_size)
    marked = plain.apply("as_images", columns=["image"])
    assert is_image(marked.schema["image"])
    out = marked.apply(image_size).collect(tmp_path / "work")
    assert out.column("size").to_pylist() == [3, 2]
    assert is_image(out.schema.field("image").type)


def test_as_images_refuses_a_text_column(tmp_path):
    pq.write_table(pa.table({"image": ["not bytes"]}), tmp_path / "in.parquet")
    with pytest.raises(SchemaError, match="consumes binary"):
        Dataset.read(str(tmp_path / "in.parquet")).apply("as_images")


def test_sniff_format_reads_the_bytes_not_the_name():
    from io import BytesIO

    from PIL import Image

    from datamill.image_type import sniff_format

    for fmt, pil in [("jpeg", "JPEG"), ("png", "PNG"), ("gif", "GIF"), ("webp", "WEBP"),
                     ("tiff", "TIFF"), ("bmp", "BMP")]:
        buf = BytesIO()
        Image.new("RGB", (4, 3), "red").save(buf, pil)
        assert sniff_format(buf.getvalue()) == fmt
    assert sniff_format(b'<?xml version="1.0"?>\n<svg xmlns="x"><script/></svg>') == "svg"
    assert sniff_format(b"<!DOCTYPE html><html><body>404</body></html>") == "html"
    assert sniff_format(b"just some text named .jpg") is None
    assert sniff_format(b"") is None and sniff_format(None) is None
