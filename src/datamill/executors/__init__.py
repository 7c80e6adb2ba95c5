"""Executors run a pipeline's plan: `local` (worker processes on this machine) and `ray`
(a Ray cluster). Both share executors/base.py, so they produce the same workdir."""

from __future__ import annotations

from typing import Any

EXECUTORS = ("local", "ray")


def make_executor(kind: str, workdir: Any, **options: Any) -> Any:
    """An executor by name; `options` are its constructor's (`address` only for ray)."""
    if kind == "local":
        from .local import LocalExecutor

        if options.pop("address", None):
            raise ValueError("address= is for executor='ray'; the local executor has none")
        return LocalExecutor(workdir, **options)
    if kind == "ray":
        from .ray import RayExecutor

        return RayExecutor(workdir, **options)
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
