"""image_hash and image_dedup: perceptual hashes that agree with the imagehash package, a band
search with the recall of brute force, near-duplicate photos clustered (resized, recompressed,
cropped), the kept row of each cluster, `inspect --duplicates`, and the same result on Ray."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

import datamill as dm
from datamill.cli import main
from datamill.ops.image import hashing
from datamill.ops.image.hashing import bands, brute_force_pairs, near_edges, near_pairs

PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "coins",
          "immunohistochemistry", "hubble_deep_field")


def _photo(name: str) -> Image.Image:
    return Image.fromarray(np.asarray(getattr(skimage.data, name)()))


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.convert("RGB" if fmt == "JPEG" else image.mode).save(out, fmt, **options)
    return out.getvalue()


def _variants(image: Image.Image) -> dict[str, bytes]:
    """The photo, and near duplicates of it: half size, recompressed JPEG, cropped 1% a side."""
    w, h = image.size
    return {"half": _encode(image.resize((w // 2, h // 2), Image.Resampling.BILINEAR)),
            "original": _encode(image),
            "jpeg40": _encode(image, "JPEG", quality=40),
            "cropped": _encode(image.crop((w // 100, h // 100, w - w // 100, h - h // 100)))}


@pytest.fixture(scope="module")
def photos_file(tmp_path_factory) -> Path:
    """Four variants of each photo, interleaved across photos, in three files."""
    rows = [{"photo": name, "variant": variant, "image": data}
            for name in PHOTOS for variant, data in _variants(_photo(name)).items()]
    rows = rows[::2] + rows[1::2]  # a cluster's rows apart, in different files
    folder = tmp_path_factory.mktemp("photos")
    for k, part in enumerate(np.array_split(np.arange(len(rows)), 3)):
        pq.write_table(pa.Table.from_pylist([rows[i] for i in part]),
                       folder / f"part-{k}.parquet")
    return folder


def _dedup(path: Path, **args) -> dm.Dataset:
    return dm.Dataset.read(path).apply("as_images").apply("image_dedup", **args)


def _reference_clusters(n: int, a, b) -> list[int]:
    """The smallest member of each item's cluster (plain union-find over the pairs)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(np.asarray(a).tolist(), np.asarray(b).tolist()):
        rx, ry = find(x), find(y)
        parent[max(rx, ry)] = min(rx, ry)
    return [find(x) for x in range(n)]


