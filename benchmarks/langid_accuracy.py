"""Accuracy and speed of language identification on real multilingual prose.

The prose comes from the translated manual pages Debian ships (manpages-fr, manpages-de, ...,
and the English pages under /usr/share/man/man*): passages of 100+ characters of running
text, with roff markup stripped and the language known from the path. Paragraphs left
untranslated (identical to a paragraph of the English page, or full of English function
words) are excluded so that a label is never wrong by construction.

    apt-get install -y manpages manpages-fr manpages-de manpages-es manpages-it manpages-pl \\
        manpages-pt-br manpages-ru manpages-nl manpages-ja manpages-cs manpages-uk \\
        manpages-sv manpages-tr manpages-zh
    python benchmarks/langid_accuracy.py                      # passages from /usr/share/man
    python benchmarks/langid_accuracy.py --source sample      # the committed test sample
    python benchmarks/langid_accuracy.py --write-sample tests/data/langid/debian_manpages.jsonl

It prints accuracy per language and overall, and rows/s of the `detect_language` operation
(one process, after setup), for each backend; results go to benchmarks/results/langid.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "tests" / "data" / "langid" / "debian_manpages.jsonl"
MAN = Path("/usr/share/man")
# directory under /usr/share/man -> ISO 639-1 code ("" = the English pages in man1..man8)
DIRECTORIES = {
    "": "en", "cs": "cs", "de": "de", "es": "es", "fr": "fr", "it": "it", "ja": "ja",
    "nl": "nl", "pl": "pl", "pt_BR": "pt", "ru": "ru", "sv": "sv", "tr": "tr", "uk": "uk",
    "zh_CN": "zh",
}
SECTIONS = ("man1", "man5", "man7", "man8")

_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", ":": "\u0308", "~": "\u0303",
            ",": "\u0327"}
# inline escapes; any other escape is left in place, which rejects its paragraph
_ESCAPES = [
    (re.compile(r'\\".*$'), ""),                      # comments
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),      # font changes
    (re.compile(r"\\s[+-]?\d"), ""),                   # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),      # strings
    (re.compile(r"\\\((lq|rq|Lq|Rq)"), '"'),
    (re.compile(r"\\\((oq|cq|aq)"), "'"),
    (re.compile(r"\\\((em|en|hy)"), "-"),
    (re.compile(r"\\\[u([0-9A-F]{4,5})\]"), lambda m: chr(int(m.group(1), 16))),
    (re.compile(r"\\\((['`^:~,])([A-Za-z])"), lambda m: unicodedata.normalize(
        "NFC", m.group(2) + _ACCENTS[m.group(1)])),
    (re.compile(r"\\\(ss"), "\u00df"),
    (re.compile(r"\\\((bu|co|rg|de|mu|tm)"), ""),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\[&|^,/:%)]|\\c$"), ""),
]
_TEXT_MACROS = re.compile(r"^\.(B|I|BR|BI|IB|IR|RB|RI|SM|SB)\s+(.*)$")
_WORD = re.compile(r"[^\W\d_]+")
# Words common in English and rare in the other languages of the set: a paragraph full of
# them was left untranslated. Only used to exclude passages, never to label one.
_ENGLISH = {"the", "and", "with", "that", "this", "which", "are", "from", "will", "when",
            "should", "these", "must", "not", "can", "you", "your", "its", "or", "all", "been",
            "has", "have", "were", "was", "there", "their", "they", "any", "into", "only",
            "other", "such", "used", "using", "specified"}
_SYNTAX = re.compile(r"[\[\]{}|=<>_/*#;]")  # synopses, code and option lists
_NOTICE = re.compile(r"(?i)copyright|\bGPL|https?:|www\.")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def strip_roff(source: str) -> list[str]:
    """Paragraphs of running text from a roff man page: text lines joined, requests dropped,
    inline escapes removed; a paragraph ends at any request that is not inline text."""
    paragraphs: list[str] = []
    current: list[str] = []
    table = False
    for line in source.splitlines():
        if line.startswith((".TS", ".TE")):  # tbl tables are not prose
            table = line.startswith(".TS")
        if table:
            continue
        macro = _TEXT_MACROS.match(line)
        if macro:
            line = macro.group(2).replace('"', "")
        elif line.startswith((".", "'")):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        for pattern, repl in _ESCAPES:
            line = pattern.sub(repl, line)
        line = " ".join(line.split())
        if line:
            current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def is_prose(text: str, lang: str) -> bool:
    """100+ characters of running text: mostly letters, no markup left, enough words."""
    if len(text) < 100 or "\ufffd" in text or "\\" in text or "@" in text:
        return False
    if len(_SYNTAX.findall(text)) > 2 or _NOTICE.search(text):
        return False
    if not re.search(r"[.!?:。！？]", text):  # no sentence, e.g. a list of names
        return False
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.7 * len(text.replace(" ", "")):
        return False
    if lang in ("ja", "zh"):
        return len(_CJK.findall(text)) >= 0.3 * letters
    words = _WORD.findall(text.lower())
    if len(words) < 15:
        return False
    if lang != "en":
        english = sum(w in _ENGLISH for w in words)
        return english < 3 and english < 0.05 * len(words)
    return True


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _pages(lang_dir: str) -> list[Path]:
    base = MAN / lang_dir if lang_dir else MAN
    return sorted(p for s in SECTIONS for p in (base / s).glob("*") if p.is_file())


def extract(per_language: int, seed: int = 0, max_chars: int = 600) -> list[dict]:
    """Up to `per_language` passages per language, drawn deterministically (sorted pages,
    seeded shuffle, at most 3 passages per page so that no single page dominates)."""
    english_pages = {p.name: p for p in _pages("")}
    translated = {p.name for d in DIRECTORIES if d for p in _pages(d)}
    out: list[dict] = []
    for lang_dir, lang in DIRECTORIES.items():
        # English: the originals of translated pages (not whatever else is installed)
        pages = _pages(lang_dir) if lang_dir else [p for p in _pages("") if p.name in translated]
        rng = random.Random(f"{seed}-{lang_dir}")
        rng.shuffle(pages)
        found: list[dict] = []
        seen: set[str] = set()  # licence notices and the like repeat across pages
        for page in pages:
            paragraphs = [p for p in strip_roff(_read(page)) if is_prose(p, lang)]
            if lang_dir and page.name in english_pages:
                original = set(strip_roff(_read(english_pages[page.name])))
                paragraphs = [p for p in paragraphs if p not in original]
            paragraphs = [p for p in paragraphs if p not in seen]
            seen.update(paragraphs)
            for text in paragraphs[:3]:
                if len(text) > max_chars:  # cut at a word boundary
                    text = text[:max_chars].rsplit(" ", 1)[0]
                found.append({"lang": lang, "text": text, "source": str(page)})
            if len(found) >= per_language:
                break
        out += found[:per_language]
    return out


def provenance(rows: list[dict]) -> None:
    """Add the Debian package and version that ships each passage's page (dpkg -S)."""
    real = {r["source"]: os.path.realpath(r["source"]) for r in rows}  # alternatives
    paths = sorted(set(real.values()))
    owners: dict[str, str] = {}
    for i in range(0, len(paths), 200):
        res = subprocess.run(["dpkg", "-S", *paths[i:i + 200]], capture_output=True, text=True)
        for line in res.stdout.splitlines():
            pkg, _, path = line.partition(": ")
            owners[path] = pkg.split(":")[0]
    versions = {}
    for pkg in set(owners.values()):
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             capture_output=True, text=True)
        versions[pkg] = res.stdout.strip()
    for r in rows:
        pkg = owners.get(real[r["source"]], "?")
        r["package"] = f"{pkg} {versions.get(pkg, '')}".strip()


