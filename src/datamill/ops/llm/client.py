"""An async client for OpenAI-compatible servers: a cap on requests in flight, requests- and
tokens-per-minute budgets, retries with exponential backoff and jitter (honouring
Retry-After) on 429, 5xx, timeouts, broken connections and unreadable replies, and a timeout
per request.

The API key is read from the environment variable named by `api_key_env` when the client is
made, kept in the client's headers only, and never written anywhere: errors name the variable,
never the key."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ...errors import DatamillError

FATAL_STATUS = (401, 403, 404)  # the whole step is wrong (key, model, URL): stop the run


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    api_key_env: str | None = None
    timeout: float = 120.0  # one request, first byte sent to last byte read
    max_retries: int = 6
    concurrency: int = 8  # requests in flight
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute (prompt estimate + max_tokens)
    backoff: float = 1.0  # first wait without Retry-After; doubles each retry, with jitter
    max_backoff: float = 60.0  # longest wait; a longer Retry-After is cut to it


class ServerError(DatamillError):
    """The server refused the step itself (a wrong model, key or URL), or cannot be reached:
    no row can succeed, so the run stops whatever the step's on_error."""


class RequestFailed(Exception):
    """One request failed for good (after its retries): the row follows the step's on_error.
    `kind` is what went wrong: http_429, http_500, timeout, connection_error, bad_json,
    truncated, bad_content_type, http_400 (a request the server refuses, e.g. too long)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass
class Usage:
    """What one logical request cost: attempts made and their outcome."""

    requests: int = 0
    retries: int = 0
    failed: collections.Counter = field(default_factory=collections.Counter)  # kind -> attempts


def server_message(body: bytes) -> str:
    """The error text an OpenAI-compatible server put in its body (or the body, cut)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:500]
        return str(err)[:500]
    return str(data)[:500]


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds; an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        import email.utils

        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            return None


def api_key(env: str | None) -> str | None:
    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise ServerError(f"the environment variable {env!r} (api_key_env) is not set in this "
                          "process; set it where the run's workers run")
    return key


class MinuteBudget:
    """At most `limit` units (requests or tokens) in any 60-second window."""

    def __init__(self, limit: float | None, window: float = 60.0,
                 clock: Any = time.monotonic, sleep: Any = asyncio.sleep):
        self.limit, self.window = limit, window
        self.clock, self.sleep = clock, sleep
        self.spent: collections.deque[tuple[float, float]] = collections.deque()
        self.total = 0.0
        self.lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        if not self.limit:
            return
        amount = min(amount, self.limit)  # one request larger than the budget still goes
        async with self.lock:
            while True:
                now = self.clock()
                while self.spent and now - self.spent[0][0] >= self.window:
                    self.total -= self.spent.popleft()[1]
                if self.total + amount <= self.limit:
                    self.spent.append((now, amount))
                    self.total += amount
                    return
                await self.sleep(self.spent[0][0] + self.window - now)


