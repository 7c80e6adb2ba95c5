"""Per-worker state: operations are set up once per worker process and reused (an operation
that declares requirements through a stand-in that runs it in its environment: isolated.py)."""

from __future__ import annotations

from typing import Any

from ..dataset import Step
from .isolated import IsolatedOperation, needs_isolation

_PREPARED: dict[str, Any] = {}


def prepared(step: Step) -> Any:
    """The step's operation, with `setup()` run once in this process."""
    op = _PREPARED.get(step.key)
    if op is None:
        op = step.op
        if needs_isolation(op):  # runs in a worker of its own environment
            op = IsolatedOperation(step)
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