def evaluate(rows: list[dict], backend: str, max_chars: int = 1000) -> dict:
    import pyarrow as pa

    from datamill.ops.langid import DetectLanguage

    op = DetectLanguage(backend=backend, max_chars=max_chars)
    start = time.perf_counter()
    op.setup()
    setup_s = time.perf_counter() - start
    batch = pa.table({"text": [r["text"] for r in rows]})
    op.process(batch.slice(0, 10))  # warm up
    start = time.perf_counter()
    result = op.process(batch)
    seconds = time.perf_counter() - start
    predicted = result["language"].to_pylist()
    hits: Counter = Counter()
    totals: Counter = Counter()
    confusions: dict[str, Counter] = defaultdict(Counter)
    for r, p in zip(rows, predicted):
        totals[r["lang"]] += 1
        if p == r["lang"]:
            hits[r["lang"]] += 1
        else:
            confusions[r["lang"]][p] += 1
    return {
        "backend": backend, "rows": len(rows), "accuracy": sum(hits.values()) / len(rows),
        "per_language": {k: hits[k] / totals[k] for k in sorted(totals)},
        "confusions": {k: dict(v.most_common(3)) for k, v in sorted(confusions.items())},
        "rows_per_s": len(rows) / seconds, "chars_per_s": sum(len(r["text"]) for r in rows)
        / seconds, "setup_s": setup_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["debian", "sample"], default="debian")
    parser.add_argument("--per-language", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["langid", "lingua", "lingua_low"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-sample", type=Path, default=None,
                        help="write the passages (JSONL, with their package) and stop")
    args = parser.parse_args(argv)

    if args.source == "sample":
        rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    else:
        rows = extract(args.per_language, args.seed)
        if not rows:
            sys.exit("no passages found: install the Debian manpages-* packages (see --help)")
    if args.write_sample:
        provenance(rows)
        args.write_sample.parent.mkdir(parents=True, exist_ok=True)
        with open(args.write_sample, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"lang": r["lang"], "text": r["text"],
                                     "package": r["package"],
                                     "page": r["source"]}, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} passages to {args.write_sample}")
        return 0

    counts = Counter(r["lang"] for r in rows)
    print(f"{len(rows)} passages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    results = [evaluate(rows, b) for b in args.backends]
    langs = sorted(counts)
    print(f"{'backend':<11}{'overall':>8}{'rows/s':>9}{'setup s':>8}  "
          + " ".join(f"{k:>4}" for k in langs))
    for r in results:
        print(f"{r['backend']:<11}{r['accuracy']:>8.3f}{r['rows_per_s']:>9.0f}"
              f"{r['setup_s']:>8.2f}  "
              + " ".join(f"{100 * r['per_language'][k]:>4.0f}" for k in langs))
    for r in results:
        print(f"{r['backend']} errors (true -> predicted): {r['confusions']}")
    out = HERE / "results" / "langid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "source": args.source,
                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
