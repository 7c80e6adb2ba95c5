"""datamill.testing.check_operation: a sound operation passes; each broken promise of the
spec (undocumented, a produced column missing or of the wrong type, empty input, nulls,
nondeterminism) is reported."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datamill import Arguments, Field, FilterOperation, MapOperation
from datamill.testing import check_operation

SAMPLE = pa.table({"text": ["one two", "three", "four five six", "x"]})


class CheckWords(MapOperation):
    """Words of `text` (null counts 0)."""

    name = "test_check_words"
    consumes = {"text": "string"}
    produces = {"words": "int64"}

    def process(self, batch):
        return {"words": pc.fill_null(pc.count_substring_regex(batch["text"], pattern=r"\S+"),
                                      0)}


class UndocumentedArgs(Arguments):
    limit: int = 3
    label: str = Field("x", description="")


class CheckUndocumented(CheckWords):
    name = "test_check_undocumented"
    Args = UndocumentedArgs
    __doc__ = None


class CheckMissingColumn(CheckWords):
    """Declares `words` and `chars`, returns only `words`."""

    name = "test_check_missing_column"
    produces = {"words": "int64", "chars": "int64"}


class CheckWrongType(CheckWords):
    """Declares an int64 column, returns text that is no number."""

    name = "test_check_wrong_type"

    def process(self, batch):
        return {"words": pc.utf8_upper(batch["text"])}


class CheckFirstRow(CheckWords):
    """Reads its first row unguarded (fails on an empty batch)."""

    name = "test_check_first_row"

    def process(self, batch):
        first = batch["text"][0].as_py()
        return {"words": [len(first.split())] * batch.num_rows}


class CheckNullUnsafe(CheckWords):
    """Splits every value (fails on a null)."""

    name = "test_check_null_unsafe"

    def process(self, batch):
        return {"words": [len(t.split()) for t in batch["text"].to_pylist()]}


_calls = itertools.count()


class CheckDrifting(CheckWords):
    """Adds a counter that changes between calls (not deterministic)."""

    name = "test_check_drifting"

    def process(self, batch):
        n = next(_calls)
        return {"words": [n] * batch.num_rows}


class CheckDriftingDeclared(CheckDrifting):
    """The same, declared nondeterministic."""

    name = "test_check_drifting_declared"
    deterministic = False


class CheckShortFilter(FilterOperation):
    """Drops texts of one word, with a reason."""

    name = "test_check_short_filter"
    consumes = {"text": "string"}

    def process(self, batch):
        words = pc.fill_null(pc.count_substring_regex(batch["text"], pattern=r"\S+"), 0)
        keep = pc.greater(words, 1)
        return keep, "short"


def test_sound_operations_pass_and_return_what_the_sample_gave():
    checked = check_operation(CheckWords, SAMPLE)
    assert checked.output["words"].to_pylist() == [2, 1, 3, 1]
    filtered = check_operation(CheckShortFilter, [{"text": t} for t in SAMPLE["text"]
                                                  .to_pylist()])
    assert filtered.output["text"].to_pylist() == ["one two", "four five six"]
    assert filtered.dropped["_reason"].to_pylist() == ["short", "short"]
    check_operation(CheckDriftingDeclared, SAMPLE)


@pytest.mark.parametrize(("op", "problems"), [
    (CheckUndocumented, ["it has no docstring", "argument 'limit' has no description",
                         "argument 'label' has no description"]),
    (CheckMissingColumn, ["on the sample: OperationError", "did not return declared column(s) "
                          "['chars']"]),
    (CheckWrongType, ["returned column 'words' as string, which does not convert to the "
                      "declared int64"]),
    (CheckFirstRow, ["on an empty batch: IndexError"]),
    (CheckNullUnsafe, ["on the sample with nulls in 'text': OperationError",
                       "AttributeError"]),
    (CheckDrifting, ["two runs on the same sample differ"]),
])
def test_each_broken_promise_is_reported(op, problems):
    with pytest.raises(AssertionError) as caught:
        check_operation(op, SAMPLE)
    message = str(caught.value)
    assert message.startswith(f"operation {op.name!r} breaks its contract:")
    for problem in problems:
        assert problem in message


def test_a_sample_without_the_consumed_columns_is_refused():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        check_operation(CheckWords, pa.table({"body": ["a"]}))
    with pytest.raises(TypeError, match="an Operation class"):
        check_operation(CheckWords(), SAMPLE)
