"""Language identification: `detect_language` computes a language and a confidence per row,
`language_filter` keeps rows by those columns (stats separate from the decision, so a
threshold can be tuned without recomputing the language)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import PipelineError
from ..operation import Arguments, FilterOperation, MapOperation

UNDETERMINED = "und"
_LETTER = re.compile(r"[^\W\d_]")
_NON_SPACE = re.compile(r"\S")
# control characters (not whitespace), replacement characters, private use and surrogates
_JUNK = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufffd\ue000-\uf8ff\ud800-\udfff]")
_NO_CONTENT = {"zxx", "und"}  # py3langid's "no linguistic content"


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
    backend: Literal["langid", "lingua", "lingua_low"] = Field(
        "langid", description="langid: py3langid (datamill[langid]; fast, small, 142 "
                              "labels); lingua: lingua-language-detector (datamill[lingua]) "
                              "in high-accuracy mode (slower, ~1.2 GB per worker, 75 "
                              "languages); lingua_low: its low-accuracy mode.")
    max_chars: int = Field(2000, ge=1, description="Classify the first max_chars characters "
                                                   "of each text (long documents stay cheap).")
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


class DetectLanguage(MapOperation):
    """Identify the language of a text column: `language` (ISO 639-1 code, or ISO 639-3
    where a language has no 639-1 code) and `language_score` (confidence, 0..1).

    Only the first `max_chars` characters are classified. Null, empty and whitespace-only
    texts, and texts that are mostly not letters (binary junk, numbers, markup) get
    language "und" with score 0. Backends: py3langid (default: fast, small, accurate on
    passages of 100+ characters) or lingua. Filter with `language_filter`."""

    name = "detect_language"
    Args = DetectLanguageArgs
    consumes = {"{column}": "string"}
    produces = {"language": "string", "language_score": "float32"}

    def setup(self) -> None:
        backend = self.args.backend
        if backend == "langid":
            try:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier
            except ImportError:
                raise PipelineError("the langid backend needs py3langid: "
                                    "pip install 'datamill[langid]'",
                                    operation=self.name) from None
            model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            if self.args.candidates:
                unknown = sorted(set(self.args.candidates) - set(model.nb_classes))
                if unknown:
                    raise PipelineError(f"py3langid does not know language(s) {unknown}",
                                        operation=self.name)
                model.set_languages(self.args.candidates)
            self._classify = model.classify
        else:
            self._classify = _lingua(self.args.candidates, backend == "lingua_low", self.name)

    def detect(self, text: str | None) -> tuple[str, float]:
        """(language, score) of one text (already cut to max_chars)."""
        if not text:
            return UNDETERMINED, 0.0
        visible = len(_NON_SPACE.findall(text))
        letters = len(_LETTER.findall(text))
        if (letters == 0 or letters < self.args.min_letters * visible
                or len(_JUNK.findall(text)) > 0.1 * visible):
            return UNDETERMINED, 0.0
        language, score = self._classify(text)
        if language in _NO_CONTENT:
            return UNDETERMINED, 0.0
        return language, min(max(float(score), 0.0), 1.0)

    def process(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not hasattr(self, "_classify"):
            self.setup()
        column = batch[self.args.column]
        texts = pc.utf8_slice_codeunits(column, 0, self.args.max_chars).to_pylist()
        results = [self.detect(t) for t in texts]
        return {"language": pa.array([r[0] for r in results], pa.string()),
                "language_score": pa.array([r[1] for r in results], pa.float32())}


def _lingua(candidates: list[str] | None, low_accuracy: bool, operation: str) -> Any:
    """A classify(text) -> (code, confidence) function backed by lingua."""
    try:
        import lingua
    except ImportError:
        raise PipelineError("the lingua backend needs lingua-language-detector: "
                            "pip install 'datamill[lingua]'",
                            operation=operation) from None
    if candidates:
        codes = []
        for code in candidates:
            try:
                codes.append(lingua.IsoCode639_1.from_str(code))
            except ValueError:
                raise PipelineError(f"lingua does not know language {code!r}",
                                    operation=operation) from None
        builder = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = lingua.LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def classify(text: str) -> tuple[str, float]:
        values = detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return UNDETERMINED, 0.0
        top = values[0]
        return top.language.iso_code_639_1.name.lower(), top.value

    return classify


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