class LLMClient:
    """Posts JSON to one server on the running event loop; `post` retries as settings say."""

    def __init__(self, settings: ClientSettings):
        import httpx

        self.httpx = httpx
        self.s = settings
        headers = {"Content-Type": "application/json"}
        key = api_key(settings.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.base = settings.base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency))
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.rpm = MinuteBudget(settings.rpm)
        self.tpm = MinuteBudget(settings.tpm)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def post(self, path: str, payload: dict, usage: Usage, tokens: float = 0) -> dict:
        """POST `payload` to base_url + path; the reply's JSON. Retries what may pass
        (429, 5xx, timeouts, broken or unreadable replies); raises RequestFailed when
        retries run out or the request itself is refused, ServerError for 401/403/404."""
        attempt = 0
        while True:
            await self.rpm.take(1)
            await self.tpm.take(tokens)
            async with self.slots:
                usage.requests += 1
                try:
                    return await self._once(path, payload)
                except _Retryable as exc:
                    failure = exc
            usage.failed[failure.kind] += 1
            if attempt >= self.s.max_retries:
                raise RequestFailed(failure.kind, f"{failure} (after {attempt + 1} attempts)")
            wait = failure.wait if failure.wait is not None else \
                self.s.backoff * 2 ** attempt * random.uniform(0.5, 1.5)
            attempt += 1
            usage.retries += 1
            await asyncio.sleep(min(wait, self.s.max_backoff))

    async def _once(self, path: str, payload: dict) -> dict:
        httpx = self.httpx
        url = self.base + path
        try:
            resp = await within(self.client.post(url, json=payload), self.s.timeout)
        except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException):
            raise _Retryable("timeout",
                             f"no reply from {url} within {self.s.timeout:g} s") from None
        except httpx.RemoteProtocolError as exc:
            raise _Retryable("truncated", f"the reply from {url} broke off: {exc}") from None
        except httpx.TransportError as exc:
            raise _Retryable("connection_error", f"cannot reach {url}: "
                             f"{type(exc).__name__}: {exc}") from None
        status, body = resp.status_code, resp.content
        if status == 429 or status >= 500:
            raise _Retryable(f"http_{status}", f"{url} answered {status}: "
                             f"{server_message(body)}",
                             retry_after(resp.headers.get("retry-after")))
        if status in FATAL_STATUS:
            raise ServerError(f"the server at {self.base} answered {status} for {path}: "
                              f"{server_message(body)}")
        if status >= 400:
            raise RequestFailed(f"http_{status}", f"{url} refused the request ({status}): "
                                f"{server_message(body)}")
        ctype = resp.headers.get("content-type", "")
        try:
            data = json.loads(body)
        except ValueError:
            if "json" not in ctype:
                raise _Retryable("bad_content_type", f"{url} answered {ctype or 'no type'}, "
                                 f"not JSON: {body[:120]!r}") from None
            raise _Retryable("bad_json",
                             f"{url} answered malformed JSON: {body[:120]!r}") from None
        if not isinstance(data, dict) or not data.get("choices"):
            raise _Retryable("bad_json", f"{url} answered JSON without choices: {body[:200]!r}")
        return data


async def within(coro: Any, seconds: float) -> Any:
    """Await `coro`, cancelled after `seconds` (asyncio.TimeoutError)."""
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no task per request
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, wait: float | None = None):
        self.kind, self.wait = kind, wait
        super().__init__(message)


def check_server(settings: ClientSettings, model: str, step: str) -> None:
    """Before the run: the server answers GET /models (with the key, when one is named).
    Unreachable, or refusing the key: a ServerError naming the step and the URL."""
    import httpx

    headers = {}
    key = api_key(settings.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = settings.base_url.rstrip("/") + "/models"
    try:
        resp = httpx.get(url, headers=headers, timeout=min(settings.timeout, 15.0))
    except httpx.TransportError as exc:
        raise ServerError(f"[step {step!r}] cannot reach the LLM server at "
                          f"{settings.base_url} (GET /models, checked before the run): "
                          f"{type(exc).__name__}: {exc or 'no answer'}") from None
    if resp.status_code in (401, 403):
        whose = f"the key from ${settings.api_key_env}" if settings.api_key_env else \
            "a request without a key (name its variable with api_key_env)"
        raise ServerError(f"[step {step!r}] the LLM server at {settings.base_url} refused "
                          f"{whose} ({resp.status_code}): {server_message(resp.content)}")
    if resp.status_code != 200:
        return  # a server without the listing: the first request will tell
    try:
        listed = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return
    if listed and model not in listed:
        shown = ", ".join(map(str, listed[:20])) + (", ..." if len(listed) > 20 else "")
        raise ServerError(f"[step {step!r}] the LLM server at {settings.base_url} does not "
                          f"serve the model {model!r} (it lists: {shown})")
