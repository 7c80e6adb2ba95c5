"""Image embeddings, CLIP text embeddings in the same space, and image–text similarity.

Models are local (a directory, a file or the offline Hugging Face cache; never downloaded, see
`models`), loaded once per worker in `setup()`. The vector size is read from the model's files
when the pipeline is built, and the model files (names, sizes, times) are part of the cache key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...errors import PipelineError, SchemaError
from ...image_type import storage
from ...operation import Arguments, FilterOperation, MapOperation, Resources
from ._common import decode_in
from .models import BACKENDS, Encoder, ModelRef, find_model, load_encoder, pick_device, pick_dtype

Backend = Literal["auto", "clip", "open_clip", "timm", "efficientnet_lite"]
assert set(BACKENDS) == set(Backend.__args__)  # type: ignore[attr-defined]


class ModelArgs(Arguments):
    model: str = Field(description="A model directory, a name in the offline Hugging Face "
                                   "cache, efficientnet-lite0, or (open_clip) an architecture; "
                                   "never downloaded.")
    backend: Backend = Field("auto", description="clip (transformers), open_clip, timm, "
                                                 "efficientnet_lite; auto: from the files.")
    weights: str | None = Field(None, description="Checkpoint file (open_clip; "
                                                  "efficientnet_lite other than lite0).")
    batch_size: int = Field(32, gt=0, description="Items per forward pass.")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, "
                                            "cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Compute precision (auto: float16 on cuda, float32 on cpu); the "
                            "output is float32.")


class ModelOperation:
    """What the model operations share: finding the model from files, its resources and
    cache-key digest, loading it once per worker. Mixed into an Operation subclass."""

    name: str
    args: Any
    resources: Resources
    text_tower = False  # needs a CLIP-like model (one with a text tower)

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)  # the Operation class mixed in after this one
        self._init_model()

    def _init_model(self) -> None:
        self._ref: ModelRef | None = None
        self.encoder: Encoder | None = None
        gpus = 1.0 if self.args.device.startswith("cuda") else 0.0
        self.resources = Resources(cpus=1.0, gpus=gpus)

    def model_ref(self) -> ModelRef:
        """Where the model is and its vector size, from files only; PipelineError otherwise."""
        if self._ref is None:
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise PipelineError("needs torch: pip install 'datamill[image-models]'",
                                    operation=self.name)
            a = self.args
            try:
                ref = find_model(a.model, a.backend, a.weights)
            except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
                raise PipelineError(f"model: {exc}", operation=self.name) from None
            if self.text_tower and ref.backend not in ("clip", "open_clip"):
                raise PipelineError(f"model {a.model!r} ({ref.backend}) embeds images only; "
                                    "this operation needs a CLIP-like model with a text tower",
                                    operation=self.name)
            self._ref = ref
            memory = 2 * ref.weights_bytes() + (512 << 20)
            self.resources = self.resources.model_copy(update={"memory": memory})
        return self._ref

    def key_inputs(self) -> dict[str, str]:
        return {"model files": self.model_ref().digest()}

    def setup(self) -> None:
        ref = self.model_ref()
        device = pick_device(self.args.device)
        self.encoder = load_encoder(ref, device, pick_dtype(self.args.dtype, device))

    def loaded(self) -> Encoder:
        if self.encoder is None:
            self.setup()
        assert self.encoder is not None
        return self.encoder


def decode_rgb(data: bytes, column: str) -> Any:
    """An RGB PIL image from encoded bytes (decoded safely: see `decode`; transparency over
    white), or ImageDecodeError naming the column and the reason: a row error."""
    from PIL import Image

    image = decode_in(data, column).image
    if image.mode == "RGB":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
    return background


def embed_batch(encoder: Encoder, values: list, batch_size: int, dim: int, *,
                normalize: bool, encode: Any) -> tuple[Any, Any]:
    """Embed `values` (None: a null vector) in forward passes of `batch_size`:
    (float32 [n, dim], validity mask)."""
    import numpy as np
    import torch

    vectors = np.zeros((len(values), dim), dtype=np.float32)
    valid = np.array([v is not None for v in values], dtype=bool)
    keep = np.flatnonzero(valid)
    with torch.inference_mode():
        for start in range(0, len(keep), batch_size):
            rows = keep[start:start + batch_size]
            vectors[rows] = encode([values[i] for i in rows])
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors, valid


def vector_array(vectors: Any, valid: Any) -> Any:
    import pyarrow as pa

    values = pa.array(vectors.reshape(-1), pa.float32())
    mask = None if valid.all() else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1], mask=mask)


def check_dim(op: Any, got: Any, dim: int) -> None:
    if got.shape[1] != dim:
        raise PipelineError(f"model {op.args.model!r} embeds into {got.shape[1]} dimensions "
                            f"but its config files say {dim}", operation=op.name)


class EmbedImagesArgs(ModelArgs):
    column: str = Field("image", description="Image column to embed.")
    output: str = Field("embedding", description="Column receiving the vectors.")
    normalize: bool = Field(True, description="Scale each vector to unit length.")


class EmbeddingOperation(ModelOperation, MapOperation):
    """A model operation producing `output`: one float32 vector of the model's size a row."""

    def resolve_produces(self, schema: dict) -> dict:
        import pyarrow as pa

        return {self.args.output: pa.list_(pa.float32(), self.model_ref().dim)}


