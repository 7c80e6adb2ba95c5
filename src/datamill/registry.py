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
    "datamill.ops.chat", "datamill.ops.split",
    "datamill.ops.llm.generate", "datamill.ops.llm.extract", "datamill.ops.llm.judge",
    "datamill.ops.llm.classify", "datamill.ops.llm.preference",
    "datamill.io.finetune",
)

# The operations each built-in module registers, so that `get` imports only the module of
# the operation asked for (importing every module costs ~0.5 s of CPU in each run's driver).
# tests/test_registry.py checks its entries against `load_all`; an operation missing here
# still resolves (through `load_all`), only slower: add new modules' operations here too.
_BUILTIN_OPERATIONS: dict[str, tuple[str, ...]] = {
    "datamill.io.csv": ("read_csv", "write_csv"),
    "datamill.io.dataset": ("read_workdir",),
    "datamill.io.finetune": ("write_hf_dataset", "write_hf_parquet", "write_openai",
                             "write_packed"),
    "datamill.io.hf": ("read_hf",),
    "datamill.io.html": ("extract_html", "read_html"),
    "datamill.io.images": ("read_images", "write_images"),
    "datamill.io.jsonl": ("read_jsonl", "write_jsonl"),
    "datamill.io.lancedb": ("write_lancedb",),
    "datamill.io.parquet": ("read_parquet", "write_parquet"),
    "datamill.io.pdf": ("read_pdf",),
    "datamill.io.pgvector": ("write_pgvector",),
    "datamill.io.text_files": ("read_text_files",),
    "datamill.io.warc": ("read_warc",),
    "datamill.io.webdataset": ("read_webdataset", "write_webdataset"),
    "datamill.ops.chat": (
        "from_messages", "messages_text", "messages_to_preference", "preference_to_messages",
        "to_messages", "validate_chat",
    ),
    "datamill.ops.chunk": ("chunk_text",),
    "datamill.ops.columns": ("drop", "rename", "select"),
    "datamill.ops.decontaminate": ("decontaminate", "flag_contamination"),
    "datamill.ops.dedup": ("drop_duplicates",),
    "datamill.ops.embed": ("embed_text",),
    "datamill.ops.image.caption": ("caption_images",),
    "datamill.ops.image.dedup": ("image_dedup", "image_hash"),
    "datamill.ops.image.download": ("download_images",),
    "datamill.ops.image.embed": (
        "embed_images", "embed_text_clip", "image_text_filter", "image_text_similarity",
    ),
    "datamill.ops.image.filter": ("image_filter",),
    "datamill.ops.image.info": ("image_info",),
    "datamill.ops.image.mark": ("as_images",),
    "datamill.ops.image.metadata": ("strip_image_metadata",),
    "datamill.ops.image.nsfw": ("nsfw_filter", "nsfw_score"),
    "datamill.ops.image.ocr": ("image_text_area", "text_area_filter"),
    "datamill.ops.image.transform": ("crop_borders", "resize_images"),
    "datamill.ops.langid": ("detect_language", "language_filter"),
    "datamill.ops.llm.classify": ("llm_classify",),
    "datamill.ops.llm.extract": ("llm_extract",),
    "datamill.ops.llm.generate": ("llm_generate",),
    "datamill.ops.llm.judge": ("llm_judge",),
    "datamill.ops.llm.preference": ("llm_preference",),
    "datamill.ops.minhash": ("minhash_dedup",),
    "datamill.ops.normalize": ("normalize_text",),
    "datamill.ops.pii": ("redact_pii",),
    "datamill.ops.python": ("python_filter", "python_map"),
    "datamill.ops.quality.c4": (
        "c4_badwords_filter", "c4_badwords_stats", "c4_filter", "c4_stats",
    ),
    "datamill.ops.quality.fineweb": ("fineweb_filter", "fineweb_stats"),
    "datamill.ops.quality.gopher": (
        "gopher_quality_filter", "gopher_quality_stats", "gopher_repetition_filter",
        "gopher_repetition_stats",
    ),
    "datamill.ops.retrieve": ("retrieve",),
    "datamill.ops.sample": ("limit", "sample"),
    "datamill.ops.semantic_dedup": ("semantic_dedup",),
    "datamill.ops.split": ("assign_split",),
    "datamill.ops.text": ("text_length_filter",),
    "datamill.ops.url": ("url_filter",),
}
_MODULE_OF = {name: module for module, names in _BUILTIN_OPERATIONS.items() for name in names}
_plugins: list | None = None


def _entry_points() -> list:
    global _plugins
    if _plugins is None:
        _plugins = list(entry_points(group=ENTRY_POINT_GROUP))
    return _plugins


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
        for ep in _entry_points():
            obj = ep.load()
            from .operation import Operation

            if isinstance(obj, type) and issubclass(obj, Operation) and obj.name:
                register(obj)
                dist = getattr(ep, "dist", None)
                if dist is not None:
                    _PUBLISHED_BY[obj] = (dist.metadata["Name"], dist.version)
        _loaded = True
    return _REGISTRY


_PUBLISHED_BY: dict[type, tuple[str, str]] = {}  # entry point's class -> its distribution


def provider(cls: type[Operation]) -> tuple[str, str] | None:
    """(distribution, version) that provides the operation class: datamill for built-ins,
    the distribution of the entry point that published it, else the installed distribution
    its module belongs to; None for code of no distribution (a pipeline file, a notebook)."""
    if cls in _PUBLISHED_BY:
        return _PUBLISHED_BY[cls]
    top = (cls.__module__ or "").partition(".")[0]
    if top == "datamill":
        from ._version import __version__

        return "datamill", __version__
    if not top or top == "__main__":
        return None
    from .code_fingerprint import distribution_of

    found = distribution_of(top)
    if found is None:
        return None
    name, _, version = found.partition("==")
    return name, version


def get(name: str) -> type[Operation]:
    """The operation class named `name`. A built-in is found by importing its own module
    alone, unless a package publishes operations (which may replace built-ins): then, and for
    names the index lacks, every module is imported first."""
    if not _loaded and name in _MODULE_OF and not _entry_points():
        import importlib

        importlib.import_module(_MODULE_OF[name])
        if name in _REGISTRY:
            return _REGISTRY[name]
    ops = load_all()
    if name not in ops:
        raise PipelineError(f"no operation named {name!r}{did_you_mean(name, list(ops))} "
                            "(see `datamill ops list`)")
    return ops[name]