def _planted(n: int, threshold: int, seed: int) -> np.ndarray:
    """Random 64-bit hashes, a third of them copies of another with 0..threshold+2 bits
    flipped (near pairs on both sides of the threshold), and a few exact repeats."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    for target in rng.choice(n, n // 3, replace=False).tolist():
        flips = rng.choice(64, int(rng.integers(0, threshold + 3)), replace=False)
        source = int(rng.integers(0, n))
        hashes[target] = hashes[source] ^ np.uint64(sum(1 << int(f) for f in flips))
    hashes[rng.choice(n, 20)] = hashes[0]
    return hashes


# --- hashes -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["phash", "dhash"])
def test_hashes_agree_with_the_imagehash_package(method):
    imagehash = pytest.importorskip("imagehash")
    reference = {"phash": imagehash.phash, "dhash": imagehash.dhash}[method]
    ours = hashing.HASHERS[method]
    distances = []
    for name in PHOTOS:
        for data in _variants(_photo(name)).values():
            image = Image.open(io.BytesIO(data))
            theirs = int(str(reference(image)), 16)
            distances.append(int(hashing.hamming(ours(image), theirs)))
    # the same algorithm and bit order; phash: imagehash's scipy DCT rounds differently in a
    # bit at the median at most
    assert max(distances) <= 1 and distances.count(0) >= 0.9 * len(distances), distances


def test_near_duplicates_hash_close_and_different_photos_far():
    for method, hasher in hashing.HASHERS.items():
        hashes = {name: [hasher(Image.open(io.BytesIO(d))) for d in
                         _variants(_photo(name)).values()] for name in PHOTOS}
        near = [int(hashing.hamming(h[0], x)) for h in hashes.values() for x in h[1:]]
        far = [int(hashing.hamming(hashes[a][1], hashes[b][1]))
               for i, a in enumerate(PHOTOS) for b in PHOTOS[i + 1:]]
        assert max(near) <= 6 < 16 <= min(far), (method, near, far)


# --- the band search ------------------------------------------------------------------------
def test_bands_cover_the_hash_once():
    for threshold in range(0, 17):
        spans = bands(threshold)
        assert len(spans) == threshold + 1
        bits = sorted(b for shift, width in spans for b in range(shift, shift + width))
        assert bits == list(range(64))
        assert max(w for _, w in spans) - min(w for _, w in spans) <= 1
    with pytest.raises(ValueError, match="0..63"):
        bands(64)


@pytest.mark.parametrize("threshold", [0, 1, 3, 6, 10])
def test_band_search_finds_exactly_the_pairs_of_brute_force(threshold):
    hashes = _planted(3000, threshold, seed=threshold)
    a, b = near_pairs(hashes, threshold)
    ra, rb = brute_force_pairs(hashes, threshold, rows=48, columns=1000)
    found = set(zip(a.tolist(), b.tolist()))
    expected = set(zip(ra.tolist(), rb.tolist()))
    assert found == expected and len(found) == len(a)  # each pair once
    assert len(expected) > 250  # the planted pairs are there
    # near_edges compares each distinct hash once, yet gives the same clusters
    ea, eb = near_edges(hashes, threshold)
    assert len(ea) < len(a) or threshold == 10
    assert _reference_clusters(len(hashes), ea, eb) == _reference_clusters(len(hashes), ra, rb)


def test_close_pairs_compares_each_pair_of_a_group_once():
    groups = np.array([5, 1, 5, 2, 5, 1, 9], np.uint64)  # groups of 3, 2, 1, 1
    hashes = np.array([0, 7, 1, 0, 3, 0, 0], np.uint64)
    i, j, compared = hashing.close_pairs(groups, hashes, 64)  # every pair is close
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 2), (0, 4), (1, 5), (2, 4)]
    assert compared == 4
    i, j, compared = hashing.close_pairs(groups, hashes, 1)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 2), (2, 4)] and compared == 4
    many = np.zeros(1000, np.uint64)  # one big group of equal hashes: each pair once
    i, j, compared = hashing.close_pairs(many, many, 0)
    assert len(i) == compared == 1000 * 999 // 2 and len(set(zip(i.tolist(), j.tolist()))) \
        == len(i)
    wide = np.arange(10, dtype=np.uint64) << np.uint64(40)  # groups beyond 16 bits
    i, j, compared = hashing.close_pairs(np.r_[wide, wide], np.zeros(20, np.uint64), 0)
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, k + 10) for k in range(10)]


def test_exact_copies_are_joined_not_compared_pairwise():
    hashes = np.r_[np.full(2000, 12345, np.uint64), np.uint64(12345 ^ 1)]
    a, b = near_edges(hashes, 4)
    assert len(a) == 2000  # 1999 copies to the first, and the one-bit neighbour
    assert set(_reference_clusters(len(hashes), a, b)) == {0}


def test_the_cache_key_follows_the_hashing_code(monkeypatch):
    """The ops' code fingerprint follows the datamill modules their hashes come from."""
    from datamill import code_fingerprint

    module = "datamill.ops.image.dedup"
    assert {"datamill.ops.image.hashing", "datamill.ops.image.decode"} <= set(
        code_fingerprint._datamill_imports(module))
    before = code_fingerprint.origin(module)
    real = code_fingerprint.file_digest
    monkeypatch.setattr(code_fingerprint, "file_digest", lambda m: real(m) + (
        "edited" if m.endswith(".hashing") else ""))
    for cached in (code_fingerprint.origin, code_fingerprint.datamill_digest):
        cached.cache_clear()
    try:
        assert code_fingerprint.origin(module) != before
    finally:
        monkeypatch.undo()
        for cached in (code_fingerprint.origin, code_fingerprint.datamill_digest):
            cached.cache_clear()
    assert code_fingerprint.origin(module) == before


