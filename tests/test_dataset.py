"""Building a pipeline validates it before any data is read."""

from __future__ import annotations

import pyarrow as pa
import pytest

import datamill as dm
from datamill import ArgumentError, MapOperation, SchemaError


class WordCount(MapOperation):
    """Count words of a text column."""

    name = "test_word_count"
    consumes = {"text": pa.string()}
    produces = {"words": "int64"}

    def process(self, batch):
        import pyarrow.compute as pc

        return {"words": pc.count_substring_regex(batch["text"], pattern=r"\S+")}


def test_schema_known_before_run(docs):
    ds = dm.Dataset.read(docs).apply(WordCount)
    assert ds.schema == {"text": pa.string(), "group": pa.int64(), "n": pa.int64(),
                         "words": pa.int64()}
    assert ds.lineage()["words"] == "test_word_count"
    assert ds.lineage()["text"] == "read_jsonl"


def test_missing_column_lists_existing_and_producers(docs):
    ds = dm.Dataset.read(docs).apply("text_length_filter", min_chars=1)
    with pytest.raises(SchemaError) as err:
        ds.apply("text_length_filter", column="txt", min_chars=3, step_name="second")
    msg = str(err.value)
    assert "'txt'" in msg and "did you mean 'text'" in msg
    assert "text (from read_jsonl)" in msg and "step 'second'" in msg


def test_type_mismatch_names_both_types(docs):
    with pytest.raises(SchemaError) as err:
        dm.Dataset.read(docs).apply("text_length_filter", column="group", min_chars=1)
    msg = str(err.value)
    assert "int64" in msg and "string" in msg and "'group'" in msg
    assert "text_length_filter" in msg


def test_unknown_argument_did_you_mean(docs):
    with pytest.raises(ArgumentError) as err:
        dm.Dataset.read(docs).apply("text_length_filter", min_char=3)
    assert "did you mean 'min_chars'" in str(err.value)
    assert "text_length_filter" in str(err.value)


def test_wrong_argument_type_and_value(docs):
    ds = dm.Dataset.read(docs)
    with pytest.raises(ArgumentError, match="min_chars"):
        ds.apply("text_length_filter", min_chars="many")
    with pytest.raises(ArgumentError, match="min_chars"):
        ds.apply("text_length_filter", min_chars=-1)
    with pytest.raises(ArgumentError, match="greater than"):
        ds.apply("text_length_filter", min_chars=10, max_chars=5)


def test_collision_needs_overwrite(docs):
    ds = dm.Dataset.read(docs).apply(WordCount)
    with pytest.raises(SchemaError, match="overwrite=True"):
        ds.apply(WordCount)
    replaced = ds.apply(WordCount, overwrite=True, step_name="again")
    assert replaced.lineage()["words"] == "again"


def test_unknown_operation_name(docs):
    with pytest.raises(dm.PipelineError, match="did you mean 'text_length_filter'"):
        dm.Dataset.read(docs).apply("text_lenght_filter")


def test_reserved_and_project_validation(docs):
    ds = dm.Dataset.read(docs)
    with pytest.raises(SchemaError, match="does not exist"):
        ds.select("text", "nope")
    with pytest.raises(SchemaError, match="renaming onto existing"):
        ds.rename(text="group")
    assert list(ds.rename(text="body").select("body", "n").schema) == ["body", "n"]
    assert list(ds.drop("group").schema) == ["text", "n"]


def test_nothing_read_while_building(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "hello"}\n')
    ds = dm.Dataset.read(path, schema={"text": "string"}).apply(
        "text_length_filter", min_chars=1)
    path.write_text("not json at all\n")  # building never parsed the data
    assert ds.schema == {"text": pa.string()}


def test_step_keys_depend_on_arguments_and_parents(docs):
    base = dm.Dataset.read(docs)
    a = base.apply("text_length_filter", min_chars=3)
    b = base.apply("text_length_filter", min_chars=3)
    c = base.apply("text_length_filter", min_chars=4)
    assert a.step.key == b.step.key != c.step.key
    assert a.apply(WordCount).step.key != c.apply(WordCount).step.key


def test_explain_lists_steps(docs):
    text = dm.Dataset.read(docs).apply(WordCount).explain()
    assert "read_jsonl" in text and "test_word_count" in text and "words: int64" in text
