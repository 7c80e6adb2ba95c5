"""NSFW detection with NudeNet (opt-in: `pip install 'datamill[nsfw]'`).

The `nudenet` package ships its detector, a YOLOv8n-based ONNX model (`320n.onnx`), inside the
wheel; it is loaded from there once per worker (never downloaded) and run with onnxruntime.
`nsfw_score` turns each image's detections into a score and the detected labels;
`nsfw_filter` drops rows by that score. The model file and the nudenet version are part of the
step's cache key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ...errors import PipelineError
from ...operation import Arguments, FilterOperation, MapOperation, Resources
from ..embed import files_digest
from ._common import ImageColumnArgs, decode_rgb_within, map_images

# NudeNet 3.x classes, in the model's output order.
LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPLICIT = ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED",
            "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")
INSTALL = "pip install 'datamill[nsfw]'"


def nudenet_model() -> tuple[Path, str]:
    """The ONNX file the nudenet package ships, and the package's version; ImportError when
    nudenet is not installed, FileNotFoundError when its model file is missing."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("nudenet")
    if spec is None or spec.origin is None:
        raise ImportError(f"NSFW detection needs nudenet: {INSTALL}")
    path = Path(spec.origin).parent / "320n.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"the nudenet package has no model file {path}")
    return path, importlib.metadata.version("nudenet")


class NsfwScoreArgs(ImageColumnArgs):
    output: str = Field("nsfw_score", description="Column receiving the score (float32, 0..1): "
                        "the highest detection score among `classes`, 0 when none.")
    labels_output: str | None = Field("nsfw_labels", description="Column receiving every "
                                      "class detected in the image (list<string>, sorted); "
                                      "None: not written.")
    classes: list[str] = Field(list(EXPLICIT), description="The NudeNet classes that count "
                               "towards the score (default: the exposed explicit ones).")
    batch_size: int = Field(8, gt=0, description="Images per forward pass.")
    max_side: int = Field(640, ge=320, description="Images are first scaled down to fit "
                          "this (the detector works at 320x320).")
    threads: int = Field(1, ge=1, description="onnxruntime threads per worker.")

    @field_validator("classes")
    @classmethod
    def _known(cls, classes: list[str]) -> list[str]:
        unknown = sorted(set(classes) - set(LABELS))
        if unknown or not classes:
            raise ValueError(f"unknown NudeNet class(es) {unknown}; known: {list(LABELS)}")
        return classes


class NsfwScore(MapOperation):
    """Score each image for nudity with NudeNet's detector (the ONNX model the `nudenet`
    package ships; opt-in extra `datamill[nsfw]`): the highest confidence among the detected
    boxes of `classes` (0 when none), and the sorted list of all classes detected. The model
    sees the image padded to a square and scaled to 320x320. Null images get null outputs; an
    image that cannot be decoded is a row error (the step's on_error)."""

    name = "nsfw_score"
    Args = NsfwScoreArgs
    batch_size = 64
    consumes = {"{column}": "image"}
    produces = {"{output}": "float32"}  # and {labels_output}: see resolve_produces
    resources = Resources(cpus=1.0)

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.detector: Any = None
        self.resources = Resources(cpus=float(self.args.threads))

    def model(self) -> tuple[Path, str]:
        try:
            return nudenet_model()
        except (ImportError, FileNotFoundError) as exc:
            raise PipelineError(str(exc), operation=self.name) from None

    def resolve_produces(self, schema: dict) -> dict:
        import pyarrow as pa

        path, _ = self.model()  # a missing extra fails when the pipeline is built
        self.resources = self.resources.model_copy(
            update={"memory": 4 * path.stat().st_size + (256 << 20)})
        out = {self.args.output: pa.float32()}
        if self.args.labels_output:
            out[self.args.labels_output] = pa.list_(pa.string())
        return out

    def key_inputs(self) -> dict[str, str]:
        path, version = self.model()
        return {"model files": files_digest(path), "nudenet": version}

    def setup(self) -> None:
        import onnxruntime
        from nudenet import NudeDetector

        path, _ = self.model()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.args.threads
        options.inter_op_num_threads = 1
        detector = NudeDetector(model_path=str(path))
        # the same model, in a session limited to this worker's threads
        detector.onnx_session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"])
        self.detector = detector

    def detect(self, images: list) -> list[list[dict]]:
        """NudeNet's detections ({class, score, box}) for each decoded RGB image."""
        import numpy as np

        if self.detector is None:
            self.setup()
        # NudeNet takes OpenCV's channel order (BGR), as cv2.imread gives
        arrays = [np.ascontiguousarray(np.asarray(im)[..., ::-1]) for im in images]
        return self.detector.detect_batch(arrays, batch_size=self.args.batch_size)

    def process(self, batch: Any) -> dict:
        import numpy as np
        import pyarrow as pa

        a = self.args
        decoded = map_images(self, batch, a.column, lambda data: None if data is None else
                             decode_rgb_within(data, a.column, a.max_side))
        rows = [i for i, im in enumerate(decoded) if im is not None]
        found = self.detect([decoded[i] for i in rows]) if rows else []
        scores = np.zeros(len(decoded), dtype=np.float32)
        labels: list[list[str] | None] = [None] * len(decoded)
        wanted = set(a.classes)
        for i, detections in zip(rows, found):
            scores[i] = max((d["score"] for d in detections if d["class"] in wanted),
                            default=0.0)
            labels[i] = sorted({d["class"] for d in detections})
        self.count("images_scored", len(rows))
        valid = np.array([im is not None for im in decoded], dtype=bool)
        out = {a.output: pa.array(scores, pa.float32(), mask=~valid)}
        if a.labels_output:
            out[a.labels_output] = pa.array(labels, pa.list_(pa.string()))
        return out


class NsfwFilterArgs(Arguments):
    column: str = Field("nsfw_score", description="Score column (nsfw_score).")
    max_score: float = Field(0.5, ge=0, le=1, description="Drop rows scoring above this "
                             "(reason nsfw).")
    keep_null: bool = Field(True, description="Keep rows without a score (null images); "
                            "False drops them with reason no_nsfw_score.")


class NsfwFilter(FilterOperation):
    """Drop rows whose `nsfw_score` is above `max_score`, with reason "nsfw"; rows without a
    score (a null image) are kept unless keep_null=False (reason "no_nsfw_score")."""

    name = "nsfw_filter"
    Args = NsfwFilterArgs
    consumes = {"{column}": "float32"}
    default_reason = "nsfw"

    def process(self, batch: Any) -> tuple:
        import numpy as np

        a = self.args
        col = batch.column(a.column)
        valid = np.asarray(col.is_valid())
        scores = np.asarray(col.fill_null(0.0).to_numpy(zero_copy_only=False))
        keep = np.where(valid, scores <= a.max_score, a.keep_null)
        return keep, np.where(valid, "nsfw", "no_nsfw_score").tolist()
