"""caption_images: captions from a local image-to-text model through transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ...errors import PipelineError
from ...image_type import storage
from ...operation import Arguments, MapOperation, Resources
from ..embed import files_digest, local_model_dir
from .embed import decode_rgb
from .models import pick_device, pick_dtype, quiet_transformers


class CaptionImagesArgs(Arguments):
    model: str = Field(description="An image-to-text model directory or a name in the offline "
                                   "Hugging Face cache (BLIP, a VisionEncoderDecoder, ...); "
                                   "never downloaded.")
    column: str = Field("image", description="Image column.")
    output: str = Field("caption", description="Column receiving the captions.")
    prompt: str | None = Field(None, description="Text the caption continues (BLIP's "
                                                 "conditional captioning: 'a photograph of').")
    max_new_tokens: int = Field(30, gt=0, description="Longest caption, in tokens.")
    num_beams: int = Field(1, gt=0, description="Beam search width (1: greedy).")
    batch_size: int = Field(16, gt=0, description="Images per generate() call.")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, "
                                            "cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Compute precision (auto: float16 on cuda, float32 on cpu).")


class CaptionImages(MapOperation):
    """Caption each image with a local vision-language model through transformers: BLIP
    (BlipForConditionalGeneration), a VisionEncoderDecoderModel, or another image-to-text
    model (AutoModelForImageTextToText), in batches, on the GPU when there is one. Generation
    is deterministic (greedy, or beam search with num_beams); `prompt` starts every caption
    (BLIP's conditional captioning) and is kept in it. Null images get a null caption; an
    image that cannot be decoded is a row error (the step's on_error)."""

    name = "caption_images"
    Args = CaptionImagesArgs
    batch_size = 64  # rows per process() call
    consumes = {"{column}": "image"}
    produces = {"{output}": "string"}
    resources = Resources(cpus=1.0)

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self._dir: Path | None = None
        self._kind = ""
        self.model = None
        if self.args.device.startswith("cuda"):
            self.resources = Resources(cpus=1.0, gpus=1.0)

    def model_dir(self) -> Path:
        if self._dir is None:
            try:
                folder = local_model_dir(self.args.model)
                config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, OSError, ValueError) as exc:
                raise PipelineError(f"model: {exc}", operation=self.name) from None
            self._kind = str(config.get("model_type", ""))
            weights = sum(f.stat().st_size for p in ("*.safetensors", "*.bin")
                          for f in folder.glob(p))
            self.resources = self.resources.model_copy(
                update={"memory": 2 * weights + (512 << 20)})
            self._dir = folder
        return self._dir

    def resolve_produces(self, schema: dict) -> dict:
        self.model_dir()
        return super().resolve_produces(schema)

    def key_inputs(self) -> dict[str, str]:
        return {"model files": files_digest(self.model_dir())}

    def setup(self) -> None:
        folder = self.model_dir()
        quiet_transformers()
        import transformers as tf

        device = pick_device(self.args.device)
        dtype = pick_dtype(self.args.dtype, device)
        kind = {"blip": tf.BlipForConditionalGeneration,
                "vision-encoder-decoder": tf.VisionEncoderDecoderModel}.get(
            self._kind, tf.AutoModelForImageTextToText)
        where = dict(local_files_only=True)
        self.model = kind.from_pretrained(folder, dtype=dtype, **where).eval().to(device)
        self.device, self.dtype = device, dtype
        try:
            processor = tf.AutoProcessor.from_pretrained(folder, **where)
        except Exception:  # noqa: BLE001 - no processor file: its parts are read apart
            processor = None
        # a processor bundles both; else (or when AutoProcessor falls back to one part)
        # the image processor and the tokenizer are saved apart
        self.images = getattr(processor, "image_processor", None) or \
            tf.AutoImageProcessor.from_pretrained(folder, **where)
        try:
            self.tokenizer = getattr(processor, "tokenizer", None) or \
                tf.AutoTokenizer.from_pretrained(folder, **where)
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{folder} has no tokenizer to decode captions with: {exc}",
                                operation=self.name) from None

    def generate(self, images: list) -> list[str]:
        import torch

        a = self.args
        pixels = self.images(images=images, return_tensors="pt")["pixel_values"]
        inputs: dict[str, Any] = {"pixel_values": pixels.to(self.device, self.dtype)}
        if a.prompt:
            tokens = self.tokenizer([a.prompt] * len(images), return_tensors="pt",
                                    add_special_tokens=self._kind == "blip")
            inputs["input_ids"] = tokens["input_ids"].to(self.device)
            if self._kind == "vision-encoder-decoder":
                inputs["decoder_input_ids"] = inputs.pop("input_ids")
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=a.max_new_tokens,
                                      num_beams=a.num_beams, do_sample=False)
        if self._kind not in ("blip", "vision-encoder-decoder") and "input_ids" in inputs:
            out = out[:, inputs["input_ids"].shape[1]:]  # decoder-only: echoes the prompt
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def process(self, batch: Any) -> dict:
        import pyarrow as pa

        if self.model is None:
            self.setup()
        a = self.args
        values = storage(batch.column(a.column)).to_pylist()
        captions: list[str | None] = [None] * len(values)
        rows = [i for i, v in enumerate(values) if v is not None]
        for start in range(0, len(rows), a.batch_size):
            chunk = rows[start:start + a.batch_size]
            for i, text in zip(chunk, self.generate([decode_rgb(values[i], a.column)
                                                     for i in chunk])):
                captions[i] = text
        self.count("images_captioned", len(rows))
        return {a.output: pa.array(captions, pa.string())}
