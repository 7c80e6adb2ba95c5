"""The catalogue: operations by name, from datamill itself and from entry points."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .errors import PipelineError, did_you_mean

if TYPE_CHECKING:
    from .operation import Operation

ENTRY_POINT_GROUP = "datamill.operations"
_REGISTRY: dict[str, type[Operation]] = {}
_loaded = False
_BUILTIN_MODULES = (
    "datamill.io.parquet", "datamill.io.jsonl", "datamill.io.csv", "datamill.io.text_files",
    "datamill.io.dataset", "datamill.io.html", "datamill.io.warc", "datamill.io.pdf",
    "datamill.io.hf", "datamill.ops.columns", "datamill.ops.text", "datamill.ops.python",
    "datamill.ops.sample", "datamill.ops.dedup", "datamill.ops.normalize",
    "datamill.ops.url", "datamill.ops.pii",
    "datamill.ops.chunk", "datamill.ops.embed",
    "datamill.io.lancedb", "datamill.io.pgvector", "datamill.ops.retrieve",
    "datamill.ops.minhash", "datamill.ops.semantic_dedup",
    "datamill.ops.langid", "datamill.ops.decontaminate",
    "datamill.ops.quality",
    "datamill.ops.image.mark", "datamill.ops.image.info", "datamill.ops.image.filter",
    "datamill.ops.image.transform", "datamill.ops.image.metadata",
    "datamill.ops.image.dedup", "datamill.ops.image.download",
    "datamill.io.images", "datamill.io.webdataset",
    "datamill.ops.image.embed", "datamill.ops.image.caption",
    "datamill.ops.image.nsfw", "datamill.ops.image.ocr",
)


def register(cls: type[Operation]) -> type[Operation]:
    """Add an operation class to the catalogue under its `name` (later wins)."""
    _REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Operation]]:
    """Import the built-ins and every `datamill.operations` entry point, once."""
    global _loaded
    if not _loaded:
        import importlib

        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            from .operation import Operation

            if isinstance(obj, type) and issubclass(obj, Operation) and obj.name:
                register(obj)
        _loaded = True
    return _REGISTRY


def get(name: str) -> type[Operation]:
    ops = load_all()
    if name not in ops:
        raise PipelineError(f"no operation named {name!r}{did_you_mean(name, list(ops))} "
                            "(see `datamill ops list`)")
    return ops[name]
