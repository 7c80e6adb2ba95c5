"""Chat tokenizers, loaded from local files only: a GGUF model file (its tokenizer and chat
template, through transformers and the `gguf` package), a tokenizer folder, or a name in the
offline Hugging Face cache. Loaded once per process and name; identified by a digest of the
files' bytes (part of the cache key of the steps that count or pack tokens)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_LOADED: dict[tuple[str, str], Any] = {}
_DIGESTS: dict[tuple[str, int, int], str] = {}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                    "chat_template.json", "special_tokens_map.json", "tokenizer.model",
                    "vocab.json", "merges.txt", "added_tokens.json")


def tokenizer_files(spec: str) -> list[Path]:
    """The files that define the tokenizer `spec` names (FileNotFoundError when none)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path.resolve()]
    if path.is_dir():
        found = [path / n for n in _TOKENIZER_FILES if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{spec}: a folder with no tokenizer files "
                                    f"({', '.join(_TOKENIZER_FILES[:3])}, ...)")
        return [f.resolve() for f in found]
    if str(spec).endswith(".gguf") or str(spec).startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{spec}: no such file or folder")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(spec, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - not in the offline cache (never downloaded)
        raise FileNotFoundError(f"{spec}: not a file, a folder, nor a model in the offline "
                                f"Hugging Face cache ({type(exc).__name__})") from None
    return tokenizer_files(folder)


def tokenizer_digest(spec: str) -> str:
    """A digest of the bytes of the tokenizer's files (memoized by path, size and mtime)."""
    h = hashlib.sha256()
    for f in tokenizer_files(spec):
        st = f.stat()
        memo = (str(f), st.st_size, st.st_mtime_ns)
        if memo not in _DIGESTS:
            file_hash = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    file_hash.update(block)
            _DIGESTS[memo] = file_hash.hexdigest()
        h.update(f"{f.name}\0{_DIGESTS[memo]}\n".encode())
    return h.hexdigest()[:20]


def load_tokenizer(spec: str) -> Any:
    """The transformers tokenizer `spec` names (once per process and files' digest)."""
    key = (spec, tokenizer_digest(spec))
    if key in _LOADED:
        return _LOADED[key]
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ImportError("counting tokens needs transformers: pip install 'datamill[finetune]'"
                          ) from None
    hf_logging.set_verbosity_error()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{spec}: a tokenizer file must be a .gguf model (or give a folder)")
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_files(spec)[0].parent),
                                            local_files_only=True)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{spec}: the tokenizer has no chat template")
    _LOADED[key] = tok
    return tok


def render(tok: Any, conversations: list[list[dict]]) -> list[str]:
    """Each conversation through the tokenizer's chat template (no generation prompt)."""
    return [tok.apply_chat_template(list(c), tokenize=False) for c in conversations]


def count_tokens(tok: Any, conversations: list[list[dict]]) -> list[int]:
    """Tokens of each conversation as the chat template renders it: the count
    `apply_chat_template(conversation, tokenize=True)` gives, tokenized as one batch."""
    if not conversations:
        return []
    encoded = tok(render(tok, conversations), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]
