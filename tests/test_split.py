"""assign_split: deterministic splits by hash of seed and group key; near duplicates (real
minhash_dedup clusters) stay in one split; stratified proportions."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

import datamill as dm
from datamill.errors import ArgumentError

from .conftest import write_jsonl

WORDS = ("python list tuple dict set generator iterator class module package import "
         "function lambda closure decorator exception context manager async await").split()


def near_duplicate_corpus(clusters: int = 60, copies: int = 3, singles: int = 200) -> list[dict]:
    """`clusters` texts of 200 words, each with `copies - 1` near copies (one word changed),
    and `singles` unrelated texts; shuffled."""
    rng = random.Random(7)
    rows = []
    for c in range(clusters):
        words = [rng.choice(WORDS) for _ in range(200)] + [f"topic{c}"]
        for k in range(copies):
            variant = list(words)
            if k:
                variant[rng.randrange(200)] = f"edit{k}"
            rows.append({"text": " ".join(variant), "origin": f"c{c}"})
    for s in range(singles):
        rows.append({"text": " ".join(rng.choice(WORDS) for _ in range(40)) + f" single{s}",
                     "origin": f"s{s}"})
    rng.shuffle(rows)
    return rows


def collect(ds, tmp_path, workers=1):
    return ds.collect(tmp_path / "work", workers=workers, progress=False)


def test_minhash_keep_duplicates_marks_clusters(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", near_duplicate_corpus())
    ds = dm.Dataset.read(path).apply("minhash_dedup", keep_duplicates=True)
    result = ds.run(tmp_path / "work", workers=1, progress=False)
    step = result.step("minhash_dedup")
    assert step["rows_out"] == step["rows_in"] == 380 and not step["dropped"]
    t = collect(ds, tmp_path).to_pylist()
    for row in t:
        if row["origin"].startswith("s"):
            assert row["cluster_id"] is None and row["cluster_size"] is None
    clusters = defaultdict(set)
    for row in t:
        if row["origin"].startswith("c"):
            clusters[row["origin"]].add((row["cluster_id"], row["cluster_size"]))
    assert all(len(v) == 1 and next(iter(v))[1] == 3 for v in clusters.values())


def test_near_duplicates_never_straddle_two_splits(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", near_duplicate_corpus())
    marked = dm.Dataset.read(path).apply("minhash_dedup", keep_duplicates=True)
    split = collect(marked.apply("assign_split", seed=3), tmp_path, workers=2).to_pylist()
    by_origin = defaultdict(set)
    for row in split:
        by_origin[row["origin"]].add(row["split"])
    assert all(len(s) == 1 for s in by_origin.values())
    assert {r["split"] for r in split} == {"train", "validation", "test"}
    # without the clusters, rows alone: some near duplicates land in two splits
    alone = collect(marked.drop("cluster_id", "cluster_size").apply("assign_split", seed=3),
                    tmp_path).to_pylist()
    straddle = defaultdict(set)
    for row in alone:
        straddle[row["origin"]].add(row["split"])
    assert sum(len(s) > 1 for o, s in straddle.items() if o.startswith("c")) > 5


def test_deterministic_across_workers_and_partitions_and_seeded(tmp_path):
    rows = [{"text": f"row {i}", "key": f"k{i % 97}"} for i in range(3000)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)

    def splits(seed, workers, block):
        ds = dm.Dataset.read(path, block_size=block).apply("assign_split", group="key",
                                                           seed=seed)
        t = ds.collect(tmp_path / f"w{seed}-{workers}-{block}", workers=workers, progress=False)
        return dict(zip(t["text"].to_pylist(), t["split"].to_pylist()))

    a = splits(0, 1, 1 << 20)
    assert a == splits(0, 2, 16 << 10)
    assert a != splits(1, 1, 1 << 20)
    per_key = defaultdict(set)
    for r in rows:
        per_key[r["key"]].add(a[r["text"]])
    assert all(len(s) == 1 for s in per_key.values())


def test_a_rows_split_depends_only_on_seed_and_key(tmp_path):
    texts = [f"question {i}" for i in range(400)]
    small = write_jsonl(tmp_path / "small.jsonl", [{"text": t} for t in texts[:150]])
    big = write_jsonl(tmp_path / "big.jsonl", [{"text": t} for t in reversed(texts)])

    def splits(path):
        t = collect(dm.Dataset.read(path).apply("assign_split", group="text"), tmp_path)
        return dict(zip(t["text"].to_pylist(), t["split"].to_pylist()))

    small_splits, big_splits = splits(small), splits(big)
    assert all(big_splits[t] == s for t, s in small_splits.items())
    shares = Counter(big_splits.values())
    assert 0.7 < shares["train"] / 400 < 0.9


def test_stratified_proportions_per_stratum(tmp_path):
    rng = random.Random(1)
    sizes = {"easy": 700, "medium": 230, "hard": 70}
    rows = [{"text": f"{label} {i}", "level": label}
            for label, n in sizes.items() for i in range(n)]
    rng.shuffle(rows)
    path = write_jsonl(tmp_path / "levels.jsonl", rows)
    fractions = {"train": 0.7, "validation": 0.2, "test": 0.1}
    ds = dm.Dataset.read(path).apply("assign_split", stratify="level", fractions=fractions)
    t = collect(ds, tmp_path, workers=2)
    counts = Counter(zip(t["level"].to_pylist(), t["split"].to_pylist()))
    for label, n in sizes.items():
        for split, share in fractions.items():
            assert abs(counts[(label, split)] - share * n) <= 1, (label, split, counts)
    result = ds.run(tmp_path / "work", workers=1, progress=False)
    assert result.step("assign_split")["counters"] == {
        f"rows_{s}": sum(counts[(lab, s)] for lab in sizes) for s in fractions}
    # plain hashing gives the proportions only on average: the small stratum drifts
    plain = collect(dm.Dataset.read(path).apply("assign_split", fractions=fractions), tmp_path)
    drift = Counter(zip(plain["level"].to_pylist(), plain["split"].to_pylist()))
    assert any(abs(drift[(lab, s)] - f * n) > 1 for lab, n in sizes.items()
               for s, f in fractions.items())


def test_stratified_groups_stay_whole(tmp_path):
    rows = [{"text": f"t{i}", "level": "ab"[i % 2], "topic": f"g{i // 4}"} for i in range(400)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    t = collect(dm.Dataset.read(path).apply("assign_split", stratify="level", group="topic"),
                tmp_path)
    per_topic = defaultdict(set)
    for r in t.to_pylist():
        per_topic[r["topic"]].add(r["split"])
    assert all(len(s) == 1 for s in per_topic.values())


@pytest.mark.parametrize("fractions, message", [
    ({"train": 0.5, "test": 0.4}, "sum to 1"),
    ({"train": 1.2, "test": -0.2}, "positive"),
])
def test_bad_fractions(tmp_path, fractions, message):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "x"}])
    with pytest.raises(ArgumentError, match=message):
        dm.Dataset.read(path).apply("assign_split", fractions=fractions)
