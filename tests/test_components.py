"""Distributed connected components (executors/components.py): rounds of large-star and
small-star units over buckets of nodes, checked against a plain union-find on random graphs,
resumed after lost and half-written units, and run through the engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import OperationError
from datamill.executors import components
from datamill.executors.components import LOC_BITS, run_components, star, write_reduced
from datamill.reader import read_table
from datamill.storage import atomic_write_json

from .conftest import write_jsonl


def _reference(src: np.ndarray, dst: np.ndarray) -> dict[int, int]:
    """Each node of an edge -> the smallest node of its component (plain union-find)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(src.tolist(), dst.tolist()):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def _row_id(node: np.ndarray) -> np.ndarray:
    return node * 7 + 3  # any injective payload: decisions must carry the node's own


def _write_reduce(root: Path, src: np.ndarray, dst: np.ndarray, fine: int, units: int = 3,
                  keys: str = "loc") -> None:
    """What `units` reduce units would leave: the edges split among them, committed. With
    keys="id" the node keys are signed ids (not locators) and `_loc` columns are given."""
    for u, part in enumerate(np.array_split(np.arange(len(src)), units)):
        s, d = src[part], dst[part]
        table = {"src": s, "dst": d, "src_id": _row_id(s), "dst_id": _row_id(d)}
        if keys == "id":
            table.update(src_loc=_locator(s), dst_loc=_locator(d))
        folder = root / f"reduce-{u:05d}"
        folder.mkdir(parents=True)
        write_reduced(folder, pa.table(table), fine, "test_op", "test_step")
        atomic_write_json(folder / "_done.json", {"returned": len(s)})


def _locator(key: np.ndarray) -> np.ndarray:
    """A row locator for a signed id key (partition from its hash, position from its rank)."""
    return (np.abs(key) % 5 << LOC_BITS) + np.abs(key) // 5


class _Serial:
    """A `run` callback that runs units here and records (phase, items)."""

    def __init__(self, fail_at: str | None = None):
        self.calls: list[tuple[str, list[int]]] = []
        self.fail_at = fail_at

    def __call__(self, name, unit, items, phase):
        self.calls.append((phase, list(items)))
        for i, item in enumerate(items):
            if phase == self.fail_at and i == len(items) - 1:
                raise KeyboardInterrupt(f"killed during {phase}")
            unit(item, None)


def _decisions(root: Path) -> pa.Table:
    files = sorted(root.glob("decide-*/part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def _check(root: Path, src: np.ndarray, dst: np.ndarray, keys: str = "loc") -> None:
    """Decisions match the reference: one per node, the smallest node kept, cluster_id its
    payload id, cluster_size the component's size."""
    expected = _reference(src, dst)
    table = _decisions(root)
    loc = (table["_part"].to_numpy().astype(np.int64) << LOC_BITS) + table["_pos"].to_numpy()
    ids = table["_id"].to_numpy()
    node = (ids - 3) // 7
    assert len(node) == len(set(node.tolist())) == len(expected)
    assert (loc == (node if keys == "loc" else _locator(node))).all()
    label = np.array([expected[x] for x in node.tolist()])
    assert (table["cluster_id"].to_numpy() == _row_id(label)).all()
    sizes = np.unique(label, return_counts=True)
    size_of = dict(zip(sizes[0].tolist(), sizes[1].tolist()))
    assert table["cluster_size"].to_pylist() == [size_of[x] for x in label.tolist()]
    reasons = table["_reason"].to_pylist()
    assert [r is None for r in reasons] == (node == label).tolist()
    assert set(reasons) <= {None, "dup"}


def _graphs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    n = 3000
    labels = rng.permutation(np.arange(10, 10 + n))  # node keys in random order
    path = (labels[:-1], labels[1:])  # one long path, its smallest node anywhere
    hub = labels[:400]
    stars = (np.full(399, hub.max()), hub[hub != hub.max()])  # center is the LARGEST node
    pairs = (labels[0:1000:2], labels[1:1000:2])  # many components of two
    sparse = (rng.choice(labels, 1500), rng.choice(labels, 1500))  # random, duplicates too
    chains = (np.r_[labels[:500], labels[600:900]], np.r_[labels[1:501], labels[601:901]])
    mixed = (np.r_[path[0][:700], stars[0][:50], sparse[0][:300]],
             np.r_[path[1][:700], stars[1][:50], sparse[1][:300]])
    return {"path": path, "star": stars, "pairs": pairs, "sparse": sparse,
            "chains": chains, "mixed": mixed, "one_edge": (labels[:1], labels[1:2])}


@pytest.mark.parametrize("name", list(_graphs()))
@pytest.mark.parametrize("per_unit", [10**9, 500])
def test_components_match_union_find(tmp_path, monkeypatch, name, per_unit):
    src, dst = _graphs()[name]
    monkeypatch.setattr(components, "EDGES_PER_UNIT", per_unit)  # 1 round bucket, or many
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=8)
    run = _Serial()
    rounds = run_components(root, 8, "dup", run)
    assert rounds <= 4 * np.log2(len(src) + 1) + 4  # O(log^2 n) in theory; far fewer here
    buckets = components.plan_graph(root, 8).buckets
    wanted = -(-2 * len(src) // per_unit)  # directed edges / per unit, a divisor of 8 at most 8
    assert buckets == min(d for d in (1, 2, 4, 8) if d >= min(wanted, 8))
    _check(root, src, dst)


def test_keys_that_are_not_locators_and_negative(tmp_path, monkeypatch):
    """semantic_dedup's case: keys are signed `_id`s, locators come as payload."""
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 300)
    rng = np.random.default_rng(5)
    keys = rng.choice(np.arange(-5000, 5000), 2000, replace=False)
    src, dst = rng.choice(keys, 900), rng.choice(keys, 900)
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=6, keys="id")
    run_components(root, 6, "dup", _Serial())
    _check(root, src, dst, keys="id")


