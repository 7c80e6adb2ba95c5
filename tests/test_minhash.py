"""minhash_dedup: signatures, clusters, quality on a corpus with known clusters, lineage, and
the resolve phase of the global-operation engine."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import datamill as dm
from datamill.cli import main
from datamill.errors import ArgumentError, SchemaError
from datamill.ops.minhash import MinHashDedup
from datamill.reader import read_table

from .conftest import write_jsonl

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _corpus_module():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("dedup_corpus", BENCH / "dedup_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


corpus = _corpus_module()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """600 generated documents with known exact, near and related clusters."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    corpus.write_corpus(path, 600, seed=7, dup_rate=0.3)
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _predicted(workdir: Path, ds: dm.Dataset) -> tuple[list, list]:
    """(source rows' `id` and `cluster` in order, predicted cluster of each)."""
    source = read_table(workdir, ds.steps[0], ["_id", "id", "cluster"])
    dropped = dm.dropped_rows(workdir, "minhash_dedup")
    label = dict(zip(source["_id"].to_pylist(), source["_id"].to_pylist()))
    label.update(zip(dropped["_id"].to_pylist(), dropped["cluster_id"].to_pylist()))
    return source.to_pylist(), [label[i] for i in source["_id"].to_pylist()]


def test_signatures_estimate_jaccard_and_are_deterministic(generated):
    rows = _rows(generated)
    originals = {r["cluster"]: r["text"] for r in rows if r["kind"] == "original"}
    near = [r for r in rows if r["kind"] == "near" and r["cluster"] in originals]
    op = MinHashDedup()
    a, _ = op.signatures(pa.array([originals[r["cluster"]] for r in near]))
    b, _ = op.signatures(pa.array([r["text"] for r in near]))
    estimate = (a == b).mean(axis=1)
    truth = np.array([r["jaccard"] for r in near])
    assert abs(estimate.mean() - truth.mean()) < 0.02
    assert np.abs(estimate - truth).mean() < 0.05  # 112 values: std ~ 0.03 at s = 0.9
    again, _ = MinHashDedup().signatures(pa.array([r["text"] for r in near]))
    assert (again == b).all()
    other, _ = MinHashDedup(seed=2).signatures(pa.array([r["text"] for r in near]))
    assert (other != b).mean() > 0.9


def test_a_long_last_document_spanning_several_slices():
    """Regression: a batch ending in a document of more than SLICE_SHINGLES shingles."""
    from datamill.ops import minhash

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 50_000, minhash.SLICE_SHINGLES + 5_000)]
    texts = ["a short one here to start", " ".join(words)]
    sig, signed = MinHashDedup().signatures(pa.array(texts))
    assert signed.tolist() == [0, 1]
    alone, _ = MinHashDedup().signatures(pa.array(texts[1:]))
    assert (sig[1] == alone[0]).all()  # the slicing does not change a signature


def test_short_empty_and_punctuated_documents(tmp_path):
    texts = ["One, two!", "one two", "", "   ", "three four five six seven eight",
             "Three four five six seven EIGHT.", "three four five six seven nine"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t, "n": i} for i, t in enumerate(texts)])
    ds = dm.Dataset.read(path).apply("minhash_dedup")
    kept = ds.collect(tmp_path / "w", progress=False)["n"].to_pylist()
    assert kept == [0, 2, 3, 4, 6]  # empty texts are never compared, so both stay
    record = dm.load_manifest(tmp_path / "w")["datasets"][0]["steps"][1]
    assert record["counters"] == {"candidate_edges": 14, "documents_without_tokens": 2,
                                  "duplicate_clusters": 2}  # 2 pairs x 14 bands: 7 buckets each


def test_clusters_on_generated_corpus(generated, tmp_path):
    rows = _rows(generated)
    ds = dm.Dataset.read(generated, block_size=200_000).apply("minhash_dedup")
    assert len(ds.steps[0].op.partitions()) > 2
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    source, predicted = _predicted(tmp_path / "w", ds)
    by_id = {r["id"]: r for r in rows}
    kept_of_cluster = {}
    for row, label in zip(source, predicted):
        kept_of_cluster.setdefault(row["cluster"], label)
    # identical documents always cluster with their original
    exact = [p == kept_of_cluster[r["cluster"]] for r, p in zip(source, predicted)
             if by_id[r["id"]]["kind"] == "exact"]
    assert exact and all(exact)
    # near duplicates above 0.9 are removed with high recall
    high = [p == kept_of_cluster[r["cluster"]] for r, p in zip(source, predicted)
            if by_id[r["id"]]["kind"] == "near" and by_id[r["id"]]["jaccard"] > 0.9]
    assert len(high) > 20 and sum(high) / len(high) >= 0.97
    # unrelated documents (originals of different clusters) are kept
    originals = [p for r, p in zip(source, predicted) if by_id[r["id"]]["kind"] == "original"]
    assert len(set(originals)) >= 0.99 * len(originals)
    scores = corpus.pair_scores(predicted, [r["cluster"] for r in source])
    assert scores["f1"] >= 0.95 and scores["precision"] >= 0.97, scores
    record = result.step("minhash_dedup")
    assert record["dropped"] == {"near_duplicate": len(source) - len(set(predicted))}
    clusters = set(dm.dropped_rows(tmp_path / "w")["cluster_id"].to_pylist())
    assert record["counters"]["duplicate_clusters"] == len(clusters)
    assert record["counters"]["candidate_edges"] >= record["dropped"]["near_duplicate"]
    assert record["counters"]["documents_without_tokens"] == 0
    assert not (tmp_path / "w" / "steps" / ds.step.key / "shuffle").exists()


