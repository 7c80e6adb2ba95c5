"""Accuracy and speed of language identification, per `detect_language` backend.

Two sources of text whose language is known from where it is installed:

* gettext (default): the translated message catalogues under /usr/share/locale, 46
  languages (benchmarks/langid_gettext.py): passages of 100-200 characters and documents of
  ~2,000 characters, from the `test` half of the catalogues (split by program, so the
  thresholds of `auto`, tuned on `dev`, are measured on programs they never saw);
* debian: passages of 100+ characters of running text of the translated manual pages Debian
  ships (manpages-fr, manpages-de, ..., and the English pages), roff markup stripped;
  paragraphs left untranslated are excluded so that a label is never wrong by construction.

    python benchmarks/langid_accuracy.py                          # gettext, test split
    python benchmarks/langid_accuracy.py --split dev              # where auto was tuned
    python benchmarks/langid_accuracy.py --source debian --per-language 200   # needs:
    apt-get install -y manpages manpages-fr manpages-de manpages-es manpages-it manpages-pl \\
        manpages-pt-br manpages-ru manpages-nl manpages-ja manpages-cs manpages-uk \\
        manpages-sv manpages-tr manpages-zh
    python benchmarks/langid_accuracy.py --source sample          # the committed test sample
    python benchmarks/langid_accuracy.py --source gettext --split test --per-language 12 \\
        --documents 2 --write-sample tests/data/langid/gettext_sample.jsonl

It prints accuracy overall, per kind (passage, document) and per language, and documents per
CPU-second of the `detect_language` operation (one process, after setup) on the passages,
the documents, and `--web-docs` web-like documents of 2,000 characters (the generator of the
quality benchmarks, tests/quality_corpus.py), for each backend. Results:
benchmarks/results/langid_<source>.json.
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
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


def _cpu_rate(op: Any, texts: list[str]) -> float:
    """Texts per CPU-second of `op.process` (this process, after setup and a warm-up)."""
    import pyarrow as pa

    batch = pa.table({"text": texts})
    op.process(batch.slice(0, 20))
    start = time.process_time()
    op.process(batch)
    return len(texts) / (time.process_time() - start)


def evaluate(rows: list[dict], backend: str, web: list[str]) -> dict:
    """Accuracy (overall, per kind of row, per language) and speed of one backend."""
    import pyarrow as pa

    from datamill.ops.langid import DetectLanguage

    op = DetectLanguage(backend=backend)
    start = time.perf_counter()
    op.setup()
    setup_s = time.perf_counter() - start
    predicted = op.process(pa.table({"text": [r["text"] for r in rows]}))["language"]
    hits: Counter = Counter()
    totals: Counter = Counter()
    confusions: dict[str, Counter] = defaultdict(Counter)
    for r, p in zip(rows, predicted.to_pylist()):
        for key in (r["lang"], r.get("kind", "passage")):
            totals[key] += 1
            hits[key] += p == r["lang"]
        if p != r["lang"]:
            confusions[r["lang"]][p] += 1
    kinds = sorted({r.get("kind", "passage") for r in rows})
    langs = sorted({r["lang"] for r in rows})
    speed = {kind: _cpu_rate(op, [r["text"] for r in rows if r.get("kind", "passage") == kind])
             for kind in kinds}
    if web:
        speed["web_2000"] = _cpu_rate(op, web)
    return {
        "backend": backend, "rows": len(rows), "accuracy": sum(hits[k] for k in langs) / len(rows),
        "by_kind": {k: hits[k] / totals[k] for k in kinds},
        "per_language": {k: hits[k] / totals[k] for k in langs},
        "confusions": {k: dict(v.most_common(3)) for k, v in sorted(confusions.items())},
        "docs_per_cpu_s": {k: round(v) for k, v in speed.items()}, "setup_s": setup_s,
    }


def web_documents(count: int) -> list[str]:
    """The web-like documents of the quality benchmarks, cut to 2,000 characters."""
    sys.path.insert(0, str(HERE.parent))
    from tests.quality_corpus import generate

    return [t[:2000] for t in generate(count, seed=0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["gettext", "debian", "sample"], default="gettext")
    parser.add_argument("--split", choices=["dev", "test", "all"], default="test",
                        help="gettext: which catalogues (by domain) to draw from")
    parser.add_argument("--per-language", type=int, default=100)
    parser.add_argument("--documents", type=int, default=30,
                        help="gettext: documents (~2,000 characters) per language")
    parser.add_argument("--web-docs", type=int, default=5000,
                        help="speed on this many web-like 2,000-character documents")
    parser.add_argument("--backends", nargs="+",
                        default=["auto", "fasttext", "langid", "lingua", "lingua_low"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-sample", type=Path, default=None,
                        help="write the rows (JSONL, with their source) and stop")
    args = parser.parse_args(argv)

    if args.source == "sample":
        rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    elif args.source == "gettext":
        from langid_gettext import extract as extract_gettext

        rows = extract_gettext(args.per_language, args.documents, args.split, args.seed)
        if not rows:
            sys.exit("no gettext catalogues found under /usr/share/locale")
    else:
        rows = extract(args.per_language, args.seed)
        if not rows:
            sys.exit("no passages found: install the Debian manpages-* packages (see --help)")
    if args.write_sample:
        if args.source == "debian":
            provenance(rows)
        args.write_sample.parent.mkdir(parents=True, exist_ok=True)
        with open(args.write_sample, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} rows to {args.write_sample}")
        return 0

    counts = Counter(r["lang"] for r in rows)
    kinds = Counter(r.get("kind", "passage") for r in rows)
    print(f"{len(rows)} rows ({dict(kinds)}), {len(counts)} languages: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    web = web_documents(args.web_docs) if args.web_docs else []
    results = [evaluate(rows, b, web) for b in args.backends]
    print(f"{'backend':<11}{'overall':>8}" + "".join(f"{k:>10}" for k in sorted(kinds))
          + "   docs per CPU-second (" + ", ".join(results[0]["docs_per_cpu_s"]) + ")")
    for r in results:
        print(f"{r['backend']:<11}{r['accuracy']:>8.4f}"
              + "".join(f"{r['by_kind'][k]:>10.4f}" for k in sorted(kinds)) + "   "
              + ", ".join(str(v) for v in r["docs_per_cpu_s"].values()))
    langs = sorted(counts)
    print(f"{'per language':<11}" + " ".join(f"{k:>4}" for k in langs))
    for r in results:
        print(f"{r['backend']:<11}" + " ".join(f"{100 * r['per_language'][k]:>4.0f}"
                                              for k in langs))
    for r in results:
        print(f"{r['backend']} errors (true -> predicted): {r['confusions']}")
    out = HERE / "results" / f"langid_{args.source}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "source": args.source,
                               "split": args.split, "rows": len(rows), "kinds": kinds,
                               "loadavg": os.getloadavg(), "results": results},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
