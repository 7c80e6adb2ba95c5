"""CPU per document of each quality stats op, with the compiled kernels and with their
Python/numpy twins (what runs when _kernels.c is not built), in one process.

    python benchmarks/quality_kernels.py [--docs 5000] [--repeat 3]

Input: the web-like corpus of tests/quality_corpus.py, in batches of 1,000 documents. Each
batch goes through the chain's stats ops in order, as in `apply_quality_filters` (without
the filters in between): Gopher quality (tokenizes; later ops reuse its tokens), Gopher
repetition, C4 with `clean=True`, FineWeb on the cleaned text. Each op's `process` is timed
with `time.process_time`, the cleaned text converted to Arrow as the engine does; kernels
on and off alternate per batch and repeat, so a loaded machine slows both alike. Reported:
microseconds of CPU per document per op and the ratio. Results:
benchmarks/results/quality_kernels.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_parser, print_table, write_results  # noqa: E402

BATCH = 1000


def _timed(op: object, batch: object, totals: dict) -> object:
    start = time.process_time()
    out = op.process(batch)
    text = out.get("text") if isinstance(out, dict) else None
    if text is not None and not hasattr(text, "to_pylist"):  # as the engine stores it
        import pyarrow as pa

        out["text"] = pa.array(text, pa.string())
    totals[op.name] += time.process_time() - start
    return out


def _chain(batch: object, ops: list, totals: dict) -> None:
    from datamill.ops.quality import tokenize

    tokenize._CACHE.clear()
    for op in ops:
        out = _timed(op, batch, totals)
        if op.name == "c4_stats":  # FineWeb measures the cleaned text
            batch = batch.set_column(0, "text", out["text"])


def main() -> None:
    parser = bench_parser(__doc__, docs=5000, repeat=3)
    args = parser.parse_args()

    import pyarrow as pa
    from tests.quality_corpus import generate

    from datamill.ops.quality import (
        C4Stats,
        FineWebStats,
        GopherQualityStats,
        GopherRepetitionStats,
        kernels,
    )

    built = kernels.library
    if built() is None:
        sys.exit("the kernels are not built: python setup.py build_ext --inplace")
    texts = generate(args.docs, seed=3)
    batches = [pa.table({"text": texts[i:i + BATCH]}) for i in range(0, len(texts), BATCH)]
    ops = [GopherQualityStats(), GopherRepetitionStats(), C4Stats(clean=True), FineWebStats()]
    names = [op.name for op in ops]
    totals = {mode: dict.fromkeys(names, 0.0) for mode in ("kernels", "twins")}
    for r in range(args.repeat):
        for b, batch in enumerate(batches):
            modes = ["kernels", "twins"] if (r + b) % 2 == 0 else ["twins", "kernels"]
            for mode in modes:
                kernels.library = built if mode == "kernels" else (lambda: None)
                _chain(batch, ops, totals[mode])
    kernels.library = built
    per_doc = 1e6 / (args.repeat * len(texts))
    rows = [{"op": name, "twins_us_per_doc": totals["twins"][name] * per_doc,
             "kernels_us_per_doc": totals["kernels"][name] * per_doc,
             "ratio": totals["twins"][name] / max(totals["kernels"][name], 1e-9)}
            for name in names]
    print_table(rows, ["op", "twins_us_per_doc", "kernels_us_per_doc", "ratio"],
                f"CPU per document, {len(texts)} documents x {args.repeat}")
    print(f"results: {write_results('quality_kernels', {'docs': len(texts), 'rows': rows})}")


if __name__ == "__main__":
    main()
