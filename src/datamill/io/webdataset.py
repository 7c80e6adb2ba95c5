"""WebDataset tar shards in the layout img2dataset writes: `KEY.jpg` (or png, webp, ...),
`KEY.txt` (the caption) and `KEY.json` (metadata), the members of one sample next to each other.

`read_webdataset` streams each shard (never whole in memory) into rows `shard`, `key`, `image`,
`caption` and `json` (the metadata as JSON text, checked to parse; `json_extract`-style
flattening is left to operations, so that shards with different fields share one schema).
`write_webdataset` writes such shards, rolled at a target size, each committed atomically.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError, OperationError, SchemaError
from ..image_type import RASTER_FORMATS, ImageType, is_image, sniff_format
from ..operation import Arguments
from .documents import ERROR, Batch, DocumentSource, InPlaceArgs
from .files import FilePart, compression_of, open_file
from .sink import FileSink, FileSinkArgs

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp", "gif", "tif", "tiff", "bmp", "heic", "heif",
                 "avif")
# the member name a sniffed format is written under (img2dataset's spellings)
EXTENSION = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "tiff": "tif",
             "bmp": "bmp", "heic": "heic", "heif": "heif", "avif": "avif", "ico": "ico"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_NAME = re.compile(r"^((?:.*/)?[^./]+)\.([^/]*)$")  # KEY.EXT, KEY up to the first dot


class ReadWebDatasetArgs(InPlaceArgs):
    image_members: list[str] = Field(
        default=list(IMAGE_MEMBERS),
        description="Member extensions that hold the image, in order of preference.")


class ReadWebDataset(DocumentSource):
    """Read WebDataset tar shards (img2dataset's layout), one row per sample: `shard` (its
    path), `key`, `image` (KEY.jpg/png/webp/...), `caption` (KEY.txt) and `json` (KEY.json,
    as text). A damaged shard keeps the samples before the damage; a sample without an image
    or with metadata that does not parse follows `errors` alone."""

    name = "read_webdataset"
    Args = ReadWebDatasetArgs
    default_suffixes = (".tar", ".tar.gz")

    def columns(self) -> dict:
        import pyarrow as pa

        return {"shard": pa.string(), "key": pa.string(), "image": ImageType(),
                "caption": pa.string(), "json": pa.string()}

    def error_row(self, part: FilePart, error: InputError) -> dict:
        return {"shard": self.relative(part.path), "key": getattr(error, "key", None),
                ERROR: str(error)}

    def read(self, partition: Any, columns: list[str] | None) -> Iterator[Any]:
        import pyarrow as pa

        schema = pa.schema(list(self.schema().items()))
        batch = Batch(schema, [c for c in (columns or schema.names) if c != "_id"])
        for part in partition:
            shard, n = self._samples(part), -1
            while True:
                try:
                    n, key, members = next(shard)
                except StopIteration:
                    break
                except InputError as error:  # the shard: the samples before it are kept
                    if self.bad_input(error, part, n + 1):
                        batch.add(part.ordinal, n + 1, self.error_row(part, error))
                    break
                try:
                    row = self._row(part, key, members)
                except InputError as error:  # this sample alone
                    error.key = key
                    if not self.bad_input(error, part, n):
                        continue
                    row = self.error_row(part, error)
                batch.add(part.ordinal, n, row)
                if batch.full:
                    yield batch.flush()
        if batch.rows:
            yield batch.flush()

    def _samples(self, part: FilePart) -> Iterator[tuple[int, str, dict[str, bytes]]]:
        """(sample index, key, {extension: bytes}) for each run of members sharing a key."""
        n, key, members = -1, None, {}
        try:
            with open_file(part.path, compression=compression_of(part.path)) as fh, \
                    tarfile.open(fileobj=fh, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    match = _NAME.match(member.name.removeprefix("./"))
                    if match is None:
                        self.count("members_ignored")
                        continue
                    if match.group(1) != key:
                        if key is not None:
                            yield n, key, members
                        n, key, members = n + 1, match.group(1), {}
                    data = tar.extractfile(member).read()
                    members[match.group(2).lower()] = data
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            after = f" after sample {key!r}" if key is not None else ""
            kept = "; the samples before it are kept" if key is not None else ""
            raise InputError(f"damaged or not a tar file{after} ({exc}){kept}",
                             path=part.path) from None
        if key is not None:
            yield n, key, members

    def _row(self, part: FilePart, key: str, members: dict[str, bytes]) -> dict:
        ext = next((e for e in self.args.image_members if e in members), None)
        if ext is None:
            raise InputError(f"sample {key!r} has no image member (it has "
                             f"{sorted(members) or 'none'})", path=part.path)
        row = {"shard": self.relative(part.path), "key": key, "image": members[ext],
               "caption": None, "json": None}
        for name, column in (("txt", "caption"), ("json", "json")):
            if name in members:
                try:
                    row[column] = members[name].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"sample {key!r}: {key}.{name} is not UTF-8 ({exc.reason} "
                                     f"at byte {exc.start})", path=part.path) from None
        if row["json"] is not None:
            try:
                json.loads(row["json"])
            except ValueError as exc:
                raise InputError(f"sample {key!r}: {key}.json does not parse ({exc})",
                                 path=part.path) from None
        self.count("members_ignored", len(members) - 1 - sum(n in members
                                                                for n in ("txt", "json")))
        return row


class SampleArgs(Arguments):
    """What the image sinks write of each row."""

    image: str = Field("image", description="The column of images written as KEY.<ext> (the "
                                            "extension from the sniffed format).")
    caption: str | None = Field("caption", description="Column written as KEY.txt (when the "
                                                       "dataset has it; null: none).")
    key: str | None = Field("key", description="Column of sample keys (when the dataset has "
                                               "it); otherwise the row id, in hex.")
    json_columns: list[str] | None = Field(
        None, description="Columns written into KEY.json; None: all but the image. A string "
                          "column `json` (as read_webdataset gives) is merged in, not nested.")


class WriteWebDatasetArgs(FileSinkArgs, SampleArgs):
    pass


class WriteWebDataset(FileSink):
    """Write WebDataset tar shards in img2dataset's layout (KEY.jpg, KEY.txt, KEY.json), of
    about `target_file_size` bytes each (part-PPPPP-NNNN.tar), each renamed into place when
    complete. Rows whose image is null or not a raster image are refused, naming the row."""

    name = "write_webdataset"
    Args = WriteWebDatasetArgs
    extension = "tar"
    private_columns = ("_id",)

    def resolve_consumes(self, schema: dict) -> dict:
        return check_sample_columns(self, schema)

    def _open(self, fh: Any, schema: Any) -> Any:
        return Shard(tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT))

    def _write(self, writer: Any, table: Any) -> None:
        for key, files in samples(self, table):
            if key in writer.keys:
                raise OperationError(f"{self.name}: two samples with the key {key!r} in one "
                                     "shard; give each row its own key", step=self.name)
            writer.keys.add(key)
            for name, data in files:
                _add(writer.tar, name, data)

    def _close(self, writer: Any) -> None:
        writer.tar.close()


class Shard:
    """An open tar shard and the keys written into it."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.keys: set[str] = set()


