"""Text in images, by OCR with RapidOCR (opt-in: `pip install 'datamill[ocr]'`): a proxy for
screenshots, memes, scanned pages and watermarked stock photos.

The `rapidocr` package ships its PP-OCR detection, direction and recognition models (ONNX)
inside the wheel; they are loaded from there by path (so RapidOCR never reaches for its
download URLs) once per worker, and run with onnxruntime. `image_text_area` measures the share
of each image covered by text; `text_area_filter` drops rows by it. The model files and the
rapidocr version are part of the step's cache key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ...errors import PipelineError
from ...operation import Arguments, FilterOperation, MapOperation, Resources
from ..embed import files_digest
from ._common import ImageColumnArgs, decode_rgb_within, map_images

# RapidOCR 3.x defaults (PP-OCRv6 small detection and recognition, PP-OCR mobile direction)
MODEL_FILES = {"Det": "PP-OCRv6_det_small.onnx", "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
               "Rec": "PP-OCRv6_rec_small.onnx"}
INSTALL = "pip install 'datamill[ocr]'"


def rapidocr_models() -> tuple[dict[str, Path], str]:
    """The model files the rapidocr package ships (by stage: Det, Cls, Rec) and its version;
    ImportError when rapidocr is not installed, FileNotFoundError when a file is missing."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise ImportError(f"OCR needs rapidocr and onnxruntime: {INSTALL}")
    folder = Path(spec.origin).parent / "models"
    paths = {stage: folder / name for stage, name in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the rapidocr package lacks its model file(s) {missing} "
                                "(datamill needs a rapidocr wheel that ships its models)")
    return paths, importlib.metadata.version("rapidocr")


def covered_fraction(size: tuple[int, int], boxes: Any) -> float:
    """The share of a (width, height) image inside the union of quadrilaterals [n, 4, 2]."""
    import numpy as np
    from PIL import Image, ImageDraw

    if boxes is None or len(boxes) == 0:
        return 0.0
    mask = Image.new("1", size, 0)
    draw = ImageDraw.Draw(mask)
    for quad in boxes:
        draw.polygon([(float(x), float(y)) for x, y in quad], fill=1)
    return float(np.count_nonzero(np.asarray(mask))) / (size[0] * size[1])


class ImageTextAreaArgs(ImageColumnArgs):
    prefix: str = Field("text_", description="Prefix of the output columns: {prefix}area "
                        "(float32, 0..1), {prefix}boxes (int32) and, with recognize, "
                        "{prefix}lines (string).")
    recognize: bool = Field(True, description="Also read the text in each box, and count "
                            "only boxes that read as text (min_score, min_chars); the lines "
                            "go to {prefix}lines. False: detection only, faster but noisier "
                            "(fur, eyes or foliage can pass for text).")
    min_score: float = Field(0.5, ge=0, le=1, description="With recognize: the least "
                             "recognition confidence of a box that counts.")
    min_chars: int = Field(2, ge=1, description="With recognize: the fewest non-blank "
                           "characters a box must read to count (single glyphs are mostly "
                           "textures taken for text).")
    box_threshold: float = Field(0.5, gt=0, lt=1, description="The detector's box score "
                                 "threshold (RapidOCR's Det.box_thresh).")
    max_side: int = Field(2000, ge=64, description="Images are first scaled down to fit this "
                          "(RapidOCR's own cap).")
    threads: int = Field(1, ge=1, description="onnxruntime threads per worker.")


