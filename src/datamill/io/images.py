"""`read_images`: a folder, glob or list of image files, one row per image (`path`, `image`);
`write_images`: a folder of image files (img2dataset's `files` layout).

The bytes are read as they are, never decoded here: decoding, checking and normalising are
the image operations' work (`image_info`, `image_filter`, ...). So a file whose bytes are not
an image (a text file named `.jpg`, zero bytes, an SVG) still becomes a row by default, and
the operation that decodes it drops it with a reason, which `datamill inspect` shows in the
funnel. With `check_format=True` such a file is bad input instead, handled by `errors`.
A file that cannot be read at all (permissions, a vanished file) always follows `errors`.

The files are read in place, like Parquet and JSON Lines inputs: the workdir keeps no copy of
their bytes (encoded images do not compress, so a copy costs CPU and disk for nothing), and a
later step that needs the `image` column reads the files again. The cache key covers each
file's size and modification time, so a changed file is recomputed; `materialize=True` keeps
a copy instead (for a slow remote filesystem, or a workdir that must outlive its input).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InputError, OperationError, StorageError
from ..image_type import IMAGE_SUFFIXES, RASTER_FORMATS, ImageType, sniff_format
from ..storage import Checksum
from .documents import DocumentSource, InPlaceArgs
from .files import FilePart
from .sink import LINEAGE, FileSink
from .webdataset import SampleArgs, check_sample_columns, samples


class ReadImagesArgs(InPlaceArgs):
    check_format: bool = Field(
        False, description="False: every listed file becomes a row, and the image operations "
                           "drop those that are not images (with a reason). True: a file whose "
                           "bytes are not a raster image format is bad input (`errors`).")


class ReadImages(DocumentSource):
    """Read image files (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC, AVIF), one row per file:
    `path` (relative to the folder given) and `image` (the encoded bytes, as read).
    Folders are listed recursively, keeping the image suffixes (`suffixes=` to change). The
    files are read in place (read again when a later step needs them), unless `materialize`."""

    name = "read_images"
    Args = ReadImagesArgs
    default_suffixes = IMAGE_SUFFIXES

    def columns(self) -> dict:
        import pyarrow as pa

        return {"path": pa.string(), "image": ImageType()}

    def rows(self, part: FilePart, data: bytes) -> Iterator[tuple[int, dict]]:
        if self.args.check_format:
            found = sniff_format(data)
            if found not in RASTER_FORMATS:
                what = "empty" if not data else f"{found} markup" if found else "unknown bytes"
                raise InputError(f"not an image ({what}, {len(data)} bytes)", path=part.path)
        yield 0, {"path": self.relative(part.path), "image": data}


class WriteImagesArgs(SampleArgs):
    path: str = Field(description="Output directory (any fsspec URL).")


class WriteImages(FileSink):
    """Write a folder of image files in img2dataset's `files` layout: `PPPPP/KEY.<ext>` (the
    extension from the sniffed format), with `KEY.txt` (the caption) and `KEY.json` (the other
    columns) beside it; one subfolder per unit of work, put in place whole when complete."""

    name = "write_images"
    Args = WriteImagesArgs
    private_columns = ("_id",)

    def resolve_consumes(self, schema: dict) -> dict:
        return check_sample_columns(self, schema)

    def prepare(self, fresh: bool = True) -> None:
        self._driver_pid = os.getpid()
        fs = self.fs
        fs.makedirs(self._root, exist_ok=True)
        for entry in fs.ls(self._root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if _TEMP_DIR.match(name) or (fresh and _PART_DIR.match(name)):
                fs.rm(entry, recursive=True)
        if fresh:
            for name in (LINEAGE, "_SUCCESS"):
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(f"{self._root}/{name}")

    def open_partition(self, index: int) -> FolderWriter:
        driver = getattr(self, "_driver_pid", None)
        if driver is not None and driver != os.getpid() and self.driver_only:
            raise StorageError(f"cannot write {self.args.path} from a worker process (memory:// "
                               "lives in each process's memory): run with workers=1")
        return FolderWriter(self, index)

    def outputs_ok(self, record: dict) -> bool:
        """Every file a committed unit listed (in its `_files.json`) is there, same size."""
        fs = self.fs
        for out in record.get("outputs", []):
            folder = f"{self._root}/{out['file'].rsplit('/', 1)[0]}"
            try:
                listed = json.loads(fs.cat_file(f"{self._root}/{out['file']}"))
                sizes = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e["size"]
                         for e in fs.ls(folder, detail=True)}
            except (FileNotFoundError, ValueError):
                return False
            if any(sizes.get(name) != size for name, size in listed):
                return False
        return True


_PART_DIR = re.compile(r"^\d{5}$")
_TEMP_DIR = re.compile(r"^\.\d{5}\.tmp-[0-9a-f]{8}$")
INDEX = "_files.json"


class FolderWriter:
    """One unit of work's files, written into a temporary folder renamed into place on
    close (the unit is committed by the engine after that)."""

    def __init__(self, sink: WriteImages, index: int):
        self.sink = sink
        self.fs = sink.fs
        self.root = sink._root
        self.final = f"{self.root}/{index:05d}"
        self.tmp = f"{self.root}/.{index:05d}.tmp-{uuid.uuid4().hex[:8]}"
        self.files: list[tuple[str, int]] = []
        self.keys: set[str] = set()
        self.moved = False

    def write(self, table: Any) -> None:
        try:
            if not self.files:
                self.fs.makedirs(self.tmp, exist_ok=True)
            for key, files in samples(self.sink, table):
                if key in self.keys:
                    raise OperationError(f"{self.sink.name}: two rows with the key {key!r}; "
                                         "give each row its own key", step=self.sink.name)
                self.keys.add(key)
                for name, data in files:
                    with self.fs.open(f"{self.tmp}/{name}", "wb") as fh:
                        fh.write(data)
                    self.files.append((name, len(data)))
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.tmp}: {exc}") from exc

    def close(self) -> list[dict]:
        if not self.files:
            return []
        index = json.dumps(self.files).encode()
        checksum = Checksum()
        checksum.update(index)
        try:
            with self.fs.open(f"{self.tmp}/{INDEX}", "wb") as fh:
                fh.write(index)
            if self.fs.exists(self.final):  # left by an attempt killed before its commit
                self.fs.rm(self.final, recursive=True)
            self.fs.mv(self.tmp, self.final, recursive=True)
            self.moved = True
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.final}: {exc}") from exc
        return [{"file": f"{self.final.rsplit('/', 1)[-1]}/{INDEX}", "size": len(index),
                 "checksum": checksum.value()}]

    def abort(self) -> None:
        for folder in (self.tmp, self.final if self.moved else None):
            with contextlib.suppress(Exception):
                if folder and self.fs.exists(folder):
                    self.fs.rm(folder, recursive=True)
        self.files, self.moved = [], False
