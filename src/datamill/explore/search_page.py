"""Search the LanceDB indexes a run wrote, through `datamill.search`.

The run's `write_lancedb` steps name the database and table; a query is embedded with the
model the index records (the same code as `datamill search`), and each hit comes back with
its metadata: the scalar columns of its row in the index. For an index of embedded images,
each hit also names the row of the workdir that holds its image (the step before the sink,
the row id, the image column), which the page shows as a thumbnail through the explorer's
thumbnail route; image bytes from the index are never sent as they are.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

MAX_QUERY_CHARS = 500
MAX_K = 50
ENCODERS_KEPT = 2  # query models kept loaded (a MiniLM is ~90 MB)
META_CHARS = 300


@dataclass
class IndexInfo:
    number: int  # its position among the run's indexes (the page names it by this)
    step: str  # the sink step
    path: str
    table: str
    source_step: str | None  # the step before the sink: where the rows' columns are
    image_column: str | None  # set for an index of embedded images


def indexes(manifest: dict) -> list[IndexInfo]:
    """The LanceDB tables the run wrote (local paths only), in step order."""
    out: list[IndexInfo] = []
    for ds in manifest.get("datasets", []):
        steps = ds.get("steps", [])
        for n, s in enumerate(steps):
            if s.get("operation") != "write_lancedb":
                continue
            args = s.get("arguments") or {}
            path = str(args.get("path") or "")
            if not path or "://" in path:
                continue
            before = next((p["name"] for p in reversed(steps[:n]) if p.get("kind") != "sink"),
                          None)
            out.append(IndexInfo(len(out), s["name"], path, str(args.get("table", "vectors")),
                                 before, None))
    return out


_lock = threading.Lock()
_encoders: OrderedDict[str, Any] = OrderedDict()


def _encoder(index: Any, spec: str) -> Any:
    from ..search import Encoder

    key = f"{spec}\x1f{index.meta.get('model')}"
    with _lock:
        if key in _encoders:
            _encoders.move_to_end(key)
            return _encoders[key]
    enc = Encoder(index.meta, None, index.where)
    with _lock:
        _encoders[key] = enc
        while len(_encoders) > ENCODERS_KEPT:
            _encoders.popitem(last=False)
    return enc


@dataclass
class SearchResult:
    index: IndexInfo
    query: str
    hits: list[dict]  # id, score, text, metadata {column: value}, image {step, id, column}
    model: str | None


def run_search(manifest: dict, number: int, query: str, k: int = 10) -> SearchResult:
    """The `k` nearest rows of index `number` (see `indexes`) to the text `query`."""
    from ..search import open_index

    found = indexes(manifest)
    if not 0 <= number < len(found):
        raise InputError(f"no index number {number} (this run wrote {len(found)})")
    info = found[number]
    query = " ".join(str(query).split())[:MAX_QUERY_CHARS]
    if not query:
        raise InputError("the query is empty")
    k = max(1, min(int(k), MAX_K))
    if not (Path(info.path) / f"{info.table}.lance").is_dir():
        raise InputError(f"the index {info.table!r} of step {info.step!r} is not at "
                         f"{info.path} any more")
    index = open_index(info.path, info.table)
    try:
        encoder = _encoder(index, f"{info.path}/{info.table}")
        hits = index.search_distinct(encoder([query])[0], k)
        meta = index.meta
        images = meta.get("image_column") if meta.get("image_column") in index.columns else None
        info.image_column = images
        extra = _metadata(index, [h.id for h in hits], meta.get("vector_column", "embedding"))
    finally:
        index.close()
    out = []
    for h in hits:
        row = extra.get(h.id, {})
        metadata = {**h.source, **row}
        out.append({"id": h.id, "score": h.score, "text": h.text, "metadata": metadata,
                    "image": ({"step": info.source_step, "id": h.id, "column": images}
                              if images and info.source_step else None)})
    return SearchResult(info, query, out, meta.get("model"))


def _metadata(index: Any, ids: list[Any], vector: str) -> dict[Any, dict]:
    """The scalar columns (no vectors, no bytes) of the index's rows `ids`."""
    import pyarrow as pa

    if not ids or not all(isinstance(i, int) for i in ids):
        return {}
    schema = index.table.schema
    keep = [f.name for f in schema if f.name != vector and not f.name.startswith("_datamill")
            and not pa.types.is_binary(getattr(f.type, "storage_type", f.type))
            and not pa.types.is_large_binary(getattr(f.type, "storage_type", f.type))
            and not pa.types.is_list(f.type) and not pa.types.is_fixed_size_list(f.type)]
    idc = index.id_column
    keep = [c for c in keep if c != index.text_column]
    if idc not in keep:
        return {}
    where = f"{idc} IN ({', '.join(str(int(i)) for i in ids)})"
    rows = index.table.search().where(where).select(keep).limit(len(ids)).to_arrow().to_pylist()
    out = {}
    for r in rows:
        out[r[idc]] = {k: (v[:META_CHARS] + "\u2026" if isinstance(v, str) and len(v) > META_CHARS
                           else v) for k, v in r.items() if k != idc and not k.startswith("_")}
    return out
