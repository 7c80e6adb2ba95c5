"""`download_images`: a URL column becomes image bytes; every failed URL is a drop reason."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from ...image_type import as_image
from ...operation import Arguments, FilterOperation, Resources
from ...schema import normalize_columns
from .fetch import BackgroundFetcher, FetchSettings

OPT_OUT = ["noai", "noimageai", "noindex", "noimageindex"]


class DownloadImagesArgs(Arguments):
    column: str = Field("url", description="Column of http(s) URLs.")
    output: str = Field("image", description="Column for the downloaded image bytes.")
    final_url_column: str | None = Field(
        "final_url", description="Column for the URL the image came from after redirects "
                                 "(null: none).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(10.0, gt=0, description="Longest wait in seconds for the next "
                                                        "bytes of a response.")
    timeout: float = Field(20.0, gt=0, description="Seconds one attempt may take in all, "
                                                   "redirects and body included (a server "
                                                   "that drips bytes is cut off here).")
    max_bytes: int = Field(16 * 2**20, gt=0, description="Largest body accepted; longer ones "
                                                         "are aborted mid-stream (too_large).")
    max_redirects: int = Field(5, ge=0, description="Redirects followed before "
                                                    "too_many_redirects.")
    retries: int = Field(2, ge=0, description="Further attempts after a 429 or 5xx answer.")
    backoff: float = Field(1.0, ge=0, description="Seconds before the first retry when the "
                                                  "server gives no Retry-After; doubles each "
                                                  "retry, with jitter.")
    max_retry_wait: float = Field(30.0, ge=0, description="Longest wait before a retry; a "
                                                          "Retry-After beyond it gives up at "
                                                          "once.")
    concurrency: int = Field(64, gt=0, description="Requests in flight per worker.")
    per_host: int = Field(8, gt=0, description="Requests in flight to one host, per worker.")
    user_agent: str = Field("datamill", description="User-Agent header; its first token is "
                                                    "the one X-Robots-Tag may address.")
    opt_out_directives: list[str] = Field(
        default_factory=lambda: list(OPT_OUT),
        description="X-Robots-Tag directives that opt an image out (as img2dataset); [] "
                    "ignores the header.")
    verify_tls: bool = Field(True, description="Check TLS certificates.")
    batch_rows: int = Field(256, gt=0, description="URLs per batch.")
    batches_in_flight: int = Field(8, ge=1, description="Batches a worker downloads at once "
                                                        "(the next ones go on while a batch "
                                                        "waits for its slowest URL); memory "
                                                        "holds up to batch_rows x this many "
                                                        "bodies.")
    max_units: int | None = Field(None, gt=0, description="Units downloading at once across "
                                                          "a Ray cluster (caps the load on "
                                                          "hosts); default: --workers.")


class DownloadImages(FilterOperation):
    """Download the images at a URL column into an `image` column (and `final_url`); drop
    every URL that fails, with its reason: `http_<status>` (http_404, http_429, http_503, ...),
    `timeout`, `too_large`, `not_an_image`, `empty`, `vector_refused`, `opted_out`,
    `too_many_redirects`, `truncated`, `connection_error`, `dns_error`, `tls_error`,
    `invalid_url`, `bad_content_encoding`.

    Each worker keeps `concurrency` requests in flight (asyncio, httpx), at most `per_host` to
    one host, over `batches_in_flight` batches so that a slow URL holds up no other. A 429 or
    5xx is retried after its Retry-After (at most `max_retry_wait`) or an exponential
    backoff. The format is sniffed from the bytes, never taken from Content-Type; HTML and
    unknown bytes are `not_an_image`, SVG `vector_refused`. `X-Robots-Tag: noai` (and
    noimageai, noindex, noimageindex; for all agents or for the `user_agent`'s token) opts an
    image out. Counters: `bytes_downloaded`, `retries`, `redirected`.

    Downloads are an input like any other: the step is cached on its URLs and arguments, so a
    re-run reuses what was fetched; `run(cache=False)` (`--no-cache`) fetches again."""

    name = "download_images"
    Args = DownloadImagesArgs
    default_reason = "download_failed"

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        a = self.args
        self.batch_size = a.batch_rows
        self.batches_in_flight = a.batches_in_flight
        self.resources = Resources(cpus=1.0, concurrency=a.max_units)
        self.settings = FetchSettings(
            connect_timeout=a.connect_timeout, read_timeout=a.read_timeout, timeout=a.timeout,
            max_bytes=a.max_bytes, max_redirects=a.max_redirects, retries=a.retries,
            backoff=a.backoff, max_retry_wait=a.max_retry_wait, concurrency=a.concurrency,
            per_host=a.per_host, user_agent=a.user_agent,
            opt_out=tuple(a.opt_out_directives), verify_tls=a.verify_tls)

    def resolve_consumes(self, schema: dict) -> dict:
        return normalize_columns({self.args.column: "string"})

    def resolve_produces(self, schema: dict) -> dict:
        cols = {self.args.output: "image<large_binary>"}
        if self.args.final_url_column:
            cols[self.args.final_url_column] = "string"
        return normalize_columns(cols)

    # --- batches overlap: submit() starts a batch, collect() waits for it (see Operation) --
    def _fetcher(self) -> BackgroundFetcher:
        pid, fetcher = self.__dict__.get("_background", (None, None))
        if fetcher is None or pid != os.getpid():  # none yet, or inherited through a fork
            fetcher = BackgroundFetcher(self.settings)
            self._background = (os.getpid(), fetcher)
        return fetcher

    def setup(self) -> None:
        """Start the worker's event loop and clients (on Ray: once per actor, which calls
        `teardown` at the end of the stage)."""
        self._fetcher()

    def submit(self, batch: Any) -> Any:
        return self._fetcher().submit(batch.column(self.args.column).to_pylist())

    def cancel(self, handle: Any) -> None:
        handle.cancel()

    def process(self, batch: Any) -> Any:
        return self.collect(self.submit(batch))

    def teardown(self) -> None:
        pid, fetcher = self.__dict__.pop("_background", (None, None))
        if fetcher is not None and pid == os.getpid():
            fetcher.close()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_background"}

    def collect(self, handle: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        got = handle.result()
        keep = np.array([g.data is not None for g in got], dtype=bool)
        self.count("bytes_downloaded", sum(len(g.data) for g in got if g.data is not None))
        self.count("retries", sum(max(0, g.attempts - 1) for g in got))
        self.count("redirected", sum(1 for g in got if g.redirects))
        columns = {self.args.output: as_image(pa.array([g.data for g in got],
                                                        pa.large_binary()))}
        if self.args.final_url_column:
            columns[self.args.final_url_column] = pa.array([g.final_url for g in got],
                                                           pa.string())
        return keep, [g.reason for g in got], columns
