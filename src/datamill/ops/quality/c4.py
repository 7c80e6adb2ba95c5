"""C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2):
line rules that clean the text, document rules that drop it, and the bad-words list.
Definitions and defaults follow datatrove 0.10.1's C4QualityFilter and C4BadWordsFilter; see
docs/quality.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ._base import FilterArgs, StatsArgs, StatsOperation, ThresholdFilter, below
from .c4_lines import KeptLines, line_rules
from .tokenize import get_tokenizer

DATA = Path(__file__).parent / "data"
# words of a language's list that are common sub-words in languages written without spaces
BADWORDS_ALLOWLIST = {"ja": {"sm", "グロ", "女の子"}, "zh": {"性"}}
NO_SPACE_LANGUAGES = ("ja", "th", "zh")

# cleaned text -> its word count, from the last batch c4_stats cleaned (fast tokenizer); lets
# fineweb_stats skip tokenizing the same text again
CLEAN_WORD_COUNTS: dict[str, int] = {}


class C4StatsArgs(StatsArgs):
    prefix: str = Field("c4_", description="Prefix of the produced stat columns.")
    clean: bool = Field(False, description="Also replace the text column with its kept lines "
                                           "(what C4 and datatrove do to kept documents).")
    remove_citations: bool = Field(True, description="Remove [1], [edit], [citation needed].")
    filter_no_terminal_punct: bool = Field(True, description="Drop lines that do not end in "
                                                             ". ? ! \" ' (or end in '...').")
    min_words_per_line: int = Field(3, description="Drop lines with fewer words (-1: off).")
    max_word_length: int = Field(1000, description="Drop lines with a longer word (-1: off).")
    filter_javascript: bool = Field(True, description="Drop lines mentioning javascript.")
    filter_policy: bool = Field(True, description="Drop lines about cookies / terms of use.")


class C4Stats(StatsOperation):
    """C4 line rules and document statistics, as columns `{prefix}<stat>`: `lines`,
    `lines_kept` (lines that end in terminal punctuation, have at least 3 words and no word
    over 1000 characters, and do not mention javascript or cookie/terms-of-use policies),
    `sentences` (in the kept lines, split as spaCy's sentencizer does), `lorem_ipsum` and
    `curly_bracket` (a kept-so-far line contains "lorem ipsum" / "{"). With `clean=True` the
    text column is replaced by its kept lines (citations removed), as C4 does."""

    name = "c4_stats"
    Args = C4StatsArgs
    consumes = {"{column}": "string"}
    in_place = True
    STATS = {"lines": "int64", "lines_kept": "int64", "sentences": "int64",
             "lorem_ipsum": "bool", "curly_bracket": "bool"}

    def resolve_produces(self, schema: dict) -> dict:
        out = {self.args.prefix + s: t for s, t in self.STATS.items()}
        if self.args.clean:
            out[self.args.column] = "string"
        return self._template(out)

    def stats(self, texts: list[str], column: Any = None) -> dict[str, Any]:
        import numpy as np

        from .tokenize import cached_features

        a = self.args
        n = len(texts)
        kept = line_rules(texts, column, a)
        doc = kept.doc
        # with the documents' tokens at hand (fast tokenizer), a kept line's tokens are those
        # of its span in the document
        doc_tok = cached_features(texts, "fast") if a.tokenizer == "fast" else None
        sentences = np.zeros(n, np.int64)
        words = np.zeros(n, np.int64) if a.tokenizer == "fast" else None
        if len(doc):
            if a.tokenizer == "fast":
                per_line, line_words = _line_sentences(kept, doc_tok)
                words = np.bincount(doc, weights=line_words, minlength=n).astype(np.int64)
            else:
                per_line = get_tokenizer(a.tokenizer).sentence_counts(kept.lines())
            sentences = np.bincount(doc, weights=per_line, minlength=n).astype(np.int64)
        out = {"lines": kept.n_lines, "lines_kept": np.bincount(doc, minlength=n),
               "sentences": sentences, "lorem_ipsum": kept.lorem,
               "curly_bracket": kept.curly}
        if a.clean:
            cleaned = out["__text__"] = kept.cleaned()
            if words is not None:
                strings = cleaned.to_pylist() if hasattr(cleaned, "to_pylist") else cleaned
                CLEAN_WORD_COUNTS.update(zip(strings, words.tolist()))
        return out

    def process(self, batch: Any) -> Any:
        CLEAN_WORD_COUNTS.clear()
        values = self.compute(batch.column(self.args.column))
        out = {self.args.prefix + k: v for k, v in values.items() if k != "__text__"}
        if self.args.clean:
            text = values["__text__"]
            out[self.args.column] = text if hasattr(text, "to_pylist") else list(text)
        return out


def _line_sentences(kept: KeptLines, doc_tok: Any) -> tuple[Any, Any]:
    """Sentences and tokens of each kept line (fast tokenizer). Lines with a span (character
    offsets in their document) take their tokens from `doc_tok`, the documents' tokens: a
    token never crosses a line break, so they are the line's own. Other lines, and all of them
    without `doc_tok`, are tokenized here."""
    import numpy as np

    from . import kernels
    from .tokenize import featurize, sentence_counts

    if doc_tok is None:
        features = featurize(kept.lines())
        return sentence_counts(features), features.counts
    doc, span = kept.doc, kept.spans
    own = span[:, 0] >= 0
    per_line = np.zeros(len(doc), np.int64)
    words = np.zeros(len(doc), np.int64)
    if own.any():
        found = kernels.span_sentences(doc_tok, doc[own], span[own, 0], span[own, 1])
        if found is None:
            found = _span_sentences(doc_tok, doc[own], span[own], kept.texts)
        per_line[own], words[own] = found
    if not own.all():
        rest = np.flatnonzero(~own)
        features = featurize([kept.line(i) for i in rest.tolist()])
        per_line[rest] = sentence_counts(features)
        words[rest] = features.counts
    return per_line, words


def _span_sentences(doc_tok: Any, doc: Any, span: Any, texts: list[str]) -> tuple[Any, Any]:
    """Sentences and tokens of each span (start, end characters of document doc[i]): the
    numpy twin of kernels.span_sentences."""
    import numpy as np

    from .tokenize import Tokens, sentence_counts

    base = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1, out=base[1:])
    where = doc_tok.start + np.repeat(base[:-1], doc_tok.counts)  # sorted
    lo = np.searchsorted(where, base[doc] + span[:, 0])
    hi = np.searchsorted(where, base[doc] + span[:, 1])
    counts = hi - lo
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    index = np.repeat(lo - offsets[:-1], counts) + np.arange(offsets[-1])
    # only what sentence_counts reads
    line_tok = Tokens(offsets=offsets, **{k: getattr(doc_tok, k)[index]
                                          for k in ("length", "punct", "sent_end")})
    return sentence_counts(line_tok), counts


class C4FilterArgs(FilterArgs):
    prefix: str = Field("c4_", description="Prefix of the stat columns to read.")
    min_num_sentences: int | None = Field(5, description="Drop documents with fewer sentences "
                                                         "in their kept lines (None: off).")
    filter_lorem_ipsum: bool = Field(True, description="Drop documents with 'lorem ipsum'.")
    filter_curly_bracket: bool = Field(True, description="Drop documents with a '{'.")


class C4Filter(ThresholdFilter):
    """Drop documents failing C4's document rules, read from `c4_stats` columns (computed
    here with the default line rules, not stored, when missing). Reasons: c4:lorem_ipsum,
    c4:curly_bracket, c4:too_few_sentences. Run `c4_stats` with `clean=True` to also keep only
    the lines C4 keeps."""

    name = "c4_filter"
    Args = C4FilterArgs
    stats_op = C4Stats
    family = "c4"

    def rules(self, s: dict[str, Any]) -> list[tuple[str, Any]]:
        import numpy as np

        a = self.args
        lorem = np.asarray(s["lorem_ipsum"], dtype=bool)
        curly = np.asarray(s["curly_bracket"], dtype=bool)
        return [("lorem_ipsum", lorem if a.filter_lorem_ipsum else np.zeros_like(lorem)),
                ("curly_bracket", curly if a.filter_curly_bracket else np.zeros_like(curly)),
                ("too_few_sentences", below(s["sentences"], a.min_num_sentences))]


# --- bad words --------------------------------------------------------------------------------
def load_badwords(language: str = "en", path: str | None = None) -> list[str]:
    """A bad-words list: one word or phrase per line, from `path` or the list shipped for
    `language` (English: LDNOOBW, CC-BY-4.0; see data/README.md)."""
    if path is None:
        shipped = DATA / f"badwords-{language}.txt"
        if not shipped.exists():
            raise ValueError(f"no bad-words list shipped for language {language!r} (only 'en'); "
                             "pass a file with one word per line")
        path = str(shipped)
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read bad-words list {path!r}: {exc}") from None
    words = {w.strip().lower() for w in lines if w.strip() and not w.startswith("#")}
    return sorted(words - BADWORDS_ALLOWLIST.get(language, set()))


def badwords_pattern(words: list[str], language: str = "en") -> str:
    """An RE2 pattern for the lowercased text: words flanked by non-word characters, except
    for languages written without spaces."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    if language in NO_SPACE_LANGUAGES:
        return f"(?:{alternatives})"
    return rf"(?:^|[^\pL\pN_])(?:{alternatives})(?:[^\pL\pN_]|$)"


