"""Per-worker state: operations are set up once per worker process and reused."""

from __future__ import annotations

from typing import Any

from ..dataset import Step

_PREPARED: dict[str, Any] = {}


def prepared(step: Step) -> Any:
    """The step's operation, with `setup()` run once in this process."""
    op = _PREPARED.get(step.key)
    if op is None:
        op = step.op
        if step.kind not in ("source", "project"):
            op.setup()
        _PREPARED[step.key] = op
    return op


def teardown_all() -> None:
    while _PREPARED:
        _, op = _PREPARED.popitem()
        try:
            op.teardown()
        except Exception:  # noqa: BLE001 - teardown must not mask the run's result
            pass