@pytest.mark.parametrize("per_unit", [10**9, 300])
def test_ranked_components_keep_the_row_of_smallest_rank(tmp_path, monkeypatch, per_unit):
    """image_dedup's case: nodes carry a rank (minus their pixels); each component keeps its
    row of smallest (rank, key), and every row records that row's id as its cluster_id."""
    monkeypatch.setattr(components, "EDGES_PER_UNIT", per_unit)
    src, dst = _graphs()["mixed"]
    nodes = np.unique(np.r_[src, dst])
    rank_of = dict(zip(nodes.tolist(), np.random.default_rng(3).integers(-5, 0, len(nodes))
                       .tolist()))  # few values: many ties, broken by the smaller key
    root = tmp_path / "shuffle"
    for u, part in enumerate(np.array_split(np.arange(len(src)), 3)):
        s, d = src[part], dst[part]
        folder = root / f"reduce-{u:05d}"
        folder.mkdir(parents=True)
        write_reduced(folder, pa.table({
            "src": s, "dst": d, "src_id": _row_id(s), "dst_id": _row_id(d),
            "src_rank": [rank_of[x] for x in s.tolist()],
            "dst_rank": [rank_of[x] for x in d.tolist()]}), 6, "test_op", "test_step")
        atomic_write_json(folder / "_done.json", {"returned": len(s)})
    run = _Serial()
    run_components(root, 6, "dup", run)
    assert [phase for phase, _ in run.calls][-2:] == ["ranks", "decisions"]
    members: dict[int, list[int]] = {}
    for node, label in _reference(src, dst).items():
        members.setdefault(label, []).append(node)
    keeper = {x: min(group, key=lambda y: (rank_of[y], y))
              for group in members.values() for x in group}
    size = {x: len(group) for group in members.values() for x in group}
    table = _decisions(root)
    node = (table["_id"].to_numpy() - 3) // 7
    assert sorted(node.tolist()) == sorted(keeper)
    assert table["cluster_id"].to_pylist() == [_row_id(keeper[x]) for x in node.tolist()]
    assert table["cluster_size"].to_pylist() == [size[x] for x in node.tolist()]
    assert [r is None for r in table["_reason"].to_pylist()] == \
        [keeper[x] == x for x in node.tolist()]
    assert any(keeper[x] != members_min for x, members_min in
               ((x, min(g)) for g in members.values() for x in g))  # ranks changed keepers


def test_round_buckets_divide_the_reduce_buckets(tmp_path, monkeypatch):
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 100)
    src, dst = _graphs()["sparse"]
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=6)
    assert components.plan_graph(root, 6).buckets == 6  # 3000 directed edges / 100 > 6
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 10**9)
    assert components.plan_graph(root, 6).buckets == 6  # fixed at the first attempt
    root2 = tmp_path / "other"
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 1000)
    _write_reduce(root2, src, dst, fine=6)
    assert components.plan_graph(root2, 6).buckets == 3  # 3 units wanted, 3 divides 6


def test_no_edges_decides_nothing(tmp_path):
    root = tmp_path / "shuffle"
    (root / "reduce-00000").mkdir(parents=True)
    run = _Serial()
    assert run_components(root, 4, "dup", run) == 0
    assert run.calls == [] and _decisions(root) is None


