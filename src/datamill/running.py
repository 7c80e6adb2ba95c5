"""Running pipelines: `datamill.Dataset`, the lazy DAG node (dataset.py) plus `run` and
`collect`, and the same as functions over several datasets.

This module sits above both the DAG (dataset, plan) and the executors, so that neither knows
the other's floor: building a pipeline imports no executor, and executors only see steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dataset import LazyDataset

if TYPE_CHECKING:
    import pyarrow as pa

    from .executors.base import RunResult


def run(datasets: LazyDataset | Iterable[LazyDataset], workdir: str | Path = "datamill-work",
        *, executor: str = "local", workers: int | None = None, cache: bool = True,
        progress: bool | None = None, **options: Any) -> RunResult:
    """Execute the pipelines ending in `datasets` (one or several, sharing their common
    steps). `executor` is "local" (worker processes) or "ray" (with `address="HOST:PORT"`;
    see docs/ray.md)."""
    from .executors import make_executor

    chosen = [datasets] if isinstance(datasets, LazyDataset) else list(datasets)
    return make_executor(executor, workdir, workers=workers, cache=cache, progress=progress,
                         **options).run(chosen)


def collect(dataset: LazyDataset, workdir: str | Path = "datamill-work",
            columns: list[str] | None = None, *, executor: str = "local",
            **run_options: Any) -> pa.Table:
    """Run (cache permitting) and return the dataset's rows as one pyarrow Table (a damaged
    cached file met while reading is recomputed first)."""
    from .executors import make_executor

    return make_executor(executor, workdir, **run_options).collect(dataset, columns)


class Dataset(LazyDataset):
    """A lazy dataset: `read`, `apply`, `write`, then `run` (or `collect`)."""

    def run(self, workdir: str | Path = "datamill-work", *, executor: str = "local",
            workers: int | None = None, cache: bool = True, progress: bool | None = None,
            **options: Any) -> RunResult:
        """Execute the pipeline ending here. `executor` is "local" (worker processes) or
        "ray" (with `address="HOST:PORT"`; see docs/ray.md)."""
        return run(self, workdir, executor=executor, workers=workers, cache=cache,
                   progress=progress, **options)

    def collect(self, workdir: str | Path = "datamill-work", columns: list[str] | None = None,
                *, executor: str = "local", **run_options: Any) -> pa.Table:
        """Run (cache permitting) and return this dataset's rows as one pyarrow Table."""
        return collect(self, workdir, columns, executor=executor, **run_options)