class EmbedImages(EmbeddingOperation):
    """Embed an image column with a local image model into a fixed_size_list<float32>[dim]
    column (unit vectors unless normalize=False): CLIP-family models (transformers, or
    open_clip), timm backbones (pooled features), or EfficientNet-Lite (pooled features; the
    lite0 ImageNet weights ship in a package). The size is read from the model's files when
    the pipeline is built; the model is loaded once per worker, on the GPU when there is one
    (device="auto"), and never downloaded. Null images get a null vector; an image that
    cannot be decoded is a row error (the step's on_error)."""

    name = "embed_images"
    Args = EmbedImagesArgs
    batch_size = 256  # rows per process() call; forward passes are args.batch_size
    consumes = {"{column}": "image"}
    produces = {"{output}": "fixed_size_list<float32>[dim]"}
    resources = Resources(cpus=1.0)

    def process(self, batch: Any) -> dict:
        encoder, a = self.loaded(), self.args
        values = storage(batch.column(a.column)).to_pylist()
        dim = self.model_ref().dim

        def encode(items: list) -> Any:
            out = encoder.images(encoder.preprocess([decode_rgb(b, a.column) for b in items]))
            check_dim(self, out, dim)
            return out

        vectors, valid = embed_batch(encoder, values, a.batch_size, dim,
                                     normalize=a.normalize, encode=encode)
        self.count("images_embedded", int(valid.sum()))
        return {a.output: vector_array(vectors, valid)}


class EmbedTextClipArgs(ModelArgs):
    column: str = Field("text", description="Text column to embed.")
    output: str = Field("embedding", description="Column receiving the vectors.")
    normalize: bool = Field(True, description="Scale each vector to unit length.")


class EmbedTextClip(EmbeddingOperation):
    """Embed a text column with the text tower of a CLIP-like model (transformers CLIP or
    SigLIP, or open_clip), into the space `embed_images` puts that model's images in: text and
    images compare by cosine. Texts longer than the model's context are truncated; null and
    blank texts get a null vector."""

    name = "embed_text_clip"
    Args = EmbedTextClipArgs
    batch_size = 256
    consumes = {"{column}": "string"}
    produces = {"{output}": "fixed_size_list<float32>[dim]"}
    resources = Resources(cpus=1.0)
    text_tower = True

    def process(self, batch: Any) -> dict:
        encoder, a = self.loaded(), self.args
        texts = [t if t is not None and t.strip() else None
                 for t in batch.column(a.column).to_pylist()]
        vectors, valid = embed_batch(encoder, texts, a.batch_size, self.model_ref().dim,
                                     normalize=a.normalize, encode=encoder.texts)
        return {a.output: vector_array(vectors, valid)}


class ImageTextSimilarityArgs(ModelArgs):
    image: str = Field("image", description="Image column.")
    text: str = Field("text", description="Text column (caption, alt text).")
    embedding: str | None = Field(None, description="Image embeddings already computed by "
                                                    "embed_images with the same model: used "
                                                    "instead of the image column.")
    output: str = Field("similarity", description="Column receiving the cosine similarity.")