def test_self_loops_are_not_edges(tmp_path):
    src, dst = np.array([5, 6, 6, 8]), np.array([5, 7, 7, 8])
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=2, units=2)
    run_components(root, 2, "dup", _Serial())
    table = _decisions(root)
    assert sorted(((table["_id"].to_numpy() - 3) // 7).tolist()) == [6, 7]  # 5, 8: alone


def test_star_is_a_fixed_point_on_stars():
    a = np.array([1, 1, 1, 4, 4, 5, 7, 9, 10, 12])  # stars 1-{5, 7, 9}, 4-{10, 12}
    b = np.array([5, 7, 9, 10, 12, 1, 1, 1, 4, 4])  # both ways, as rounds store them
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    for large in (True, False):
        x, y, bent = star(a, b, large)
        assert bent == 0
        assert {tuple(sorted(e)) for e in zip(x.tolist(), y.tolist()) if e[0] != e[1]} == \
            {(1, 5), (1, 7), (1, 9), (4, 10), (4, 12)}
    x, y, bent = star(np.array([2, 2, 3, 3]), np.array([1, 3, 1, 2]), large=False)
    assert bent == 2  # 2 has a smaller and a larger neighbor; 3 has two smaller ones


def test_resumes_after_lost_and_half_written_units(tmp_path, monkeypatch):
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 400)
    src, dst = _graphs()["mixed"]
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=4)
    first = _Serial()
    rounds = run_components(root, 4, "dup", first)
    before = _decisions(root).sort_by("_id")
    assert rounds >= 3
    shutil.rmtree(root / "cc-0002-00001")  # a lost unit of round 2
    (root / "cc-0003-00000" / "_done.json").unlink()  # a unit whose marker was never written
    shutil.copytree(root / "label-00002", root / ".label-00002.tmp-1-abc")  # half-written
    shutil.rmtree(root / "label-00002")
    for folder in root.glob("decide-*"):
        shutil.rmtree(folder)
    again = _Serial()
    assert run_components(root, 4, "dup", again) == rounds
    ran = dict(again.calls)
    assert ran["components round 1"] == [] and ran["components round 2"] == [1]
    assert ran["components round 3"] == [0] and ran["clusters"] == [2]
    assert ran["decisions"] == [0, 1, 2, 3]
    assert _decisions(root).sort_by("_id").equals(before)


def test_a_killed_run_resumes_at_its_round(tmp_path, monkeypatch):
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 400)
    src, dst = _graphs()["path"]
    root = tmp_path / "shuffle"
    _write_reduce(root, src, dst, fine=4)
    with pytest.raises(KeyboardInterrupt):
        run_components(root, 4, "dup", _Serial(fail_at="components round 3"))
    again = _Serial()
    run_components(root, 4, "dup", again)
    ran = dict(again.calls)
    assert ran["components round 1"] == ran["components round 2"] == []
    assert len(ran["components round 3"]) == 1  # the unit the kill interrupted
    assert len(ran["components round 4"]) == 4
    _check(root, src, dst)


def test_reduce_must_return_edges(tmp_path):
    with pytest.raises(OperationError, match="'test_op'.*missing 'dst_id'"):
        write_reduced(tmp_path, pa.table({"src": [1], "dst": [2], "src_id": [1]}), 2,
                      "test_op", "test_step")
    with pytest.raises(OperationError, match="1 null.*'dst'"):
        write_reduced(tmp_path, pa.table({"src": [1, 2], "dst": [2, None], "src_id": [1, 2],
                                          "dst_id": [2, 3]}), 2, "test_op", "test_step")


class _Linked(dm.GlobalOperation):
    """Test op: rows sharing `g` are linked in a chain, in descending row order (so that
    only the components phase can find each group's first row)."""

    name = "_test_linked"
    consumes = {"g": "int64"}
    resolves = "components"
    default_reason = "linked"
    lineage = {"cluster_id": "int64", "cluster_size": "int64"}

    def scan(self, batch):
        g = batch.column("g").to_numpy()
        return {"_key": pa.array(g.astype(np.uint64)), "g": pa.array(g)}

    def reduce(self, bucket):
        loc = (bucket["_part"].to_numpy().astype(np.int64) << LOC_BITS) + bucket["_pos"].to_numpy()
        ids, g = bucket["_id"].to_numpy(), bucket["g"].to_numpy()
        order = np.lexsort((-loc, g))
        same = g[order][1:] == g[order][:-1]
        a, b = order[:-1][same], order[1:][same]
        return {"src": loc[a], "dst": loc[b], "src_id": ids[a], "dst_id": ids[b]}


