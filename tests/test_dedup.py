"""drop_duplicates: keys on normalized text, and the lineage of every dropped duplicate."""

from __future__ import annotations

import pyarrow as pa
import pytest

import datamill as dm
from datamill.errors import ArgumentError
from datamill.ops.dedup import normalize_strings

from .conftest import write_jsonl

TEXTS = ["Hello,  World!", "hello world", "HELLO\u00a0WORLD.", "Hello World", "ﬁne day",
         "fine day", "Ｆｉｎｅ  day", "other", "hello, world"]


def _ids_by_text(workdir, ds) -> dict[str, int]:
    from datamill.reader import read_table

    table = read_table(workdir, ds.steps[0], ["_id", "text"])
    return dict(zip(table["text"].to_pylist(), table["_id"].to_pylist()))


def test_normalize_strings_each_step():
    values = pa.array(["  A\u00a0B,  c!ﬁ ", None])
    assert normalize_strings(values, ("nfkc",)).to_pylist() == ["  A B,  c!fi ", None]
    assert normalize_strings(values, ("lower",)).to_pylist() == ["  a\u00a0b,  c!ﬁ ", None]
    assert normalize_strings(values, ("punctuation",)).to_pylist() == ["  A\u00a0B  cﬁ ", None]
    assert normalize_strings(values, ("whitespace",)).to_pylist() == ["A B, c!ﬁ", None]
    assert normalize_strings(values, ("nfkc", "lower", "punctuation", "whitespace")
                             ).to_pylist() == ["a b cfi", None]


def test_normalize_true_keeps_first_row_and_stores_it_unchanged(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t, "n": i} for i, t in enumerate(TEXTS)])
    ds = dm.Dataset.read(path).drop_duplicates(["text"], normalize=True)
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert table["text"].to_pylist() == ["Hello,  World!", "ﬁne day", "other"]
    plain = dm.Dataset.read(path).drop_duplicates(["text"])
    assert plain.collect(tmp_path / "w", progress=False).num_rows == len(TEXTS)


def test_normalize_subset_of_steps(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in TEXTS])
    ds = dm.Dataset.read(path).drop_duplicates(["text"], normalize=["lower"])
    kept = ds.collect(tmp_path / "w", progress=False)["text"].to_pylist()
    assert kept == [t for t in TEXTS if t != "Hello World"]  # lowercase only: one repeat
    with pytest.raises(ArgumentError, match="normalize"):
        dm.Dataset.read(path).drop_duplicates(["text"], normalize=["uppercase"])


def test_normalize_on_several_columns_leaves_other_types_alone(tmp_path):
    rows = [{"text": "A b", "group": 1}, {"text": "a  B", "group": 1}, {"text": "a b", "group": 2}]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    ds = dm.Dataset.read(path).drop_duplicates(["text", "group"], normalize=True)
    table = ds.collect(tmp_path / "w", progress=False)
    assert table.to_pylist() == [{"text": "A b", "group": 1}, {"text": "a b", "group": 2}]


def test_dropped_rows_name_the_row_kept_in_their_place(tmp_path):
    texts = ["x", "y", "x", "z", "x", "y"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t, "n": i} for i, t in enumerate(texts)])
    ds = dm.Dataset.read(path, block_size=12).drop_duplicates(["text"])
    assert len(ds.steps[0].op.partitions()) > 1
    result = ds.run(tmp_path / "w", workers=2, progress=False)
    from datamill.reader import read_table

    ids = read_table(tmp_path / "w", ds.steps[0], ["_id"])["_id"].to_pylist()
    dropped = dm.dropped_rows(tmp_path / "w", "drop_duplicates").sort_by("_id")
    assert dropped["_id"].to_pylist() == [ids[2], ids[4], ids[5]]
    assert dropped["cluster_id"].to_pylist() == [ids[0], ids[0], ids[1]]
    assert dropped["cluster_size"].to_pylist() == [3, 3, 2]
    assert dropped["_reason"].to_pylist() == ["duplicate"] * 3
    assert sorted(dm.duplicates(tmp_path / "w", ids[0])["_id"].to_pylist()) == [ids[2], ids[4]]
    assert result.duplicates(ids[1])["_id"].to_pylist() == [ids[5]]
    assert result.duplicates(ids[3]).num_rows == 0  # kept, no duplicate


def test_string_keys_are_hashed_from_arrow_buffers_as_from_python_strings():
    """drop_duplicates hashes a string column straight from its Arrow buffers: the same
    digests as b"\\x01" + UTF-8 of each value (b"\\x00" for null), for sliced, chunked and
    large string arrays."""
    import hashlib

    import pyarrow as pa

    from datamill.ops.dedup import _string_digests

    values = ["a", None, "", "é ü", "a", "\U0001F600 x", None, "long " * 300]
    arrays = [pa.array(values), pa.array(values, pa.large_string()),
              pa.array(values).slice(1, 5), pa.chunked_array([values[:3], values[3:]])]
    for array in arrays:
        want = b"".join(hashlib.blake2b(b"\x00" if v is None else b"\x01" + v.encode(),
                                        digest_size=16).digest() for v in array.to_pylist())
        assert _string_digests(array) == want