def test_same_kept_rows_with_one_or_two_workers(generated, tmp_path):
    ds = dm.Dataset.read(generated, block_size=300_000).apply("minhash_dedup")
    one = ds.collect(tmp_path / "w1", workers=1, progress=False)
    two = ds.collect(tmp_path / "w2", workers=2, progress=False)
    assert one.num_rows < 600 and one["id"].to_pylist() == two["id"].to_pylist()
    d1 = dm.dropped_rows(tmp_path / "w1").sort_by("_id")
    d2 = dm.dropped_rows(tmp_path / "w2").sort_by("_id")
    assert d1.equals(d2)


def test_cluster_lineage_is_queryable(generated, tmp_path, capsys):
    ds = dm.Dataset.read(generated).apply("minhash_dedup")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    dropped = dm.dropped_rows(tmp_path / "w", "minhash_dedup")
    assert set(dropped.schema.names) >= {"_id", "_reason", "cluster_id", "cluster_size"}
    members = defaultdict(list)
    for row in dropped.to_pylist():
        members[row["cluster_id"]].append(row["_id"])
    sizes = {r["cluster_id"]: r["cluster_size"] for r in dropped.to_pylist()}
    for kept, dups in members.items():
        assert sizes[kept] == len(dups) + 1  # the kept row is the cluster's first row
        assert min([kept, *dups]) == kept
    kept_id, dups = max(members.items(), key=lambda kv: len(kv[1]))
    assert sorted(result.duplicates(kept_id)["_id"].to_pylist()) == sorted(dups)
    assert sorted(dm.duplicates(tmp_path / "w", kept_id, "minhash_dedup")["_id"].to_pylist()) \
        == sorted(dups)
    kept_ids = set(read_table(tmp_path / "w", ds.step, ["_id"])["_id"].to_pylist())
    assert kept_id in kept_ids and not kept_ids & {d for ds_ in members.values() for d in ds_}
    assert main(["inspect", str(tmp_path / "w"), "--duplicates", str(kept_id)]) == 0
    out = capsys.readouterr().out
    assert f"duplicates of row {kept_id} dropped by minhash_dedup: {len(dups)}" in out
    assert out.count("near_duplicate") >= len(dups)  # the reason stays readable


def test_arguments_and_column_type_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "a b c", "n": 1}])
    with pytest.raises(ArgumentError, match="bands"):
        dm.Dataset.read(path).apply("minhash_dedup", bands=0)
    with pytest.raises(SchemaError, match="'n'"):
        dm.Dataset.read(path).apply("minhash_dedup", column="n")


class _CountingResolve(dm.GlobalOperation):
    """Test op: pairs rows of equal `n % 3`, then keeps one row per group in resolve."""

    name = "_test_counting_resolve"
    consumes = {"n": "int64"}
    resolves = True
    default_reason = "grouped"
    calls: list[str] = []

    def scan(self, batch):
        n = batch.column("n").to_numpy()
        return {"_key": pa.array((n % 3).astype(np.uint64)), "group": pa.array(n % 3)}

    def reduce(self, bucket):
        return bucket.select(["_id", "_part", "_pos", "group"])

    def resolve(self, tables):
        type(self).calls.append("resolve")
        table = pa.concat_tables(list(tables)).sort_by([("_part", "ascending"),
                                                         ("_pos", "ascending")])
        seen, reasons = set(), []
        for g in table["group"].to_pylist():
            reasons.append(None if g not in seen else "grouped")
            seen.add(g)
        yield table.select(["_id", "_part", "_pos"]).append_column(
            "_reason", pa.array(reasons, pa.string()))


def test_resolve_phase_resumes_from_its_committed_output(tmp_path, monkeypatch):
    from datamill.executors import global_phases

    path = write_jsonl(tmp_path / "t.jsonl", [{"n": i} for i in range(40)])
    ds = dm.Dataset.read(path, block_size=60).apply(_CountingResolve)
    real_apply = global_phases.apply_partition

    def failing_apply(workdir, step, partition):
        raise RuntimeError("killed during apply")

    monkeypatch.setattr(global_phases, "apply_partition", failing_apply)
    with pytest.raises(RuntimeError, match="killed during apply"):
        ds.run(tmp_path / "w", workers=1, progress=False)
    assert (tmp_path / "w" / "steps" / ds.step.key / "shuffle" / "resolve" / "_done.json").exists()
    monkeypatch.setattr(global_phases, "apply_partition", real_apply)
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table["n"].to_pylist() == [0, 1, 2]
    assert _CountingResolve.calls == ["resolve"]  # not recomputed on resume


def test_docs_example_runs(generated, tmp_path, monkeypatch):
    import re
    import shutil

    doc = Path(__file__).resolve().parents[1] / "docs" / "dedup.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    shutil.copy(generated, tmp_path / "docs" / "a.jsonl")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102
    kept = namespace["some_kept_row"]
    assert namespace["result"].duplicates(kept).num_rows >= 1
