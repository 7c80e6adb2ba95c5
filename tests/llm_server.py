"""A fault-injecting OpenAI-compatible server on loopback, for the LLM operations' tests and
benchmark.

It answers POST /v1/chat/completions and GET /v1/models like a server would, and on demand
misbehaves: 429 with Retry-After, 500, slow replies, malformed JSON, a truncated body, a
wrong content type. It counts what it saw (requests, the bodies, the most requests in flight)
so that tests assert counts, never times. asyncio streams in a daemon thread; run it as a
script (`python tests/llm_server.py DELAY`) to serve from a separate process.

Replies: `reply(body) -> str` decides the assistant's text (default: "echo: " + the last
user message). Faults, by request:
    plan        a list of faults for the next requests, one each, in order
    storm       (n, fault): the first n requests get `fault`
    per prompt  a user message containing "[fault:NAME]" gets NAME on its first attempt
Fault names: "429" (Retry-After: retry_after), "500", "503", "malformed" (200, invalid JSON),
"truncated" (Content-Length larger than the body, then closed), "html" (200, text/html
error page), "slow" (waits `slow` seconds first), "nochoices" (200, JSON without choices).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

try:
    from .loopback_http import LoopbackServer
except ImportError:  # run as a script
    from loopback_http import LoopbackServer

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def echo(body: dict) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return "echo: " + (users[-1] if users else "")


class LLMServer(LoopbackServer):
    """`with LLMServer() as server: server.base_url` (ends in /v1)."""

    def __init__(self, reply: Callable[[dict], str] = echo, models: tuple[str, ...] = ("tiny",),
                 api_key: str | None = None, delay: float = 0.0, retry_after: float = 0.01):
        self.reply = reply
        # top_logprobs(body) -> [(token, logprob), ...], sent when a request asks for
        # logprobs (None: a server that never sends them)
        self.top_logprobs: Callable[[dict], list[tuple[str, float]]] | None = None
        self.models = list(models)
        self.api_key = api_key
        self.delay = delay  # seconds before every reply
        self.retry_after = retry_after
        self.slow = 2.0  # seconds of a "slow" fault
        self.plan: list[str] = []
        self.storm: tuple[int, str] | None = None
        self.requests = 0  # chat requests
        self.bodies: list[dict] = []  # every chat request's body
        self.auth_seen: list[str] = []  # Authorization headers (to check the key travels)
        self.faults: Counter[str] = Counter()  # fault -> times served
        self.per_prompt: Counter[str] = Counter()  # "[fault:...]" prompt -> times seen
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    thread_name = "llm-server"

    async def _request(self, method: str, target: str, headers: dict,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        length = int(headers.get("content-length", 0))
        raw = await reader.readexactly(length) if length else b""
        return await self._route(method, target, headers, raw, writer)

    async def _send(self, writer: Any, status: int, body: bytes,
                    ctype: str = "application/json", extra: tuple[str, ...] = (),
                    length: int | None = None) -> bool:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                f"Content-Type: {ctype}",
                f"Content-Length: {len(body) if length is None else length}", *extra]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return length is None

    async def _json(self, writer: Any, status: int, obj: Any, extra: tuple[str, ...] = ()):
        return await self._send(writer, status, json.dumps(obj).encode(), extra=extra)

    async def _route(self, method: str, target: str, headers: dict, raw: bytes,
                     writer: Any) -> bool:
        auth = headers.get("authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return await self._json(writer, 401, {"error": {"message": "Incorrect API key "
                                                            "provided"}})
        if method == "GET" and target.rstrip("/") == "/v1/models":
            return await self._json(writer, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "test"} for m in self.models]})
        if method != "POST" or target.rstrip("/") != "/v1/chat/completions":
            return await self._json(writer, 404, {"error": {"message": "no such endpoint"}})
        self.requests += 1
        self.auth_seen.append(auth)
        body = json.loads(raw)
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._chat(body, writer)
        finally:
            self.in_flight -= 1

    def _fault(self, body: dict) -> str | None:
        if self.plan:
            return self.plan.pop(0)
        if self.storm and self.storm[0] > 0:
            self.storm = (self.storm[0] - 1, self.storm[1])
            return self.storm[1]
        text = json.dumps(body.get("messages", []))
        if "[fault:" in text:
            name = text.split("[fault:", 1)[1].split("]", 1)[0]
            self.per_prompt[text] += 1
            if self.per_prompt[text] == 1:
                return name
        return None

    async def _chat(self, body: dict, writer: Any) -> bool:
        if body.get("model") not in self.models:
            return await self._json(writer, 404, {"error": {
                "message": f"The model `{body.get('model')}` does not exist",
                "type": "invalid_request_error", "code": "model_not_found"}})
        fault = self._fault(body)
        if fault:
            self.faults[fault] += 1
        if fault in ("429",):
            return await self._json(writer, 429, {"error": {"message": "Rate limit reached"}},
                                    (f"Retry-After: {self.retry_after}",))
        if fault in ("500", "503"):
            return await self._json(writer, int(fault), {"error": {"message": "overloaded"}})
        if fault == "malformed":
            return await self._send(writer, 200, b'{"choices": [{"message": {"content": "')
        if fault == "truncated":
            payload = json.dumps(self._completion(body)).encode()
            await self._send(writer, 200, payload[: len(payload) // 2], length=len(payload))
            return False
        if fault == "html":
            return await self._send(writer, 200, b"<html><body>502 Bad Gateway</body></html>",
                                    ctype="text/html")
        if fault == "nochoices":
            return await self._json(writer, 200, {"object": "chat.completion", "choices": []})
        if fault == "slow":
            await asyncio.sleep(self.slow)
        return await self._json(writer, 200, self._completion(body))

    def _completion(self, body: dict) -> dict:
        text = self.reply(body)
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}
        if body.get("logprobs") and self.top_logprobs is not None:
            top = self.top_logprobs(body)[:int(body.get("top_logprobs") or 1)]
            choice["logprobs"] = {"content": [{
                "token": top[0][0], "logprob": top[0][1],
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion",
                "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                          "total_tokens": prompt + len(text.split())}}


if __name__ == "__main__":  # a separate process: prints the port, serves until stdin closes
    srv = LLMServer(delay=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
    srv.start()
    print(srv.port, flush=True)
    sys.stdin.read()
    print(srv.requests, flush=True)
    srv.stop()
