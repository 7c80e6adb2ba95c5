"""The Ray executor against the local one on a real 2-node cluster (tests/ray_cluster.py):
the same rows, the same drops with the same reasons and dedup lineage, and a workdir that
either executor continues from the other's cache."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill import FilterOperation, MapOperation
from datamill.executors.base import RunResult
from datamill.reader import read_table

from .test_minhash import corpus


class RayWordCount(MapOperation):
    """Whitespace-separated words of `text` (defined here: Ray ships it by value)."""

    name = "test_ray_word_count"
    consumes = {"text": "string"}
    produces = {"words": "int64"}

    def process(self, batch):
        return {"words": pc.count_substring_regex(batch["text"], pattern=r"\S+")}


class RayLengthFilter(FilterOperation):
    """Drops rows by the length of `text`, with a reason per row."""

    name = "test_ray_length_filter"
    consumes = {"text": "string"}

    def process(self, batch):
        length = pc.utf8_length(batch["text"]).to_numpy()
        reasons = ["len_mod_7" if n % 7 == 0 else "len_mod_11" if n % 11 == 0 else ""
                   for n in length.tolist()]
        return pa.array([not r for r in reasons]), reasons


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    """300 generated ~2 kB documents with exact and near-duplicate clusters."""
    path = tmp_path_factory.mktemp("ray-corpus") / "corpus.jsonl"
    corpus.write_corpus(path, 300, seed=11, dup_rate=0.35)
    return path


def _deduplicated(path: Path) -> dm.Dataset:
    size = path.stat().st_size
    return (dm.Dataset.read(path, block_size=size // 4 + 1)  # 4 partitions
            .apply(RayWordCount)
            .apply(RayLengthFilter)
            .drop_duplicates(["text"])
            .apply("minhash_dedup", column="text"))


def _pipeline(path: Path, out: Path, chunk: int = 600) -> dm.Dataset:
    return _deduplicated(path).apply("chunk_text", size=chunk).write(out)


def _rows(workdir: Path, ds: dm.Dataset) -> list[dict]:
    """The rows before the sink, ids included, in id order."""
    step = ds.steps[-2]
    names = ["_id", "_parent_id", *(c for c in step.schema if not c.startswith("_"))]
    return read_table(workdir, step, names).sort_by("_id").to_pylist()


def _written(out: Path) -> list[dict]:
    return pq.read_table(sorted(out.glob("*.parquet"))).sort_by(
        [("id", "ascending"), ("chunk_index", "ascending")]).to_pylist()


def _drops(workdir: Path, step: str) -> list[dict]:
    return dm.dropped_rows(workdir, step).sort_by("_id").to_pylist()


def _summary(result: RunResult) -> list[tuple]:
    return [(s["name"], s["cache_key"], s["rows_in"], s["rows_out"], s["dropped"], s["errors"],
             s.get("counters", {})) for s in result.steps]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_file, ray_cluster) -> tuple[Path, dict]:
    """The pipeline run with the local executor (workdir `local`) and on Ray (`ray`)."""
    root = tmp_path_factory.mktemp("ray-equivalence")
    ds = {"local": _pipeline(corpus_file, root / "out-local"),
          "ray": _pipeline(corpus_file, root / "out-ray")}
    results = {"local": ds["local"].run(root / "local", workers=2, progress=False),
               "ray": ds["ray"].run(root / "ray", executor="ray", address=ray_cluster.address,
                                    progress=False)}
    return root, {"ds": ds, "results": results}


def test_ray_and_local_give_the_same_rows_drops_and_lineage(runs):
    root, r = runs
    local, ray = r["results"]["local"], r["results"]["ray"]
    assert not ray.cached
    assert (ray.manifest["executor"], local.manifest["executor"]) == ("ray", "local")
    assert ray.manifest["workers"] == 2  # the cluster's CPUs: 2 nodes x 1
    # the sinks differ by path only; every other step has the same key, records and counts
    assert _summary(ray)[:-1] == _summary(local)[:-1]
    drops = {name: sum(local.step(name)["dropped"].values())
             for name in ("test_ray_length_filter", "drop_duplicates", "minhash_dedup")}
    assert all(drops.values()), drops  # the input exercises every kind of drop
    assert _rows(root / "ray", r["ds"]["ray"]) == _rows(root / "local", r["ds"]["local"])
    assert _written(root / "out-ray") == _written(root / "out-local")
    for name in drops:
        assert _drops(root / "ray", name) == _drops(root / "local", name), name
    lineage = _drops(root / "ray", "minhash_dedup")
    assert {"cluster_id", "cluster_size"} <= set(lineage[0])
    assert all(row["cluster_size"] >= 2 for row in lineage)


def test_each_executor_continues_the_others_workdir(runs, corpus_file, ray_cluster):
    root, _ = runs
    # unchanged: nothing to do, whichever executor wrote the workdir
    again = _pipeline(corpus_file, root / "out-ray")
    result = again.run(root / "ray", workers=2, progress=False)
    assert result.cached == {s.key for s in again.steps}
    assert all(s["cached"] for s in result.steps)

    # a changed tail: the shared prefix is reused, only chunking and the sink run
    shared = {s.key for s in _deduplicated(corpus_file).steps}
    on_local = _pipeline(corpus_file, root / "out-local2", chunk=400)
    on_ray = _pipeline(corpus_file, root / "out-ray2", chunk=400)
    ray_continues_local = on_local.run(root / "local", executor="ray",
                                       address=ray_cluster.address, progress=False)
    local_continues_ray = on_ray.run(root / "ray", workers=2, progress=False)
    for result in (ray_continues_local, local_continues_ray):
        assert result.cached == shared
        assert [s["name"] for s in result.steps if not s["cached"]] == ["chunk_text",
                                                                         "write_parquet"]
    assert _written(root / "out-local2") == _written(root / "out-ray2")
    assert _rows(root / "local", on_local) == _rows(root / "ray", on_ray)