def _check_list(args: Any) -> Any:
    if args.words_file is None and not (DATA / f"badwords-{args.language}.txt").exists():
        raise ValueError(f"no bad-words list shipped for language {args.language!r} (only "
                         "'en'); pass words_file= with one word per line")
    return args


class C4BadWordsStatsArgs(StatsArgs):
    prefix: str = Field("c4_", description="Prefix of the produced stat column.")
    language: str = Field("en", description="Language of the shipped list to use ('en').")
    words_file: str | None = Field(None, description="A bad-words file (one per line) "
                                                     "instead of the shipped list.")
    _check = model_validator(mode="after")(_check_list)


class C4BadWordsStats(StatsOperation):
    """`{prefix}badwords`: True when the lowercased text contains a word of the bad-words list
    (the LDNOOBW English list ships with datamill; `words_file` supplies any other list)
    flanked by non-word characters (anywhere, for ja/th/zh)."""

    name = "c4_badwords_stats"
    Args = C4BadWordsStatsArgs
    consumes = {"{column}": "string"}
    STATS = {"badwords": "bool"}

    def setup(self) -> None:
        self._pattern = badwords_pattern(load_badwords(self.args.language, self.args.words_file),
                                         self.args.language)

    def compute(self, column: Any) -> dict[str, Any]:
        import pyarrow.compute as pc

        if getattr(self, "_pattern", None) is None:
            self.setup()
        found = pc.match_substring_regex(pc.utf8_lower(column), self._pattern)
        return {"badwords": found.fill_null(False).to_numpy(zero_copy_only=False)}