class ImageTextArea(MapOperation):
    """Find text in each image with RapidOCR (the PP-OCR ONNX models the `rapidocr` package
    ships; opt-in extra `datamill[ocr]`): {prefix}area, the share of the image inside the union
    of the text boxes, and {prefix}boxes, their number. By default each box is also read, and
    only those that read as text (min_score, min_chars) count; their text goes to
    {prefix}lines, a line per box, top to bottom. Null images get null outputs; an image that
    cannot be decoded is a row error (the step's on_error)."""

    name = "image_text_area"
    Args = ImageTextAreaArgs
    batch_size = 32
    consumes = {"{column}": "image"}
    produces = {"{prefix}area": "float32", "{prefix}boxes": "int32"}  # see resolve_produces
    resources = Resources(cpus=1.0)

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.engine: Any = None
        self.resources = Resources(cpus=float(self.args.threads))

    def models(self) -> tuple[dict[str, Path], str]:
        try:
            return rapidocr_models()
        except (ImportError, FileNotFoundError) as exc:
            raise PipelineError(str(exc), operation=self.name) from None

    def resolve_produces(self, schema: dict) -> dict:
        paths, _ = self.models()  # a missing extra fails when the pipeline is built
        size = sum(p.stat().st_size for p in paths.values())
        self.resources = self.resources.model_copy(update={"memory": 4 * size + (512 << 20)})
        p = self.args.prefix
        out = {f"{p}area": "float32", f"{p}boxes": "int32"}
        if self.args.recognize:
            out[f"{p}lines"] = "string"
        return self._template(out)

    def key_inputs(self) -> dict[str, str]:
        paths, version = self.models()
        return {"model files": files_digest(*paths.values()), "rapidocr": version}

    def setup(self) -> None:
        import logging

        from rapidocr import RapidOCR

        paths, _ = self.models()
        a = self.args
        params: dict[str, Any] = {
            "Global.log_level": "error", "Global.max_side_len": a.max_side,
            "Global.text_score": a.min_score, "Det.box_thresh": a.box_threshold,
            "EngineConfig.onnxruntime.intra_op_num_threads": a.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        params.update({f"{stage}.model_path": str(path) for stage, path in paths.items()})
        self.engine = RapidOCR(params=params)
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)

    def read(self, image: Any) -> tuple[float, int, str | None]:
        """(area, boxes, lines or None) of one RGB PIL image."""
        if self.engine is None:
            self.setup()
        a = self.args
        result = self.engine(image, use_det=True, use_cls=a.recognize, use_rec=a.recognize)
        if result.boxes is None:
            return 0.0, 0, "" if a.recognize else None
        if not a.recognize:
            return covered_fraction(image.size, result.boxes), len(result.boxes), None
        # RapidOCR has already left out the boxes whose text scores below min_score
        kept = [(box, text) for box, text in zip(result.boxes, result.txts or ())
                if len("".join(text.split())) >= a.min_chars]
        return (covered_fraction(image.size, [box for box, _ in kept]), len(kept),
                "\n".join(text for _, text in kept))

    def process(self, batch: Any) -> dict:
        import pyarrow as pa

        a = self.args
        out = map_images(self, batch, a.column, lambda data: None if data is None else
                         self.read(decode_rgb_within(data, a.column, a.max_side)))
        self.count("images_read", sum(o is not None for o in out))
        self.count("images_with_text", sum(o is not None and o[1] > 0 for o in out))
        p = a.prefix
        columns = {
            f"{p}area": pa.array([None if o is None else o[0] for o in out], pa.float32()),
            f"{p}boxes": pa.array([None if o is None else o[1] for o in out], pa.int32()),
        }
        if a.recognize:
            columns[f"{p}lines"] = pa.array([None if o is None else o[2] for o in out],
                                            pa.string())
        return columns


class TextAreaFilterArgs(Arguments):
    column: str = Field("text_area", description="Text-area column (image_text_area).")
    max_area: float = Field(0.1, ge=0, le=1, description="Drop rows whose text covers more "
                            "than this share of the image (reason too_much_text).")
    boxes_column: str = Field("text_boxes", description="Box-count column (image_text_area); "
                              "read only with max_boxes.")
    max_boxes: int | None = Field(None, ge=0, description="Drop rows with more text boxes "
                                  "than this (reason too_many_text_boxes).")
    keep_null: bool = Field(True, description="Keep rows without a measure (null images); "
                            "False drops them with reason no_text_area.")


class TextAreaFilter(FilterOperation):
    """Drop images with too much text in them, from `image_text_area`'s measures: a text area
    above `max_area` (reason "too_much_text") or, with `max_boxes`, more boxes than that
    ("too_many_text_boxes"). Rows without a measure are kept unless keep_null=False
    ("no_text_area")."""

    name = "text_area_filter"
    Args = TextAreaFilterArgs
    consumes = {"{column}": "float32"}
    default_reason = "too_much_text"

    def resolve_consumes(self, schema: dict) -> dict:
        columns: dict[str, Any] = {self.args.column: "float32"}
        if self.args.max_boxes is not None:
            columns[self.args.boxes_column] = "int32"
        return self._template(columns)

    def process(self, batch: Any) -> tuple:
        import numpy as np

        a = self.args
        col = batch.column(a.column)
        valid = np.asarray(col.is_valid())
        area = np.asarray(col.fill_null(0.0).to_numpy(zero_copy_only=False))
        reasons = np.full(len(area), None, dtype=object)
        if a.max_boxes is not None:
            boxes = np.asarray(batch.column(a.boxes_column).fill_null(0)
                               .to_numpy(zero_copy_only=False))
            reasons[boxes > a.max_boxes] = "too_many_text_boxes"
        reasons[area > a.max_area] = "too_much_text"
        if not a.keep_null:
            reasons[~valid] = "no_text_area"
        else:
            reasons[~valid] = None
        return np.equal(reasons, None), reasons
