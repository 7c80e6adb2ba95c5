"""Batches of images bounded by bytes: peak memory of reading image bytes from Parquet.

    python benchmarks/image_batches.py [--images 1200] [--repeat 2]

Input: a Parquet file of `--images` real photos (scikit-image's samples at several sizes, as
PNG and JPEG, ~300 KB each; a unique trailer per row so that no two values are equal), in row
groups of 128 rows, image column uncompressed.

Pipeline (1 worker): read_parquet(image_columns=["image"]) -> a map that sniffs each image's
format and measures it -> write_parquet. Variants, each in a fresh child process, alternating:
  bytes   the defaults: readers yield at most READ_BATCH_BYTES (64 MiB), the pass cuts batches
          holding images at IMAGE_BATCH_BYTES (64 MiB), row by row
  rows    the behaviour before: readers yield 65,536 rows whatever their size, units of work
          bounded by rows only, batches cut at 2 MiB by the average row
Reported: wall, peak RSS of the process tree, and the batches the map saw (its counter).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import (
    DATA_DIR,
    WORK_DIR,
    fresh_dir,
    median,
    print_table,
    report_child,
    run_child,
    write_results,
)

VARIANTS = ("bytes", "rows")


def input_file(images: int) -> Path:
    return DATA_DIR / f"image-batches-{images}.parquet"


def generate(images: int) -> Path:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    import skimage.data as data
    from PIL import Image

    path = input_file(images)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        pixels = getattr(data, name)()
        for scale, fmt in ((1, "PNG"), (1, "JPEG"), (2, "PNG")):
            out = io.BytesIO()
            Image.fromarray(pixels[::scale, ::scale]).save(out, fmt, quality=95)
            encoded.append(out.getvalue())
    values = [encoded[i % len(encoded)] + i.to_bytes(8, "big") for i in range(images)]
    table = pa.table({"n": list(range(images)), "image": values})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=128, compression="none", use_dictionary=False)
    tmp.replace(path)
    return path


def child(variant: str, images: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    import datamill as dm
    from datamill.executors import rowwise
    from datamill.image_type import sniff_format, storage
    from datamill.io import files

    if variant == "rows":
        files.READ_BATCH_BYTES = 2**62
        rowwise.IMAGE_BATCH_BYTES = rowwise.BATCH_BYTES
    extra = {"bytes_per_partition": 2**62} if variant == "rows" else {}

    class Measure(dm.MapOperation):
        name = "bench_measure_images"
        consumes = {"image": "image"}
        produces = {"n_bytes": "int64", "sniffed": "string"}

        def process(self, batch):
            self.count("batches")
            values = storage(batch["image"])
            return {"n_bytes": pc.binary_length(values).cast(pa.int64()),
                    "sniffed": [sniff_format(v) for v in values.to_pylist()]}

    work = fresh_dir(WORK_DIR / f"image-batches-{variant}")
    start = time.perf_counter()
    result = (dm.Dataset.read(str(input_file(images)), image_columns=["image"], **extra)
              .apply(Measure).write(str(work / "out")).run(work / "w", workers=1,
                                                          progress=False))
    wall = time.perf_counter() - start
    step = result.step("bench_measure_images")
    report_child({"variant": variant, "wall_s": round(wall, 2), "rows": step["rows_out"],
                  "batches": step["counters"].get("batches")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.images)
        return
    path = generate(args.images)
    size_mb = path.stat().st_size / 2**20
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.repeat):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            runs[v].append(run_child([__file__, "--images", str(args.images), "--child", v]))
    rows = []
    for v in VARIANTS:
        rows.append({"variant": v, "input_mb": round(size_mb, 1),
                     "batches": runs[v][0]["batches"],
                     "wall_s": median([x["wall_s"] for x in runs[v]]),
                     "peak_rss_tree_mb": median([x["peak_rss_tree_mb"] for x in runs[v]]),
                     "peak_rss_single_mb": median([x["peak_rss_single_mb"] for x in runs[v]])})
    print_table(rows, list(rows[0]), title=f"{args.images} images from Parquet, 1 worker")
    ratio = rows[1]["peak_rss_tree_mb"] / max(rows[0]["peak_rss_tree_mb"], 1)
    print(f"peak RSS rows/bytes: {ratio:.2f}x")
    write_results("image_batches", {"images": args.images, "input_mb": round(size_mb, 1),
                                    "summary": rows, "runs": runs,
                                    "peak_rss_rows_over_bytes": round(ratio, 2)})


if __name__ == "__main__":
    sys.exit(main())
