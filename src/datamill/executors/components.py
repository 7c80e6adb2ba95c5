"""Connected components over the edges of a global step, as units over buckets of nodes.

For operations with `resolves = "components"`: every reduce unit returns edges `src`-`dst`
between int64 node keys (one node per row; a component keeps its smallest key), with the
rows' `src_id`/`dst_id` and, unless the keys are the row locators themselves,
`src_loc`/`dst_loc` (`_part << 40 | _pos`). No unit ever holds more than one bucket of them:

    reduce(b)    writes its edges both ways, bucketed by the hash of their first node, and
                 the payload (_id, locator) of their nodes, bucketed the same way
    round(r, c)  the edges of node bucket c: large-star (odd r) or small-star (even r) of
                 Kiveris et al., "Connected Components in MapReduce and Beyond" (2014);
                 counts the nodes of its input that are not yet in star shape
    label(c)     once a round's input had none, every component is a star around its
                 smallest node: the centers in c give each member its cluster (the center's
                 _id) and size (the center's degree + 1), sent to the member's bucket
    decide(c)    joins the members of c with their payload: decisions by partition

When reduce also returns `src_rank`/`dst_rank` (int64), a component keeps its row of smallest
(rank, key) instead (image_dedup: the largest image): two units replace decide,

    gather(c)    joins the members of node bucket c with their payload, sent to the bucket of
                 their cluster's center
    elect(c)     the clusters centered in c: each keeps its member of smallest (rank, key),
                 decisions by partition (in decide-CCCCC, where apply reads them)

Rounds take O(log^2 n) in theory, a handful in practice. The driver loops until a round
reports no node out of shape. Every unit commits a folder (temp folder, then rename) named
after its round, so a killed run resumes at the first unit not yet committed. The number of
round buckets is fixed after reduce, from the number of edges (EDGES_PER_UNIT each).

    shuffle/reduce-BBBBB/edges.parquet     a, b: reduce unit B's edges, a row group per bucket
    shuffle/reduce-BBBBB/nodes.parquet     node, _id, loc: the payload of their nodes, same
    shuffle/components.json                the number of round buckets
    shuffle/cc-RRRR-BBBBB/edges.parquet    round R's edges from node bucket B
    shuffle/label-BBBBB/members.parquet    node, label, cluster_id, cluster_size
    shuffle/gather-BBBBB/ranked.parquet    label, node, rank, _id, loc, cluster_size (ranked)
    shuffle/decide-BBBBB/part-PPPPP.parquet  decisions about partition P (what apply reads)
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset import ID
from ..errors import DatamillError, OperationError
from ..storage import (
    STEP_COMPRESSION,
    atomic_write_json,
    part_name,
    read_json,
    remove_tree,
    temp_path,
    write_parquet,
)

COMPONENTS = "components"  # GlobalOperation.resolves value that selects this module
LOC_BITS = 40  # row locator: partition << 40 | position in the partition
EDGES_PER_UNIT = 4_000_000  # directed edges a round unit holds (16 bytes each, plus sorting)
MAX_ROUNDS = 256  # O(log^2 n) rounds: far more would mean a bug, not a big graph
DONE = "_done.json"
SRC, DST = "src", "dst"
BUCKETS = "datamill.buckets"  # Parquet metadata: the bucket of each row group
CLUSTERS = "duplicate_clusters"  # counter: components of two nodes or more
RANK = "rank"  # optional node payload: a component keeps its row of smallest (rank, key)

def row_locators(table: Any) -> Any:
    """int64 `_part << LOC_BITS | _pos` of each row of a scan/reduce table: ordered like
    the dataset, so the smallest locator of a cluster is its first row."""
    import numpy as np

    return (table.column("_part").to_numpy().astype(np.int64) << LOC_BITS) \
        + table.column("_pos").to_numpy()


Runner = Callable[[str, Callable[[int, Any], dict], list[int], str], None]


# --- files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Graph:
    """Where the units of one step's components meet: `root`, its shuffle folder; `fine`,
    the node buckets that reduce writes (one per shuffle bucket); `buckets`, those of the
    rounds, a divisor of `fine` sized by the number of edges: round bucket c gathers fine
    buckets c, c + buckets, ... (a node's bucket is its hash modulo either)."""

    root: Path
    buckets: int
    fine: int

    def read(self, source: str, kind: str, bucket: int) -> list[Any]:
        """The rows of round bucket `bucket` in the `kind` files (edges, nodes, members)
        written by the units of `source` (reduce, cc-RRRR, label): one table per file."""
        wanted = set(range(bucket, self.fine, self.buckets) if source == "reduce" else [bucket])
        return [t for f in sorted(self.root.glob(f"{source}-*/{kind}.parquet"))
                if (t := read_buckets(f, wanted)) is not None]


def plan_graph(root: Path, fine: int) -> Graph:
    """Round buckets for the edges that reduce wrote (EDGES_PER_UNIT directed edges each),
    fixed at the first attempt in `components.json`."""
    plan = root / "components.json"
    saved = read_json(plan)
    if saved is None:
        edges = sum((committed(f.parent) or {}).get("returned", 0)
                    for f in root.glob(f"reduce-*/{DONE}"))
        target = max(1, -(-2 * edges // EDGES_PER_UNIT))
        saved = {"buckets": next(d for d in range(target, fine + 1) if fine % d == 0)
                 if target <= fine else fine}
        atomic_write_json(plan, saved)
    return Graph(root, int(saved["buckets"]), fine)


def committed(folder: Path) -> dict | None:
    """A unit folder's stats if it was committed (its marker is there), else None."""
    return read_json(folder / DONE)


def commit_unit(tmp: Path, final: Path, stats: dict) -> dict:
    """Rename a unit's temp folder into place, its marker last written (every unit of a
    global step commits this way)."""
    committed_stats = committed(final)
    if committed_stats is not None:  # a retried twin got there first, same output
        remove_tree(tmp)
        return committed_stats
    atomic_write_json(tmp / DONE, stats)
    if final.exists():  # a folder without its marker: never a commit of ours
        remove_tree(final)
    os.replace(tmp, final)
    return stats


def node_buckets(nodes: Any, buckets: int) -> Any:
    """Bucket of each int64 node key: splitmix64's finalizer, modulo `buckets`."""
    import numpy as np

    x = np.asarray(nodes, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(buckets)).astype(np.int64)


def write_bucketed(path: Path, table: Any, key: str, buckets: int) -> None:
    """Write `table` as one Parquet file with a row group per bucket of column `key` (the
    buckets present, listed in the file's metadata), so that each reader reads its own."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    if not table.num_rows:
        return
    bucket = node_buckets(table.column(key).to_numpy(), buckets)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    ordered = table.take(pa.array(order))
    present = [c for c in range(buckets) if bounds[c + 1] > bounds[c]]
    schema = ordered.schema.with_metadata({BUCKETS: json.dumps(present)})
    with pq.ParquetWriter(path, schema, compression=STEP_COMPRESSION) as writer:
        for c in present:
            rows = int(bounds[c + 1] - bounds[c])
            writer.write_table(ordered.slice(bounds[c], rows).replace_schema_metadata(
                schema.metadata), row_group_size=rows)


def read_buckets(path: Path, wanted: set[int]) -> Any | None:
    """The rows of `path` (written by write_bucketed) in the buckets `wanted`, or None."""
    import pyarrow.parquet as pq

    from .. import image_type  # noqa: F401  (registers the image type for reading)

    reader = pq.ParquetFile(path)
    present = json.loads(reader.schema_arrow.metadata[BUCKETS.encode()])
    groups = [g for g, c in enumerate(present) if c in wanted]
    return reader.read_row_groups(groups) if groups else None


def _unique_pairs(a: Any, b: Any) -> tuple[Any, Any]:
    """The distinct (a, b) pairs, sorted by a then b."""
    import numpy as np

    by_b = np.argsort(b)
    order = by_b[np.argsort(a[by_b], kind="stable")]  # twice as fast as np.lexsort
    a, b = a[order], b[order]
    if len(a):
        new = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
        a, b = a[new], b[new]
    return a, b


def write_edges(folder: Path, x: Any, y: Any, buckets: int) -> int:
    """Store the undirected edges x-y (self loops dropped) both ways, each under the bucket
    of its first node; returns the number of rows written. Duplicates stay: readers drop
    them (one sort instead of two)."""
    import numpy as np
    import pyarrow as pa

    keep = x != y
    a, b = np.r_[x[keep], y[keep]], np.r_[y[keep], x[keep]]
    write_bucketed(folder / "edges.parquet", pa.table({"a": a, "b": b}), "a", buckets)
    return len(a)


def read_edges(graph: Graph, source: str, bucket: int) -> tuple[Any, Any]:
    """The distinct edges (a, b) of round bucket `bucket` written by every unit of `source`
    (`reduce` or `cc-RRRR`), sorted by a then b."""
    import numpy as np

    tables = graph.read(source, "edges", bucket)
    if not tables:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate([t.column("a").to_numpy() for t in tables])
    b = np.concatenate([t.column("b").to_numpy() for t in tables])
    return _unique_pairs(a, b)


def read_nodes(graph: Graph, bucket: int, ranked: bool = False) -> tuple[Any, ...]:
    """(node, _id, locator) of every node of round bucket `bucket`, sorted by node, and
    their rank when `ranked`."""
    import numpy as np

    names = ("node", ID, "loc", RANK)[:4 if ranked else 3]
    tables = graph.read("reduce", "nodes", bucket)
    if not tables:
        return (np.zeros(0, np.int64),) * len(names)
    node, *payload = (np.concatenate([t.column(c).to_numpy() for t in tables])
                      for c in names)
    node, first = np.unique(node, return_index=True)
    return (node, *(p[first] for p in payload))


def is_ranked(root: Path) -> bool:
    """Whether the reduce units under `root` gave their nodes a rank."""
    import pyarrow.parquet as pq

    return any(RANK in pq.read_schema(f).names for f in root.glob("reduce-*/nodes.parquet"))


# --- reduce -------------------------------------------------------------------------------
def write_reduced(folder: Path, result: Any, buckets: int, op_name: str, step_name: str) -> int:
    """A reduce unit's edges into `folder`: the edges and their nodes' payload, bucketed by
    node. Returns the number of edges."""
    import numpy as np
    import pyarrow as pa

    names = result.schema.names
    needed = [SRC, DST, f"{SRC}{ID}", f"{DST}{ID}"]
    missing = [c for c in needed if c not in names]
    if missing:
        raise OperationError(f"global operation {op_name!r} resolves components: reduce must "
                             f"return {', '.join(map(repr, needed))} (missing "
                             f"{', '.join(map(repr, missing))})", step=step_name)

    def column(name: str, fallback: str | None = None) -> Any:
        if name not in names and fallback is not None:
            name = fallback
        values = result.column(name)
        if values.null_count:
            raise OperationError(f"global operation {op_name!r}: reduce returned "
                                 f"{values.null_count} null(s) in {name!r}", step=step_name)
        return values.to_numpy().astype(np.int64, copy=False)

    src, dst = column(SRC), column(DST)
    write_edges(folder, src, dst, buckets)
    nodes = {
        "node": np.r_[src, dst],
        ID: np.r_[column(f"{SRC}{ID}"), column(f"{DST}{ID}")],
        "loc": np.r_[column(f"{SRC}_loc", SRC), column(f"{DST}_loc", DST)],
    }
    if f"{SRC}_{RANK}" in names or f"{DST}_{RANK}" in names:
        nodes[RANK] = np.r_[column(f"{SRC}_{RANK}"), column(f"{DST}_{RANK}")]
    nodes = pa.table(nodes)
    _, first = np.unique(nodes.column("node").to_numpy(), return_index=True)
    write_bucketed(folder / "nodes.parquet", nodes.take(pa.array(first)), "node", buckets)
    return len(src)


# --- rounds -------------------------------------------------------------------------------
def star(a: Any, b: Any, large: bool) -> tuple[Any, Any, int]:
    """One large-star or small-star step over the directed edges (a, b), sorted and distinct,
    holding every neighbor b of each node a. Returns the new undirected edges (x, y) and the
    number of nodes not yet in star shape (a node with a smaller and a larger neighbor, or
    with two smaller ones): when there is none anywhere, each component is a star around its
    smallest node and both steps return their input.

    With m(a) the smallest of a and its neighbors, large-star links every larger neighbor of
    a to m(a); small-star links a and its smaller neighbors to m(a)."""
    import numpy as np

    if not len(a):
        return a, b, 0
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    nodes = a[starts]
    smaller = np.add.reduceat((b < a).astype(np.int64), starts)
    bent = int((((smaller > 0) & (b[ends - 1] > nodes)) | (smaller > 1)).sum())
    least = np.minimum(b[starts], nodes)  # b is sorted within each node
    of_row = np.repeat(least, ends - starts)
    if large:
        pick = b > a
        return b[pick], of_row[pick], bent
    pick = b < a
    has = smaller > 0
    return np.r_[b[pick], nodes[has]], np.r_[of_row[pick], least[has]], bent


def round_folder(root: Path, round_no: int, bucket: int) -> Path:
    return root / f"cc-{round_no:04d}-{bucket:05d}"


def round_source(round_no: int) -> str:
    """The units whose edges round `round_no` reads."""
    return "reduce" if round_no == 1 else f"cc-{round_no - 1:04d}"


def run_once(final: Path, work: Callable[[Path], dict]) -> dict:
    """A unit of a global step, done once: the stats of `final` when it is committed, else
    `work(tmp)` fills a fresh temp folder, which is committed as `final` with the stats that
    `work` returns and the seconds it took."""
    done = committed(final)
    if done is not None:
        return done
    start = time.perf_counter()
    tmp = temp_path(final)
    tmp.mkdir(parents=True)
    try:
        stats = work(tmp)
    except BaseException:
        remove_tree(tmp)
        raise
    return commit_unit(tmp, final, {**stats, "seconds": time.perf_counter() - start})


def round_unit(graph: Graph, round_no: int, bucket: int, report: Any = None) -> dict:
    """Round `round_no` over node bucket `bucket`: large-star when odd, small-star when even."""
    def work(tmp: Path) -> dict:
        a, b = read_edges(graph, round_source(round_no), bucket)
        x, y, bent = star(a, b, large=round_no % 2 == 1)
        written = write_edges(tmp, x, y, graph.buckets)
        return {"round": round_no, "edges_in": len(a), "edges_out": written, "not_star": bent}

    return run_once(round_folder(graph.root, round_no, bucket), work)


# --- labels and decisions -------------------------------------------------------------------
def label_unit(graph: Graph, source: str, bucket: int, report: Any = None) -> dict:
    """The stars centered in `bucket` (edges of `source`, in star shape): each member's
    cluster (the center's key and _id) and size, sent to the member's bucket."""
    import numpy as np
    import pyarrow as pa

    def work(tmp: Path) -> dict:
        a, b = read_edges(graph, source, bucket)
        starts = (np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a)
                  else np.zeros(0, np.int64))
        degree = np.diff(np.r_[starts, len(a)])
        nodes = a[starts]
        center = b[starts] > nodes  # no smaller neighbor
        if (degree[~center] != 1).any():
            raise DatamillError(f"connected components: the edges of {source} in node bucket "
                                f"{bucket} are not stars ({graph.root})")
        centers, size = nodes[center], degree[center] + 1
        in_star = np.repeat(center, degree)
        node, ids, _ = read_nodes(graph, bucket)
        center_id = ids[np.searchsorted(node, centers)]
        members = pa.table({
            "node": np.r_[centers, b[in_star]],
            "label": np.r_[centers, a[in_star]],
            "cluster_id": np.r_[center_id, np.repeat(center_id, degree[center])],
            "cluster_size": np.r_[size, np.repeat(size, degree[center])],
        })
        write_bucketed(tmp / "members.parquet", members, "node", graph.buckets)
        return {"members": members.num_rows, "counters": {CLUSTERS: len(centers)}}

    return run_once(graph.root / f"label-{bucket:05d}", work)


def decide_unit(graph: Graph, reason: str, bucket: int, report: Any = None) -> dict:
    """Decisions about the nodes of `bucket`, by partition: the center of each cluster is
    kept, the others dropped with `reason`; all record cluster_id and cluster_size."""
    import numpy as np
    import pyarrow as pa

    def work(tmp: Path) -> dict:
        tables = graph.read("label", "members", bucket)
        if not tables:
            return {"decisions": 0}
        members = pa.concat_tables(tables)
        member = members.column("node").to_numpy()
        node, ids, loc = read_nodes(graph, bucket)
        at = np.searchsorted(node, member)
        kept = member == members.column("label").to_numpy()
        return {"decisions": write_decisions(tmp, loc[at], ids[at], kept, reason,
                                             members.column("cluster_id").to_numpy(),
                                             members.column("cluster_size").to_numpy())}

    return run_once(graph.root / f"decide-{bucket:05d}", work)


def write_decisions(folder: Path, loc: Any, ids: Any, kept: Any, reason: str,
                    cluster_id: Any, cluster_size: Any) -> int:
    """Decisions about rows at locators `loc` into `folder`, one file per partition: dropped
    with `reason` unless `kept`, all recording their cluster. Returns the number of rows."""
    import numpy as np
    import pyarrow as pa

    from .global_phases import _by_partition

    decisions = pa.table({
        "_part": pa.array((loc >> LOC_BITS).astype(np.int32)),
        "_pos": pa.array(loc & ((1 << LOC_BITS) - 1)),
        ID: pa.array(ids, pa.int64()),
        "_reason": pa.array(np.where(kept, None, reason).tolist(), pa.string()),
        "cluster_id": pa.array(cluster_id, pa.int64()),
        "cluster_size": pa.array(cluster_size, pa.int64()),
    })
    for p, subset in _by_partition(decisions):
        write_parquet(folder / part_name("part", p), subset)
    return decisions.num_rows


def gather_unit(graph: Graph, bucket: int, report: Any = None) -> dict:
    """Ranked components: the members of node bucket `bucket` with their payload (rank, _id,
    locator), sent to the bucket of their cluster's center."""
    import numpy as np
    import pyarrow as pa

    def work(tmp: Path) -> dict:
        tables = graph.read("label", "members", bucket)
        if not tables:
            return {"members": 0}
        members = pa.concat_tables(tables)
        member = members.column("node").to_numpy()
        node, ids, loc, rank = read_nodes(graph, bucket, ranked=True)
        at = np.searchsorted(node, member)
        ranked = pa.table({"label": members.column("label"), "node": member,
                           RANK: rank[at], ID: ids[at], "loc": loc[at],
                           "cluster_size": members.column("cluster_size")})
        write_bucketed(tmp / "ranked.parquet", ranked, "label", graph.buckets)
        return {"members": ranked.num_rows}

    return run_once(graph.root / f"gather-{bucket:05d}", work)


def elect_unit(graph: Graph, reason: str, bucket: int, report: Any = None) -> dict:
    """Ranked components: the clusters centered in `bucket` each keep their member of
    smallest (rank, node); decisions by partition, where `decide` would write them."""
    import numpy as np
    import pyarrow as pa

    def work(tmp: Path) -> dict:
        tables = graph.read("gather", "ranked", bucket)
        if not tables:
            return {"decisions": 0}
        t = pa.concat_tables(tables)
        label, node, rank = (t.column(c).to_numpy() for c in ("label", "node", RANK))
        order = np.lexsort((node, rank, label))
        label, node = label[order], node[order]
        ids, loc = t.column(ID).to_numpy()[order], t.column("loc").to_numpy()[order]
        size = t.column("cluster_size").to_numpy()[order]
        starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
        lengths = np.diff(np.r_[starts, len(label)])
        keeper = np.repeat(starts, lengths)
        kept = np.arange(len(label)) == keeper
        return {"decisions": write_decisions(tmp, loc, ids, kept, reason, ids[keeper], size)}

    return run_once(graph.root / f"decide-{bucket:05d}", work)


# --- the driver ------------------------------------------------------------------------------
def run_components(root: Path, fine: int, reason: str, run: Runner, name: str = "") -> int:
    """Connected components of the edges that the reduce units under `root` wrote into
    `fine` node buckets, as units that `run(unit_name, unit, items, phase)` schedules (it
    returns when they are committed); returns the number of rounds. Committed units are
    skipped, so this resumes where a killed run stopped."""
    if not any(root.glob("reduce-*/edges.parquet")):
        return 0
    graph = plan_graph(root, fine)
    prefix = f"{name}: " if name else ""

    def pending(folders: list[Path]) -> list[int]:
        return [c for c, folder in enumerate(folders) if committed(folder) is None]

    round_no = 0
    while True:
        round_no += 1
        if round_no > MAX_ROUNDS:
            raise DatamillError(f"connected components did not converge in {MAX_ROUNDS} "
                                f"rounds ({root})")
        folders = [round_folder(root, round_no, c) for c in range(graph.buckets)]
        run("round", functools.partial(round_unit, graph, round_no), pending(folders),
            f"{prefix}components round {round_no}")
        if not sum(committed(f)["not_star"] for f in folders):  # its input was stars already
            break
    folders = [root / f"label-{c:05d}" for c in range(graph.buckets)]
    run("label", functools.partial(label_unit, graph, f"cc-{round_no:04d}"), pending(folders),
        f"{prefix}clusters")
    decide_folders = [root / f"decide-{c:05d}" for c in range(graph.buckets)]
    if is_ranked(root):
        folders = [root / f"gather-{c:05d}" for c in range(graph.buckets)]
        run("gather", functools.partial(gather_unit, graph), pending(folders),
            f"{prefix}ranks")
        run("elect", functools.partial(elect_unit, graph, reason), pending(decide_folders),
            f"{prefix}decisions")
    else:
        run("decide", functools.partial(decide_unit, graph, reason), pending(decide_folders),
            f"{prefix}decisions")
    return round_no
