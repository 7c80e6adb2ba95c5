"""Why a step recomputes.

A step's cache key is a digest of three parts (`cache.KeyParts`): its code, its arguments,
its inputs. The workdir remembers, per step name, the parts of the last few keys that
completed (`WORKDIR/history.json`); a step the cache cannot serve is compared with them.
Each recomputed step gets, in the manifest, `recomputed: {"because": [...], "detail": ...}`:

    code                     the operation's code (or version) changed
    arguments                an argument or a step option changed (the detail names them)
    input                    an upstream step changed or recomputes; a source's files changed
    file missing or corrupt  the same key, but a committed file, the step's folder or a
                             sink's output is gone or damaged
    unfinished               an earlier run stopped before finishing it (what it committed
                             is kept)
    new                      no step of that name completed in this workdir before
    cache off                the run was asked to recompute everything (`cache=False`)

The history only explains; it never decides what is cached.
"""

from __future__ import annotations

from collections.abc import Callable

from .dataset import Step
from .storage import Workdir, atomic_write_json, read_json

HISTORY = "history.json"
KEEP = 8  # keys remembered per step name

CODE, ARGUMENTS, INPUT = "code", "arguments", "input"
DAMAGED, UNFINISHED, NEW, CACHE_OFF = "file missing or corrupt", "unfinished", "new", "cache off"

# What the executor found in the workdir under the step's key.
INTACT, BROKEN, PARTIAL, ABSENT = "intact", "damaged", "partial", "absent"


def reason(because: str | list[str], detail: str) -> dict:
    return {"because": [because] if isinstance(because, str) else because, "detail": detail}


class CacheHistory:
    """The key parts of each step name's recently completed keys, most recent first."""

    def __init__(self, workdir: Workdir):
        self.path = workdir.root / HISTORY
        data = read_json(self.path)
        steps = data.get("steps") if isinstance(data, dict) else None
        self.steps: dict[str, list[dict]] = steps if isinstance(steps, dict) else {}

    def remember(self, step: Step) -> None:
        """Note that `step` completed (its output is committed)."""
        if step.parts is None:
            return
        entry = {"key": step.key, "operation": step.op.identity(),
                 "version": step.op.version, **step.parts.as_dict()}
        older = [e for e in self.steps.get(step.name, []) if e.get("key") != step.key]
        self.steps[step.name] = [entry, *older][:KEEP]

    def save(self) -> None:
        atomic_write_json(self.path, {"steps": self.steps})

    def why(self, step: Step, state: str, upstream: str | None) -> dict:
        """Why `step` recomputes, given what its key's folder holds (`state`) and the name of
        the nearest upstream step that recomputes (None if none does)."""
        if state == INTACT and upstream is not None:
            return reason(INPUT, f"upstream step {upstream!r} recomputes")
        if state in (BROKEN, INTACT):
            what = "output" if step.kind == "sink" else "committed file"
            return reason(DAMAGED, f"a {what} of this step is missing or damaged")
        if state == PARTIAL:
            return reason(UNFINISHED, "an earlier run stopped before finishing it; "
                                      "it resumes from what was committed")
        entries = [e for e in self.steps.get(step.name, []) if isinstance(e, dict)]
        if any(e.get("key") == step.key for e in entries):
            return reason(DAMAGED, "its folder in the workdir is missing")
        if not entries or step.parts is None:
            return reason(NEW, f"no step named {step.name!r} completed in this workdir before")
        ranked = sorted(enumerate(entries), key=lambda ie: (len(self._changed(step, ie[1])),
                                                            ie[0]))
        best = ranked[0][1]
        changed = self._changed(step, best)
        details = []
        if CODE in changed:
            details.append(self._code_detail(step, best))
        if ARGUMENTS in changed:
            now, then = step.parts.arguments, best.get("arguments") or {}
            names = sorted(k for k in {*now, *then} if now.get(k) != then.get(k))
            details.append(f"{', '.join(names)} changed")
        if INPUT in changed:
            details.append("its input files changed" if step.parent is None
                           else f"upstream step {upstream or step.parent.name!r} changed")
        return reason(changed or NEW, "; ".join(details) or "its key changed")

    @staticmethod
    def _changed(step: Step, entry: dict) -> list[str]:
        parts = step.parts
        assert parts is not None
        out = []
        if entry.get("code") != parts.code:
            out.append(CODE)
        if (entry.get("arguments") or {}) != parts.arguments:
            out.append(ARGUMENTS)
        if list(entry.get("inputs") or []) != list(parts.inputs):
            out.append(INPUT)
        return out

    @staticmethod
    def _code_detail(step: Step, entry: dict) -> str:
        identity, version = step.op.identity(), step.op.version
        if entry.get("operation") != identity:
            return f"the operation was {entry.get('operation')}, now {identity}"
        if entry.get("version") != version:
            return f"{identity}: version {entry.get('version')} -> {version}"
        return f"the code of {identity} changed"


def explain(chain: list[Step], complete: set[str], state_of: Callable[[Step], str],
            history: CacheHistory, why: dict[str, dict]) -> None:
    """Fill `why[key]` for every step of `chain` that is not in `complete`."""
    upstream: str | None = None
    for step in chain:
        if step.key in complete:
            continue
        if step.key not in why:
            why[step.key] = history.why(step, state_of(step), upstream)
        upstream = step.name
