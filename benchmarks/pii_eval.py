"""redact_pii: precision, recall and F1 per PII type on the labelled sets, and throughput.

    python benchmarks/pii_eval.py [--seeds 0 1 2] [--mb 20] [--single-mb 50]

Quality: the generated corpus (tests/pii_corpus.py, one per seed), the hand-written
examples (tests/data/pii/handwritten.txt), the blind set (tests/data/pii/blind.jsonl,
written by another author; see docs/pii.md) and the held-out national phone set
(tests/data/pii/national_phones.jsonl, 19 numbering plans, with its hard negatives); a
prediction matches a gold span of the same type when their ranges overlap (`exact`: the share
of matches with the same boundaries). "touched": the share of hard-negative records (no gold
span) in which anything is redacted.
Throughput: `RedactPii.process` over batches of 2 KB documents (corpus sentences mixed into
prose), all types, placeholders, one core; and one document of `--single-mb` MB.
Results go to benchmarks/results/pii_eval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.pii_corpus import TYPES, corpus, handwritten, score  # noqa: E402

BLIND = REPO / "tests" / "data" / "pii" / "blind.jsonl"
NATIONAL = REPO / "tests" / "data" / "pii" / "national_phones.jsonl"


def blind(path: Path = BLIND) -> list[dict]:
    """A labelled set: one JSON object per line, spans as {"start", "end", "type"} (other
    keys, such as the national set's "region" and "cue", are kept)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [{**r, "spans": [(s["start"], s["end"], s["type"]) for s in r["spans"]]}
            for r in rows]


def national_phones() -> dict:
    """Phone P/R on the held-out national set, overall and with or without a cue word, and
    the share of its hard negatives in which anything is redacted."""
    from datamill.ops.pii import find_spans

    examples = blind(NATIONAL)
    predicted = find_spans([ex["text"] for ex in examples])
    out = {"all": score(examples, predicted)["phone"]}
    for cue in (True, False):
        pairs = [(ex, p) for ex, p in zip(examples, predicted) if ex["spans"] and ex["cue"] == cue]
        out["cue" if cue else "no_cue"] = score(*map(list, zip(*pairs)))["phone"]
    negatives = [p for ex, p in zip(examples, predicted) if not ex["spans"]]
    out["negatives"] = len(negatives)
    out["negatives_touched"] = sum(bool(p) for p in negatives) / len(negatives)
    return out


def quality(examples: list[dict]) -> dict:
    from datamill.ops.pii import find_spans

    return score(examples, find_spans([ex["text"] for ex in examples]))


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"{'type':12} {'gold':>5} {'P':>6} {'R':>6} {'F1':>6} {'exact':>6}  tp/fp/fn")
    for kind in TYPES:
        r = table[kind]
        gold = r["tp"] + r["fn"]
        print(f"{kind:12} {gold:5d} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
              f"{r['exact']:6.3f}  {r['tp']}/{r['fp']}/{r['fn']}")


def merge(tables: list[dict]) -> dict:
    out = {}
    for kind in TYPES:
        tp, fp, fn = (sum(t[kind][k] for t in tables) for k in ("tp", "fp", "fn"))
        exact = sum(t[kind]["exact"] * t[kind]["tp"] for t in tables) / tp if tp else 1.0
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        out[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
                     "f1": 2 * p * r / (p + r) if p + r else 0.0, "exact": exact}
    return out


def documents(megabytes: float, seed: int = 0) -> list[str]:
    """~2 KB documents: prose (this repo's docs) with labelled sentences mixed in."""
    rng = random.Random(seed)
    prose = " ".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))
    sentences = [ex["text"] for ex in corpus(seed=seed + 100)]
    docs, size = [], 0
    while size < megabytes * 1e6:
        start = rng.randrange(0, len(prose) - 2000)
        parts = [prose[start:start + rng.randint(1000, 2000)]]
        parts += [rng.choice(sentences) for _ in range(rng.randint(0, 3))]
        rng.shuffle(parts)
        docs.append("\n".join(parts))
        size += len(docs[-1])
    return docs


def throughput(docs: list[str], batch_rows: int = 4096) -> float:
    import pyarrow as pa

    from datamill.ops.pii import RedactPii

    op = RedactPii()
    op.setup()
    size = sum(len(d.encode()) for d in docs)
    start = time.perf_counter()
    for i in range(0, len(docs), batch_rows):
        op.process(pa.table({"text": docs[i:i + batch_rows]}))
    return size / 1e6 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mb", type=float, default=20, help="MB of 2 KB documents")
    parser.add_argument("--single-mb", type=float, default=50, help="size of one document")
    args = parser.parse_args()

    generated = merge([quality(corpus(seed=s)) for s in args.seeds])
    print_table(f"generated corpus, seeds {args.seeds} (overlap match)", generated)
    written = quality(handwritten())
    print_table("hand-written examples", written)
    unseen = quality(blind())
    print_table("blind set (tests/data/pii/blind.jsonl)", unseen)
    national = national_phones()
    print("\nheld-out national phones (tests/data/pii/national_phones.jsonl)")
    for part in ("all", "cue", "no_cue"):
        r = national[part]
        print(f"  {part:7} P {r['precision']:.3f}  R {r['recall']:.3f}  exact {r['exact']:.3f}"
              f"  tp/fp/fn {r['tp']}/{r['fp']}/{r['fn']}")
    print(f"  hard negatives touched: {national['negatives_touched']:.4f} "
          f"of {national['negatives']}")

    docs = documents(args.mb)
    mbps = throughput(docs)
    print(f"\nthroughput: {mbps:.1f} MB/s over {args.mb:g} MB of ~2 KB documents "
          f"(one core, all types)")
    single = "\n".join(docs)
    single = (single * (int(args.single_mb * 1e6) // len(single) + 1))[:int(args.single_mb * 1e6)]
    start = time.perf_counter()
    throughput([single], batch_rows=1)
    seconds = time.perf_counter() - start
    print(f"one {args.single_mb:g} MB document: {seconds:.1f} s")

    out = REPO / "benchmarks" / "results" / "pii_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "generated": generated, "handwritten": written, "blind": unseen,
        "national_phones": national, "seeds": args.seeds,
        "throughput_mb_s": round(mbps, 2), "single_document_mb": args.single_mb,
        "single_document_seconds": round(seconds, 2), "python": platform.python_version(),
        "machine": platform.machine()}, indent=2))
    print(f"results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
