"""A real HTTP/1.1 server on loopback for the `download_images` tests and benchmark.

It serves real photos (the files inside the scikit-image wheel, or images handed to it) and
fault endpoints, and counts what it saw (hits per path, bytes sent, requests in flight per
host) so that tests assert counts, never times. asyncio streams in a daemon thread; run it as
a script (`python tests/image_server.py`) to serve from a separate process (the benchmark).

Endpoints (all GET):
    /img/NAME                 an image; Content-Type always "image/jpeg" (wrong for PNGs)
    /slow/NAME?delay=S        the image after S seconds (counts requests in flight per host)
    /status/CODE              that status, a short text body
    /flaky/CODE/N/KEY?after=S CODE (429, 503, ...) for the first N hits of KEY (Retry-After: S
                              when given), then the astronaut
    /redirect/N               N redirects, then an image; /loop/a <-> /loop/b redirect forever
    /robots/VALUE             an image with `X-Robots-Tag: VALUE` (URL-quoted)
    /truncated                Content-Length of a whole JPEG, half of it sent, then closed
    /html, /svg, /empty       HTML or an SVG with a script labelled image/jpeg; a 0-byte 200
    /big?size=B&chunked=1     B bytes (default 200 MB) starting like a JPEG, streamed in
                              64 KiB chunks from one buffer (never built in memory)
    /drip?interval=S&size=B   a JPEG start, then one byte every S seconds up to B bytes
                              (`during[target]`: the requests that came meanwhile)
    /hang                     reads the request, never answers
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from .loopback_http import LoopbackServer
except ImportError:  # run as a script
    from loopback_http import LoopbackServer

REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 403: "Forbidden",
           404: "Not Found", 410: "Gone", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
CHUNK = 64 * 1024


def sample_images(limit: int | None = None) -> dict[str, bytes]:
    """The photos inside the scikit-image wheel (PNG, JPEG, GIF, TIFF), by file name."""
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    names = sorted(f for f in os.listdir(folder)
                   if f.endswith((".png", ".jpg", ".gif", ".tif")))[:limit]
    return {n: open(os.path.join(folder, n), "rb").read() for n in names}


def jpeg_variants(count: int, side: int = 256, quality: int = 85) -> dict[str, bytes]:
    """`count` distinct JPEGs made from the scikit-image photos (crops at `side` pixels)."""
    from PIL import Image

    photos = [Image.open(io.BytesIO(b)).convert("RGB") for n, b in sample_images().items()
              if n.endswith((".png", ".jpg"))]
    photos = [p for p in photos if min(p.size) >= side]
    out = {}
    for i in range(count):
        photo = photos[i % len(photos)]
        step = i // len(photos)
        x = (step * 37) % (photo.width - side + 1)
        y = (step * 53) % (photo.height - side + 1)
        buf = io.BytesIO()
        photo.crop((x, y, x + side, y + side)).save(buf, "JPEG", quality=quality)
        out[f"v{i:05d}.jpg"] = buf.getvalue()
    return out


class ImageServer(LoopbackServer):
    """`with ImageServer() as server: server.url("/img/chelsea.png")`."""

    def __init__(self, images: dict[str, bytes] | None = None, host: str = "127.0.0.1",
                 port: int = 0, tls: Any = None):
        self.images = images if images is not None else sample_images()
        self.first = self.images[next(iter(self.images))]
        self.jpeg = next((b for b in self.images.values() if b[:3] == b"\xff\xd8\xff"),
                         self.first)
        super().__init__(host, port, tls)
        self.hits: Counter[str] = Counter()  # request path (no query) -> requests
        self.sent: Counter[str] = Counter()  # path -> body bytes sent (big, drip)
        self.in_flight: Counter[str] = Counter()  # Host header -> /slow requests now
        self.max_in_flight: Counter[str] = Counter()  # Host header -> most at once
        self.max_total_in_flight = 0
        self.requests = 0  # all requests so far
        self.during: dict[str, int] = {}  # drip target -> requests that came while it dripped

    thread_name = "image-server"

    async def _request(self, method: str, target: str, headers: dict,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        return await self._route(target, headers, reader, writer)

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def _respond(self, writer, status: int, body: bytes = b"", headers=(),
                       length: int | None = None) -> bool:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                 f"Content-Length: {len(body) if length is None else length}", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return True

    async def _route(self, target: str, headers: dict, reader, writer) -> bool:
        parts = urlsplit(target)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.hits[path] += 1
        self.requests += 1
        seg = path.strip("/").split("/")
        kind = seg[0]
        ctype = ("Content-Type: image/jpeg",)
        if kind == "img" and len(seg) == 2 and seg[1] in self.images:
            return await self._respond(writer, 200, self.images[seg[1]], ctype)
        if kind == "slow" and len(seg) == 2 and seg[1] in self.images:
            return await self._slow(writer, headers.get("host", ""), seg[1],
                                    float(query.get("delay", 0.1)))
        if kind == "status" and len(seg) == 2:
            return await self._respond(writer, int(seg[1]), b"status " + seg[1].encode())
        if kind == "flaky" and len(seg) == 4:
            code, n = int(seg[1]), int(seg[2])
            if self.hits[path] <= n:  # the path holds KEY: each key fails N times
                extra = (f"Retry-After: {query['after']}",) if "after" in query else ()
                return await self._respond(writer, code, b"later", extra)
            return await self._respond(writer, 200, self.jpeg, ctype)
        if kind == "redirect" and len(seg) == 2:
            n = int(seg[1])
            if n <= 0:
                return await self._respond(writer, 200, self.jpeg, ctype)
            return await self._respond(writer, 302, b"", (f"Location: /redirect/{n - 1}",))
        if kind == "loop" and len(seg) == 2:
            other = "b" if seg[1] == "a" else "a"
            return await self._respond(writer, 302, b"", (f"Location: /loop/{other}",))
        if kind == "robots" and len(seg) == 2:
            return await self._respond(writer, 200, self.jpeg,
                                       (*ctype, f"X-Robots-Tag: {unquote(seg[1])}"))
        if kind == "truncated":
            await self._respond(writer, 200, self.jpeg[: len(self.jpeg) // 2], ctype,
                                length=len(self.jpeg))
            return False
        if kind == "html":
            return await self._respond(writer, 200, b"<!DOCTYPE html><html><body>Not found"
                                       b"</body></html>", ctype)
        if kind == "svg":
            return await self._respond(writer, 200, b'<svg xmlns="http://www.w3.org/2000/svg">'
                                       b"<script>alert(1)</script></svg>", ctype)
        if kind == "empty":
            return await self._respond(writer, 200, b"", ctype)
        if kind == "big":
            await self._big(writer, path, int(query.get("size", 200 * 2**20)),
                            query.get("chunked") == "1")
            return False
        if kind == "drip":
            start = self.requests
            try:
                await self._drip(writer, path, float(query.get("interval", 0.05)),
                                 int(query.get("size", 10**6)))
            finally:
                self.during[target] = self.requests - start
            return False
        if kind == "hang":
            await reader.read()  # until the client gives up and closes
            return False
        return await self._respond(writer, 404, b"no such endpoint")

    async def _slow(self, writer, host: str, name: str, delay: float) -> bool:
        self.in_flight[host] += 1
        self.max_in_flight[host] = max(self.max_in_flight[host], self.in_flight[host])
        self.max_total_in_flight = max(self.max_total_in_flight, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight[host] -= 1
        return await self._respond(writer, 200, self.images[name], ("Content-Type: image/jpeg",))

    async def _big(self, writer, path: str, size: int, chunked: bool) -> None:
        block = bytearray(CHUNK)
        block[:len(self.jpeg[:1024])] = self.jpeg[:1024]  # starts like a JPEG
        head = ["HTTP/1.1 200 OK", "Content-Type: image/jpeg"]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        left = size
        while left > 0:
            piece = memoryview(block)[:min(CHUNK, left)]
            if chunked:
                writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                writer.write(piece)
            await writer.drain()  # raises once the client has closed the connection
            self.sent[path] += len(piece)
            left -= len(piece)
            block[:1024] = bytes(1024)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def _drip(self, writer, path: str, interval: float, size: int) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {size}\r\n\r\n"
        writer.write(head.encode() + self.jpeg[:16])
        await writer.drain()
        self.sent[path] += 16
        for _ in range(size - 16):
            await asyncio.sleep(interval)
            writer.write(b"\x00")
            await writer.drain()
            self.sent[path] += 1


def self_signed_tls(folder: str) -> Any:
    """A server SSLContext with a fresh self-signed certificate for 127.0.0.1 (openssl)."""
    import ssl
    import subprocess

    key, cert = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listen queue is full: connecting hangs (a connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # more than the queue holds; never accepted
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


def closed_port() -> int:
    """A loopback port that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":  # a separate process: prints the port, serves until stdin closes
    variants = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = ImageServer({**sample_images(), **jpeg_variants(variants)} if variants else None)
    srv.start()
    print(srv.port, flush=True)
    sys.stdin.read()
    srv.stop()