# --- the operation --------------------------------------------------------------------------
def test_photos_cluster_with_their_near_duplicates(tmp_path, photos_file):
    ds = _dedup(photos_file)
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    step = result.step("image_dedup")
    assert step["rows_in"] == 4 * len(PHOTOS)
    assert step["rows_out"] == len(PHOTOS)
    assert step["dropped"] == {"near_duplicate_image": 3 * len(PHOTOS)}
    assert step["counters"]["duplicate_clusters"] == len(PHOTOS)
    kept = ds.collect(tmp_path / "w", ["photo", "variant"], progress=False).to_pylist()
    assert sorted(kept, key=lambda r: r["photo"]) == [
        {"photo": name, "variant": "jpeg40"} for name in sorted(PHOTOS)]
    table = pq.read_table(sorted(photos_file.glob("*.parquet")))
    rows = table.to_pylist()
    dropped = dm.dropped_rows(tmp_path / "w", "image_dedup").to_pylist()
    # the source step numbers the rows in input order: its _ids name the input rows
    ids = _ids(tmp_path / "w", ds)
    by_id = {i: r for i, r in zip(ids, rows)}
    for d in dropped:
        keeper, row = by_id[d["cluster_id"]], by_id[d["_id"]]
        assert keeper["photo"] == row["photo"], (keeper, row)
        # the most pixels: the original's, tied with its JPEG, which comes first in the input
        assert keeper["variant"] == "jpeg40"
        assert d["cluster_size"] == 4


def _ids(workdir: Path, ds: dm.Dataset) -> list[int]:
    """The `_id` of each input row, in the order of the input files."""
    from datamill.reader import read_table

    return read_table(workdir, ds.steps[0], ["_id"]).column("_id").to_pylist()


@pytest.mark.parametrize("keep, expected", [("most_pixels", "full_jpeg"),
                                            ("largest_bytes", "half_png"),
                                            ("first", "quarter_jpeg")])
