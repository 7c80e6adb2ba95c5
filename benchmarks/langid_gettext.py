"""A language-ID set from the gettext catalogues installed on this machine.

Every `/usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo` holds a program's messages
translated by people into one language, known from the path; the English originals are the
catalogues' message ids. Two kinds of rows come out, per language:

- passages: one translated message of 100-200 characters of running text (placeholders,
  markup and accelerator marks removed);
- documents: consecutive messages of one catalogue joined by newlines up to about 2,000
  characters, the length `detect_language` classifies by default.

A translation identical to its English message id, or full of English function words, is
left out (catalogues sometimes keep English), so a label is right by construction. The
split into `dev` and `test` is by domain (a hash of the catalogue's name), so a program's
vocabulary never lands on both sides: thresholds are tuned on `dev`, reported on `test`.
"""

from __future__ import annotations

import gettext
import hashlib
import random
import re
from collections import defaultdict
from pathlib import Path

LOCALE = Path("/usr/share/locale")
# locale directory -> label (both py3langid and fastText call Norwegian Bokmål "no")
ALIASES = {"pt_BR": "pt", "pt_PT": "pt", "zh_CN": "zh", "zh_TW": "zh", "nb": "no"}
# languages with enough translated text here that both py3langid and fastText know
LANGUAGES = (
    "be bg bs ca cs cy da de el en eo es et eu fi fr ga gl hr hu id it ja ka ko lt lv ms nl "
    "nn no oc pl pt ro ru sk sl sq sr sv th tr uk vi zh").split()
_PLACEHOLDER = re.compile(r"%(\(\w+\))?[-+ #0-9.*$lhqjzt]*[a-zA-Z%]|\{[^{}]*\}|<[^<>]*>|\$\w+")
_ACCELERATOR = re.compile(r"(?<!\w)[_&](?=\w)|\(_\w\)|\(&\w\)")
_WORD = re.compile(r"[^\W\d_]+")
_ENGLISH = {"the", "and", "with", "that", "this", "which", "are", "from", "will", "when",
            "should", "these", "must", "not", "can", "you", "your", "its", "or", "all",
            "has", "have", "were", "was", "there", "their", "they", "any", "into", "only",
            "other", "such", "used", "using", "specified", "file", "files", "is", "of", "to"}
_CJK_OR_THAI = {"ja", "ko", "zh", "th"}


def clean(message: str) -> str:
    """A message as running text: placeholders, markup, accelerators and line breaks gone."""
    text = _ACCELERATOR.sub("", _PLACEHOLDER.sub("", message))
    return " ".join(text.split())


def is_text(text: str, lang: str, min_words: int) -> bool:
    """Mostly letters, enough words, and (for a translation) not English left in place."""
    visible = len(text.replace(" ", ""))
    if not visible or sum(ch.isalpha() for ch in text) < 0.75 * visible:
        return False
    if lang in _CJK_OR_THAI:
        return True
    words = _WORD.findall(text.lower())
    if len(words) < min_words:
        return False
    if lang != "en":
        english = sum(w in _ENGLISH for w in words)
        return english < 2 or english < 0.05 * len(words)
    return True


def split_of(domain: str) -> str:
    return "dev" if hashlib.sha1(domain.encode()).digest()[0] % 2 == 0 else "test"


def _messages(path: Path) -> list[tuple[str, str]]:
    """(English id, translation) pairs of a catalogue, in id order; plural forms: the first."""
    try:
        with open(path, "rb") as fh:
            catalog = gettext.GNUTranslations(fh)._catalog  # the only reader of .mo files
    except (UnicodeDecodeError, OSError):  # a legacy encoding: not worth guessing
        return []
    pairs = []
    for key, value in catalog.items():
        if isinstance(key, tuple):
            if key[1] != 0:
                continue
            key = key[0]
        if key and isinstance(value, str) and value and value != key:
            pairs.append((key.split("\x04")[-1], value))  # "context\x04id" -> id
    return sorted(pairs)


def catalogues() -> dict[str, list[Path]]:
    """label -> its catalogue files, sorted."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(LOCALE.glob("*/LC_MESSAGES/*.mo")):
        locale = path.parts[-3]
        label = ALIASES.get(locale, locale)
        if label in LANGUAGES:
            found[label].append(path)
    return found


def extract(per_language: int, documents: int, split: str, seed: int = 0,
            doc_chars: int = 2000) -> list[dict]:
    """Up to `per_language` passages and `documents` documents per language, from the
    catalogues of `split` ("dev", "test" or "all"), drawn deterministically: catalogues
    shuffled with a seed, at most 5 passages and 2 documents per catalogue."""
    found = catalogues()
    english: dict[str, list[str]] = {}  # domain -> its message ids (the English originals)
    rows: list[dict] = []
    for lang in LANGUAGES:
        files = [p for p in found.get(lang, []) if split in ("all", split_of(p.stem))]
        if lang == "en":  # every catalogue's ids; one file per domain stands for it
            by_domain = {p.stem: p for lang_files in found.values() for p in lang_files
                         if split in ("all", split_of(p.stem))}
            files = sorted(by_domain.values())
        rng = random.Random(f"{seed}-{lang}")
        rng.shuffle(files)
        passages: list[dict] = []
        docs: list[dict] = []
        seen: set[str] = set()
        for path in files:
            pairs = _messages(path)
            if lang == "en":
                if path.stem in english:
                    continue
                english[path.stem] = [k for k, _ in pairs]
                texts = [clean(k) for k, _ in pairs]
            else:
                texts = [clean(v) for k, v in pairs if clean(k) != clean(v)]
            source = f"{path.parts[-3]}/{path.stem}"
            taken = 0
            for text in texts:
                if (taken < 5 and 100 <= len(text) <= 200 and text not in seen
                        and is_text(text, lang, 12)):
                    seen.add(text)
                    passages.append({"lang": lang, "kind": "passage", "text": text,
                                     "source": source})
                    taken += 1
            parts: list[str] = []
            size = 0
            made = 0
            for text in texts:
                if len(text) < 20 or not is_text(text, lang, 3):
                    continue
                parts.append(text)
                size += len(text) + 1
                if size >= doc_chars:
                    docs.append({"lang": lang, "kind": "document",
                                 "text": "\n".join(parts)[:doc_chars], "source": source})
                    parts, size = [], 0
                    made += 1
                    if made == 2:
                        break
            if len(passages) >= per_language and len(docs) >= documents:
                break
        rows += passages[:per_language] + docs[:documents]
    return rows
