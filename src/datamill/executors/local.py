"""The local executor: embedded, no server. Partitions of a stage run in a pool of worker
processes (forked, so operations are never pickled); the driver plans, tracks progress,
and commits step records and the manifest."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..dataset import Step
from ..errors import DatamillError
from ..storage import HELD_LOCKS
from .base import Executor, RunResult
from .forking import (
    frozen_heap,
    import_worker_modules,
    pyarrow_without_pandas,
    torch_after_fork,
)
from .progress import Progress
from .workers import prepared

__all__ = ["LocalExecutor", "RunResult"]

_STATE: dict[str, Any] = {}  # set before forking workers; read inside them


def _worker_init() -> None:
    with contextlib.suppress(Exception):  # die with the driver (Linux)
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    for fd in HELD_LOCKS:  # the driver alone holds the workdir's and outputs' locks
        with contextlib.suppress(OSError):
            os.close(fd)
    _keep_freed_memory()
    pyarrow_without_pandas()
    torch_after_fork()


def _keep_freed_memory() -> None:
    """Let a worker reuse the memory it frees instead of handing it back to the system and
    faulting it in again at the next batch (page faults were ~15% of a text pipeline's CPU
    time): glibc's malloc serves large blocks from its heap and keeps it (mallopt), and
    Arrow allocates through malloc too. A worker's resident size stays near its peak,
    which it reaches at the first batches anyway."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
        libc.mallopt(m_top_pad, 64 << 20)
    with contextlib.suppress(Exception):
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


def _setup_before_fork(steps: list[Step]) -> None:
    """Set up, in the driver, the operations that ask for it (`setup_before_fork`): the
    forked workers find them ready (workers.prepared) and share their memory."""
    for step in steps:
        if getattr(step.op, "setup_before_fork", False):
            prepared(step)


def _call_unit(name: str, arg: int) -> Any:
    fn = _STATE["units"][name]
    queue = _STATE.get("queue")
    report = (lambda step, rows: queue.put((step, rows))) if queue is not None else None
    return fn(arg, report)


class LocalExecutor(Executor):
    """Runs datasets into a workdir on this machine. `workers` defaults to the number of
    cores."""

    name = "local"

    def _in_driver(self, items: list[int]) -> bool:
        return self.workers == 1 or len(items) == 1

    def _dispatch(self, units: dict[str, Callable], name: str, items: list[int],
                  progress: Progress, phase: str | None, steps: list[Step]) -> None:
        _setup_before_fork(steps)
        import_worker_modules()
        ctx = mp.get_context("fork")
        queue = ctx.Queue() if progress.wants_rows else None
        _STATE.update(units=units, queue=queue)
        if queue is not None:
            progress.listen(queue)
        try:
            with ProcessPoolExecutor(min(self.workers, len(items)), mp_context=ctx,
                                     initializer=_worker_init) as pool:
                # the pool forks its workers at the first submits
                with progress.forking, frozen_heap():
                    futures = {pool.submit(_call_unit, name, item): item for item in items}
                remaining = set(futures)
                while remaining:
                    done, remaining = wait(remaining, timeout=0.2, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        exc = fut.exception()
                        if exc is not None:
                            for other in remaining:
                                other.cancel()
                            if isinstance(exc, BrokenProcessPool):
                                raise DatamillError(
                                    f"a worker process died (killed, or out of memory) while "
                                    f"running {phase or 'a partition'} #{futures[fut]}; "
                                    "committed work is kept: re-run to resume") from exc
                            raise exc
                        progress.unit_done(phase, fut.result())
        finally:
            progress.stop_listening()
            _STATE.pop("queue", None)

