"""Column statistics of a step, computed lazily and cached per step cache key.

Per column: rows, nulls; numbers: min, max, mean and a histogram; strings: the length
histogram and the most frequent values; binary (images): the size histogram; booleans: true
and false counts; structs: each numeric field as its own column (`pii_counts.email`); lists:
the length histogram. Values stream one stored row group at a time (`data.column_batches`):
extremes first, then histogram bins (from the numbers of the first pass kept in memory, up
to `KEEP_NUMBERS`, else from a second pass): never a whole step in memory. Top values are
counted exactly until `TOP_TRACKED` distinct values, then with lossy pruning (marked
approximate).

Steps are immutable, so results are kept: in memory (an LRU of `MEMORY_ENTRIES` steps) and
as JSON under the user's cache folder (`$DATAMILL_EXPLORE_CACHE`, else
`$XDG_CACHE_HOME/datamill/explore`, else `~/.cache/datamill/explore`), never in the workdir.
A cached entry is named by the step's cache key and the checksums of every committed file the
step's rows are read from, so a step recomputed since (new files) is never served stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .lru import LRU
from .workdir import RunView

BINS = 20
TOP = 10
TOP_TRACKED = 20_000  # distinct values counted exactly before pruning
TOP_CHARS = 200  # characters of a value counted as a top value
KEEP_NUMBERS = 4_000_000  # numbers of pass 1 kept for the histograms (32 MB), else re-read
UNIQUE_CHECK = 1_000  # a first batch this long, nearly all distinct: no top values
MEMORY_ENTRIES = 64
VERSION = 4  # of the cached format
_MEMORY = LRU(entries=MEMORY_ENTRIES)
COMPUTED: Counter[str] = Counter()  # step key -> times computed (tests count work with it)


@dataclass
class Feature:
    """One statistic stream: a column's values, or a derived number (a length, a field)."""

    name: str
    what: str  # "value", "length", "bytes", "items"
    count: int = 0
    nulls: int = 0
    low: float | None = None
    high: float | None = None
    total: float = 0.0
    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    top: list[tuple[str, int]] = field(default_factory=list)
    top_approximate: bool = False
    top_skipped: bool = False  # nearly all values distinct: top values not counted
    true: int | None = None
    false: int | None = None
    kind: str = "number"  # number | string | binary | bool | list | other
    integer: bool = True  # whole numbers (lengths, sizes, counts): one bin per value if few

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def cache_dir() -> Path:
    env = os.environ.get("DATAMILL_EXPLORE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "datamill" / "explore"


def fingerprint(run: RunView, name: str) -> str:
    """The step's cache key and the checksums of the files its rows are read from."""
    step = run.chain_step(name)
    h = hashlib.sha256(f"v{VERSION}".encode())
    for s in step.chain():
        h.update(s.key.encode())
        view = next((v for v in run.steps.values() if v.key == s.key), None)
        record = run.full_record(view) if view is not None else {}
        for p, part in sorted((record.get("partitions") or {}).items()):
            h.update(json.dumps([p, part.get("checksums"), part.get("rows_out")],
                                sort_keys=True).encode())
    return f"{step.key}-{h.hexdigest()[:16]}"


def step_stats(run: RunView, name: str) -> list[dict]:
    """The statistics of every visible column of step `name` (dicts of `Feature` fields plus
    `mean` and `column`), from the caches when there."""
    key = fingerprint(run, name)
    stats = cached_stats(run, name, key)
    if stats is None:
        stats = compute(run, name)
        _store(cache_dir() / f"{key}.json", stats)
    return _MEMORY.put(key, stats)


def cached_stats(run: RunView, name: str, key: str | None = None) -> list[dict] | None:
    """The step's statistics if a cache holds them, else None (nothing is computed)."""
    key = key or fingerprint(run, name)
    found = _MEMORY.get(key)
    if found is not None:
        return found
    try:
        stats = json.loads((cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return _MEMORY.put(key, stats) if isinstance(stats, list) else None


def _store(path: Path, stats: list[dict]) -> None:
    """Write the cache file atomically; a cache folder that cannot be written is skipped."""
    import contextlib

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, path)


def compute(run: RunView, name: str) -> list[dict]:
    step = run.chain_step(name)
    COMPUTED[step.key] += 1
    counts = run.partition_rows(run.step(name) if run.step(name).kind != "sink"
                                else run.step(step.name))
    out = []
    for column in [c for c in step.columns if not c.startswith("_")]:
        features = _column_features(run, step, column, len(counts))
        out += [{**asdict(f), "mean": f.mean, "column": column} for f in features]
    return out


def _column_features(run: RunView, step: Any, column: str, partitions: int) -> list[Feature]:
    from .reading import column_batches

    features: dict[str, Feature] = {}
    tops: dict[str, Counter] = {}

    def batches() -> Any:
        for p in range(partitions):
            for values, _pos in column_batches(run, step, p, column):
                yield values

    kept: dict[str, list] | None = {}  # pass 1's numbers, while under KEEP_NUMBERS
    for values in batches():  # pass 1: counts, extremes, top values
        for name, kind, what, numbers, texts, nulls in _derive(column, values):
            if kept is not None and numbers is not None and kind != "bool":
                kept.setdefault(name, []).append(numbers)
                if sum(len(a) for parts in kept.values() for a in parts) > KEEP_NUMBERS:
                    kept = None  # too many to keep: a second pass bins them
            f = features.setdefault(name, Feature(name, what, kind=kind))
            if numbers is not None and numbers.dtype.kind == "f" and what == "value" \
                    and texts is None:
                f.integer = False
            f.nulls += nulls
            if kind == "bool":
                f.true = (f.true or 0) + int(numbers.sum())
                f.false = (f.false or 0) + int(len(numbers) - numbers.sum())
                f.count += len(numbers)
                continue
            if numbers is not None and len(numbers):
                f.count += len(numbers)
                f.total += float(numbers.sum())
                lo, hi = float(numbers.min()), float(numbers.max())
                f.low = lo if f.low is None else min(f.low, lo)
                f.high = hi if f.high is None else max(f.high, hi)
            if texts is not None:
                _count_top(tops.setdefault(name, Counter()), texts, f)
    if any(f.low is not None for f in features.values()):  # pass 2: histograms
        for f in features.values():
            if f.low is not None:
                f.edges = _edges(f.low, f.high, not f.integer)
                f.counts = [0] * (len(f.edges) - 1)
        import numpy as np

        streams = (((name, numbers) for name, parts in kept.items() for numbers in parts)
                   if kept is not None else
                   ((d[0], d[3]) for values in batches() for d in _derive(column, values)))
        for name, numbers in streams:
            f = features[name]
            if f.edges and numbers is not None and len(numbers):
                hist, _ = np.histogram(numbers, bins=f.edges)
                f.counts = [a + int(b) for a, b in zip(f.counts, hist)]
    for name, counter in tops.items():
        features[name].top = [(v, n) for v, n in counter.most_common(TOP)]
    return list(features.values())


def _edges(low: float, high: float, real: bool) -> list[float]:
    import numpy as np

    if high <= low:
        return [low - 0.5, low + 0.5] if not real else [low, low + 1]
    if not real and high - low + 1 <= BINS:  # small whole numbers: one bin each
        return [float(x) - 0.5 for x in range(int(low), int(high) + 2)]
    return [float(x) for x in np.linspace(low, high, BINS + 1)]


def _count_top(counter: Counter, texts: Any, f: Feature) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if f.top_skipped:
        return
    if pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type):
        texts = pc.utf8_slice_codeunits(texts, 0, TOP_CHARS)
    counts = pc.value_counts(texts)
    values, ns = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
    if len(texts) >= UNIQUE_CHECK and len(values) > 0.9 * len(texts) and not counter:
        f.top_skipped = True  # nearly every value distinct (documents): no top values
        return
    counter.update(dict(zip(map(str, values), ns)))
    if len(counter) > TOP_TRACKED:  # keep the frequent ones: lossy, marked approximate
        threshold = sorted(counter.values(), reverse=True)[TOP_TRACKED // 2]
        for k in [k for k, n in counter.items() if n <= threshold]:
            del counter[k]
        f.top_approximate = True


def _derive(column: str, values: Any) -> list[tuple]:
    """(feature name, kind, what, numbers (numpy, nulls left out) or None, texts for top
    values or None, null count) for one batch of a column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.ExtensionArray):
        values = values.storage
    t = values.type
    nulls = values.null_count
    valid = values.drop_null() if nulls else values
    if pa.types.is_dictionary(t):
        valid, t = valid.cast(t.value_type), t.value_type
    if pa.types.is_boolean(t):
        return [(column, "bool", "value", valid.to_numpy(zero_copy_only=False).astype(np.int64),
                 None, nulls)]
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        numbers = valid.cast(pa.float64()).to_numpy(zero_copy_only=False)
        numbers = numbers[np.isfinite(numbers)]
        top = valid if pa.types.is_integer(t) and len(valid) else None
        return [(column, "number", "value", numbers, top, nulls)]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        lengths = pc.utf8_length(valid).to_numpy(zero_copy_only=False).astype(np.float64)
        return [(column, "string", "length", lengths, valid, nulls)]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        sizes = pc.binary_length(valid).to_numpy(zero_copy_only=False).astype(np.float64)
        return [(column, "binary", "bytes", sizes, None, nulls)]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(valid).to_numpy(zero_copy_only=False).astype(np.float64)
        return [(column, "list", "items", lengths, None, nulls)]
    if pa.types.is_struct(t):
        out = [(column, "other", "value", None, None, nulls)]
        for i in range(t.num_fields):
            child = pc.struct_field(values, [i])
            out += [(f"{column}.{t.field(i).name}", *rest[1:])
                    for rest in _derive(column, child)]
        return out
    return [(column, "other", "value", None, None, nulls)]
