"""The response cache: one JSON file per request in the workdir, named by the sha256 of
everything that decides the reply (model, the full messages, every generation parameter, the
seed, the sample's number, the operation and its version).

Files sit in two levels of folders named by the key's first characters, and are written under
a temp name in `llm-cache/.staging` then renamed into place (so that cleaning a killed run's
temp files never walks the cache), so that concurrent writers (worker processes, Ray nodes
on a shared filesystem) never see half a file and need no lock or database. A file that does
not parse counts as absent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ...storage import STAGED_STORES, staged_write_bytes

FOLDER = STAGED_STORES[0]  # "llm-cache"


def request_key(material: dict) -> str:
    """sha256 of the canonical JSON of `material`."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """`get(key)` / `put(key, reply)` under `root` (WORKDIR/llm-cache)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads(self.path(key).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, reply: dict[str, Any]) -> None:
        staged_write_bytes(self.root, self.path(key),
                           json.dumps(reply, ensure_ascii=False).encode())
