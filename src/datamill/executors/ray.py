"""The Ray executor: the plan, cache, commits and records of the local executor
(executors/base.py), with the units of work run on a Ray cluster.

- A unit (one partition of a row-wise stage; one scan, reduce, round or apply unit of a global
  step) is a Ray task whose resource request is the step's declared `Resources`.
- A stage with an operation that loads something in `setup()` (a model) runs in a pool of
  actors instead, each set up once.
- Units read and write the workdir, which every node must mount at the same path; the
  driver checks that, and that every step's resources fit some node, before anything runs.
- An operation's `requirements` become the task's pip `runtime_env` (its `image`, the
  container): `stage_runtime_env`.
- Ray retries a unit whose worker process died; a unit's output commits atomically, so a
  retried or resumed unit never leaves half a file. `ray` is imported only here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import sysconfig
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..dataset import LazyDataset, Step
from ..environments import environment_key, normalized
from ..errors import DatamillError, PipelineError
from ..operation import Operation, Resources
from .base import Executor, RunResult
from .isolated import ENVIRONMENT_VAR
from .progress import Progress

__all__ = ["RayExecutor", "RunResult"]

CONNECT_TIMEOUT = 10.0  # seconds to reach the head node before giving up
PROBE_TIMEOUT = 60.0  # seconds for every node to answer the workdir probe
RESOURCE_NAMES = {"cpus": "CPU", "gpus": "GPU", "memory": "memory"}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise DatamillError("the Ray executor needs Ray: pip install 'datamill[ray]'") from exc
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast, naming the address, when nothing listens at a cluster's HOST:PORT
    (`ray.init` itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise DatamillError(f"Ray address {address!r} is not HOST:PORT (for example "
                            "127.0.0.1:6379, the head node's GCS port)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DatamillError(
            f"cannot reach the Ray cluster at {address}: {reason}. Is a head node running "
            f"there (`ray start --head --port {port}`), and is the port open from this "
            "machine?") from None


def stage_resources(steps: list[Step]) -> Resources:
    """What one unit of fused `steps` asks for: the most any of them declares."""
    declared = [s.op.resources for s in steps if s.kind != "project"]
    if not declared:
        return Resources()
    memory = [r.memory for r in declared if r.memory is not None]
    concurrency = [r.concurrency for r in declared if r.concurrency is not None]
    return Resources(cpus=max(r.cpus for r in declared), gpus=max(r.gpus for r in declared),
                     memory=max(memory) if memory else None,
                     concurrency=min(concurrency) if concurrency else None)


def stage_runtime_env(steps: list[Step]) -> dict | None:
    """The Ray `runtime_env` of a unit of `steps`: the `image` an operation declares, else
    the pip requirements when its operations that declare some all declare the same (they
    then run in the task's own process, which knows it is in their environment); None when
    several sets meet in one fused stage: each operation then runs in a worker of its
    environment, made on the node as the local executor does (executors/isolated.py)."""
    images = {s.op.image for s in steps if getattr(s.op, "image", None)}
    if len(images) > 1:
        raise PipelineError(f"steps {', '.join(s.name for s in steps)} run in one fused stage "
                            f"but declare different images ({', '.join(sorted(images))}); a "
                            "Ray task runs in one container")
    if images:
        return {"image_uri": images.pop()}
    sets = {tuple(normalized(s.op.requirements)) for s in steps
            if normalized(getattr(s.op, "requirements", ()))}
    if len(sets) != 1:
        return None
    requirements = list(sets.pop())
    return {"pip": requirements,
            "env_vars": {ENVIRONMENT_VAR: environment_key(requirements)}}


def loads_in_setup(steps: list[Step]) -> bool:
    """Does any of `steps` override `setup()` (and so wants an actor that keeps it)?"""
    return any(s.kind not in ("source", "project") and type(s.op).setup is not Operation.setup
               for s in steps)


def _user_module(name: str) -> bool:
    """Code the workers cannot import: `__main__`, pipeline files, test modules, scripts —
    anything not installed in site-packages or the standard library."""
    if name == "__main__" or name.startswith("_datamill_pipeline_"):
        return True
    if name.split(".")[0] in ("datamill", "builtins"):
        return False
    path = getattr(sys.modules.get(name), "__file__", None)
    return bool(path) and not str(Path(path).resolve()).startswith(_installed_paths())


@functools.cache
def _installed_paths() -> tuple[str, ...]:
    """Where installed code lives: the standard library and site-packages."""
    paths = sysconfig.get_paths()
    return tuple({str(Path(paths[k]).resolve())
                  for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def ship_user_code(steps: list[Step]) -> None:
    """Pickle operations defined outside installed packages by value, so that workers that
    cannot import the user's file still get them."""
    from ray import cloudpickle

    for step in steps:
        for obj in (type(step.op), getattr(type(step.op), "function", None)):
            name = getattr(obj, "__module__", None)
            if name and name in sys.modules and _user_module(name):
                cloudpickle.register_pickle_by_value(sys.modules[name])


def _amount(field: str, value: float) -> str:
    return f"{value / 2**30:,.1f} GiB" if field == "memory" else f"{value:g}"


def _probe_workdir(path: str, token: str) -> tuple[bool, str, str]:
    """Run on one node: can it read the driver's probe file and write beside it?"""
    host = socket.gethostname()
    probe = Path(path)
    try:
        if probe.read_text() != token:
            return False, "its probe file has other content (a different filesystem)", host
        reply = probe.with_name(f"{probe.name}-{uuid.uuid4().hex[:8]}")
        reply.write_text(token)
        reply.unlink()
    except FileNotFoundError:
        return False, f"{probe.parent} does not exist there or is another filesystem", host
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}", host
    return True, "", host


