"""A real PostgreSQL server with pgvector for the tests, on loopback and a free port.

The binaries (PostgreSQL 16 with the vector extension) come from the `pgserver` wheel; Debian
bookworm packages no pgvector. PostgreSQL refuses to run as root, so as root the binaries are
copied where an unprivileged user (`postgres`, else `nobody`) can run them. One server serves
the whole test session; `kill()` and `start()` let a test take it away mid-write.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_SERVER: PgServer | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            raise RuntimeError("the PostgreSQL tests need the pgserver wheel (its PostgreSQL + "
                               "pgvector binaries): pip install -e '.[test]'")
        install = Path(spec.origin).parent / "pginstall"
        self.root = Path(tempfile.mkdtemp(prefix="datamill-pg-"))
        self.root.chmod(0o755)
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    pwd.getpwnam(name)
                    self.user = name
                    break
            package = self.root / "pkg"  # the binaries find their libraries by relative path
            shutil.copytree(install, package / "pgserver" / "pginstall", symlinks=True)
            shutil.copytree(install.parent.parent / "pgserver.libs", package / "pgserver.libs")
            install = package / "pgserver" / "pginstall"
        self.bin = install / "bin"
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        for folder in (self.data, self.sockets):
            folder.mkdir(mode=0o700)
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.port = _free_port()
        self.url = f"postgresql://datamill@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen | None = None
        self._run([self.bin / "initdb", "-D", self.data, "-U", "datamill", "--auth=trust",
                   "-E", "UTF8", "--no-sync"])
        self.start()

    def _run(self, cmd: list) -> None:
        out = subprocess.run([str(c) for c in cmd], user=self.user, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the server keeps it open
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.sockets), "-c", "fsync=off",
             "-c", "full_page_writes=off"],  # commits stay synchronous: a crash keeps them
            user=self.user, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{self.port} "
                                       f"(exit {self.proc.poll()}):\n{tail}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT): every backend goes at once, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def server() -> PgServer:
    """The session's server, started on first use and stopped at exit."""
    global _SERVER
    if _SERVER is None:
        _SERVER = PgServer()
        atexit.register(_SERVER.stop)
    elif _SERVER.proc is None or _SERVER.proc.poll() is not None:
        _SERVER.start()
    return _SERVER
