"""A deterministic web-like corpus with known duplicate clusters, for deduplication quality.

    python benchmarks/dedup_corpus.py --docs 10000 --out benchmarks/data/dedup-10000.jsonl

Each document (about 2,000 characters: a title line and paragraphs of sentences drawn from a
Zipf vocabulary) has an `id`, its `text`, its ground-truth `cluster`, its `kind` and `jaccard`:

    original   the first document of a cluster
    exact      an identical copy of its cluster's original
    near       an edited copy (word substitutions, insertions, deletions, and sometimes an
               added header or footer line) whose word 5-gram Jaccard similarity to the
               original is close to a target drawn from [near_low, near_high]; `jaccard` holds
               the exact value (tokens: lowercase, whitespace split, punctuation stripped)
    related    a document derived from another cluster's original at low similarity
               ([0.2, 0.5]): a hard negative, in a cluster of its own

Document `i` depends only on the seed and the plan (which depends on the seed and the document
count), so a run is reproducible byte for byte. Clusters are scattered across the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

NGRAM = 5
PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”„‘’«»‹›–—…¡¿·•"


@dataclass(frozen=True)
class Plan:
    """Who is who: for each document position, its cluster, kind, base and target."""

    cluster: Any  # int64[n]: ground-truth cluster
    kind: Any  # int8[n]: index into KINDS
    base: Any  # int64[n]: cluster whose original the text derives from
    target: Any  # float64[n]: target Jaccard similarity to that original
    variant: Any  # int64[n]: ordinal of the document within its cluster


KINDS = ("original", "exact", "near", "related")


def make_plan(docs: int, seed: int = 0, dup_rate: float = 0.15, exact_share: float = 0.3,
              related_rate: float = 0.04, near_low: float = 0.8,
              near_high: float = 0.98) -> Plan:
    """Cluster sizes: with probability `dup_rate` a cluster has 2 to 8 documents (geometric),
    otherwise 1. Members after the first are `exact` copies (share `exact_share`) or `near`
    copies. A singleton is `related` to an earlier cluster with probability `related_rate`."""
    import numpy as np

    rng = np.random.default_rng([seed, 1])
    cluster, kind, base, target, variant = [], [], [], [], []
    c = 0
    while len(cluster) < docs:
        size = 1 + min(int(rng.geometric(0.5)), 7) if rng.random() < dup_rate else 1
        related = size == 1 and c > 0 and rng.random() < related_rate
        for m in range(size):
            cluster.append(c)
            variant.append(m)
            if related:
                kind.append(3)
                base.append(int(rng.integers(0, c)))
                target.append(float(rng.uniform(0.2, 0.5)))
            elif m == 0:
                kind.append(0), base.append(c), target.append(1.0)
            elif rng.random() < exact_share:
                kind.append(1), base.append(c), target.append(1.0)
            else:
                kind.append(2), base.append(c)
                target.append(float(rng.uniform(near_low, near_high)))
        c += 1
    # the last cluster may overflow: its extra members are cut
    arrays = [np.asarray(a)[:docs] for a in (cluster, kind, base, target, variant)]
    order = rng.permutation(docs)
    return Plan(*(a[order] for a in arrays))


def tokens(text: str) -> list[str]:
    """The tokenization the Jaccard values are measured with (minhash_dedup's)."""
    return [t for t in (w.strip(PUNCT) for w in text.lower().split()) if t]


def shingles(words: list[str], n: int = NGRAM) -> set:
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(tokens(a)), shingles(tokens(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


class Corpus:
    """Texts of a plan: originals from per-cluster seeds, edits from per-document seeds."""

    def __init__(self, plan: Plan, seed: int = 0, chars: int = 2000):
        import numpy as np
        from _common import _vocabulary

        self.plan = plan
        self.seed = seed
        self.chars = chars
        words, lookup = _vocabulary(np.random.default_rng([seed, 2]))
        self.words = words.to_pylist()
        self.lookup = lookup

    def _draw(self, rng: Any, n: int) -> list[str]:
        return [self.words[i] for i in self.lookup[rng.integers(0, len(self.lookup), n)]]

    def original(self, cluster: int) -> str:
        """Title line, then paragraphs of 3-6 sentences of 8-24 words, about `chars`
        characters."""
        import numpy as np

        rng = np.random.default_rng([self.seed, 3, cluster])
        budget = self.chars // 5 + 40  # words: enough for `chars` characters
        words = self._draw(rng, budget)
        lengths = rng.integers(8, 25, size=budget // 8)
        per_paragraph = rng.integers(3, 7, size=budget // 24 + 1)
        title_words = int(rng.integers(4, 10))
        title = " ".join(w.capitalize() for w in words[:title_words])
        at, size, sentences, paragraphs = title_words, len(title), [], []
        for n in lengths.tolist():
            if size >= self.chars or at + n > len(words):
                break
            sentence = " ".join(words[at:at + n])
            at += n
            sentence = sentence[:1].upper() + sentence[1:].rstrip(",.") + "."
            sentences.append(sentence)
            size += len(sentence) + 1
            if len(sentences) >= per_paragraph[len(paragraphs)]:
                paragraphs.append(" ".join(sentences))
                sentences = []
        if sentences:
            paragraphs.append(" ".join(sentences))
        return "\n\n".join([title, *paragraphs])

    def edited(self, text: str, target: float, rng: Any) -> tuple[str, float]:
        """Apply random word edits (and maybe a header/footer line) until the 5-gram
        Jaccard similarity to `text` is as close to `target` as the edit granularity allows
        (binary search over the number of edits)."""
        lines = text.split("\n")
        if rng.random() < 0.3:
            extra = " ".join(self._draw(rng, int(rng.integers(4, 9))))
            lines = [extra.title(), *lines] if rng.random() < 0.5 else [*lines, extra + "."]
        words = "\n".join(lines).split(" ")
        reference = shingles(tokens(text))
        # k disjoint edits change about NGRAM * k shingles; overlaps need more: search wide
        estimate = len(words) * (1 - target) / (NGRAM * (1 + target))
        cap = min(len(words), int(3 * estimate) + 8)
        ops = rng.integers(0, 3, size=cap).tolist()
        where = rng.random(cap).tolist()
        new_words = self._draw(rng, cap)

        def apply(k: int) -> str:
            out = list(words)
            for op, at, word in zip(ops[:k], where[:k], new_words[:k]):
                i = min(int(at * len(out)), len(out) - 1)
                if op == 0:
                    out[i] = word
                elif op == 1:
                    out.insert(i, word)
                elif len(out) > 1:
                    del out[i]
            return " ".join(out)

        def similarity(k: int) -> float:
            edited = shingles(tokens(apply(k)))
            union = len(reference | edited)
            return len(reference & edited) / union if union else 1.0

        lo, hi = 0, cap
        while lo < hi:  # smallest k with similarity <= target
            mid = (lo + hi) // 2
            if similarity(mid) <= target:
                hi = mid
            else:
                lo = mid + 1
        best = min({max(lo - 1, 0), lo}, key=lambda k: abs(similarity(k) - target))
        return apply(best), similarity(best)

    def document(self, i: int) -> dict:
        import numpy as np

        p = self.plan
        kind = KINDS[int(p.kind[i])]
        base = int(p.base[i])
        text = self.original(base)
        similarity = 1.0
        if kind in ("near", "related"):
            rng = np.random.default_rng([self.seed, 4, int(p.cluster[i]), int(p.variant[i])])
            text, similarity = self.edited(text, float(p.target[i]), rng)
        return {"id": f"doc-{i:08d}", "text": text, "cluster": int(p.cluster[i]),
                "kind": kind, "jaccard": round(similarity, 4)}

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self.plan.cluster)):
            yield self.document(i)


def _write_range(job: tuple) -> dict:
    """Worker: write documents [lo, hi) of the corpus to `path`; return their kinds."""
    from collections import Counter

    plan, seed, lo, hi, path = job
    corpus = Corpus(plan, seed)
    kinds: Counter[str] = Counter()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(lo, hi):
            doc = corpus.document(i)
            kinds[doc["kind"]] += 1
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return dict(kinds)


def write_corpus(path: str | Path, docs: int, seed: int = 0, jobs: int | None = None,
                 **plan_options: Any) -> dict:
    """Write the corpus as JSONL (skipped when `path` already holds the same corpus), with
    `jobs` processes (default: all cores; the output does not depend on it); returns its
    summary (also written to PATH.meta.json)."""
    import multiprocessing as mp
    import os
    import shutil
    from collections import Counter

    path = Path(path)
    meta_path = path.with_name(path.name + ".meta.json")
    key = {"docs": docs, "seed": seed, **plan_options}
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return meta
    plan = make_plan(docs, seed, **plan_options)
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, -(-docs // 2000)))
    bounds = [docs * k // jobs for k in range(jobs + 1)]
    parts = [path.with_name(f"{path.name}.part{k}") for k in range(jobs)]
    work = [(plan, seed, bounds[k], bounds[k + 1], parts[k]) for k in range(jobs)]
    if jobs == 1:
        counts = [_write_range(work[0])]
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            counts = pool.map(_write_range, work)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out)
            part.unlink()
    tmp.replace(path)
    kinds: Counter[str] = Counter()
    for c in counts:
        kinds.update(c)
    meta = {"key": key, "docs": docs, "kinds": dict(kinds),
            "clusters": int(len(set(plan.cluster.tolist()))), "bytes": path.stat().st_size}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def pair_scores(predicted: Any, truth: Any) -> dict:
    """Pairwise precision, recall and F1 of a predicted clustering against the truth (two
    equal-length label arrays): pairs of documents put in one cluster, counted exactly from
    the contingency table."""
    import numpy as np

    predicted = np.unique(np.asarray(predicted), return_inverse=True)[1]
    truth = np.unique(np.asarray(truth), return_inverse=True)[1]

    def pairs(counts: Any) -> int:
        counts = counts.astype(np.int64)
        return int((counts * (counts - 1) // 2).sum())

    joint = np.unique(predicted.astype(np.int64) * (int(truth.max()) + 1 if len(truth) else 1)
                      + truth, return_counts=True)[1]
    tp = pairs(joint)
    pred_pairs = pairs(np.bincount(predicted))
    true_pairs = pairs(np.bincount(truth))
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "true_pairs": true_pairs, "predicted_pairs": pred_pairs, "correct_pairs": tp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, help="processes (default: all cores)")
    args = parser.parse_args()
    print(json.dumps(write_corpus(args.out, args.docs, args.seed, args.jobs), indent=1))


if __name__ == "__main__":
    main()
