"""`as_images`: mark binary columns (image bytes already in Parquet, say) as images."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ...image_type import as_image
from ...operation import Arguments, MapOperation
from ...registry import register
from ...schema import normalize_columns


class AsImagesArgs(Arguments):
    columns: list[str] = Field(default=["image"], min_length=1,
                               description="Binary columns holding encoded images.")


@register
class AsImages(MapOperation):
    """Mark binary columns as the `image` type, so image operations accept them. The bytes are
    not decoded or checked here: `image_info` and the decoding operations do that."""

    name = "as_images"
    Args = AsImagesArgs
    in_place = True

    def resolve_consumes(self, schema: dict) -> dict:
        return normalize_columns({c: "binary" for c in self.args.columns})

    def resolve_produces(self, schema: dict) -> dict:
        return normalize_columns({c: "image" for c in self.args.columns})

    def process(self, batch: Any) -> dict:
        return {c: as_image(batch.column(c)) for c in self.args.columns}