def _run_unit(units: dict[str, Callable], name: str, cwd: str, counter: Any,
              item: int) -> Any:
    """One unit, in the driver's working directory when this node has it (relative paths in
    arguments then mean what they meant to the driver). Rows go to `counter` (a
    `_RowCounter` actor, or None) batch by batch, for the driver's progress."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    report = None if counter is None else (lambda step, rows: counter.add.remote(step, rows))
    return units[name](item, report)


class _RowCounter:
    """Rows that units report while they run, until the driver takes them."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, step: str, rows: int) -> None:
        self.counts[step] = self.counts.get(step, 0) + rows

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


class _UnitActor:
    """Runs units in one long-lived worker: operations are set up once per actor."""

    def run(self, units: dict[str, Callable], name: str, cwd: str, counter: Any,
            item: int) -> Any:
        return _run_unit(units, name, cwd, counter, item)

    def close(self) -> None:
        from .workers import teardown_all

        teardown_all()


class RayExecutor(Executor):
    """Runs datasets on a Ray cluster. `address` is the head node's HOST:PORT (or
    `ray://HOST:PORT` for Ray Client); None uses `RAY_ADDRESS`, else starts a Ray instance on
    this machine. `workers` caps the units running at once (default: the cluster's CPUs).
    `retries` is how many times a unit whose worker died is tried again."""

    name = "ray"

    def __init__(self, workdir: str | os.PathLike = "datamill-work", *,
                 address: str | None = None, workers: int | None = None, cache: bool = True,
                 progress: bool | None = None, log: Callable[[str], None] | None = None,
                 retries: int = 3, connect_timeout: float = CONNECT_TIMEOUT):
        super().__init__(workdir, workers=workers, cache=cache, progress=progress, log=log)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_workers = workers
        self.retries = retries
        self.connect_timeout = connect_timeout
        self._nodes: list[dict] = []
        self._counter: tuple[Any, Progress] | None = None  # (row counter actor, its progress)

    # --- connecting and checking --------------------------------------------------------
    @contextlib.contextmanager
    def session(self, lock_fd: int) -> Iterator[None]:
        ray = _import_ray()
        started_here = False
        if not ray.is_initialized():
            if self.address and self.address != "auto":
                check_reachable(self.address, self.connect_timeout)
            verbose = os.environ.get("DATAMILL_VERBOSE") == "1"  # set by `--verbose`
            options: dict[str, Any] = {"logging_level": "info" if verbose else "error",
                                       "namespace": "datamill"}
            if not self.address:
                options["include_dashboard"] = False
            try:
                ray.init(address=self.address, **options)
            except ray.exceptions.AuthenticationError as exc:
                raise DatamillError(
                    f"the Ray cluster at {self.address} refused this driver: it uses token "
                    "authentication; set RAY_AUTH_MODE=token and the cluster's token "
                    "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token) here") from exc
            started_here = True
        try:
            self._nodes = [n for n in ray.nodes() if n.get("Alive")]
            cpus = sum(int(n["Resources"].get("CPU", 0)) for n in self._nodes)
            self.workers = self.max_workers or max(1, cpus)
            yield
        finally:
            if started_here:
                ray.shutdown()

    def check(self, datasets: list[LazyDataset]) -> None:
        self._check_resources(self._steps_to_run(datasets))
        self._check_workdir()

    def _where(self) -> str:
        return f"the Ray cluster at {self.address}" if self.address else "the local Ray instance"

    def _check_resources(self, steps: list[Step]) -> None:
        """Every step's request must fit on at least one node: Ray would wait forever."""
        for step in steps:
            if step.kind == "project" or getattr(step.op, "driver_only", False):
                continue
            wanted = step.op.resources
            for field, ray_name in RESOURCE_NAMES.items():
                amount = getattr(wanted, field)
                if not amount:
                    continue
                best = max((n["Resources"].get(ray_name, 0) for n in self._nodes), default=0)
                if amount > best:
                    raise PipelineError(
                        f"needs {field}={_amount(field, amount)} per worker, but no node of "
                        f"{self._where()} has that much {ray_name} (the largest has "
                        f"{_amount(field, best)}); lower the operation's resources or add a "
                        "node that has it", step=step.name, operation=step.op.name)

    def _check_workdir(self) -> None:
        """Every node must see the workdir at the same path: write a probe file here and ask
        each node to read it (and to write beside it)."""
        ray = _import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        probe = self.workdir.root / f".probe-{token}"
        probe.write_text(token)
        remote = ray.remote(_probe_workdir)
        try:
            refs = {remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(str(probe), token): n for n in self._nodes}
            ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT)
            for ref in late:
                node = refs[ref]
                raise DatamillError(f"Ray node {node['NodeManagerAddress']} did not answer the "
                                    f"workdir check within {PROBE_TIMEOUT:g} s")
            for ref in ready:
                ok, why, host = ray.get(ref)
                if not ok:
                    node = refs[ref]
                    raise DatamillError(
                        f"the workdir {self.workdir.root} is not reachable from Ray node "
                        f"{node['NodeManagerAddress']} ({host}): {why}. Every node must mount "
                        "the workdir at the same path (a shared filesystem such as NFS or "
                        "EFS; see docs/ray.md); nothing was run")
        finally:
            probe.unlink(missing_ok=True)

    # --- scheduling ---------------------------------------------------------------------
    def _dispatch(self, units: dict[str, Callable], name: str, items: list[int],
                  progress: Progress, phase: str | None, steps: list[Step]) -> None:
        ray = _import_ray()
        ship_user_code(steps)
        wanted = stage_resources(steps)
        request: dict[str, Any] = {"num_cpus": wanted.cpus, "num_gpus": wanted.gpus}
        if wanted.memory:
            request["memory"] = wanted.memory
        runtime_env = stage_runtime_env(steps)
        if runtime_env is not None:
            request["runtime_env"] = runtime_env
        limit = min(len(items), wanted.concurrency or self.workers)
        counter = None
        if progress.wants_rows:  # rows batch by batch, for the heartbeat or the bars
            counter = ray.remote(_RowCounter).options(num_cpus=0).remote()
            self._counter = (counter, progress)
        call = (ray.put(units), name, os.getcwd(), counter)  # what every unit is called with
        what = phase or " -> ".join(s.name for s in steps) or "a stage"
        try:
            if loads_in_setup(steps):
                self._run_in_actors(ray, call, items, progress, phase, what, request, limit)
            else:
                self._run_tasks(ray, call, items, progress, phase, what, request, limit)
        finally:
            self._take_rows(ray)
            self._counter = None
            if counter is not None:
                with contextlib.suppress(Exception):
                    ray.kill(counter)

    def _take_rows(self, ray: Any) -> None:
        """Pass the rows units reported since the last call on to the progress."""
        if self._counter is None:
            return
        counter, progress = self._counter
        try:
            counts = ray.get(counter.take.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - progress only: never fail a run over it
            return
        for step, rows in counts.items():
            progress.rows(step, rows)

    def _run_tasks(self, ray: Any, call: tuple, items: list[int], progress: Progress,
                   phase: str | None, what: str, request: dict, limit: int) -> None:
        """Units as Ray tasks (retried by Ray when their worker dies)."""
        task = ray.remote(_run_unit).options(max_retries=self.retries,
                                             retry_exceptions=False, **request)
        pending = list(items)
        running: dict[Any, int] = {}
        try:
            while pending or running:
                while pending and len(running) < limit:
                    item = pending.pop(0)
                    running[task.remote(*call, item)] = item
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                self._take_rows(ray)
                for ref in done:
                    item = running.pop(ref)
                    progress.unit_done(phase, self._result(ray, ref, what, item))
        finally:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _run_in_actors(self, ray: Any, call: tuple, items: list[int], progress: Progress,
                       phase: str | None, what: str, request: dict, limit: int) -> None:
        """Units on a pool of actors, each set up once. A unit whose actor died goes to a
        fresh actor, up to `retries` times per unit (the driver counts, not Ray: an actor's
        restart budget would be shared by every unit it runs)."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        actor = ray.remote(_UnitActor).options(max_restarts=0, max_task_retries=0, **request)
        pool = [actor.remote() for _ in range(min(limit, self._capacity(request)))]
        pending = list(items)
        running: dict[Any, tuple[Any, int]] = {}
        idle = list(pool)
        attempts: dict[int, int] = {}
        try:
            while pending or running:
                while pending and idle:
                    worker, item = idle.pop(), pending.pop(0)
                    running[worker.run.remote(*call, item)] = (worker, item)
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                self._take_rows(ray)
                for ref in done:
                    worker, item = running.pop(ref)
                    try:
                        progress.unit_done(phase, ray.get(ref))
                    except (ActorDiedError, ActorUnavailableError) as exc:
                        attempts[item] = attempts.get(item, 0) + 1
                        if attempts[item] > self.retries:
                            raise self._failure(exc, what, item) from None
                        pool.remove(worker)
                        worker = actor.remote()
                        pool.append(worker)
                        pending.insert(0, item)
                    except Exception as exc:
                        raise self._failure(exc, what, item) from None
                    idle.append(worker)
            ray.get([w.close.remote() for w in pool], timeout=60)
        finally:
            for worker in pool:
                with contextlib.suppress(Exception):
                    ray.kill(worker)

    def _capacity(self, request: dict) -> int:
        """How many units with `request` the cluster can run at once (at least one)."""
        total = 0
        for node in self._nodes:
            have = node["Resources"]
            fits = []
            for key, ray_name in (("num_cpus", "CPU"), ("num_gpus", "GPU"),
                                  ("memory", "memory")):
                amount = request.get(key) or 0
                if amount:
                    fits.append(int(have.get(ray_name, 0) // amount))
            total += min(fits) if fits else 1
        return max(1, total)

    def _result(self, ray: Any, ref: Any, what: str, item: int) -> Any:
        """A finished unit's result, or its failure raised as `_failure` says."""
        try:
            return ray.get(ref)
        except Exception as exc:
            raise self._failure(exc, what, item) from None

    def _failure(self, exc: Exception, what: str, item: int) -> Exception:
        """What to raise for a failed unit: the operation's own error, or a worker's death
        naming the unit."""
        from ray import exceptions as rex

        if isinstance(exc, rex.RayTaskError):
            cause = getattr(exc, "cause", None)
            return cause if isinstance(cause, DatamillError) else exc.as_instanceof_cause()
        if isinstance(exc, (rex.WorkerCrashedError, rex.ActorDiedError, rex.NodeDiedError,
                            rex.ObjectLostError, rex.ActorUnavailableError)):
            return DatamillError(
                f"a Ray worker died while running {what} (unit #{item}), {self.retries} "
                f"retries included ({type(exc).__name__}); committed work is kept: re-run to "
                "resume")
        return exc

