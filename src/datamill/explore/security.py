"""The explorer's guard: one ASGI middleware in front of every route.

It answers, before any route runs:
- 400 to a Host header that is not loopback (127.0.0.1, localhost, [::1]) or the host the
  server was explicitly bound to (DNS rebinding: a page of another site resolving its name to
  127.0.0.1 must not read the data);
- 405 to any method but GET and HEAD (the explorer is read-only);
- 413 to a request with a body, 414 to a URL longer than `MAX_URL`;
- 403 without the access token, when one is set (the server bound to another host): the
  token is accepted once as `?token=...`, which sets an HttpOnly cookie and redirects to the
  same URL without it.
Every response gets a Content-Security-Policy forbidding inline scripts and framing,
`X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and `Cache-Control:
no-store` for pages (thumbnails and static files may be cached privately).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_URL = 4096  # bytes of path + query
COOKIE = "datamill_explore_token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"),
           (b"cross-origin-opener-policy", b"same-origin"),
           (b"cross-origin-resource-policy", b"same-origin")]

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(value: str) -> str | None:
    """The host of a Host header, without port or IPv6 brackets, lower case; None when the
    header is malformed (a port that is not a number, text after the brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host if port.isdigit() else None
    return value


class Guard:
    """The middleware; `hosts`: the host names accepted besides loopback; `token`: required
    when not None."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = (), token: str | None = None,
                 any_ip: bool = False):
        self.app = app
        self.hosts = {*LOOPBACK, *(h.lower().strip("[]") for h in hosts)}
        self.token = token
        self.any_ip = any_ip  # bound to every interface: IP literals (no DNS to rebind) pass

    def host_allowed(self, header: str) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.hosts:
            return True
        if self.any_ip:
            import ipaddress

            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _plain(send, *refusal)
            return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
                location = "/" + path.lstrip("/") + (f"?{rest}" if rest else "")  # not //host
                await _redirect(send, location, self.token)
                return
            if not hmac.compare_digest(_cookie(headers.get("cookie", "")).encode(),
                                       self.token.encode()):
                await _plain(send, 403, "an access token is required: open the URL the "
                                        "explorer printed when it started")
                return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        if not self.host_allowed(headers.get("host", "")):
            return 400, "unknown Host header (only the address the explorer serves is accepted)"
        if scope["method"] not in ("GET", "HEAD"):
            return 405, "the explorer is read-only: only GET and HEAD"
        length = headers.get("content-length", "0").strip() or "0"
        if not length.isdigit() or int(length) > 0 or "transfer-encoding" in headers:
            return 413, "requests carry no body"
        if len(scope.get("raw_path") or scope["path"].encode()) \
                + len(scope.get("query_string", b"")) > MAX_URL:
            return 414, "URL too long"
        return None


def _cookie(header: str) -> str:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


async def _plain(send: Callable, status: int, text: str) -> None:
    body = (text + "\n").encode()
    extra = [(b"allow", b"GET, HEAD")] if status == 405 else []
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra, *HEADERS,
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Callable, location: str, token: str) -> None:
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"set-cookie", cookie.encode()), (b"content-length", b"0"),
                            *HEADERS, (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})
