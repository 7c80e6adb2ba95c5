"""A GGUF file as a transformers model folder, for servers and code that cannot read GGUF.

transformers loads a GGUF (dequantized, through the `gguf` package) but its config then names
no architecture, which `transformers serve` needs. `gguf_to_transformers` writes a plain model
folder (weights, config with the architecture, tokenizer and its chat template) once per GGUF
file: the folder is named after the file's digest, so a changed file is converted again and an
unchanged one never."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

DONE = "datamill-gguf.json"


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$DATAMILL_MODEL_CACHE, else ~/.cache/datamill (XDG_CACHE_HOME honoured)."""
    root = os.environ.get("DATAMILL_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "datamill")
    return Path(root)


def gguf_to_transformers(gguf_path: str | os.PathLike,
                         out_dir: str | os.PathLike | None = None,
                         digest: str | None = None) -> Path:
    """The transformers folder of a GGUF model: `out_dir` (default: a folder named after the
    file's digest under `default_cache_dir()/gguf`). Converted once; a folder that holds a
    finished conversion of the same bytes is returned as it is. `digest`: the file's sha256
    when the caller has it already."""
    import json

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}")
    digest = digest or file_digest(gguf_path)
    out = Path(out_dir) if out_dir else default_cache_dir() / "gguf" / digest[:32]
    marker = out / DONE
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("sha256") == digest:
                return out
        except ValueError:
            pass
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .local import quiet_progress

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        folder, name = str(gguf_path.parent), gguf_path.name
        with quiet_progress():  # no "Converting and de-quantizing" bars
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        model.config.architectures = [type(model).__name__]
        model.hf_quantizer = None  # the weights are dequantized: save them as plain tensors
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / DONE).write_text(json.dumps({"source": str(gguf_path), "sha256": digest}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out
