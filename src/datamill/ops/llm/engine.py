"""Where a step's requests run: an event loop in a daemon thread of each worker, shared by
the batches in flight, with the response cache in front of the server (or the local model).

`Engine.chat` answers one chat request: from the cache when it holds the key, else from the
backend, whose reply is then saved. Each row's costs are counted in a Counter of its own
(requests, cache_hits, retries, failed_<kind>, prompt_tokens, completion_tokens)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .cache import ResponseCache, request_key
from .client import ClientSettings, LLMClient, Usage

TOP_LOGPROBS = 20  # the most OpenAI's API gives


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None
    cached: bool


class LoopThread:
    """An asyncio loop running in a daemon thread; `submit(coro)` returns a Future."""

    def __init__(self, name: str = "datamill-llm"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self.thread.start()

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, final: Callable[[], Coroutine] | None = None) -> None:
        try:
            if final is not None:
                self.submit(final()).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()


class HTTPBackend:
    """Chat completions from an OpenAI-compatible server."""

    def __init__(self, settings: ClientSettings):
        self.client = LLMClient(settings)

    async def chat(self, payload: dict, usage: Usage, tokens: float) -> dict:
        return await self.client.post("/chat/completions", payload, usage, tokens)

    async def score(self, payload: dict, usage: Usage) -> dict:
        """The labels' probabilities from the server's top_logprobs of the reply's first
        token (a label's several spellings, " 4" and "4", add up); "probabilities" is None
        when the server sends no logprobs or puts none of its top tokens on a label."""
        body = {"model": payload["model"], "messages": payload["messages"], "max_tokens": 1,
                "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        tokens = sum(len(str(m.get("content", ""))) for m in payload["messages"]) / 4 + 1
        data = await self.client.post("/chat/completions", body, usage, tokens)
        choice = (data.get("choices") or [{}])[0]
        content = (choice.get("logprobs") or {}).get("content") or []
        tops = (content[0].get("top_logprobs") or []) if content else []
        found = {label: 0.0 for label in payload["labels"]}
        for top in tops:
            token = str(top.get("token", "")).strip()
            if token in found and top.get("logprob") is not None:
                found[token] += math.exp(float(top["logprob"]))
        mass = sum(found.values())
        probs = {k: v / mass for k, v in found.items()} if mass > 0 else None
        return {"probabilities": probs, "mass": mass,
                "usage": data.get("usage") or {"prompt_tokens": 0}}

    async def aclose(self) -> None:
        await self.client.aclose()


class Engine:
    """Cache + backend for one step in one worker; lives on `loop`'s thread."""

    def __init__(self, backend: Any, cache: ResponseCache | None, identity: dict):
        self.backend = backend
        self.cache = cache
        self.identity = identity  # the operation and version, the backend, the model

    async def chat(self, payload: dict, counts: Counter, sample: int = 0) -> Reply:
        """The reply to `payload` (model, messages, generation parameters). `sample`
        tells apart the samples of one prompt (their requests are otherwise the same)."""
        key = request_key({**self.identity, "request": payload, "sample": sample})
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                counts["cache_hits"] += 1
                return Reply(hit["text"], hit.get("finish_reason"), True)
        usage = Usage()
        tokens = sum(len(str(m.get("content", ""))) for m in payload["messages"]) / 4 \
            + (payload.get("max_tokens") or 0)
        try:
            data = await self.backend.chat(payload, usage, tokens)
        finally:
            counts["requests"] += usage.requests
            counts["retries"] += usage.retries
            for kind, n in usage.failed.items():
                counts[f"failed_{kind}"] += n
        used = data.get("usage") or {}
        counts["prompt_tokens"] += int(used.get("prompt_tokens") or 0)
        counts["completion_tokens"] += int(used.get("completion_tokens") or 0)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        if text is None:
            text = choice.get("text") or ""
        reply = Reply(str(text), choice.get("finish_reason"), False)
        if self.cache is not None:
            self.cache.put(key, {"text": reply.text, "finish_reason": reply.finish_reason,
                                 "usage": used})
        return reply

    async def score(self, payload: dict, counts: Counter) -> dict:
        """The probabilities of `payload["labels"]` as the reply to `payload["messages"]`
        (a local model's next tokens after `payload["prefix"]`; a server's top_logprobs):
        {"probabilities": {label: p} or None, "mass": float}, cached like a chat reply."""
        key = request_key({**self.identity, "score": payload})
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and "probabilities" in hit:
                counts["cache_hits"] += 1
                return hit
        usage = Usage()
        try:
            data = await self.backend.score(payload, usage)
        finally:
            counts["requests"] += usage.requests
            counts["retries"] += usage.retries
            for kind, n in usage.failed.items():
                counts[f"failed_{kind}"] += n
        counts["prompt_tokens"] += int(data["usage"].get("prompt_tokens") or 0)
        if self.cache is not None:
            self.cache.put(key, data)
        return data

    async def aclose(self) -> None:
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            await close()
