"""fastText's language-ID predictions in C (ops/quality/_kernels.c `ft_predict`), from the
model file read into arrays: the scores fastText computes, as the same floats.

Supported: supervised models with hierarchical softmax, no word n-grams, a quantized input
matrix (product quantizer, with or without norms; rows are dequantized once, exactly as
fastText adds them) and a dense output matrix: lid.176.ftz. `load` returns None for any
other model, or without the compiled kernels, and the caller uses fasttext-predict.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

MAGIC, VERSION = 793712314, 12
LOSS_HS, MODEL_SUP = 1, 3
KSUB = 256
EOS = b"</s>"


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: Any, count: int) -> Any:
        import numpy as np

        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def cstring(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        value, self.pos = self.data[self.pos:end], end + 1
        return value


def _quantizer(r: _Reader) -> tuple[Any, int, int, int]:
    import numpy as np

    dim, nsubq, dsub, lastdsub = r.take("4i")
    return r.array(np.float32, dim * KSUB), nsubq, dsub, lastdsub


def _dequantized(r: _Reader) -> Any:
    """A QuantMatrix as float32 rows: row t, dimension m*dsub + n = norm_t * c[n], the
    product fastText's addcode adds."""
    import numpy as np

    qnorm = r.take("?")[0]
    rows, dim = r.take("2q")
    codesize = r.take("i")[0]
    codes = r.array(np.uint8, codesize)
    centroids, nsubq, dsub, lastdsub = _quantizer(r)
    norms = np.ones(rows, np.float32)
    if qnorm:
        norm_codes = r.array(np.uint8, rows)
        norm_centroids, *_ = _quantizer(r)
        norms = norm_centroids[norm_codes.astype(np.int64)]
    codes = codes.reshape(rows, nsubq).astype(np.int64)
    out = np.empty((rows, dim), np.float32)
    for m in range(nsubq):
        d = lastdsub if m == nsubq - 1 else dsub
        base = m * KSUB * dsub
        for n in range(d):
            values = centroids[base + codes[:, m] * d + n]
            out[:, m * dsub + n] = norms * values
    return out


def fasttext_hash(word: bytes) -> int:
    """fastText's word hash: FNV-1a over the bytes taken as signed chars."""
    h = 2166136261
    for c in word:
        h = ((h ^ ((c - 256) & 0xFFFFFFFF if c >= 128 else c)) * 16777619) & 0xFFFFFFFF
    return h


def _huffman(counts: list[int]) -> tuple[list[int], list[int]]:
    """fastText's buildTree: (left, right) of its 2n - 1 nodes."""
    n = len(counts)
    count = [int(c) for c in counts] + [10**15] * (n - 1)
    left, right = [-1] * (2 * n - 1), [-1] * (2 * n - 1)
    leaf, node = n - 1, n
    for i in range(n, 2 * n - 1):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j], leaf = leaf, leaf - 1
            else:
                mini[j], node = node, node + 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return left, right


def _table(keys: list[bytes] | Any, hashes: list[int], slots: int) -> Any:
    import numpy as np

    table = np.full(slots, -1, np.int32)
    for i, h in enumerate(hashes):
        s = h & (slots - 1)
        while table[s] != -1:
            s = (s + 1) & (slots - 1)
        table[s] = i
    return table


class _Model(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in
                ("dim", "nwords", "bucket", "minn", "maxn", "osz", "eos", "pruned")] + [
        ("input", ctypes.c_void_p), ("output", ctypes.c_void_p),
        ("word_slot", ctypes.c_void_p), ("word_slots", ctypes.c_int64),
        ("word_data", ctypes.c_void_p), ("word_off", ctypes.c_void_p),
        ("prune_key", ctypes.c_void_p), ("prune_val", ctypes.c_void_p),
        ("prune_slots", ctypes.c_int64),
        ("left", ctypes.c_void_p), ("right", ctypes.c_void_p)]


