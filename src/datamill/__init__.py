"""datamill: composable, typed, cached data pipelines for foundation-model data.

    from datamill import Dataset
    Dataset.read("docs/*.jsonl").apply("text_length_filter", min_chars=200).write("out/").run()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "Dataset": "datamill.running",
    "Operation": "datamill.operation",
    "MapOperation": "datamill.operation",
    "FilterOperation": "datamill.operation",
    "ExpandOperation": "datamill.operation",
    "GlobalOperation": "datamill.operation",
    "SourceOperation": "datamill.operation",
    "SinkOperation": "datamill.operation",
    "ProjectOperation": "datamill.operation",
    "Arguments": "datamill.operation",
    "Field": "datamill.operation",
    "Resources": "datamill.operation",
    "map_operation": "datamill.operation",
    "filter_operation": "datamill.operation",
    "expand_operation": "datamill.operation",
    "LocalExecutor": "datamill.executors.local",
    "RunResult": "datamill.executors.local",
    "dropped_rows": "datamill.rows",
    "duplicates": "datamill.rows",
    "load_manifest": "datamill.manifest",
    "quarantined_rows": "datamill.rows",
    "find_row": "datamill.rows",
    "DatamillError": "datamill.errors",
    "PipelineError": "datamill.errors",
    "SchemaError": "datamill.errors",
    "ArgumentError": "datamill.errors",
    "InputError": "datamill.errors",
    "OperationError": "datamill.errors",
    "WorkdirBusyError": "datamill.errors",
    "StorageError": "datamill.errors",
    "CorruptFileError": "datamill.errors",
    "OutputBusyError": "datamill.errors",
    "verify": "datamill.integrity",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .errors import *  # noqa: F403
    from .executors.local import LocalExecutor, RunResult
    from .integrity import verify
    from .manifest import load_manifest
    from .operation import *  # noqa: F403
    from .rows import dropped_rows, duplicates, find_row, quarantined_rows
    from .running import Dataset


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datamill' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
