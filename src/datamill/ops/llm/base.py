"""What the LLM operations share: the arguments, the checks made when the pipeline is built
and before the run, and the path of a batch (submit every row's requests to the worker's
event loop, collect the rows' values in order).

An operation subclasses `LLMMap` or `LLMFilter` and writes `async def answer(self, ask, row)`:
`row` holds the consumed columns' values, `ask(messages, sample=0, **params)` returns the
reply's text (cached, retried, counted); it returns the produced columns' values for the row,
and `"_drop": reason` in a filter. `InvalidReply` from `answer` asks again, telling the model
what was wrong, up to `parse_retries` times; then the row follows the step's on_error."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...errors import ArgumentError, OperationError
from ...operation import Arguments, FilterOperation, MapOperation, RunContext
from ...schema import normalize_columns
from .cache import FOLDER, request_key
from .client import ClientSettings, ServerError, check_server
from .templates import Template, template

GENERATION = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty",
              "frequency_penalty")
PRICE_KEYS = ("prompt", "completion")


class LLMArgs(Arguments):
    model: str = Field(description="The model's name on the server; with backend="
                                   "'transformers', a local GGUF file or model folder.")
    prompt: str = Field(description="The user message: a Jinja2 template over the columns, "
                                    "e.g. 'Answer: {{ question }}'.")
    base_url: str | None = Field(None, description="The OpenAI-compatible server, up to /v1 "
                                                   "(e.g. http://127.0.0.1:8000/v1).")
    api_key_env: str | None = Field(None, description="Name of the environment variable that "
                                                      "holds the API key (never the key).")
    system: str | None = Field(None, description="System message (a template too).")
    backend: Literal["openai", "transformers"] = Field(
        "openai", description="'openai': a server at base_url; 'transformers': a local causal "
                              "LM loaded once per worker (small models, tests).")
    concurrency: int = Field(8, gt=0, description="Requests in flight for the step, shared by "
                                                  "its workers.")
    max_retries: int = Field(6, ge=0, description="Further attempts after a 429, 5xx, timeout, "
                                                  "broken connection or unreadable reply.")
    timeout: float = Field(120.0, gt=0, description="Seconds one request may take.")
    rpm: float | None = Field(None, gt=0, description="Requests per minute for the step.")
    tpm: float | None = Field(None, gt=0, description="Tokens per minute for the step (prompt "
                                                      "estimated at 4 characters a token, plus "
                                                      "max_tokens).")
    temperature: float | None = Field(None, ge=0, description="OpenAI generation parameter.")
    top_p: float | None = Field(None, gt=0, le=1, description="OpenAI generation parameter.")
    max_tokens: int | None = Field(None, gt=0, description="Longest reply, in tokens.")
    seed: int | None = Field(None, description="Sampling seed (sample i of n uses seed + i).")
    stop: list[str] | None = Field(None, description="Stop sequences.")
    presence_penalty: float | None = Field(None, description="OpenAI generation parameter.")
    frequency_penalty: float | None = Field(None, description="OpenAI generation parameter.")
    extra_params: dict[str, Any] = Field(default_factory=dict,
                                         description="More body fields, sent as given "
                                                     "(top_k, a vendor's options).")
    parse_retries: int = Field(2, ge=0, description="Times a reply that does not parse is "
                                                    "asked again (the model is told why).")
    prices: dict[str, float] | None = Field(
        None, description="USD per million tokens, {'prompt': p, 'completion': c}: the step "
                          "counts `cost_microdollars`.")
    cache: bool = Field(True, description="Keep replies in WORKDIR/llm-cache and reuse them.")
    batch_rows: int = Field(32, gt=0, description="Rows per batch.")

    @model_validator(mode="after")
    def _connection(self) -> LLMArgs:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url is required (the server, e.g. http://host:8000/v1), "
                             "unless backend='transformers'")
        if self.backend == "transformers" and (self.base_url or self.api_key_env):
            raise ValueError("backend='transformers' runs a local model: give no base_url "
                             "or api_key_env")
        if self.prices is not None and set(self.prices) - set(PRICE_KEYS):
            raise ValueError(f"prices takes the keys {PRICE_KEYS}, got {sorted(self.prices)}")
        return self


class ScoringArgs(LLMArgs):
    """Arguments of the operations that choose among fixed answers (judge, classify)."""

    scoring: Literal["auto", "logprobs", "json"] = Field(
        "auto", description="'logprobs': read the answers' probabilities from the model's "
                            "next-token distribution (a server: its top_logprobs, else the "
                            "reply is parsed); 'json': ask for a reply and parse it; 'auto': "
                            "logprobs with backend='transformers', json with a server.")

    def check_labels(self, labels: list[str]) -> None:
        """Against a server only the reply's first token is scored: no label may begin
        another (as "1" begins "10")."""
        if self.scoring != "logprobs" or self.backend == "transformers":
            return
        for a in labels:
            for b in labels:
                if a != b and b.startswith(a):
                    raise ValueError(f"scoring='logprobs' against a server reads the reply's "
                                     f"first token only: the answer {a!r} begins {b!r} (use "
                                     f"scoring='json', or answers that do not begin others)")

    @property
    def by_logprobs(self) -> bool:
        return self.scoring == "logprobs" or (self.scoring == "auto"
                                              and self.backend == "transformers")


class InvalidReply(Exception):
    """The reply does not have the shape asked for; the message tells the model why."""


class RowsFailed(Exception):
    """Some rows of a batch failed; the engine retries the batch row by row (the rows'
    outcomes are kept, so nothing is asked twice) and each failing row follows on_error."""


@dataclass
class Outcome:
    """One row's result: its values or its error, and what it cost."""

    row: dict
    values: dict | None = None
    error: BaseException | None = None
    counts: Counter = field(default_factory=Counter)


