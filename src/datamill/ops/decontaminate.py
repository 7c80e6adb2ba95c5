"""Decontamination: find rows that share word n-grams with an evaluation set, and drop or
flag them.

Texts are normalized (Unicode NFKC, lowercase, every run of characters that are not letters,
digits or marks is a word boundary), cut into words, and each window of `n` words is hashed
to 64 bits. The evaluation set's hashes are built once per worker in `setup()`; a batch is
then checked without per-word Python: words are looked up in the evaluation vocabulary with
Arrow (a word the evaluation set never uses rules out every window that holds it), and the
windows are hashed and searched with numpy, a million words at a time.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field, model_validator

from ..errors import PipelineError
from ..operation import Arguments, FilterOperation, MapOperation

_BOUNDARY = r"[^\p{L}\p{N}\p{M}]+"
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd 64-bit constant of the polynomial window hash
_CHUNK = 1 << 20  # windows hashed at a time (bounds memory on huge documents)


class DecontaminateArgs(Arguments):
    column: str = Field("text", description="Text column to check.")
    eval_path: str | None = Field(None, description="Evaluation set: JSONL (.jsonl, .json, "
                                                    "optionally .gz/.zst), Parquet, or a "
                                                    "text file with one text per line.")
    eval_column: str = Field("text", description="Column (JSONL key) of eval_path holding the "
                                                 "texts; a list of strings counts as texts.")
    eval_texts: list[str] = Field(default_factory=list, description="Evaluation texts given "
                                                                    "inline (with or without "
                                                                    "eval_path).")
    n: int = Field(13, ge=1, le=64, description="Words per n-gram.")
    min_eval_words: int = Field(3, ge=1, description="Evaluation texts with fewer words are "
                                                     "ignored (too common to mean anything).")
    min_matches: int = Field(1, ge=1, description="A row is contaminated when at least this "
                                                  "many of its n-grams are in the eval set.")
    eval_fingerprint: str = Field("", description="Filled in automatically: a hash of "
                                                  "eval_path's contents, so that the cache "
                                                  "notices a changed evaluation set.")

    @model_validator(mode="before")
    @classmethod
    def _fingerprint(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("eval_path"):
            data = {**data, "eval_fingerprint": _file_digest(str(data["eval_path"]))}
        return data

    @model_validator(mode="after")
    def _some_eval_set(self) -> DecontaminateArgs:
        if not self.eval_path and not self.eval_texts:
            raise ValueError("give an evaluation set: eval_path and/or eval_texts")
        return self


def _file_digest(path: str) -> str:
    import fsspec

    digest = hashlib.sha256()
    try:
        with fsspec.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read evaluation set {path!r}: {exc}") from None
    return digest.hexdigest()[:16]


class _EvalSetOverlap:
    """The shared detection: n-gram hashes of the evaluation set, built once per worker."""

    Args = DecontaminateArgs
    consumes = {"{column}": "string"}

    def setup(self) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        texts = list(self.args.eval_texts)
        if self.args.eval_path:
            texts += _read_eval_texts(self.args.eval_path, self.args.eval_column, self.name)
        words, parents = _words(pa.array(texts, pa.string()))
        nonempty = pc.greater(pc.binary_length(words), 0)
        words, parents = words.filter(nonempty), parents[nonempty.to_numpy(zero_copy_only=False)]
        lengths = np.bincount(parents, minlength=len(texts)) if len(texts) else np.zeros(0)
        keep = lengths[parents] >= self.args.min_eval_words
        words, parents = words.filter(pa.array(keep)), parents[keep]
        self._vocabulary = pc.unique(words)
        ids = pc.index_in(words, value_set=self._vocabulary).to_numpy().astype(np.int64)
        # full n-grams of long texts; the whole text (one k-gram) of shorter ones
        n = self.args.n
        self._tables: dict[int, Any] = {}
        starts = np.r_[0, np.flatnonzero(np.diff(parents)) + 1] if len(parents) else []
        short: dict[int, list[Any]] = {}
        for start, length in zip(starts, np.diff(np.r_[starts, len(parents)])):
            if length < n:
                short.setdefault(int(length), []).append(_hash_windows(
                    ids[start:start + length], int(length))[0])
        if len(ids):
            hashes, valid = _windows(ids, parents, n)
            self._tables[n] = np.unique(hashes[valid])
        for k, values in short.items():
            self._tables[k] = np.unique(np.array(values, dtype=np.uint64))
        self._tables = {k: v for k, v in self._tables.items() if len(v)}

    def matches(self, texts: Any) -> Any:
        """Number of n-gram positions of each text found in the evaluation set (numpy)."""
        import numpy as np
        import pyarrow.compute as pc

        counts = np.zeros(len(texts), dtype=np.int64)
        if not self._tables:
            return counts
        words, parents = _words(texts)
        ids = pc.index_in(words, value_set=self._vocabulary).fill_null(-1).to_numpy()
        del words
        for k, table in self._tables.items():
            for start in range(0, max(len(ids) - k + 1, 0), _CHUNK):
                stop = min(start + _CHUNK, len(ids) - k + 1)
                piece = ids[start:stop + k - 1]
                hashes, valid = _windows(piece, parents[start:stop + k - 1], k)
                found = valid & _member(hashes, table)
                counts += np.bincount(parents[start:stop][found], minlength=len(texts))
        return counts

    def counts(self, batch: Any) -> Any:
        if not hasattr(self, "_tables"):
            self.setup()
        return self.matches(batch[self.args.column])


class Decontaminate(_EvalSetOverlap, FilterOperation):
    """Drop rows that share an n-gram of `n` words (default 13) with an evaluation set
    (`eval_path` and/or `eval_texts`), after lowercasing and stripping punctuation. An eval
    text shorter than `n` words counts as one n-gram of its own length; texts under
    `min_eval_words` words are ignored. Drop reason: contaminated. `flag_contamination`
    keeps every row and flags it instead."""

    name = "decontaminate"
    default_reason = "contaminated"

    def process(self, batch: Any) -> Any:
        return self.counts(batch) < self.args.min_matches, self.default_reason


class FlagContamination(_EvalSetOverlap, MapOperation):
    """Flag rows that share an n-gram of `n` words with an evaluation set, as
    `decontaminate` would drop them, keeping every row: `contaminated` (bool) and
    `contamination_ngrams` (int64, the number of the row's n-gram positions found)."""

    name = "flag_contamination"
    produces = {"contaminated": "bool", "contamination_ngrams": "int64"}

    def process(self, batch: Any) -> Any:
        counts = self.counts(batch)
        return {"contaminated": counts >= self.args.min_matches, "contamination_ngrams": counts}


def _words(texts: Any) -> tuple[Any, Any]:
    """Normalized words of every text, flattened, and the row (int32) each word comes from.
    Empty strings appear where a text starts or ends with a boundary; they are in no
    vocabulary, so no window holds them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    if not pc.all(pc.string_is_ascii(texts)).as_py():  # NFKC only where it can change text
        texts = pc.utf8_normalize(texts, "NFKC")
    lists = pc.split_pattern_regex(pc.utf8_lower(texts), _BOUNDARY)
    del texts
    parents = pc.list_parent_indices(lists).to_numpy().astype(np.int32)
    return lists.flatten(), parents


def _hash_windows(ids: Any, k: int) -> Any:
    """64-bit polynomial hash of every window of k consecutive word ids."""
    import numpy as np

    count = len(ids) - k + 1
    hashes = np.zeros(max(count, 0), dtype=np.uint64)
    values = ids.astype(np.uint64) + np.uint64(1)
    for j in range(k):
        hashes = hashes * np.uint64(_MULTIPLIER) + values[j:j + count]
    return hashes


def _windows(ids: Any, parents: Any, k: int) -> tuple[Any, Any]:
    """Window hashes, and whether each window lies in one row and holds only known words."""
    import numpy as np

    count = len(ids) - k + 1
    if count <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    unknown = np.r_[0, np.cumsum(ids < 0, dtype=np.int64)]
    valid = (parents[:count] == parents[k - 1:]) & (unknown[k:] - unknown[:count] == 0)
    return _hash_windows(np.maximum(ids, 0), k), valid


def _member(values: Any, table: Any) -> Any:
    import numpy as np

    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def _read_eval_texts(path: str, column: str, operation: str) -> list[str]:
    """Texts of an evaluation file (JSONL, Parquet or plain text), with errors naming the
    file, the line and the column."""
    import json

    import fsspec

    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as fh:
            names = pq.read_schema(fh).names
            if column not in names:
                raise PipelineError(f"evaluation set {path!r} has no column {column!r} "
                                    f"(columns: {', '.join(names)})", operation=operation)
            fh.seek(0)
            values = pq.read_table(fh, columns=[column]).column(0).to_pylist()
        return _texts(values, path, None, operation)
    with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as fh:
        lines = fh.read().splitlines()
    stem = lower.removesuffix(".gz").removesuffix(".zst")
    if not stem.endswith((".jsonl", ".json", ".ndjson")):
        return [ln for ln in lines if ln.strip()]
    texts: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"evaluation set {path!r} line {number}: not JSON ({exc})",
                                operation=operation) from None
        if not isinstance(record, dict) or column not in record:
            keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            raise PipelineError(f"evaluation set {path!r} line {number}: no key {column!r} "
                                f"(has: {keys})", operation=operation)
        texts += _texts([record[column]], path, number, operation)
    return texts


def _texts(values: list[Any], path: str, line: int | None, operation: str) -> list[str]:
    texts: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None:
                continue
            if not isinstance(item, str):
                where = f" line {line}" if line else ""
                raise PipelineError(f"evaluation set {path!r}{where}: expected text, got "
                                    f"{type(item).__name__} {item!r:.60}", operation=operation)
            texts.append(item)
    return texts
