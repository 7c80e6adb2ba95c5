"""A real Ray cluster on loopback: a head and a second node, each a `ray start --block`
process in a session of its own, for the Ray tests and benchmarks.

    cluster = start_cluster()          # or the session-scoped pytest fixture `ray_cluster`
    ... Dataset.run(workdir, executor="ray", address=cluster.address) ...
    cluster.stop()

Stopping touches only this cluster's processes: every process of the two sessions (Ray's
workers set their own process group, but keep the session of the node that spawned them).
A bare `ray stop` would kill every Ray cluster on the machine (a benchmark's, another test
run's). Each node gets its own temp dir and free ports, so clusters can run side by side,
and shuts itself down (SIGTERM on its parent's death) if the process that started it dies
without stopping it.

Ray is imported only inside the helpers' subprocesses: importing this module is free, and the
cluster starts only when a test asks for the fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTED = "Ray runtime started"


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is `sid` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _die_with_parent() -> None:
    """In the `ray start` child: a session of its own, and SIGTERM (Ray's graceful shutdown
    of the node) if the process that started it dies without stopping it."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Node:
    """One `ray start --block` process (the leader of the node's session) and its log."""

    proc: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class LocalRayCluster:
    """A running cluster: `address` ("127.0.0.1:PORT") for `--address` / `ray.init`."""

    address: str
    temp_dir: Path
    nodes: list[Node] = field(default_factory=list)

    def add_node(self, *, head: bool, cpus: int, object_store_mb: int) -> Node:
        """Start one node: `ray start --block` in a session of its own."""
        index = len(self.nodes)
        temp = self.temp_dir / f"n{index}"  # short: Ray's socket paths must stay < 108 bytes
        temp.mkdir(parents=True, exist_ok=True)
        # this interpreter's Ray, whatever PATH says
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
               "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(cpus), "--object-store-memory", str(object_store_mb << 20),
               "--temp-dir", str(temp), "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port()),
               "--min-worker-port", "0", "--max-worker-port", "0"]
        if head:
            port = int(self.address.rsplit(":", 1)[1])
            cmd += ["--head", "--port", str(port), "--include-dashboard", "false",
                    "--ray-client-server-port", str(free_port())]
        else:
            cmd += ["--address", self.address]
        log = self.temp_dir / f"node-{index}.log"
        # explicit: with RAY_AUTH_MODE unset, a head enables token auth as soon as some
        # earlier `ray.init()` left ~/.ray/auth_token, and the other nodes do not send it
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_die_with_parent)
        node = Node(proc, log)
        self.nodes.append(node)
        return node

    def wait_until(self, ready: Callable[[], bool], node: Node, what: str,
                   timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {self.nodes.index(node)}: {what} "
                                   f"(exit code {node.proc.poll()}):\n{node.tail()}")
            time.sleep(0.1)

    def alive_nodes(self, timeout: float = 60.0) -> int:
        """How many nodes the GCS lists as alive (asked from a fresh process, so this one
        never becomes a Ray driver)."""
        code = ("import ray, sys\n"
                "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
                "print(sum(n['Alive'] for n in ray.nodes()))\n")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        out = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True,
                             text=True, timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"could not query {self.address}:\n{out.stderr[-3000:]}")
        return int(out.stdout.strip().splitlines()[-1])

    def stop(self, grace: float = 10.0) -> None:
        """Stop the nodes (the second one first), then kill what is left of their sessions."""
        for node in reversed(self.nodes):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)  # Ray drains and stops the node
                try:
                    node.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
        for node in self.nodes:
            for pid in session_pids(node.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.kill()
                node.proc.wait(5)
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 150,
                  timeout: float = 90.0) -> LocalRayCluster:
    """Start a head and `nodes - 1` more nodes on this machine; return once all are alive."""
    temp = Path(tempfile.mkdtemp(prefix="dmray-", dir="/tmp"))
    cluster = LocalRayCluster(f"127.0.0.1:{free_port()}", temp)
    try:
        for i in range(nodes):  # one after the other: a node needs a head that is up
            node = cluster.add_node(head=i == 0, cpus=cpus_per_node,
                                    object_store_mb=object_store_mb)
            cluster.wait_until(lambda n=node: STARTED in n.tail(100_000), node,
                               "did not start", timeout)
        deadline = time.monotonic() + timeout
        while (alive := cluster.alive_nodes()) < nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {alive} of {nodes} Ray nodes alive at "
                                   f"{cluster.address}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A 2-node Ray cluster (1 CPU each) on loopback, started by the first test that asks."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
