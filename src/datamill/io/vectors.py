"""What the vector-index sinks share: their common arguments, the vector column's size, the
size-mismatch error, and the embedding metadata that `datamill search` reads back."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from ..errors import SchemaError
from ..operation import Arguments

IMAGE_EMBEDDERS = ("embed_images",)  # their vectors embed images: queries go through CLIP text


class VectorSinkArgs(Arguments):
    """Arguments of every vector sink (each adds `path`, `index` and its own options)."""

    table: str = Field("vectors", description="Table name (created when missing).")
    vector_column: str = Field("embedding", description="fixed_size_list<float32> column.")
    id_column: str = Field("_id", description="Unique row key: re-runs update rows by it.")
    mode: Literal["upsert", "overwrite"] = Field(
        "upsert", description="upsert: merge into the table by id; overwrite: replace it.")
    delete_missing: bool = Field(False, description="upsert: delete the table's rows whose id "
                                                    "this run did not write.")
    index_min_rows: int = Field(10_000, ge=1, description="Build the ANN index from this "
                                                          "many rows (brute force is exact and "
                                                          "fast below).")
    metric: Literal["cosine", "l2", "dot"] = Field("cosine", description="Vector distance.")


def vector_dim(schema: dict, column: str, op: str) -> int:
    """The size of a fixed_size_list<float32> column, or a SchemaError naming what exists."""
    import pyarrow as pa

    typ = schema.get(column)
    if typ is None:
        listing = ", ".join(sorted(c for c in schema if not c.startswith("_"))) or "none"
        raise SchemaError(f"vector column {column!r} is missing (columns: {listing}); "
                          "embed_text produces 'embedding'", operation=op)
    if not (pa.types.is_fixed_size_list(typ) and pa.types.is_float32(typ.value_type)):
        raise SchemaError(f"vector column {column!r} must be fixed_size_list<float32>[dim] "
                          f"(what embed_text produces), got {typ}", operation=op)
    return typ.list_size


def check_columns(op: str, args: Any, schema: dict) -> int:
    """Validate a vector sink's columns against the input schema; the vectors' size."""
    dim = vector_dim(schema, args.vector_column, op)
    if args.id_column != "_id" and args.id_column not in schema:
        raise SchemaError(f"id column {args.id_column!r} is missing", operation=op)
    if args.fts_column and args.fts_column not in schema:
        raise SchemaError(f"fts_column {args.fts_column!r} is missing", operation=op)
    return dim


def dim_mismatch(op: str, where: str, existing: int, new: int) -> SchemaError:
    return SchemaError(f"{where} holds vectors of {existing} dimensions but this pipeline "
                       f"writes {new}: write to another table, or pass mode='overwrite' to "
                       "replace it", operation=op)


def embedding_meta(lineage: dict, vector_column: str, dim: int, metric: str) -> dict:
    """What search needs to embed a query like the stored vectors: the model and its options
    from the step that produced the vector column, and the text column it embedded."""
    meta: dict[str, Any] = {"vector_column": vector_column, "dim": dim, "metric": metric}
    ref = lineage.get("columns", {}).get(vector_column, {})
    for step in lineage.get("steps", []):
        if step.get("name") == ref.get("step"):
            args = step.get("arguments") or {}
            meta["embedded_by"] = {"step": step["name"], "operation": step.get("operation")}
            for key in ("model", "normalize", "backend", "weights"):
                if args.get(key) is not None:
                    meta[key] = args[key]
            for key in ("model", "weights"):  # found from any directory
                if isinstance(meta.get(key), str) and os.path.exists(meta[key]):
                    meta[key] = os.path.abspath(meta[key])
            if isinstance(args.get("column"), str):
                embedded = "image_column" if step.get("operation") in IMAGE_EMBEDDERS \
                    else "text_column"
                meta[embedded] = args["column"]
    return meta


def text_column_of(meta: dict, columns: list[str]) -> str | None:
    """The passage column to show: the one that was embedded, else a usual name (a caption
    for embedded images)."""
    for name in (meta.get("text_column"), "chunk", "text", "passage", "content", "caption"):
        if name and name in columns:
            return name
    return None