class LLMRows:
    """The shared machinery (mixed into a MapOperation or a FilterOperation)."""

    Args: ClassVar[type[LLMArgs]] = LLMArgs
    templates: ClassVar[tuple[str, ...]] = ("prompt", "system")  # arguments that are templates

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        a = self.args
        self.batch_size = a.batch_rows
        self._templates: dict[str, Template | None] = {
            name: template(getattr(a, name), name, self.name) for name in self.templates}
        if a.api_key_env and not os.environ.get(a.api_key_env):
            raise ArgumentError(f"api_key_env names the environment variable "
                                f"{a.api_key_env!r}, which is not set", operation=self.name)
        if a.backend == "transformers" and not Path(a.model).exists():
            raise ArgumentError(f"backend='transformers' needs a local GGUF file or model "
                                f"folder; {a.model!r} does not exist", operation=self.name)
        self.step_name = self.name
        self.share = 1

    # --- the contract -------------------------------------------------------------------
    def template_columns(self) -> list[str]:
        return sorted({c for t in self._templates.values() if t for c in t.columns})

    def resolve_consumes(self, schema: dict) -> dict:
        return normalize_columns({c: "any" for c in self.template_columns()})

    def key_inputs(self) -> dict[str, str]:
        if self.args.backend != "transformers":
            return {}
        from ...cache import digest

        return {"model files": digest(model_files(self.args.model))}

    def render(self, name: str, row: dict) -> str | None:
        t = self._templates.get(name)
        return None if t is None else t.render(row)

    def messages(self, row: dict, system: str | None = None,
                 user: str | None = None) -> list[dict]:
        """The system message (the rendered template, then the operation's instructions
        `system`) and the user's: `user`, or the rendered prompt."""
        parts = [p for p in (self.render("system", row), system) if p]
        out = [{"role": "system", "content": "\n\n".join(parts)}] if parts else []
        content = user if user is not None else self.render("prompt", row)
        return [*out, {"role": "user", "content": content}]

    def params(self, **override: Any) -> dict:
        """Generation parameters under their OpenAI names (those given), then overrides."""
        a = self.args
        got = {k: getattr(a, k) for k in GENERATION if getattr(a, k) is not None}
        return {**got, **a.extra_params, **override}

    async def answer(self, ask: Any, row: dict) -> dict:
        raise NotImplementedError

    # --- before the run and in the workers ------------------------------------------------
    def before_run(self, context: RunContext) -> None:
        self.step_name = context.step
        self.share = max(1, context.workers)
        self.cache_root = str(context.workdir / FOLDER)
        if self.args.backend == "openai":
            check_server(self.settings(), self.args.model, context.step)

    def settings(self) -> ClientSettings:
        a = self.args
        return ClientSettings(
            base_url=a.base_url or "", api_key_env=a.api_key_env, timeout=a.timeout,
            max_retries=a.max_retries, concurrency=max(1, math.ceil(a.concurrency / self.share)),
            rpm=a.rpm / self.share if a.rpm else None,
            tpm=a.tpm / self.share if a.tpm else None)

    def _runtime(self) -> Any:
        from .runtime import Runtime

        pid, runtime = self.__dict__.get("_runtime_of", (None, None))
        if runtime is None or pid != os.getpid():  # none yet, or inherited through a fork
            runtime = Runtime(self)
            self._runtime_of = (os.getpid(), runtime)
        return runtime

    def setup(self) -> None:
        self._runtime()  # the event loop, the client or the local model: once per worker

    def teardown(self) -> None:
        pid, runtime = self.__dict__.pop("_runtime_of", (None, None))
        if runtime is not None and pid == os.getpid():
            runtime.close()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_runtime_of", "_memo")}

    def identity_for_cache(self) -> dict:
        a = self.args
        model = a.model if a.backend == "openai" else {"path": a.model,
                                                       "files": model_files(a.model)}
        return {"operation": type(self).name, "version": type(self).version,
                "backend": a.backend, "model": model}

    # --- batches --------------------------------------------------------------------------
    @property
    def batches_in_flight(self) -> int:
        """Enough batches in flight to keep `concurrency` requests busy, and one more."""
        per_worker = math.ceil(self.args.concurrency / self.share)
        return max(2, math.ceil(per_worker / self.args.batch_rows) + 1)

    def submit(self, batch: Any) -> Any:
        return self._runtime().submit(batch.to_pylist())

    def cancel(self, handle: Any) -> None:
        handle.cancel()

    def collect(self, handle: Any) -> Any:
        self._memo = {}
        return self._finish(handle.result())

    def process(self, batch: Any) -> Any:
        rows = batch.to_pylist()
        memo = self.__dict__.get("_memo") or {}
        if len(rows) == 1 and row_key(rows[0]) in memo:  # a failed batch, row by row
            return self._finish([memo[row_key(rows[0])]])
        return self._finish(self._runtime().submit(rows).result())

    def _finish(self, outcomes: list[Outcome]) -> Any:
        for o in outcomes:
            if isinstance(o.error, ServerError):
                raise OperationError(str(o.error), step=self.step_name) from None
        if any(o.error is not None for o in outcomes):
            if len(outcomes) == 1:
                self._add(outcomes[0].counts)
                raise outcomes[0].error
            self._memo = {row_key(o.row): o for o in outcomes}
            bad = sum(o.error is not None for o in outcomes)
            raise RowsFailed(f"{bad} of {len(outcomes)} rows failed")
        for o in outcomes:
            self._add(o.counts)
        return self.output([o.values for o in outcomes])

    def _add(self, counts: Counter) -> None:
        prices = self.args.prices
        if prices:
            cost = counts.get("prompt_tokens", 0) * prices.get("prompt", 0) \
                + counts.get("completion_tokens", 0) * prices.get("completion", 0)
            counts = Counter(counts)
            counts["cost_microdollars"] += round(cost)
        for name, n in counts.items():
            if n:
                self.count(name, n)

    def columns(self, values: list[dict]) -> dict:
        return {c: [v[c] for v in values] for c in self.resolve_produces({})}


def row_key(row: dict) -> str:
    return request_key(row)


def model_files(path: str) -> list:
    """[name, size, mtime] of a local model's files (its identity in cache keys)."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    out = []
    for f in files:
        st = f.stat()
        out.append([f.name if p.is_file() else str(f.relative_to(p)), st.st_size,
                    int(st.st_mtime)])
    return out


class LLMMap(LLMRows, MapOperation):
    """An LLM operation that adds columns to every row."""

    def output(self, values: list[dict]) -> Any:
        return self.columns(values)


class LLMFilter(LLMRows, FilterOperation):
    """An LLM operation that keeps or drops rows (`_drop`: the reason) and adds columns."""

    def output(self, values: list[dict]) -> Any:
        import numpy as np

        keep = np.array([not v.get("_drop") for v in values], dtype=bool)
        return keep, [v.get("_drop") for v in values], self.columns(values)


