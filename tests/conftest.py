"""Shared fixtures: small inputs written into each test's tmp_path."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from .explore_runs import (  # noqa: F401  (the explorer's workdirs, built once a session)
    dedup_workdir,
    image_dedup_workdir,
    image_search_workdir,
    quality_workdirs,
    search_workdir,
)
from .ray_cluster import ray_cluster  # noqa: F401  (the Ray tests' cluster, started lazily)
from .timeout_guard import (  # noqa: F401  (a fired timeout always fails its test)
    pytest_runtest_makereport,
    pytest_timeout_set_timer,
)
from .transformers_server import smol_server  # noqa: F401  (a real LLM server, lazily)

WORDS = ["data", "model", "pipeline", "Token", "the", "a", "of", "text", "clean", "row",
         "Quality", "filter", "dedup", "embedding", "index", "chunk"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))),
             "group": i % 7, "n": i} for i in range(n)]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A JSONL file of 500 short documents with `text`, `group` and `n` columns."""
    return write_jsonl(tmp_path / "docs.jsonl", make_rows(500))
