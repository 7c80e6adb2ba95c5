"""Near-duplicate images: `image_hash` (a 64-bit perceptual hash per row) and `image_dedup`
(drop the rows whose hashes are within a Hamming distance, out of core).

`image_dedup` is a global operation whose phases reuse the engine's (operation.GlobalOperation):
scan hashes each image (or reads `hash_column`) and emits one row per band of the hash (`_key` =
the band number and its bits: rows sharing a band value meet in one bucket); reduce compares the
hashes of the rows sharing a band value and returns the pairs within `threshold` as edges, with
each row's rank (minus its pixels or bytes); the engine joins them into clusters (distributed
connected components, executors/components.py) and keeps the row of smallest rank of each.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...errors import SchemaError
from ...executors.components import row_locators
from ...image_type import is_image, storage
from ...operation import Arguments, GlobalOperation, MapOperation
from ..dedup import CLUSTER_LINEAGE
from ..minhash import _combine
from ._common import decode_in, image_values
from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, probe_image
from .hashing import (
    DRAFT_SIZE,
    HASHERS,
    HashMethod,
    band_values,
    bands,
    close_pairs,
)

Keep = Literal["most_pixels", "largest_bytes", "first"]
HASH_COLUMN = "image_hash"
MAX_THRESHOLD = 16  # 17 bands of 3-4 bits: beyond, the band search compares nearly all pairs


def _pixels(data: Any) -> int:
    """Width x height from the header (no pixel decoded); 0 when unreadable (ranks last)."""
    try:
        return probe_image(data).pixels
    except ImageDecodeError:
        return 0


def image_hashes(batch: Any, column: str, method: str, max_pixels: int,
                 on_bad: Any = None) -> tuple[Any, Any]:
    """(uint64 hash, pixels) of each image of `column`; a null or undecodable image gets hash
    0 and pixels -1, after `on_bad(position, error)` if given (else the ImageDecodeError
    raises, the column named)."""
    import numpy as np

    hasher, draft = HASHERS[method], DRAFT_SIZE[method]
    hashes = np.zeros(batch.num_rows, np.uint64)
    pixels = np.full(batch.num_rows, -1, np.int64)
    for i, data in enumerate(image_values(batch, column)):
        try:
            if data is None:
                raise ImageDecodeError("empty", f"column {column!r}: null image")
            decoded = decode_in(data, column, max_pixels=max_pixels, draft=draft)
            hashes[i], pixels[i] = hasher(decoded.image), decoded.probe.pixels
        except ImageDecodeError as exc:
            if on_bad is None:
                raise
            on_bad(i, exc)
    return hashes, pixels


class ImageHashArgs(Arguments):
    column: str = Field("image", description="Image column.")
    method: HashMethod = Field("phash", description="phash (DCT) or dhash (gradients).")
    output: str = Field(HASH_COLUMN, description="Column of the 64-bit hashes (uint64).")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Larger images (by their "
                                                                  "header) are refused.")


class ImageHash(MapOperation):
    """A 64-bit perceptual hash of each image (uint64): `phash` (default) keeps the signs of
    the 8x8 lowest DCT frequencies of a 32x32 grey version against their median; `dhash`
    whether each pixel of a 9x8 grey version is brighter than its left neighbour. Resized and
    recompressed copies of a photo hash within a few bits, different photos about 32 bits
    apart. An image that cannot be decoded is a row error (the step's on_error decides)."""

    name = "image_hash"
    Args = ImageHashArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {self.args.column: _image_type(schema, self.args.column, self.name)}

    def resolve_produces(self, schema: dict) -> dict:
        import pyarrow as pa

        return {self.args.output: pa.uint64()}

    def process(self, batch: Any) -> dict:
        import pyarrow as pa

        hashes, _ = image_hashes(batch, self.args.column, self.args.method,
                                 self.args.max_pixels)
        return {self.args.output: pa.array(hashes, pa.uint64())}


def _image_type(schema: dict, column: str, op: str) -> Any:
    import pyarrow as pa

    typ = schema.get(column)
    if typ is None:
        listing = ", ".join(sorted(c for c in schema if not c.startswith("_"))) or "none"
        raise SchemaError(f"image column {column!r} is missing (columns: {listing})",
                          operation=op)
    if not (is_image(typ) or typ in (pa.binary(), pa.large_binary())):
        raise SchemaError(f"column {column!r} must hold images (image or binary), got {typ}",
                          operation=op)
    return typ


class ImageDedupArgs(Arguments):
    column: str = Field("image", description="Image column (hashed unless hash_column).")
    method: HashMethod = Field("phash", description="phash or dhash (see image_hash).")
    threshold: int = Field(6, ge=0, le=MAX_THRESHOLD,
                           description="Largest Hamming distance between duplicates' hashes.")
    keep: Keep = Field("most_pixels", description="The row a cluster keeps: most_pixels, "
                       "largest_bytes, or first (in dataset order); ties go to the first.")
    hash_column: str | None = Field(None, description="Use these hashes (image_hash's) "
                                    "instead of hashing `column`.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Larger images (by their "
                            "header) are not hashed (kept, counted).")


class ImageDedup(GlobalOperation):
    """Drop near-duplicate images: rows whose 64-bit perceptual hashes (phash by default, or
    dhash; see image_hash) differ in at most `threshold` bits (default 6: resized,
    recompressed and slightly cropped copies; different photos are 20 or more apart).

    The search is exact: the hash is split into threshold + 1 bands, two hashes within the
    threshold agree on a whole band (pigeonhole), so comparing the rows that share a band
    value finds every pair that brute force would (multi-index hashing). Pairs are joined into
    clusters (connected components: a chain a~b~c is one cluster). Each keeps its row with the
    most pixels (`keep`: or largest_bytes, or first), ties to the first in dataset order; the
    others are dropped with reason "near_duplicate_image", recording `cluster_id` (the kept
    row's `_id`) and `cluster_size` (`datamill inspect --duplicates ID`). Images that cannot be
    decoded are kept and never compared (counted `undecodable_images`; image_hash with
    on_error, or image_filter, deals with them). Memory: one partition, one bucket of band
    rows, then one bucket of pairs."""

    name = "image_dedup"
    Args = ImageDedupArgs
    default_reason = "near_duplicate_image"
    resolves = "components"
    lineage = CLUSTER_LINEAGE

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        args = self.args
        consumed = {}
        if args.hash_column is not None:
            typ = schema.get(args.hash_column)
            if typ not in (pa.uint64(), pa.int64()):
                raise SchemaError(f"hash column {args.hash_column!r} must be uint64 or int64 "
                                  f"(image_hash's output), got {typ or 'no such column'}",
                                  operation=self.name)
            consumed[args.hash_column] = typ
        if args.hash_column is None or args.keep != "first":
            consumed[args.column] = _image_type(schema, args.column, self.name)
        return consumed

    def shuffle_rows(self, input_rows: int) -> int:
        return input_rows * (self.args.threshold + 1)

    def _hashes(self, batch: Any) -> tuple[Any, Any]:
        """(uint64 hash, rank) of every row: minus its pixels or bytes, or 0 (keep="first");
        1 for the rows left out (undecodable, or a null hash)."""
        import numpy as np
        import pyarrow.compute as pc

        args = self.args
        bad = []
        if args.hash_column is None:
            hashes, pixels = image_hashes(batch, args.column, args.method, args.max_pixels,
                                          on_bad=lambda i, e: bad.append(e.reason))
            valid = pixels >= 0
            self.count("undecodable_images", len(bad))
            for reason in bad:
                self.count(f"undecodable_{reason}")
        else:
            column = batch.column(args.hash_column)
            valid = np.asarray(pc.is_valid(column))
            hashes = pc.fill_null(column, 0).to_numpy().astype(np.int64).view(np.uint64)
            pixels = None
            self.count("rows_without_hash", int((~valid).sum()))
        if args.keep == "first":
            rank = np.zeros(len(hashes), np.int64)
        elif args.keep == "largest_bytes":
            lengths = pc.binary_length(storage(batch.column(args.column)))
            rank = -pc.fill_null(lengths, 0).to_numpy().astype(np.int64)
        elif pixels is not None:
            rank = -pixels
        else:
            rank = -np.array([_pixels(d) if d is not None else 0
                              for d in image_values(batch, args.column)], np.int64)
        return hashes, np.where(valid, rank, 1)

    def scan(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        hashes, rank = self._hashes(batch)
        rows = np.flatnonzero(rank <= 0)
        hashes, rank = hashes[rows], rank[rows]
        keys = [_combine([band_values(hashes, shift, width)], salt=b + 1)
                for b, (shift, width) in enumerate(bands(self.args.threshold))]
        count = len(keys)
        return {"_key": pa.array(np.concatenate(keys), pa.uint64()),
                "_row": pa.array(np.tile(rows, count), pa.int64()),
                "hash": pa.array(np.tile(hashes, count), pa.uint64()),
                "rank": pa.array(np.tile(rank, count), pa.int64())}

    def reduce(self, bucket: Any) -> Any:
        """Edges between the rows sharing a band value whose hashes are within the threshold,
        nodes keyed by row locator, with their ranks. Rows repeating a hash of their group join
        its first row and are compared no further (a thousand copies: 999 edges)."""
        import numpy as np

        key = bucket.column("_key").to_numpy()
        hashes = bucket.column("hash").to_numpy()
        loc = row_locators(bucket)
        order = np.lexsort((loc, hashes, key))
        key, hashes, loc = key[order], hashes[order], loc[order]
        ids = bucket.column("_id").to_numpy()[order]
        rank = bucket.column("rank").to_numpy()[order]
        copy = np.r_[False, (key[1:] == key[:-1]) & (hashes[1:] == hashes[:-1])]
        head = np.maximum.accumulate(np.where(copy, 0, np.arange(len(key))))
        reps = np.flatnonzero(~copy)
        i, j, compared = close_pairs(key[reps], hashes[reps], self.args.threshold)
        self.count("candidate_pairs", compared)
        a = np.r_[head[copy], reps[i]]
        b = np.r_[np.flatnonzero(copy), reps[j]]
        if len(a):  # a pair sharing several bands in this bucket: once
            _, first = np.unique(np.c_[loc[a], loc[b]], axis=0, return_index=True)
            a, b = a[first], b[first]
        self.count("similar_pairs", len(a))
        ranks = {"src_rank": rank[a], "dst_rank": rank[b]} if self.args.keep != "first" else {}
        return {"src": loc[a], "dst": loc[b], "src_id": ids[a], "dst_id": ids[b], **ranks}
