"""A step's runtime in one worker: the event loop thread, the engine (cache + backend), and
the coroutine that answers one row (`ask` asks again when a reply does not parse)."""

from __future__ import annotations

import concurrent.futures
from collections import Counter
from collections.abc import Callable
from typing import Any

from .base import InvalidReply, Outcome
from .cache import ResponseCache
from .client import ServerError
from .engine import Engine, HTTPBackend, LoopThread

RETRY_NOTE = ("Your reply could not be used: {error}. Reply again with only what was asked, "
              "in the format asked for.")


class Runtime:
    def __init__(self, op: Any):
        self.op = op
        a = op.args
        if a.backend == "transformers":
            from .local import TransformersBackend

            backend: Any = TransformersBackend(a.model)
        else:
            backend = None
        cache_root = getattr(op, "cache_root", None)
        cache = ResponseCache(cache_root) if (a.cache and cache_root) else None
        self.thread = LoopThread()
        self.engine: Engine = self.thread.submit(self._make(backend, cache)).result()

    async def _make(self, backend: Any, cache: ResponseCache | None) -> Engine:
        if backend is None:  # its client belongs to this loop
            backend = HTTPBackend(self.op.settings())
        return Engine(backend, cache, self.op.identity_for_cache())

    def submit(self, rows: list[dict]) -> concurrent.futures.Future:
        """Answer `rows`; the future's result is one Outcome per row, in order."""
        return self.thread.submit(self._rows(rows))

    async def _rows(self, rows: list[dict]) -> list[Outcome]:
        import asyncio

        return list(await asyncio.gather(*(self._row(r) for r in rows)))

    async def _row(self, row: dict) -> Outcome:
        counts: Counter = Counter()
        try:
            values = await self.op.answer(Asker(self.op, self.engine, counts), row)
            return Outcome(row, values, None, counts)
        except ServerError as exc:
            return Outcome(row, None, exc, counts)
        except Exception as exc:  # noqa: BLE001 - the row follows on_error
            return Outcome(row, None, exc, counts)

    def close(self) -> None:
        self.thread.close(self.engine.aclose)


class Asker:
    """`await ask(messages, parse=None, sample=0, **params)`: the reply's text, or what
    `parse(text)` makes of it; an InvalidReply is asked again, up to parse_retries times."""

    def __init__(self, op: Any, engine: Engine, counts: Counter):
        self.op, self.engine, self.counts = op, engine, counts

    async def __call__(self, messages: list[dict], parse: Callable[[str], Any] | None = None,
                       sample: int = 0, **params: Any) -> Any:
        payload = {"model": self.op.args.model, "messages": messages,
                   **self.op.params(**params)}
        if sample and payload.get("seed") is not None:
            payload["seed"] += sample
        tries = self.op.args.parse_retries
        for attempt in range(tries + 1):
            reply = await self.engine.chat(payload, self.counts, sample)
            if parse is None:
                return reply.text
            try:
                return parse(reply.text)
            except InvalidReply as exc:
                self.counts["invalid_replies"] += 1
                if attempt == tries:
                    raise InvalidReply(f"{exc} (asked {attempt + 1} times; last reply: "
                                       f"{reply.text[:200]!r})") from None
                payload = {**payload, "messages": [
                    *payload["messages"], {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": RETRY_NOTE.format(error=exc)}]}
        raise AssertionError("unreachable")

    async def score(self, messages: list[dict], prefix: str, labels: list[str]) -> dict:
        """{"probabilities": {label: p} or None, "mass": float}: how likely each label is
        as the reply (a local model's, opened with `prefix`; None: the server gave no
        usable logprobs)."""
        payload = {"model": self.op.args.model, "messages": messages, "prefix": prefix,
                   "labels": list(labels)}
        return await self.engine.score(payload, self.counts)
