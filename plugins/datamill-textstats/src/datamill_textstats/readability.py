"""Readability of English text: Flesch reading ease and the Flesch-Kincaid grade level.

    ease  = 206.835 - 1.015 * words / sentences - 84.6 * syllables / words
    grade = 0.39 * words / sentences + 11.8 * syllables / words - 15.59

Words are runs of letters (an inner apostrophe allowed); sentences end at `.`, `!` or `?`
(a text without one is one sentence); syllables are counted per word by groups of vowels,
less a silent final `e` (but not `-le`), at least one per word.
"""

from __future__ import annotations

import re
from typing import Any

from datamill import Arguments, Field, FilterOperation, MapOperation

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Syllables of an English word, by its groups of vowels."""
    word = word.lower().replace("'", "")
    count = len(_VOWELS.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(count, 1)


def scores(text: str | None) -> tuple[float, float, int] | None:
    """(reading ease, grade level, words) of `text`; None when it has no word."""
    if not text:
        return None
    words = _WORD.findall(text)
    if not words:
        return None
    sentences = max(len(_SENTENCE_END.findall(text)), 1)
    per_sentence = len(words) / sentences
    per_word = sum(syllables(w) for w in words) / len(words)
    ease = 206.835 - 1.015 * per_sentence - 84.6 * per_word
    grade = 0.39 * per_sentence + 11.8 * per_word - 15.59
    return round(ease, 2), round(grade, 2), len(words)


class Readability(MapOperation):
    """Flesch reading ease and Flesch-Kincaid grade level of English `text`.

    Reading ease is about 0-100 (higher reads easier: 60-70 is plain English); the grade
    level is the US school grade needed to follow the text. Both are null for a text with
    no word. `readability_words` counts the words the scores are based on."""

    name = "readability"
    version = "1"
    consumes = {"text": "string"}
    produces = {"reading_ease": "float64", "grade_level": "float64",
                "readability_words": "int64"}

    def process(self, batch: Any) -> Any:
        found = [scores(t) for t in batch["text"].to_pylist()]
        return {"reading_ease": [s and s[0] for s in found],
                "grade_level": [s and s[1] for s in found],
                "readability_words": [s[2] if s else 0 for s in found]}


class ReadabilityFilterArgs(Arguments):
    max_grade: float = Field(12.0, description="Drop texts that need a higher US school grade "
                                               "than this (reason readability:too_hard).")
    min_words: int = Field(1, ge=1, description="Drop texts with fewer words than this, whose "
                                                "scores mean little (reason "
                                                "readability:too_few_words).")


class ReadabilityFilter(FilterOperation):
    """Keep English texts up to a Flesch-Kincaid grade level.

    A text with no word is dropped as `readability:too_few_words`, like one shorter than
    `min_words`; a text above `max_grade` as `readability:too_hard`."""

    name = "readability_filter"
    version = "1"
    Args = ReadabilityFilterArgs
    consumes = {"text": "string"}

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        keep, reasons = [], []
        for text in batch["text"].to_pylist():
            found = scores(text)
            if found is None or found[2] < self.args.min_words:
                why = "readability:too_few_words"
            elif found[1] > self.args.max_grade:
                why = "readability:too_hard"
            else:
                why = ""
            keep.append(not why)
            reasons.append(why)
        return pa.array(keep, pa.bool_()), reasons  # typed: a batch may have no row
