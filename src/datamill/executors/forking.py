"""Memory around forking workers: what the driver does before the fork, and each worker after.

Every page the driver holds at the fork is mapped into each worker too, so the summed RSS of
a run counts the driver's imports once per process. The driver therefore imports nothing on
the workers' behalf, except the few modules every worker imports anyway (`WORKER_MODULES`:
each writes its step's Parquet files, and pyarrow's numpy conversion imports numpy.ma):
imported once before the fork instead of once per worker and stage (~70 ms each), they
add their pages to the driver alone. It also freezes its objects (`gc.freeze`) so that the
workers' collections do not write to, and so copy, the pages they share with it.

pyarrow imports pandas (about 35 MB) the first time it converts a numpy array, only to ask
whether the array is a pandas object. A worker where pandas is not imported yet answers that
question up front with pandas hidden; the first real `import pandas` in the worker (an
operation that uses it, `batch_format="pandas"`) restores pyarrow's pandas support before the
importer sees the module.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Iterator
from typing import Any

WORKER_MODULES = ("pyarrow.parquet", "pyarrow.compute", "numpy.ma", "numpy.random")


def import_worker_modules() -> None:
    """Import, in the driver, the modules that every forked worker would import itself."""
    for name in WORKER_MODULES:
        importlib.import_module(name)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the driver's objects while workers are forked from it (and thaw them after).
    Only the young generations are collected first (~1 ms, against ~40 ms for all, at each
    stage): garbage in the oldest stays frozen with it until the next full collection."""
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _HidePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not imported in this worker yet")
        return None


class _PandasImportHook(importlib.abc.MetaPathFinder):
    """Finds pandas for its first importer, and once pandas is loaded, tells pyarrow."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "pandas":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _SyncingLoader(spec.loader)
        return spec


class _SyncingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any):
        self._loader = loader

    def __getattr__(self, attr: str) -> Any:  # resources and the like: the real loader's
        return getattr(self._loader, attr)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        pyarrow_sees_pandas()


def pyarrow_sees_pandas() -> None:
    """Make pyarrow (re)detect pandas, now that it is imported."""
    import pyarrow.lib

    pyarrow.lib._pandas_api.compat  # noqa: B018 - the property imports and registers pandas


def pyarrow_without_pandas() -> bool:
    """In a worker where pandas is not imported: settle pyarrow's pandas check without
    importing it, and hook the first real import of pandas. Returns whether it did."""
    if "pandas" in sys.modules or importlib.util.find_spec("pandas") is None:
        return False
    import pyarrow as pa

    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        pa.array([0])  # pyarrow tries `import pandas` once, here, and remembers it failed
    finally:
        sys.meta_path.remove(hide)
        for name in [m for m in sys.modules if m == "pandas" or m.startswith("pandas.")]:
            del sys.modules[name]
    sys.meta_path.insert(0, _PandasImportHook())
    return True


def torch_after_fork() -> bool:
    """Keep a forked worker's torch off the OpenMP thread pool it inherited.

    GNU OpenMP is not fork-safe: once the driver has run a parallel region (any sizeable torch
    op: a model built or called in the driver, a test that embedded in-process), a forked child
    that enters one hangs or crashes in libgomp. A worker forked from a driver that imported
    torch therefore runs torch on one thread (each worker is one of the run's parallel
    lanes anyway); a driver without torch leaves the workers' torch as it is."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return False
    torch.set_num_threads(1)
    logging.getLogger(__name__).debug("torch imported before the fork: one thread per worker")
    return True
