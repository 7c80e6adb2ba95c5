"""URL filtering: domain blocklists and banned words in URLs, from lists the user supplies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from ..operation import Arguments, FilterOperation

_HOST = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$|^[0-9a-f:.]*:[0-9a-f:.]*$|^localhost$")


class UrlFilterArgs(Arguments):
    column: str = Field("url", description="URL column.")
    blocked_domains: list[str] = Field(default_factory=list,
                                       description="Domains to drop; subdomains match too.")
    blocked_domains_file: str | None = Field(None, description="A file with one domain per "
                                                                "line (# comments allowed).")
    banned_words: list[str] = Field(default_factory=list,
                                    description="Words that drop a URL when they appear as a "
                                                "token of its host or path.")
    drop_invalid: bool = Field(True, description="Drop rows whose URL is null or has no host.")


def _read_list(path: str) -> list[str]:
    lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


class UrlFilter(FilterOperation):
    """Drop rows whose URL's domain (or a parent domain) is blocklisted, or whose host or
    path contains a banned word as a token. Drop reasons: blocked_domain, banned_url_word,
    invalid_url."""

    name = "url_filter"
    Args = UrlFilterArgs
    consumes = {"{column}": "string"}

    def setup(self) -> None:
        domains = [d.lower().lstrip(".") for d in self.args.blocked_domains]
        if self.args.blocked_domains_file:
            domains += [d.lower().lstrip(".") for d in _read_list(self.args.blocked_domains_file)]
        self._domains = set(domains)
        self._words = {w.lower() for w in self.args.banned_words}

    def reason_for(self, url: str | None) -> str | None:
        if not url:
            return "invalid_url" if self.args.drop_invalid else None
        parts = urlsplit(url if "//" in url else "//" + url)
        host = (parts.hostname or "").lower()
        if not _HOST.match(host):
            return "invalid_url" if self.args.drop_invalid else None
        labels = host.split(".")
        if any(".".join(labels[i:]) in self._domains for i in range(len(labels))):
            return "blocked_domain"
        if self._words:
            tokens = set(re.split(r"[^a-z0-9]+", (host + " " + parts.path).lower()))
            if tokens & self._words:
                return "banned_url_word"
        return None

    def process(self, batch: Any) -> Any:
        import numpy as np

        if not hasattr(self, "_domains"):
            self.setup()
        reasons = [self.reason_for(u) for u in batch[self.args.column].to_pylist()]
        return np.array([r is None for r in reasons], dtype=bool), reasons