class ImageTextSimilarity(ModelOperation, MapOperation):
    """The CLIP score of each row: the cosine similarity (float32, -1..1) between its image
    and its text embedded by the same CLIP-like model, as LAION filtered its pairs. Pass the
    image embeddings of a previous `embed_images` step as `embedding=` to skip the image
    tower. A null image or a null/blank text gives a null score. Drop the low scores with
    `image_text_filter`."""

    name = "image_text_similarity"
    Args = ImageTextSimilarityArgs
    batch_size = 256
    produces = {"{output}": "float32"}
    resources = Resources(cpus=1.0)
    text_tower = True

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        a = self.args
        dim = self.model_ref().dim  # the model is checked when the pipeline is built
        if a.embedding is None:
            return self._template({a.image: "image", a.text: "string"})
        typ = schema.get(a.embedding)
        if typ is not None and typ != pa.list_(pa.float32(), dim):
            raise SchemaError(f"embedding column {a.embedding!r} must be "
                              f"fixed_size_list<float32>[{dim}] (embed_images with model "
                              f"{a.model!r}), got {typ}", operation=self.name)
        return self._template({a.embedding: pa.list_(pa.float32(), dim), a.text: "string"})

    def process(self, batch: Any) -> dict:
        import numpy as np
        import pyarrow as pa

        encoder, a = self.loaded(), self.args
        dim = self.model_ref().dim
        texts = [t if t is not None and t.strip() else None
                 for t in batch.column(a.text).to_pylist()]
        t_vec, t_ok = embed_batch(encoder, texts, a.batch_size, dim, normalize=True,
                                  encode=encoder.texts)
        if a.embedding is not None:
            col = batch.column(a.embedding)
            i_ok = np.asarray(col.is_valid())
            flat = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            i_vec = np.asarray(flat.values.to_numpy(zero_copy_only=False),
                               dtype=np.float32).reshape(len(col), dim).copy()
            norms = np.linalg.norm(i_vec, axis=1, keepdims=True)
            np.divide(i_vec, norms, out=i_vec, where=norms > 0)
        else:
            images = storage(batch.column(a.image)).to_pylist()
            images = [b if t is not None else None for b, t in zip(images, texts)]

            def encode(items: list) -> Any:
                return encoder.images(encoder.preprocess([decode_rgb(b, a.image)
                                                          for b in items]))

            i_vec, i_ok = embed_batch(encoder, images, a.batch_size, dim, normalize=True,
                                      encode=encode)
        score = np.einsum("ij,ij->i", i_vec, t_vec).astype(np.float32)
        ok = i_ok & t_ok
        return {a.output: pa.array(score, pa.float32(), mask=~ok)}


class ImageTextFilterArgs(Arguments):
    column: str = Field("similarity", description="Score column (image_text_similarity).")
    min_similarity: float = Field(0.28, ge=-1, le=1, description="Keep rows scoring at least "
                                                                 "this (LAION-5B: 0.28 with "
                                                                 "ViT-B/32).")
    keep_null: bool = Field(False, description="Keep rows without a score.")


class ImageTextFilter(FilterOperation):
    """Keep image–text pairs whose CLIP score (from `image_text_similarity`) is at least
    `min_similarity`; the others are dropped with reason "low_image_text_similarity", rows
    without a score (no image or no text) with "no_image_text_similarity" unless keep_null."""

    name = "image_text_filter"
    Args = ImageTextFilterArgs
    consumes = {"{column}": "float32"}
    default_reason = "low_image_text_similarity"

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        typ = schema.get(self.args.column)
        if typ is not None and pa.types.is_floating(typ):  # a score from elsewhere: float64
            return {self.args.column: typ}
        return super().resolve_consumes(schema)

    def process(self, batch: Any) -> tuple:
        import numpy as np

        a = self.args
        col = batch.column(a.column)
        valid = np.asarray(col.is_valid())
        scores = np.asarray(col.fill_null(0.0).to_numpy(zero_copy_only=False))
        keep = np.where(valid, scores >= a.min_similarity, a.keep_null)
        reasons = np.where(valid, "low_image_text_similarity", "no_image_text_similarity")
        return keep, reasons.tolist()