@pytest.mark.parametrize("workers", [1, 2])
def test_through_the_engine(tmp_path, monkeypatch, workers):
    if workers == 2:  # one round unit per reduce bucket, run by the process pool
        monkeypatch.setattr(components, "EDGES_PER_UNIT", 10)
    rows = [{"n": i, "g": (i * 7) % 13 if i % 3 else 100 + i} for i in range(300)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    ds = dm.Dataset.read(path, block_size=700).apply(_Linked)
    log: list[str] = []
    result = ds.run(tmp_path / "w", workers=workers, progress=False, log=log.append)
    units = 8 if workers == 2 else 1  # 8 reduce buckets
    assert f"_test_linked: components round 1: {units} unit(s)" in "\n".join(log)
    kept = ds.collect(tmp_path / "w", workers=workers, progress=False)
    first = {}
    for r in rows:
        first.setdefault(r["g"], r["n"])
    assert kept["n"].to_pylist() == sorted(first.values())
    dropped = dm.dropped_rows(tmp_path / "w", "_test_linked")
    source = read_table(tmp_path / "w", ds.steps[0], ["_id", "n"])
    n_of = dict(zip(source["_id"].to_pylist(), source["n"].to_pylist()))
    sizes = {g: sum(r["g"] == g for r in rows) for g in first}
    assert dropped.num_rows == 300 - len(first)
    for rid, cid, size in zip(dropped["_id"].to_pylist(), dropped["cluster_id"].to_pylist(),
                              dropped["cluster_size"].to_pylist()):
        g = rows[n_of[rid]]["g"]
        assert n_of[cid] == first[g] and size == sizes[g]
    record = result.step("_test_linked")
    assert record["counters"] == {"duplicate_clusters": 13}
    assert record["dropped"] == {"linked": 300 - len(first)}
    assert not (tmp_path / "w" / "steps" / ds.step.key / "shuffle").exists()


def test_a_run_killed_in_the_components_phase_resumes_without_redoing_rounds(tmp_path,
                                                                              monkeypatch):
    rows = [{"n": i, "g": i % 5} for i in range(60)]
    ds = dm.Dataset.read(write_jsonl(tmp_path / "t.jsonl", rows), block_size=200).apply(_Linked)
    real_decide, real_round = components.decide_unit, components.round_unit

    def killed(*args, **kwargs):
        raise RuntimeError("killed during decisions")

    monkeypatch.setattr(components, "decide_unit", killed)
    with pytest.raises(RuntimeError, match="killed during decisions"):
        ds.run(tmp_path / "w", workers=1, progress=False)
    shuffle = tmp_path / "w" / "steps" / ds.step.key / "shuffle"
    assert (shuffle / "cc-0001-00000" / "_done.json").exists()
    calls: list = []
    monkeypatch.setattr(components, "decide_unit", real_decide)
    monkeypatch.setattr(components, "round_unit",
                        lambda *args: calls.append(args) or real_round(*args))
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table["n"].to_pylist() == [0, 1, 2, 3, 4] and calls == []


def test_reduce_output_of_the_older_single_process_layout_is_recomputed(tmp_path,
                                                                         monkeypatch):
    """A workdir interrupted before this engine kept reduce's edges whole (out.parquet)."""
    rows = [{"n": i, "g": i % 4} for i in range(40)]
    ds = dm.Dataset.read(write_jsonl(tmp_path / "t.jsonl", rows), block_size=200).apply(_Linked)

    def killed(*args, **kwargs):
        raise RuntimeError("killed in round 1")

    monkeypatch.setattr(components, "round_unit", killed)
    with pytest.raises(RuntimeError, match="killed in round 1"):
        ds.run(tmp_path / "w", workers=1, progress=False)
    monkeypatch.undo()
    shuffle = tmp_path / "w" / "steps" / ds.step.key / "shuffle"
    for folder in shuffle.glob("reduce-*"):
        for f in folder.glob("*.parquet"):
            pq.write_table(pq.read_table(f), folder / "out.parquet")
            f.unlink()
    (shuffle / "components.json").unlink()
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table["n"].to_pylist() == [0, 1, 2, 3]


def test_rounds_run_as_ray_tasks_with_the_same_result(tmp_path, monkeypatch, ray_cluster):
    monkeypatch.setattr(components, "EDGES_PER_UNIT", 10)  # 8 units a round (the driver plans)
    rows = [{"n": i, "g": (i * 5) % 11 if i % 4 else 200 + i} for i in range(200)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    ds = dm.Dataset.read(path, block_size=600).apply(_Linked)
    log: list[str] = []
    ray = ds.collect(tmp_path / "ray", executor="ray", address=ray_cluster.address,
                     progress=False, log=log.append)
    assert "_test_linked: components round 2: 8 unit(s)" in "\n".join(log)
    local = ds.collect(tmp_path / "local", workers=2, progress=False)
    assert ray.equals(local)
    assert dm.dropped_rows(tmp_path / "ray", "_test_linked").sort_by("_id").equals(
        dm.dropped_rows(tmp_path / "local", "_test_linked").sort_by("_id"))