class CompiledModel:
    """A fastText model's predictions through the C kernel; `labels`: the label strings
    (`__label__` prefix included), in the model's order."""

    def __init__(self, lib: Any, arrays: dict[str, Any], ints: dict[str, int],
                 labels: list[str]):
        self._lib = lib
        self._arrays = arrays  # kept alive: the structure points into them
        self.labels = labels
        self._model = _Model(**ints, **{k: v.ctypes.data for k, v in arrays.items()},
                             word_slots=len(arrays["word_slot"]),
                             prune_slots=len(arrays["prune_key"]))

    def predict(self, texts: Any, chars: int, k: int, threshold: float) -> tuple[Any, Any]:
        """(label indexes, probabilities), each [len(texts), k] (-1 and 0 past a text's
        predictions), of a string array's texts cut to `chars` code points; k <= 0: all."""
        import numpy as np
        import pyarrow as pa

        k = k if k > 0 else len(self.labels)
        texts = texts.cast(pa.large_string())
        n = len(texts)
        buffers = texts.buffers()
        offsets = np.ascontiguousarray(
            np.frombuffer(buffers[1], np.int64)[texts.offset:texts.offset + n + 1])
        data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None and \
            len(buffers[2]) else np.zeros(1, np.uint8)
        labels = np.empty((n, k), np.int32)
        probs = np.empty((n, k), np.float32)
        if self._lib.ft_predict(ctypes.byref(self._model), data.ctypes.data,
                                offsets.ctypes.data, n, chars, k, ctypes.c_float(threshold),
                                labels.ctypes.data, probs.ctypes.data):
            raise MemoryError("ft_predict: out of memory")
        return labels, probs


def load(path: str) -> CompiledModel | None:
    """The model at `path` for `ft_predict`, or None (kernels not built, or a model this
    kernel does not cover)."""
    import numpy as np

    from .quality import kernels

    lib = kernels.library()
    if lib is None:
        return None
    with open(path, "rb") as fh:
        r = _Reader(fh.read())
    magic, version = r.take("2i")
    if magic != MAGIC or version != VERSION:
        return None
    (dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, minn, maxn,
     _lr_update, _t) = r.take("12id")
    if loss != LOSS_HS or model != MODEL_SUP or word_ngrams > 1:
        return None
    size, nwords, nlabels = r.take("3i")
    _ntokens, prune_size = r.take("2q")
    words, counts = [], []
    for _ in range(size):
        words.append(r.cstring())
        counts.append(r.take("q")[0])
        r.take("b")
    prune = r.array(np.int32, 2 * max(prune_size, 0)).reshape(-1, 2)
    if not r.take("?")[0]:  # a dense input matrix: not this kernel's case
        return None
    rows = _dequantized(r)
    if r.take("?")[0]:  # a quantized output matrix
        return None
    out_rows, out_dim = r.take("2q")
    output = r.array(np.float32, out_rows * out_dim).reshape(out_rows, out_dim)
    if r.pos != len(r.data) or EOS not in words[:nwords] or rows.shape[1] != dim:
        return None
    left, right = _huffman(counts[nwords:])
    vocab = words[:nwords]
    word_slots = 1 << max(4, (2 * nwords).bit_length())
    prune_slots = 1 << max(4, (3 * len(prune)).bit_length())
    prune_table = np.full(prune_slots, -1, np.int32)
    prune_values = np.zeros(prune_slots, np.int32)
    for key, value in prune.tolist():
        s = (key * 2654435761) & 0xFFFFFFFF & (prune_slots - 1)
        while prune_table[s] != -1:
            s = (s + 1) & (prune_slots - 1)
        prune_table[s], prune_values[s] = key, value
    arrays = {
        "input": np.ascontiguousarray(rows, np.float32),
        "output": np.ascontiguousarray(output[:nlabels - 1], np.float32),
        "word_slot": _table(vocab, [fasttext_hash(w) for w in vocab], word_slots),
        "word_data": np.frombuffer(b"".join(vocab) + b"\0", np.uint8),
        "word_off": np.r_[0, np.cumsum([len(w) for w in vocab])].astype(np.int64),
        "prune_key": prune_table, "prune_val": prune_values,
        "left": np.asarray(left, np.int32), "right": np.asarray(right, np.int32)}
    ints = {"dim": dim, "nwords": nwords, "bucket": bucket, "minn": minn, "maxn": maxn,
            "osz": nlabels, "eos": words.index(EOS), "pruned": (prune_size > 0) - (prune_size < 0)}
    labels = [w.decode("utf-8") for w in words[nwords:]]
    return CompiledModel(lib, arrays, ints, labels)