def check_sample_columns(sink: Any, schema: dict) -> dict:
    """The whole schema (a sink writes every column), once the image column and the
    json_columns named by `sink.args` are found to be there."""
    import pyarrow as pa

    a = sink.args
    if a.image not in schema:
        raise SchemaError(f"no image column {a.image!r} (columns: {sorted(schema)}); pass "
                          "image=", operation=sink.name)
    typ = schema[a.image]
    if not is_image(typ) and typ not in (pa.binary(), pa.large_binary()):
        raise SchemaError(f"column {a.image!r} is {typ}, not image", operation=sink.name)
    missing = [c for c in a.json_columns or [] if c not in schema]
    if missing:
        raise SchemaError(f"json_columns {missing} are not columns of the dataset "
                          f"(columns: {sorted(schema)})", operation=sink.name)
    return dict(schema)


def samples(sink: Any, table: Any) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """(key, [(file name, bytes)]) of each row, in img2dataset's layout: KEY.<ext> (from the
    sniffed format), KEY.txt (the caption) and KEY.json (the metadata columns). `sink.args`
    has `image`, `caption`, `key` and `json_columns`. A row whose image is null or not a
    raster image raises, naming it."""
    a = sink.args
    names = table.schema.names
    caption = a.caption if a.caption in names else None
    key_column = a.key if a.key in names else None
    meta = a.json_columns if a.json_columns is not None else [
        c for c in names if c not in (a.image, "_id") and not _is_bytes(table, c)]
    for row in table.to_pylist():
        row_id = row.get("_id")
        given = row[key_column] if key_column else None
        key = safe_key(str(given)) if given is not None \
            else f"{(row_id or 0) & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        data = row[a.image]
        found = sniff_format(data)
        if found not in RASTER_FORMATS:
            what = "null" if data is None else f"not an image ({found or 'unknown'} bytes)"
            raise OperationError(f"{sink.name}: sample {key!r}: the image is {what}; drop such "
                                 "rows first (image_filter)", step=sink.name, row_id=row_id)
        files = [(f"{key}.{EXTENSION[found]}", data)]
        if caption and row[caption] is not None:
            files.append((f"{key}.txt", str(row[caption]).encode()))
        files.append((f"{key}.json", _metadata(row, meta, key).encode()))
        yield key, files


def safe_key(key: str) -> str:
    """A key usable as a file name and a WebDataset key: letters, digits, `_` and `-` only
    (a dot would end the key, a slash would leave the folder); a run of others becomes one
    `_`, and none leads (readers skip names starting with `_` or `.`)."""
    return _UNSAFE.sub("_", key).lstrip("_") or "key"


def _is_bytes(table: Any, column: str) -> bool:
    import pyarrow as pa

    t = table.schema.field(column).type
    t = t.storage_type if isinstance(t, pa.ExtensionType) else t
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _metadata(row: dict, columns: list[str], key: str) -> str:
    """KEY.json: the `json` column's object (if any), then the other columns, then the key."""
    out: dict = {}
    base = row.get("json") if "json" in columns else None
    if isinstance(base, str):
        try:
            parsed = json.loads(base)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["json"] = base
    out.update({c: row[c] for c in columns if c != "json"})
    out["key"] = key
    return json.dumps(out, ensure_ascii=False, default=str, sort_keys=True)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A member with fixed owner, mode and time: the same rows make the same bytes."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))
