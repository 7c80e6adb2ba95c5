"""nsfw_score and image_text_area against their raw packages on the same images.

    python benchmarks/image_extras.py [--nsfw-images 64] [--ocr-images 16] [--repeat 2]

Input: the JPEG variants of the scikit-image photos that benchmarks/embed_images.py makes
(random crops, shorter side 256-640), in one Parquet file per detector.

Variants (each in a fresh child process, the raw and datamill sides alternating which goes
first, `--repeat` times; one onnxruntime thread everywhere):
  nsfw_raw   nudenet's NudeDetector (its packaged 320n.onnx) on the bytes read before the clock,
             `detect_batch` in batches of 8 (nudenet decodes with OpenCV).
  nsfw_dm    Dataset.read(file).apply("as_images").apply("nsfw_score").write(parquet)
             .run(workers=1): reading, the safe decoder, scaling to 640, Arrow, Parquet writes.
  ocr_raw    RapidOCR (its packaged PP-OCR det/cls/rec models) on each image's bytes.
  ocr_dm     the same chain with image_text_area (detection, direction and recognition, as
             ocr_raw; plus the union of the boxes' areas).

Reported: wall and CPU seconds per variant and the datamill / raw ratios. The machine is shared
and loaded: the per-round ratios (both sides back to back) are the measure to read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import WORK_DIR, fresh_dir, median, print_table, report_child, run_child, write_results
from embed_images import cpu_seconds, generate, input_dir


def input_file(images: int) -> Path:
    return next(iter(sorted(input_dir(images, 1).glob("*.parquet"))))


def raw_nsfw(data: list[bytes]) -> int:
    import onnxruntime
    from nudenet import NudeDetector

    from datamill.ops.image.nsfw import nudenet_model

    path, _ = nudenet_model()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    detector = NudeDetector(model_path=str(path))
    detector.onnx_session = onnxruntime.InferenceSession(str(path), options,
                                                         providers=["CPUExecutionProvider"])
    return len(detector.detect_batch(data, batch_size=8))


def raw_ocr(data: list[bytes]) -> int:
    from rapidocr import RapidOCR

    from datamill.ops.image.ocr import rapidocr_models

    paths, _ = rapidocr_models()
    engine = RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        **{f"{stage}.model_path": str(p) for stage, p in paths.items()}})
    return sum(1 for b in data if engine(b) is not None)


def child(args: argparse.Namespace) -> None:
    import onnxruntime  # noqa: F401 - imported before the clock in every variant
    import pyarrow.parquet as pq

    import datamill as dm

    try:  # pyarrow imports pandas at its first pa.array() when installed: not ours to time
        import pandas  # noqa: F401
    except ImportError:
        pass
    kind, side = args.child.split("_")
    file = str(input_file(args.nsfw_images if kind == "nsfw" else args.ocr_images))
    if side == "raw":
        data = pq.read_table(file)["image"].to_pylist()
        cpu, start = cpu_seconds(), time.perf_counter()
        rows = raw_nsfw(data) if kind == "nsfw" else raw_ocr(data)
    else:
        work = fresh_dir(WORK_DIR / f"image-extras-{args.child}")
        op = "nsfw_score" if kind == "nsfw" else "image_text_area"
        cpu, start = cpu_seconds(), time.perf_counter()
        pipeline = (dm.Dataset.read(file).apply("as_images").apply(op)
                    .write(str(work / "out")))
        pipeline.run(work / "workdir", workers=1, progress=False)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (work / "out").glob("*.parquet"))
    report_child({"wall_s": round(time.perf_counter() - start, 3),
                  "cpu_s": round(cpu_seconds() - cpu, 2), "rows_out": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nsfw-images", type=int, default=64)
    parser.add_argument("--ocr-images", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    generate(args.nsfw_images, 1)
    generate(args.ocr_images, 1)
    common = ["--nsfw-images", str(args.nsfw_images), "--ocr-images", str(args.ocr_images)]
    env = {"OMP_NUM_THREADS": "1"}
    runs: dict[str, list[dict]] = {v: [] for v in ("nsfw_raw", "nsfw_dm", "ocr_raw", "ocr_dm")}
    for r in range(args.repeat):
        for kind in ("nsfw", "ocr"):
            pair = [f"{kind}_raw", f"{kind}_dm"]
            for v in pair[r % 2:] + pair[:r % 2]:
                res = run_child([__file__, *common, "--child", v], env=env)
                runs[v].append(res)
                print(f"  round {r + 1}/{args.repeat} {v:<9} {res['wall_s']:8.2f}s  "
                      f"cpu={res['cpu_s']:.1f}s  rows={res['rows_out']}", flush=True)
    summary, paired = [], {}
    for kind, n in (("nsfw", args.nsfw_images), ("ocr", args.ocr_images)):
        raw, ours = runs[f"{kind}_raw"], runs[f"{kind}_dm"]
        paired[kind] = [d["wall_s"] / b["wall_s"] for b, d in zip(raw, ours)]
        for v, rs in ((f"{kind}_raw", raw), (f"{kind}_dm", ours)):
            summary.append({
                "variant": v, "images": n, "median_s": median([x["wall_s"] for x in rs]),
                "cpu_s": median([x["cpu_s"] for x in rs]),
                "images_per_cpu_s": n / median([x["cpu_s"] for x in rs]),
                "ratio_vs_raw": median([x["wall_s"] for x in rs]) /
                median([x["wall_s"] for x in raw]),
                "cpu_ratio": median([x["cpu_s"] for x in rs]) / median([x["cpu_s"] for x in raw]),
                "rows_out": rs[0]["rows_out"]})
    print_table(summary, ["variant", "images", "median_s", "cpu_s", "images_per_cpu_s",
                          "ratio_vs_raw", "cpu_ratio", "rows_out"],
                "nsfw_score and image_text_area vs nudenet and rapidocr (1 thread, workers=1)")
    for kind, ratios in paired.items():
        print(f"{kind}: datamill / raw wall per round: {', '.join(f'{p:.3f}' for p in ratios)}")
    path = write_results("image_extras", {
        "nsfw_images": args.nsfw_images, "ocr_images": args.ocr_images, "repeat": args.repeat,
        "paired_ratios": paired, "summary": summary, "runs": runs})
    print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
