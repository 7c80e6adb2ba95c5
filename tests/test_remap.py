"""Column remapping at apply time (`consumes=` / `produces=` step options, remap.py): every
kind of operation pointed at other columns gives what it gives on renamed columns; mappings
are checked before the run; they are part of the cache key and of the lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import datamill as dm
from datamill import ExpandOperation, FilterOperation, MapOperation, registry
from datamill.cli import main
from datamill.dataset import _APPLY_OPTIONS
from datamill.errors import PipelineError, SchemaError
from datamill.reader import read_table

from .conftest import write_jsonl
from .test_minhash import corpus


class RemapWords(MapOperation):
    """Words of `text` (whitespace-separated), in batches of 7 rows."""

    name = "test_remap_words"
    consumes = {"text": "string"}
    produces = {"words": "int64"}
    batch_size = 7

    def process(self, batch):
        return {"words": pc.count_substring_regex(batch["text"], pattern=r"\S+")}


class RemapLength(FilterOperation):
    """Drops rows whose `text` length is a multiple of 5 or 7 (a reason each); keeps
    `length` for the others."""

    name = "test_remap_length"
    consumes = {"text": "string"}
    produces = {"length": "int64"}

    def process(self, batch):
        length = pc.utf8_length(batch["text"])
        reasons = ["mod_5" if n % 5 == 0 else "mod_7" if n % 7 == 0 else ""
                   for n in length.to_pylist()]
        return pa.array([not r for r in reasons]), reasons, {"length": length}


class RemapSentences(ExpandOperation):
    """The first two sentences of `text`, one row each."""

    name = "test_remap_sentences"
    consumes = {"text": "string"}
    produces = {"sentence": "string"}

    def process(self, batch):
        parents, pieces = [], []
        for i, text in enumerate(batch["text"].to_pylist()):
            for piece in [p for p in text.split(". ") if p][:2]:
                parents.append(i)
                pieces.append(piece)
        return {"_parent_index": parents, "sentence": pieces}


class RemapShout(MapOperation):
    """Upper-cases `text` in place; fails on rows that hold the word 'boom'."""

    name = "test_remap_shout"
    consumes = {"text": "string"}
    produces = {"text": "string"}
    in_place = True

    def process(self, batch):
        values = batch["text"].to_pylist()
        if any("boom" in v for v in values):
            raise ValueError("boom in the text")
        return {"text": pc.utf8_upper(batch["text"])}


class RemapPair(MapOperation):
    """Joins `a` and `b` into `joined`, and echoes `a` as `first`."""

    name = "test_remap_pair"
    consumes = {"a": "string", "b": "string"}
    produces = {"joined": "string", "first": "string"}

    def process(self, batch):
        return {"joined": pc.binary_join_element_wise(batch["a"], batch["b"], "+"),
                "first": batch["a"]}


@pytest.fixture(scope="module")
def bodies(tmp_path_factory) -> Path:
    """~150 generated documents (exact and near-duplicate clusters) under `body`, beside
    an unrelated `text` column that the mapping shadows."""
    root = tmp_path_factory.mktemp("remap")
    corpus.write_corpus(root / "c.jsonl", 150, seed=5, dup_rate=0.35)
    rows = [json.loads(line) for line in (root / "c.jsonl").read_text().splitlines()]
    return write_jsonl(root / "bodies.jsonl",
                       [{"id": r["id"], "body": r["text"], "text": f"other {r['id']}"}
                        for r in rows])


def _remapped(path: Path) -> dm.Dataset:
    return (dm.Dataset.read(path, block_size=path.stat().st_size // 3 + 1)
            .apply(RemapWords, consumes={"text": "body"}, produces={"words": "n_words"})
            .apply(RemapLength, consumes={"text": "body"})
            .apply("drop_duplicates", columns=["text"], consumes={"text": "body"})
            .apply("minhash_dedup", consumes={"text": "body"})
            .apply(RemapSentences, consumes={"text": "body"}))


def _renamed(path: Path) -> dm.Dataset:
    """The same pipeline on columns renamed to what the operations declare."""
    return (dm.Dataset.read(path, block_size=path.stat().st_size // 3 + 1)
            .rename(text="other")
            .rename(body="text")
            .apply(RemapWords)
            .rename(words="n_words")
            .apply(RemapLength)
            .drop_duplicates(["text"])
            .apply("minhash_dedup")
            .apply(RemapSentences)
            .rename(text="body", other="text"))


def _rows(workdir: Path, ds: dm.Dataset) -> list[dict]:
    names = ["_id", *sorted(ds.schema)]
    return read_table(workdir, ds.step, names).sort_by("_id").to_pylist()


def _drops(workdir: Path) -> list[tuple]:
    table = dm.dropped_rows(workdir)
    keep = [c for c in ("_step", "_id", "_reason", "cluster_id") if c in table.column_names]
    return sorted(tuple(r[c] for c in keep) for r in table.select(keep).to_pylist())


def test_every_kind_of_operation_reads_and_writes_the_mapped_columns(tmp_path, bodies):
    remapped, renamed = _remapped(bodies), _renamed(bodies)
    assert remapped.schema == {"id": pa.string(), "body": pa.string(), "text": pa.string(),
                               "n_words": pa.int64(), "length": pa.int64(),
                               "sentence": pa.string()}
    a = remapped.run(tmp_path / "a", workers=2, progress=False)
    b = renamed.run(tmp_path / "b", workers=2, progress=False)
    rows = _rows(tmp_path / "a", remapped)
    assert rows == _rows(tmp_path / "b", renamed)
    assert rows and all(r["text"].startswith("other ") for r in rows)  # shadowed, untouched
    assert all(r["sentence"] in r["body"] for r in rows)
    drops = _drops(tmp_path / "a")
    assert drops == _drops(tmp_path / "b")
    steps = {name: sum(a.step(name)["dropped"].values())
             for name in ("test_remap_length", "drop_duplicates", "minhash_dedup")}
    assert all(steps.values()), steps  # each kind of drop happened
    assert set(a.step("test_remap_length")["dropped"]) == {"mod_5", "mod_7"}
    assert b.step("minhash_dedup")["dropped"] == a.step("minhash_dedup")["dropped"]


def test_global_operation_stores_its_columns_under_the_mapped_names(tmp_path, bodies):
    base = dm.Dataset.read(bodies)
    marked = base.apply("minhash_dedup", keep_duplicates=True, consumes={"text": "body"},
                        produces={"cluster_id": "dup_of", "cluster_size": "dup_count"})
    plain = base.rename(text="other").rename(body="text").apply("minhash_dedup",
                                                                keep_duplicates=True)
    a = marked.collect(tmp_path / "w", progress=False).sort_by("id")
    b = plain.collect(tmp_path / "w", progress=False).sort_by("id")
    assert {"dup_of", "dup_count"} <= set(a.column_names) and "cluster_id" not in a.column_names
    assert a["dup_of"].to_pylist() == b["cluster_id"].to_pylist()
    assert a["dup_count"].to_pylist() == b["cluster_size"].to_pylist()
    assert max(n for n in a["dup_count"].to_pylist() if n) >= 2  # clusters were found


def test_mapping_is_in_the_lineage_and_the_cache_key(tmp_path, bodies, capsys):
    ds = _remapped(bodies)
    result = ds.run(tmp_path / "w", progress=False)
    words = result.step("test_remap_words")
    assert words["remapped"] == {"consumes": {"text": "body"},
                                 "produces": {"words": "n_words"}}
    assert words["produced"] == {"n_words": "int64"}
    assert result.step("minhash_dedup")["remapped"] == {"consumes": {"text": "body"}}
    assert result.step("read_jsonl")["remapped"] == {}
    assert "step option consumes" in words["key_parts"]["arguments"]
    assert main(["inspect", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "columns of test_remap_words: reads 'text' from 'body', stores 'words' as " \
           "'n_words'" in out

    # the same mapping is served from the cache; another one recomputes
    again = _remapped(bodies).run(tmp_path / "w", progress=False)
    assert again.cached == {s.key for s in ds.steps}
    base = dm.Dataset.read(bodies, block_size=bodies.stat().st_size // 3 + 1)
    other = base.apply(RemapWords, consumes={"text": "body"}, produces={"words": "count"})
    plain = base.apply(RemapWords)
    keys = {ds.steps[1].key, other.step.key, plain.step.key}
    assert len(keys) == 3
    assert "step option consumes" not in plain.step.parts.arguments  # keys without a mapping
    t = other.collect(tmp_path / "w", progress=False)
    assert t["count"].to_pylist() == [len(b.split()) for b in t["body"].to_pylist()]


def test_in_place_operation_writes_back_where_it_read(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"body": "quiet words", "text": "keep me"},
                                              {"body": "a boom here", "text": "also kept"}])
    ds = dm.Dataset.read(src).apply(RemapShout, consumes={"text": "body"},
                                    on_error="quarantine")
    assert list(ds.schema) == ["body", "text"]
    t = ds.collect(tmp_path / "w", progress=False)
    assert t.to_pylist() == [{"body": "QUIET WORDS", "text": "keep me"}]
    q = dm.quarantined_rows(tmp_path / "w")
    assert q["body"].to_pylist() == ["a boom here"] and "boom" in q["_error"][0].as_py()

    elsewhere = dm.Dataset.read(src).apply(RemapShout, consumes={"text": "body"},
                                           produces={"text": "loud"}, on_error="skip")
    t = elsewhere.collect(tmp_path / "w2", progress=False)
    assert t.to_pylist() == [{"body": "quiet words", "text": "keep me",
                              "loud": "QUIET WORDS"}]


def test_two_declared_names_may_read_one_column_and_names_may_swap(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"a": "x", "b": "y"}, {"a": "p", "b": "q"}])
    same = dm.Dataset.read(src).apply(RemapPair, consumes={"a": "b"})
    assert same.collect(tmp_path / "w", progress=False)["joined"].to_pylist() == ["y+y", "q+q"]
    swapped = dm.Dataset.read(src).apply(RemapPair, consumes={"a": "b", "b": "a"})
    t = swapped.collect(tmp_path / "w", progress=False)
    assert t["joined"].to_pylist() == ["y+x", "q+p"]
    assert t["first"].to_pylist() == ["y", "q"]


def test_mappings_are_checked_before_the_run(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"body": "hello", "title": "t", "n": 1}])
    ds = dm.Dataset.read(src)
    with pytest.raises(SchemaError, match=r"consumes=\{'txt': 'body'\} maps a column the "
                       r"operation does not consume; did you mean 'text'\? \(it consumes: "
                       r"text\)"):
        ds.apply(RemapWords, consumes={"txt": "body"})
    with pytest.raises(SchemaError, match=r"did you mean 'words'\? \(it produces: words\)"):
        ds.apply(RemapWords, consumes={"text": "body"}, produces={"word": "w"})
    with pytest.raises(SchemaError, match=r"consumes 'text' from column 'bdy', which does "
                       r"not exist; did you mean 'body'\? \(columns: body \(from read_jsonl\), "
                       r"title \(from read_jsonl\), n \(from read_jsonl\)\)"):
        ds.apply(RemapWords, consumes={"text": "bdy"})
    with pytest.raises(SchemaError, match=r"column 'n' \(read as 'text'\) has type int64"):
        ds.apply(RemapWords, consumes={"text": "n"})
    with pytest.raises(SchemaError, match="produced columns 'joined' and 'first' would both "
                       "be stored as 'out'"):
        ds.apply(RemapPair, consumes={"a": "body", "b": "title"},
                 produces={"joined": "out", "first": "out"})
    with pytest.raises(SchemaError, match="produced columns 'joined' and 'first' would both "
                       "be stored as 'first'"):
        ds.apply(RemapPair, consumes={"a": "body", "b": "title"}, produces={"joined": "first"})
    with pytest.raises(SchemaError, match=r"produces column\(s\) 'title' that already exist; "
                       "pass overwrite=True"):
        ds.apply(RemapWords, consumes={"text": "body"}, produces={"words": "title"})
    # an in-place op replaces the column it reads, not another one
    with pytest.raises(SchemaError, match=r"'title' that already exist"):
        ds.apply(RemapShout, consumes={"text": "body"}, produces={"text": "title"})
    with pytest.raises(PipelineError, match="reserved column name"):
        ds.apply(RemapWords, consumes={"text": "body"}, produces={"words": "_words"})
    with pytest.raises(PipelineError, match=r"must map the operation's column names"):
        ds.apply(RemapWords, consumes=["body"])
    with pytest.raises(PipelineError, match="select, drop and rename name their columns"):
        ds.apply("select", columns=["body"], consumes={"body": "title"})
    with pytest.raises(PipelineError, match="did you mean the step option 'consumes'"):
        ds.apply(RemapWords, consume={"text": "body"})
    replaced = ds.apply(RemapWords, consumes={"text": "body"}, produces={"words": "title"},
                        overwrite=True)
    assert replaced.schema["title"] == pa.int64()
    assert replaced.collect(tmp_path / "w", progress=False)["title"].to_pylist() == [1]


def test_no_operation_takes_an_argument_named_like_a_step_option():
    """Step options are popped before the operation sees its arguments: an argument of the
    same name could never be given."""
    clashes = {name: sorted(set(cls.Args.model_fields) & set(_APPLY_OPTIONS))
               for name, cls in registry.load_all().items()}
    assert {n: c for n, c in clashes.items() if c} == {}


def test_python_map_and_filter_keep_their_consumes_and_produces(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"n": 1, "m": 2}, {"n": 5, "m": 0}])
    ds = (dm.Dataset.read(src)
          .map(lambda b: {"twice": pc.multiply(b["n"], 2)}, produces={"twice": "int64"},
               consumes=["n"])
          .filter(lambda b: pc.greater(b["twice"], 4), consumes=["twice"]))
    assert list(ds.steps[1].consumed) == ["n"]
    assert ds.collect(tmp_path / "w", progress=False).to_pylist() == [
        {"n": 5, "m": 0, "twice": 10}]


def test_remapped_pipeline_on_ray_matches_local(tmp_path, bodies, ray_cluster):
    local, on_ray = _remapped(bodies), _remapped(bodies)
    a = local.run(tmp_path / "local", workers=2, progress=False)
    b = on_ray.run(tmp_path / "ray", executor="ray", address=ray_cluster.address,
                   progress=False)
    assert not b.cached
    assert [s["cache_key"] for s in a.steps] == [s["cache_key"] for s in b.steps]
    assert _rows(tmp_path / "ray", on_ray) == _rows(tmp_path / "local", local)
    assert _drops(tmp_path / "ray") == _drops(tmp_path / "local")
    assert b.step("minhash_dedup")["remapped"] == {"consumes": {"text": "body"}}