class C4BadWordsFilterArgs(FilterArgs):
    prefix: str = Field("c4_", description="Prefix of the stat column to read.")
    language: str = Field("en", description="Language of the shipped list when computing here.")
    words_file: str | None = Field(None, description="A bad-words file when computing here.")
    _check = model_validator(mode="after")(_check_list)
    keep_fraction: float = Field(0.0, ge=0, le=1, description="Keep this share of documents "
                                                              "with bad words (chosen by a hash "
                                                              "of the text: deterministic).")


class C4BadWordsFilter(ThresholdFilter):
    """Drop documents containing a bad word (read from `c4_badwords_stats`, computed here when
    missing), except a deterministic `keep_fraction` of them. Reason: c4:badwords."""

    name = "c4_badwords_filter"
    Args = C4BadWordsFilterArgs
    stats_op = C4BadWordsStats
    family = "c4"

    def resolve_consumes(self, schema: dict) -> dict:
        out = super().resolve_consumes(schema)
        if self.args.keep_fraction > 0:
            out.update(self._template({"{column}": "string"}))
        return out

    def rules(self, s: dict[str, Any]) -> list[tuple[str, Any]]:
        return [("badwords", s["badwords"] & ~self._kept)]

    def process(self, batch: Any) -> Any:
        import hashlib

        import numpy as np

        self._kept = np.zeros(batch.num_rows, dtype=bool)
        if self.args.keep_fraction > 0:
            for i, text in enumerate(batch.column(self.args.column).to_pylist()):
                digest = hashlib.blake2b((text or "").encode(), digest_size=8).digest()
                self._kept[i] = int.from_bytes(digest, "little") / 2**64 < self.args.keep_fraction
        return super().process(batch)

