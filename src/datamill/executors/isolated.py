"""Operations that declare `requirements` run in a worker process of their environment.

`IsolatedOperation` stands in for such an operation inside a fused pass: it builds (or finds)
the environment (environments.py), starts one long-lived worker in it per process that
calls it (env_worker.py), and sends each batch there and its result back through Arrow IPC
over the worker's stdin and stdout. The pass around it is unchanged: the steps before and
after it still run in this process, and a batch that fails is retried row by row through
`process`, each row's error naming the step and the row.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..dataset import Step
from ..environments import ensure_environment, environment_key, normalized, python_of
from ..errors import DatamillError, PipelineError
from .env_worker import receive, send

ENVIRONMENT_VAR = "DATAMILL_ENVIRONMENT"  # the key of the environment a process runs in
ISOLATED_KINDS = ("map", "filter", "expand")
_BOOT = """
import json, sys
root, parent = json.loads(sys.argv[1])
path = [p for p in sys.path if p]
own = [i for i, p in enumerate(path) if p.startswith(sys.prefix)]
cut = own[-1] + 1 if own else 0
path[cut:cut] = [root]
sys.path[:] = path + [p for p in parent if p and p not in path]
from datamill.executors.env_worker import main
main()
"""


class RemoteError(Exception):
    """An exception an operation raised inside its isolated environment; its class is
    named after the original one (`ValueError`, ...)."""


_REMOTE_TYPES: dict[str, type] = {}


def remote_error(header: dict, payload: bytes | None, operation: str) -> Exception:
    """The exception an operation raised in its environment, as an exception here."""
    if payload:  # a DatamillError, whole
        try:
            return pickle.loads(payload)
        except Exception:  # noqa: BLE001 - its message will do
            pass
    name = header["type"]
    cls = _REMOTE_TYPES.get(name)
    if cls is None:
        cls = _REMOTE_TYPES[name] = type(name, (RemoteError,), {"__module__": __name__})
    where = f": {header['where']}" if header.get("where") else ""
    return cls(f"{header['message']} (operation {operation!r}, in its environment{where})")


def needs_isolation(op: Any) -> bool:
    """Does `op` declare requirements that this process does not already run under?"""
    requirements = normalized(getattr(op, "requirements", ()))
    return bool(requirements) and os.environ.get(ENVIRONMENT_VAR) != \
        environment_key(requirements)


class EnvironmentWorker:
    """One worker process in an environment, running the operations of this process that
    need that environment (one worker per environment and process)."""

    def __init__(self, env: Path, requirements: list[str]):
        import datamill

        root = str(Path(datamill.__file__).resolve().parents[1])
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        environ[ENVIRONMENT_VAR] = environment_key(requirements)
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            [str(python_of(env)), "-c", _BOOT, json.dumps([root, sys.path])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environ)
        self.unanswered: list[Step] = []  # operations sent, whose setup is not confirmed

    def add(self, step: Step) -> None:
        """Send the worker `step`'s operation to build and set up (its answer is read at the
        next call, so that the workers of several environments start together)."""
        op = step.op
        cls = type(op)
        init = {"id": step.key, "module": cls.__module__, "qualname": cls.__qualname__,
                "path": defining_file(cls),
                "arguments": op.args.model_dump(), "produced":  # as the operation names them
                {c: str(step.produced[w]) for c, w in step.op_writes().items()
                 if w in step.produced}}
        try:
            blob = pickle.dumps(init)
        except Exception as exc:  # noqa: BLE001 - say which argument
            raise PipelineError(f"the arguments of an operation with requirements must be "
                                f"picklable to reach its environment: {exc}",
                                step=step.name, operation=op.name) from None
        send(self.proc.stdin, {"init": step.key}, raw=blob)
        self.unanswered.append(step)

    def _receive(self, step: Step) -> tuple[dict, Any]:
        try:
            message = receive(self.proc.stdout, raw=True)
        except EOFError:
            message = None
        if message is None:
            code = self.proc.wait()
            raise DatamillError(f"[step {step.name!r}] the worker process of its environment "
                                f"exited (code {code}); its stderr above says why")
        return message

    def call(self, step: Step, table: Any) -> tuple[dict, Any]:
        while self.unanswered:
            added = self.unanswered.pop(0)
            header, payload = self._receive(added)
            if not header["ok"]:
                raise _setup_error(added, remote_error(header, payload, added.op.name))
        send(self.proc.stdin, {"call": step.key}, table)
        header, payload = self._receive(step)
        if not header["ok"]:
            raise remote_error(header, payload, step.op.name)
        import pyarrow as pa

        return header, pa.ipc.open_stream(pa.py_buffer(payload)).read_all() if payload else None

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def defining_file(cls: type) -> str | None:
    """The file that defines `cls`: its module's, or (a class that came by value, on a Ray
    worker, whose module this process never imported) that of its functions' code."""
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if path:
        return path
    for value in vars(cls).values():
        fn = getattr(value, "__func__", value)
        code = getattr(fn, "__code__", None)
        if code is not None and getattr(fn, "__module__", None) == cls.__module__ \
                and os.path.isfile(code.co_filename):
            return code.co_filename
    return None


