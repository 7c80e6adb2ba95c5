"""Live progress: a bar per step on a terminal (rows, rows/s, partitions, ETA), plain log
lines otherwise. Without a terminal, a running stage also logs a heartbeat every
`HEARTBEAT_SECONDS`: rows done per step, rows/s, partitions done, ETA. Workers report rows
as each batch passes a step (inside a unit, not only when it ends), so the heartbeat moves
even while one long unit runs."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("datamill")
HEARTBEAT_SECONDS = 10.0  # without a terminal, a running stage says where it is this often


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _fmt_rate(per_second: float) -> str:
    return f"{per_second:.1f}" if per_second < 10 else _fmt_rows(per_second)


def _fmt_rows(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


class Progress:
    def __init__(self, chain: list, mode: bool | None, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.interactive = sys.stderr.isatty() if mode is None else mode
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.quiet = mode is False and log is None
        self.clock = clock
        self._beat: threading.Event | None = None
        self._beat_thread: threading.Thread | None = None
        self._parts = (0, 0)  # partitions of the running stage: (done, total)
        self._skipped = 0  # of which committed by an earlier run (they took no time here)
        self._stage_started = 0.0
        self._stage_rows: dict[str, int] = {}  # rows at the stage's start (resumed stages)
        self._expected_rows: int | None = None  # the stage's input rows, when known
        self.rows_seen: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.tasks: dict[str, Any] = {}
        self.bar: Any = None
        self._thread: threading.Thread | None = None
        self._queue: Any = None
        self._lock = threading.Lock()
        self._output = threading.Lock()  # held while a line is written
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
        self._stop_heartbeat()
        self.stop_listening()
        if self.bar is not None:
            self.bar.stop()

    def _emit(self, line: str) -> None:
        if not self.interactive and not self.quiet:
            with self._output:
                self.log(line)

    @property
    def forking(self) -> Any:
        """Hold while forking workers: no heartbeat is half way through writing then (a
        child would inherit a stream's lock held by a thread it does not have)."""
        return self._output

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
        self._stop_heartbeat()
        self._stage_steps = stage.names
        self._phase = None
        self._parts = (0, partitions)
        self._skipped = 0
        self._stage_started = self.clock()
        for name in stage.names:
            self.started[name] = time.perf_counter()
            self.rows_seen.setdefault(name, 0)
            self._task(name, partitions)
        self._stage_rows = {n: self.rows_seen.get(n, 0) for n in stage.names}
        self._emit(f"datamill: running {' -> '.join(stage.names)} over {partitions} partition(s)")
        if not self.interactive and not self.quiet:
            self._start_heartbeat()

    # --- heartbeat (no terminal) ----------------------------------------------------------
    def _start_heartbeat(self) -> None:
        beat = self._beat = threading.Event()

        def run() -> None:
            while not beat.wait(HEARTBEAT_SECONDS):
                self._emit(self.heartbeat())

        self._beat_thread = threading.Thread(target=run, name="datamill-heartbeat", daemon=True)
        self._beat_thread.start()

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.set()
            if self._beat_thread is not None:
                self._beat_thread.join(timeout=5)
            self._beat = self._beat_thread = None

    def heartbeat(self) -> str:
        """Where the running stage is: units done, rows done per step, the rate of the
        furthest step rows have reached, elapsed time, ETA."""
        with self._lock:
            elapsed = max(self.clock() - self._stage_started, 1e-9)
            done, total = self._parts
            rows = {n: self.rows_seen.get(n, 0) - self._stage_rows.get(n, 0)
                    for n in self._stage_steps}
        what = self._phase if self._phase and ":" in self._phase else \
            " -> ".join(self._stage_steps)
        unit = "unit(s)" if self._phase and ":" in self._phase else "partition(s)"
        reached = [n for n, k in rows.items() if k]
        rate = f"{_fmt_rate(rows[reached[-1]] / elapsed)} rows/s ({reached[-1]})" \
            if reached else "0 rows/s"
        return (f"datamill: ... {what}: {done}/{total} {unit} done; rows done: "
                f"{', '.join(f'{n} {_fmt_rows(k)}' for n, k in rows.items())}; {rate}; "
                f"{_fmt_duration(elapsed)} elapsed; ETA {self._eta(elapsed, done, total, rows)}")

    def _eta(self, elapsed: float, done: int, total: int, rows: dict[str, int]) -> str:
        if total and done >= total:
            return "0s"
        ran = done - self._skipped
        if ran > 0:  # units finished in this run: the best measure of what one costs
            return _fmt_duration(elapsed * (total - done) / ran)
        first = next(iter(rows.values()), 0)
        expected = self._expected_rows
        if expected and 0 < first < expected:
            return _fmt_duration(elapsed * (expected - first) / first)
        return "unknown until a unit completes"

    def expect_rows(self, rows: int | None) -> None:
        """The running stage's input row count, when known before it runs (an ETA early)."""
        self._expected_rows = rows or None

    def skip(self, stage: Any, done: int) -> None:
        if done:
            with self._lock:
                self._parts = (self._parts[0] + done, self._parts[1])
                self._skipped += done
            self._emit(f"datamill: resuming: {done} partition(s) already committed")
            for name in stage.names:
                if self.bar is not None:
                    self.bar.update(self.tasks[name], advance=done)

    def phase(self, name: str, total: int) -> None:
        self._phase = name
        if ":" in name:  # a global step's phase: its units are counted afresh
            with self._lock:
                self._parts = (0, total)
                self._skipped = 0
                self._stage_started = self.clock()
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
        with self._lock:
            self._parts = (self._parts[0] + 1, self._parts[1])
        if self.bar is not None:
            targets = [phase] if phase and phase in self.tasks else self._stage_steps
            for name in targets:
                self.bar.update(self.tasks[name], advance=1)
        elif phase is None and isinstance(result, dict):
            first = next(iter(result.values()), {})
            self._emit(f"datamill: partition done ({first.get('rows_in', 0)} rows in)")

    def step_done(self, name: str, record: dict) -> None:
        self._stop_heartbeat()
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
        """Do live row counts show anywhere? (the terminal bars, or the heartbeat)"""
        return self.bar is not None or not self.quiet

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
