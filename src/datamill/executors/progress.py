"""Live progress: a bar per step on a terminal (rows, rows/s, partitions, ETA), plain log
lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("datamill")


def _fmt_rows(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


class Progress:
    def __init__(self, chain: list, mode: bool | None, log: Callable[[str], None] | None = None):
        self.interactive = sys.stderr.isatty() if mode is None else mode
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.quiet = mode is False and log is None
        self.rows_seen: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.tasks: dict[str, Any] = {}
        self.bar: Any = None
        self._thread: threading.Thread | None = None
        self._queue: Any = None
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._stage_steps: list[str] = []

    def __enter__(self) -> Progress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self.bar = RichProgress(
                TextColumn("{task.description:<28}"), TextColumn("{task.fields[rows]:>8} rows"),
                TextColumn("{task.fields[rate]:>8}/s"), BarColumn(), MofNCompleteColumn(),
                TextColumn("parts"), TimeElapsedColumn(), TimeRemainingColumn(),
                transient=False, refresh_per_second=5, console=Console(stderr=True))
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_listening()
        if self.bar is not None:
            self.bar.stop()

    def _emit(self, line: str) -> None:
        if not self.interactive and not self.quiet:
            self.log(line)

    def _task(self, name: str, total: int | None) -> None:
        if self.bar is not None and name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total, rows="0", rate="-")

    def cached(self, step: str, record: dict) -> None:
        if self.bar is not None:
            self.tasks[step] = self.bar.add_task(f"{step} (cached)", total=1, completed=1,
                                                 rows=_fmt_rows(record.get("rows_out", 0)),
                                                 rate="-")
        self._emit(f"datamill: {step}: cached ({record.get('rows_out', 0)} rows)")

    def stage_started(self, stage: Any, partitions: int) -> None:
        self._stage_steps = stage.names
        for name in stage.names:
            self.started[name] = time.perf_counter()
            self.rows_seen.setdefault(name, 0)
            self._task(name, partitions)
        self._emit(f"datamill: running {' -> '.join(stage.names)} over {partitions} partition(s)")

    def skip(self, stage: Any, done: int) -> None:
        if done:
            self._emit(f"datamill: resuming: {done} partition(s) already committed")
            for name in stage.names:
                if self.bar is not None:
                    self.bar.update(self.tasks[name], advance=done)

    def phase(self, name: str, total: int) -> None:
        self._phase = name
        if self.bar is not None and name not in self.tasks and ":" in name:
            self.tasks[name] = self.bar.add_task(name, total=total, rows="-", rate="-")
        self._emit(f"datamill: {name}: {total} unit(s)")

    def rows(self, step: str, n: int) -> None:
        with self._lock:
            self.rows_seen[step] = self.rows_seen.get(step, 0) + n
            if self.bar is not None and step in self.tasks:
                elapsed = max(time.perf_counter() - self.started.get(step, time.perf_counter()),
                              1e-9)
                seen = self.rows_seen[step]
                self.bar.update(self.tasks[step], rows=_fmt_rows(seen),
                                rate=_fmt_rows(seen / elapsed))

    def unit_done(self, phase: str | None, result: Any) -> None:
        if self.bar is not None:
            targets = [phase] if phase and phase in self.tasks else self._stage_steps
            for name in targets:
                self.bar.update(self.tasks[name], advance=1)
        elif phase is None and isinstance(result, dict):
            first = next(iter(result.values()), {})
            self._emit(f"datamill: partition done ({first.get('rows_in', 0)} rows in)")

    def step_done(self, name: str, record: dict) -> None:
        if self.bar is not None and name in self.tasks:
            task = self.tasks[name]
            total = self.bar.tasks[task].total if task < len(self.bar.tasks) else None
            self.bar.update(task, completed=total, rows=_fmt_rows(record["rows_out"]))
        dropped = ", ".join(f"{k}: {v}" for k, v in record.get("dropped", {}).items())
        self._emit(f"datamill: {name}: {record['rows_in']} -> {record['rows_out']} rows"
                   f"{' (dropped ' + dropped + ')' if dropped else ''}"
                   f"{', ' + str(record['errors']) + ' errors' if record.get('errors') else ''}"
                   f" in {record['wall_seconds']:.2f}s")

    @property
    def wants_rows(self) -> bool:
        """Do live row counts show anywhere? (only the terminal bars use them)"""
        return self.bar is not None

    # worker -> driver row counts
    def listen(self, queue: Any) -> None:
        self._queue = queue

        def drain() -> None:
            while True:
                item = queue.get()
                if item is None:
                    return
                self.rows(*item)

        self._thread = threading.Thread(target=drain, daemon=True)
        self._thread.start()

    def stop_listening(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
            self._queue = None