_WORKERS: dict[Path, EnvironmentWorker] = {}  # this process's, by environment


def worker_for(requirements: list[str]) -> EnvironmentWorker:
    """This process's worker of the environment of `requirements` (made and started at the
    first call; a worker inherited from the process that forked this one is not ours)."""
    env = ensure_environment(requirements)
    worker = _WORKERS.get(env)
    if worker is None or worker.pid != os.getpid() or worker.proc.poll() is not None:
        worker = _WORKERS[env] = EnvironmentWorker(env, requirements)
    return worker


def _setup_error(step: Step, exc: Exception) -> DatamillError:
    if isinstance(exc, DatamillError):
        return exc
    return DatamillError(f"[step {step.name!r}, operation {step.op.name!r}] setting it up in "
                         f"its environment failed: {type(exc).__name__}: {exc}")


class IsolatedOperation:
    """Stands in for `step.op` in a pass; its batches go to a worker of its environment."""

    batch_format = "arrow"  # the worker converts to the operation's own format
    batches_in_flight = 1

    def __init__(self, step: Step):
        if step.kind not in ISOLATED_KINDS:
            raise PipelineError(f"a {step.kind} operation cannot run in an isolated environment"
                                f" (requirements {list(step.op.requirements)}): only "
                                f"{', '.join(ISOLATED_KINDS)} operations can",
                                step=step.name, operation=step.op.name)
        self.step = step
        self.op = step.op
        self.kind = step.kind
        self.name = step.op.name
        self.batch_size = step.op.batch_size
        self.batch_bytes = step.op.batch_bytes
        self.requirements = normalized(step.op.requirements)
        self._worker: EnvironmentWorker | None = None
        self._counters: dict[str, int] = {}

    def setup(self) -> None:
        self._worker = worker_for(self.requirements)
        self._worker.add(self.step)

    def teardown(self) -> None:
        """Stop the environment's worker (which tears its operations down)."""
        worker, self._worker = self._worker, None
        if worker is not None and worker.pid == os.getpid() and worker.proc.poll() is None:
            worker.close()

    def reason(self) -> str:
        return self.op.reason()

    def take_counters(self) -> dict[str, int]:
        counters, self._counters = self._counters, {}
        return counters

    def process(self, batch: Any) -> Any:
        if self._worker is None or self._worker.pid != os.getpid():  # set up elsewhere
            self.setup()
        header, table = self._worker.call(self.step, batch)
        for name, n in header.get("counters", {}).items():
            self._counters[name] = self._counters.get(name, 0) + int(n)
        if self.kind == "filter":
            mask = table.column("_mask").to_numpy(zero_copy_only=False)
            if header.get("columns"):
                return mask, header.get("reasons"), table.drop_columns(["_mask"])
            return mask, header.get("reasons")
        if header.get("single"):
            return table.column("_value")
        return table
