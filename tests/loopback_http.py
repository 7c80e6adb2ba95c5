"""The common part of the tests' HTTP/1.1 servers on loopback (tests/image_server.py,
tests/llm_server.py): asyncio streams served from a daemon thread, started and stopped by a
`with` block, requests read off keep-alive connections. A subclass answers each request in
`_request(method, target, headers, reader, writer)`, returning whether to keep the
connection open."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self


class LoopbackServer:
    """Serves `_request` on `host:port` (0: a free port, known once started)."""

    thread_name = "loopback-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: Any = None):
        self.host, self.port, self.tls = host, port, tls  # tls: a server SSLContext
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=self.thread_name)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the {self.thread_name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self.port,
                                            backlog=1024, reuse_address=True, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # connections still open (keep-alive, hang, drip)
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (ln.partition(":") for ln in lines[1:] if ln)}
                keep = await self._request(method, target, headers, reader, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, OSError, asyncio.CancelledError):  # closed, or stopping
            return
        finally:
            writer.close()

    async def _request(self, method: str, target: str, headers: dict,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        raise NotImplementedError
