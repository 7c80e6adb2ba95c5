"""Text embeddings with sentence-transformers, from local models only.

The output type, `fixed_size_list<float32>[dim]`, is known when the pipeline is built: `dim`
comes from the model's configuration files (modules.json, the pooling and dense configs,
config.json), read without loading any weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import PipelineError
from ..operation import Arguments, MapOperation, Resources

log = logging.getLogger(__name__)

_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                  "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
_SAME_DIM = {"Normalize", "Dropout", "LayerNorm"}
_HIDDEN_KEYS = ("hidden_size", "d_model", "dim", "n_embd", "word_embed_proj_dim")


def local_model_dir(name: str) -> Path:
    """The directory of a model or tokenizer: `name` itself when it is a directory, else its
    snapshot in the local Hugging Face cache. Never downloads (nothing here goes online)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if not looks_local:
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            snapshot_download = None
        candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
        for repo in candidates if snapshot_download else []:
            try:
                return Path(snapshot_download(repo, local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache (or a malformed name)
                continue
        from_cache = " nor a model in the local Hugging Face cache"
        hint = ("; datamill never downloads: fetch it beforehand "
                f"(`hf download {name}`) or pass a directory")
    else:
        from_cache, hint = "", ""
    raise FileNotFoundError(f"{name!r} is not a directory{from_cache}{hint}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def _hidden_size(folder: Path) -> int:
    config = _read_json(folder / "config.json")
    for key in _HIDDEN_KEYS:
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config")
    if isinstance(text, dict):
        for key in _HIDDEN_KEYS:
            if isinstance(text.get(key), int):
                return text[key]
    raise ValueError(f"{folder / 'config.json'} has no hidden size ({', '.join(_HIDDEN_KEYS)})")


def embedding_dim(folder: Path) -> int:
    """The size of the sentence embedding a model directory produces, from its config files
    only: each module listed in modules.json maps the previous size to its own (Transformer:
    hidden size; Pooling: word_embedding_dimension times the modes enabled; Dense:
    out_features). A plain transformers model (no modules.json) gets mean pooling."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return _hidden_size(folder)
    dim: int | None = None
    for module in _read_json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / module.get("path", "")
        if kind == "Transformer":
            dim = _hidden_size(sub)
        elif kind == "Pooling":
            config = _read_json(sub / "config.json")
            modes = sum(bool(config.get(m)) for m in _POOLING_MODES) or 1
            dim = int(config.get("word_embedding_dimension") or dim or 0) * modes
        elif kind == "Dense":
            dim = int(_read_json(sub / "config.json")["out_features"])
        elif kind not in _SAME_DIM:
            raise ValueError(f"cannot tell the embedding size through module {kind!r} "
                             f"listed in {modules_file}")
    truncate = _read_json(folder / "config_sentence_transformers.json").get("truncate_dim") \
        if (folder / "config_sentence_transformers.json").is_file() else None
    if isinstance(truncate, int) and dim:
        dim = min(dim, truncate)
    if not dim:
        raise ValueError(f"no embedding size found in {modules_file}")
    return dim


def files_digest(*paths: Path) -> str:
    """A digest of model files (each path a file or a directory, hidden entries aside) by
    name, size and modification time: part of a model step's cache key, so that replacing
    the model's files recomputes the step."""
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        files = sorted(f for f in path.rglob("*") if f.is_file() and not any(
            p.startswith(".") for p in f.relative_to(path).parts)) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            name = f.relative_to(path).as_posix() if path.is_dir() else f.name
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _weights_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin")
               for f in folder.glob(pattern))


class EmbedTextArgs(Arguments):
    model: str = Field(description="sentence-transformers model: a directory, or a name in "
                                   "the offline Hugging Face cache (never downloaded).")
    column: str = Field("text", description="Text column to embed.")
    output: str = Field("embedding", description="Column receiving the vectors.")
    batch_size: int = Field(32, gt=0, description="Texts per forward pass.")
    normalize: bool = Field(False, description="Scale each vector to unit length.")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, "
                                            "cuda, cuda:1, ...")


class EmbedText(MapOperation):
    """Embed a text column with a sentence-transformers model, into a
    fixed_size_list<float32>[dim] column whose `dim` is read from the model's config files
    when the pipeline is built (a missing model is an error before anything runs).

    The model is loaded once per worker, from a directory or the offline HF cache; it is
    never downloaded. Texts longer than the model's window (its max_seq_length) are
    truncated by the model: they are counted and a warning is logged once per worker. Null,
    empty and whitespace-only texts are not sent to the model and get a null embedding."""

    name = "embed_text"
    Args = EmbedTextArgs
    batch_size = 64  # rows per process() call: progress is reported between calls
    consumes = {"{column}": "string"}
    produces = {"{output}": "fixed_size_list<float32>[dim]"}
    resources = Resources(cpus=1.0)

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.truncated = 0  # texts cut at the model's window in this worker
        self._dir: Path | None = None
        self._dim: int | None = None
        if self.args.device.startswith("cuda"):
            self.resources = Resources(cpus=1.0, gpus=1.0)

    def model_info(self) -> tuple[Path, int]:
        """(model directory, embedding size), from files only; PipelineError otherwise."""
        if self._dir is None or self._dim is None:
            import importlib.util

            if importlib.util.find_spec("sentence_transformers") is None:
                raise PipelineError("needs sentence-transformers: pip install 'datamill[embed]'",
                                    operation=self.name)
            try:
                folder = local_model_dir(self.args.model)
                dim = embedding_dim(folder)
            except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
                raise PipelineError(f"model: {exc}", operation=self.name) from None
            self._dir, self._dim = folder, dim
            memory = 2 * _weights_bytes(folder) + (512 << 20)
            self.resources = self.resources.model_copy(update={"memory": memory})
        return self._dir, self._dim

    def key_inputs(self) -> dict[str, str]:
        return {"model files": files_digest(self.model_info()[0])}

    def resolve_produces(self, schema: dict) -> dict:
        import pyarrow as pa

        _, dim = self.model_info()
        return {self.args.output: pa.list_(pa.float32(), dim)}

    def setup(self) -> None:
        folder, dim = self.model_info()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError("embed_text needs sentence-transformers: "
                              "pip install 'datamill[embed]'") from None
        device = self.args.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:  # no "Loading weights" bar in the middle of the run's progress
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        self._model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension  # sentence-transformers < 6
        got = get_dim()
        if got is not None and got != dim:
            raise PipelineError(f"model {self.args.model!r} embeds into {got} dimensions but "
                                f"its config files say {dim}", operation=self.name)
        self._window = self._model.max_seq_length

    def count_truncated(self, texts: list[str]) -> int:
        """Texts longer than the window, in tokens (special tokens included)."""
        tokenizer = getattr(self._model, "tokenizer", None)
        if not self._window or tokenizer is None:
            return 0
        specials = tokenizer.num_special_tokens_to_add() + 1
        # a token spans at least one UTF-8 byte (at most 4 per character): skip short texts
        long = [t for t in texts if 4 * len(t) + specials > self._window]
        if not long:
            return 0
        ids = tokenizer(long, add_special_tokens=True, truncation=False,
                        verbose=False)["input_ids"]
        return sum(len(x) > self._window for x in ids)

    def process(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        if not hasattr(self, "_model"):
            self.setup()
        _, dim = self.model_info()
        texts = batch[self.args.column].to_pylist()
        keep = [i for i, t in enumerate(texts) if t is not None and t.strip()]
        kept = [texts[i] for i in keep]
        vectors = np.zeros((len(texts), dim), dtype=np.float32)
        if kept:
            cut = self.count_truncated(kept)
            if cut:
                if not self.truncated:
                    log.warning("embed_text: %d text(s) longer than the window of %r "
                                "(%d tokens) were truncated; further truncations are counted "
                                "in this worker, not logged", cut, self.args.model,
                                self._window)
                self.truncated += cut
            vectors[keep] = self._model.encode(
                kept, batch_size=self.args.batch_size, normalize_embeddings=self.args.normalize,
                convert_to_numpy=True, show_progress_bar=False)
        mask = np.ones(len(texts), dtype=bool)
        mask[keep] = False
        values = pa.array(vectors.reshape(-1), pa.float32())
        return {self.args.output: pa.FixedSizeListArray.from_arrays(
            values, dim, mask=pa.array(mask) if len(keep) < len(texts) else None)}