def test_the_kept_row(tmp_path, keep, expected):
    image = _photo("chelsea")
    w, h = image.size
    rows = [{"name": "quarter_jpeg", "image": _encode(image.resize((w // 4, h // 4)), "JPEG",
                                                      quality=30)},
            {"name": "half_png", "image": _encode(image.resize((w // 2, h // 2)))},
            {"name": "full_jpeg", "image": _encode(image, "JPEG", quality=30)},
            {"name": "other", "image": _encode(_photo("coffee"))}]
    assert len(rows[1]["image"]) > len(rows[2]["image"])  # fewer pixels, more bytes
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ds = _dedup(path, keep=keep)
    ds.run(tmp_path / "w", progress=False)
    ids = dict(zip(_ids(tmp_path / "w", ds), [r["name"] for r in rows]))
    dropped = dm.dropped_rows(tmp_path / "w", "image_dedup").to_pylist()
    assert sorted(ids[d["_id"]] for d in dropped) == sorted(
        {"quarter_jpeg", "half_png", "full_jpeg"} - {expected})
    assert {ids[d["cluster_id"]] for d in dropped} == {expected}


def test_precomputed_hashes_and_recall_of_brute_force_end_to_end(tmp_path):
    """`hash_column`: hashes from a column (image_hash's); the clusters are those of brute
    force over every pair, whatever the partitions and buckets."""
    threshold = 5
    hashes = _planted(4000, threshold, seed=7)
    folder = tmp_path / "in"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(hashes)), 4)):
        pq.write_table(pa.table({"n": part, "h": pa.array(hashes[part], pa.uint64())}),
                       folder / f"part-{k}.parquet")
    ds = dm.Dataset.read(folder).apply("image_dedup", hash_column="h", keep="first",
                                       threshold=threshold)
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    ids = _ids(tmp_path / "w", ds)
    dropped = dm.dropped_rows(tmp_path / "w", "image_dedup").to_pylist()
    reference = _reference_clusters(len(hashes), *brute_force_pairs(hashes, threshold))
    expected = {ids[i]: ids[r] for i, r in enumerate(reference) if r != i}
    assert {d["_id"]: d["cluster_id"] for d in dropped} == expected  # keep=first: smallest
    counters = result.step("image_dedup")["counters"]
    assert counters["candidate_pairs"] < len(hashes) ** 2 // 2 // 20  # far from all pairs


def test_undecodable_images_are_kept_and_counted_and_image_hash_quarantines(tmp_path):
    image = _photo("camera")
    rows = [{"image": _encode(image)}, {"image": _encode(image, "JPEG", quality=50)},
            {"image": b"<svg onload='alert(1)'/>"}, {"image": _encode(image)[:300]},
            {"image": b""}]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = _dedup(path).run(tmp_path / "w", progress=False)
    step = result.step("image_dedup")
    assert step["rows_out"] == 4 and step["dropped"] == {"near_duplicate_image": 1}
    counters = step["counters"]
    assert counters["undecodable_images"] == 3
    assert [counters[f"undecodable_{r}"] for r in ("empty", "truncated", "vector_refused")] \
        == [1, 1, 1]

    hashed = (dm.Dataset.read(path).apply("as_images")
              .apply("image_hash", on_error="quarantine"))
    result = hashed.run(tmp_path / "w2", progress=False)
    assert result.step("image_hash")["errors"] == 3
    values = hashed.collect(tmp_path / "w2", ["image_hash"], progress=False)
    bad = dm.quarantined_rows(tmp_path / "w2", "image_hash").to_pylist()
    assert sorted(r["_error"].split(":")[1].strip() for r in bad) == [
        "empty", "truncated", "vector_refused"]
    assert all("column 'image'" in r["_error"] for r in bad)
    assert values.num_rows == 2 and values.schema.field("image_hash").type == pa.uint64()
    a, b = values.column("image_hash").to_pylist()
    assert hashing.hamming(a, b) <= 2  # PNG and JPEG of one photo


def test_inspect_duplicates_lists_a_cluster(tmp_path, photos_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = _dedup(photos_file, threshold=6)
    ds.run(tmp_path / "w", progress=False)
    dropped = dm.dropped_rows(tmp_path / "w", "image_dedup").to_pylist()
    kept = dropped[0]["cluster_id"]
    assert main(["inspect", "w", "--duplicates", str(kept)]) == 0
    out = capsys.readouterr().out
    assert f"row {kept}, kept by image_dedup:" in out
    assert f"duplicates of row {kept} dropped by image_dedup: 3" in out
    assert "<jpeg image, " in out and "<png image, " in out  # bytes shown as a size
    assert "near_duplicate_image" in out
    assert main(["inspect", "w", "--duplicates", str(kept), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["duplicates"]
    assert data["row"]["variant"] == "jpeg40"
    assert sorted(r["variant"] for r in data["rows"]) == ["cropped", "half", "original"]
    assert {r["photo"] for r in data["rows"]} == {data["row"]["photo"]}


def test_null_hashes_are_kept_and_int64_hashes_read_as_bits(tmp_path):
    near = -(2**63) + 5  # the top bit set: negative as int64
    table = pa.table({"h": pa.array([near, None, near ^ 1, None, 7], pa.int64())})
    pq.write_table(table, tmp_path / "in.parquet")
    ds = dm.Dataset.read(tmp_path / "in.parquet").apply("image_dedup", hash_column="h",
                                                       keep="first", threshold=1)
    step = ds.run(tmp_path / "w", progress=False).step("image_dedup")
    assert (step["rows_out"], step["counters"]["rows_without_hash"]) == (4, 2)
    ids = _ids(tmp_path / "w", ds)
    assert [(d["_id"], d["cluster_id"]) for d in dm.dropped_rows(tmp_path / "w").to_pylist()] \
        == [(ids[2], ids[0])]


def test_arguments_and_schema_are_checked(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a"], "h": pa.array([1.5])}), path)
    with pytest.raises(dm.SchemaError, match="image column 'image' is missing"):
        dm.Dataset.read(path).apply("image_dedup")
    with pytest.raises(dm.SchemaError, match="must be uint64 or int64"):
        dm.Dataset.read(path).apply("image_dedup", hash_column="h", keep="first")
    with pytest.raises(dm.ArgumentError, match="threshold"):
        dm.Dataset.read(path).apply("image_dedup", threshold=40)


# --- Ray ---------------------------------------------------------------------------------
def test_the_same_clusters_on_ray(tmp_path, photos_file, ray_cluster):
    local, ray = _dedup(photos_file), _dedup(photos_file)
    a = local.run(tmp_path / "local", workers=2, progress=False)
    b = ray.run(tmp_path / "ray", executor="ray", address=ray_cluster.address, progress=False)
    assert b.manifest["executor"] == "ray"
    step_a, step_b = a.step("image_dedup"), b.step("image_dedup")
    assert step_a["cache_key"] == step_b["cache_key"]
    assert (step_a["rows_out"], step_a["dropped"], step_a["counters"]) == \
        (step_b["rows_out"], step_b["dropped"], step_b["counters"])

    def drops(workdir: Path) -> list[dict]:
        return dm.dropped_rows(workdir, "image_dedup").sort_by("_id").to_pylist()

    assert drops(tmp_path / "ray") == drops(tmp_path / "local")
    assert len(drops(tmp_path / "ray")) == 3 * len(PHOTOS)
