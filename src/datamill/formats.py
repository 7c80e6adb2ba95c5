"""Turn what a user passes to `Dataset.read` / `.write` into a source or sink operation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import PipelineError
from .image_type import IMAGE_SUFFIXES
from .operation import Operation, check_kind

SOURCES = {"parquet": "read_parquet", "jsonl": "read_jsonl", "json": "read_jsonl",
           "csv": "read_csv", "text": "read_text_files", "workdir": "read_workdir",
           "html": "read_html", "warc": "read_warc", "pdf": "read_pdf", "hf": "read_hf",
           "images": "read_images", "webdataset": "read_webdataset"}
# Formats a folder is read as when every data file in it has that format.
FOLDER_FORMATS = ("parquet", "jsonl", "csv", "html", "warc", "pdf", "images", "webdataset")
SINKS = {"parquet": "write_parquet", "jsonl": "write_jsonl", "csv": "write_csv",
         "lancedb": "write_lancedb", "pgvector": "write_pgvector",
         "webdataset": "write_webdataset", "images": "write_images",
         "openai": "write_openai", "hf": "write_hf_dataset", "hf_parquet": "write_hf_parquet",
         "packed": "write_packed"}


def guess_format(path: str) -> str | None:
    """A format from a path's extension, a datamill folder's contents, or None."""
    if path.endswith("manifest.json") and os.path.isfile(path) and os.path.isdir(
            os.path.join(os.path.dirname(path) or ".", "steps")):
        return "workdir"
    by_name = format_of_name(path)
    if by_name is not None:
        return by_name
    if "://" not in path and os.path.isdir(path):
        folder = Path(path)
        if (folder / "manifest.json").exists() and (folder / "steps").is_dir():
            return "workdir"
        if (folder / "dataset_dict.json").is_file() or (
                (folder / "state.json").is_file() and any(folder.glob("*.arrow"))):
            return "hf"  # written by a Hugging Face dataset's save_to_disk
        names = [p.name for p in folder.rglob("*") if p.is_file()][:1000]
        return _format_of_folder(names)
    if "://" in path and not any(ch in path for ch in "*?["):
        names = _url_folder_names(path)
        if names is not None:
            return _format_of_folder(names)
    return None


def format_of_name(path: str) -> str | None:
    """A format from a path's extension alone (compression suffixes skipped)."""
    lower = path.lower().rstrip("/")
    for suffix in (".gz", ".zst", ".zstd", ".bz2"):
        lower = lower.removesuffix(suffix)
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith((".csv", ".tsv")):
        return "csv"
    if lower.endswith(".warc"):
        return "warc"
    if lower.endswith(".pdf"):
        return "pdf"
    if lower.endswith((".html", ".htm", ".xhtml")):
        return "html"  # main content extracted; format="text" reads the raw markup
    if lower.endswith(".tar"):
        return "webdataset"
    if lower.endswith(IMAGE_SUFFIXES):
        return "images"
    if lower.endswith((".txt", ".md", ".markdown", ".rst", ".text")):
        return "text"
    return None


def _url_folder_names(url: str) -> list[str] | None:
    """File names in the folder a URL names (None if it is not a folder)."""
    try:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(url)
        if not fs.isdir(root):
            return None
        return [f.rsplit("/", 1)[-1] for f in fs.find(root)][:1000]
    except Exception:  # noqa: BLE001 - unreachable or unknown: let the caller say so
        return None


def _format_of_folder(names: list[str]) -> str:
    """A folder written by datamill (it holds the lineage file) or one of a single format."""
    data = [n for n in names if not n.startswith((".", "_"))]
    if "_datamill_lineage.json" in names:
        if any(format_of_name(n) == "images" for n in data):
            return "images"  # written by write_images (its .json sidecars are no JSON Lines)
        for fmt in ("parquet", "jsonl", "csv"):
            if any(guess_format(n) == fmt for n in data):
                return fmt
    for fmt in FOLDER_FORMATS:
        if data and all(format_of_name(n) == fmt for n in data):
            return fmt
    return "text"


def _build(kind: str, target: Any, fmt: str | None, args: dict, table: dict) -> Operation:
    from . import registry

    if isinstance(target, Operation):
        check_kind(target, (kind,), f"Dataset.{'read' if kind == 'source' else 'write'}")
        return target
    if isinstance(target, type) and issubclass(target, Operation):
        op = target(**args)
        check_kind(op, (kind,), "this call")
        return op
    paths = [str(p) for p in target] if isinstance(target, (list, tuple)) else [str(target)]
    if isinstance(target, str) and fmt is None and "/" not in target and "." not in target:
        try:  # a registered operation's name
            cls = registry.get(target)
        except PipelineError:
            cls = None
        if cls is not None and cls.kind == kind:
            return cls(**args)  # its argument errors are the user's to see
    fmt = fmt or guess_format(paths[0])
    if fmt is None:
        raise PipelineError(f"cannot tell the format of {paths[0]!r}; pass format= one of "
                            f"{sorted(table)}")
    if fmt not in table:
        raise PipelineError(f"unknown format {fmt!r}; choose one of {sorted(table)}")
    path: Any = paths if len(paths) > 1 else paths[0]
    return registry.get(table[fmt])(path=path, **args)


def resolve_source(source: Any, fmt: str | None, args: dict) -> Operation:
    return _build("source", source, fmt, args, SOURCES)


def resolve_sink(target: Any, fmt: str | None, args: dict) -> Operation:
    if fmt is None and str(target).startswith(("postgresql://", "postgres://")):
        fmt = "pgvector"  # a vector table on a PostgreSQL server
    if fmt is None and isinstance(target, (str, os.PathLike)):
        guessed = format_of_name(str(target))  # by name: an earlier run's output folder
        fmt = guessed if guessed in SINKS else "parquet"  # out/x.jsonl stays JSON Lines
    return _build("sink", target, fmt, args, SINKS)
