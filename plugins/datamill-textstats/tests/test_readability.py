"""The plugin's own tests: the operations' contracts and their scores on known texts."""

from __future__ import annotations

import pyarrow as pa
import pytest
from datamill_textstats import Readability, ReadabilityFilter, scores
from datamill_textstats.readability import syllables

from datamill import registry
from datamill.testing import check_operation

PLAIN = "The cat sat on the mat. It was a sunny day."
DENSE = ("Notwithstanding considerable methodological heterogeneity, the investigators "
         "characterized multidimensional socioeconomic determinants comprehensively.")
SAMPLE = pa.table({"text": [PLAIN, DENSE, None, "", "1234 5678", "Hello."]})


@pytest.mark.parametrize(("word", "count"), [("cat", 1), ("table", 2), ("make", 1),
                                             ("readability", 5), ("see", 1), ("rhythm", 1)])
def test_syllables(word, count):
    assert syllables(word) == count


def test_scores_of_known_texts():
    ease, grade, words = scores(PLAIN)
    assert words == 11 and ease > 100 and grade < 1  # two short sentences of short words
    ease, grade, words = scores(DENSE)
    assert words == 11 and ease < 0 and grade > 20
    assert scores(None) is None and scores("1234 5678") is None


def test_readability_contract_and_values():
    out = check_operation(Readability, SAMPLE).output
    assert out["reading_ease"].to_pylist()[2:5] == [None, None, None]
    assert out["readability_words"].to_pylist() == [11, 11, 0, 0, 0, 1]
    assert out["grade_level"][0].as_py() < out["grade_level"][1].as_py()


def test_filter_contract_and_reasons():
    checked = check_operation(ReadabilityFilter, SAMPLE, max_grade=10, min_words=2)
    assert checked.output["text"].to_pylist() == [PLAIN]
    assert sorted(checked.dropped["_reason"].to_pylist()) == [
        "readability:too_few_words"] * 4 + ["readability:too_hard"]


def test_published_through_entry_points():
    assert registry.get("readability") is Readability
    assert registry.provider(ReadabilityFilter) == ("datamill-textstats", "0.1.0")


def test_readme_shows_the_specs():
    from pathlib import Path

    from datamill.packaging import readme_section

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert readme_section(Readability) in readme and readme_section(ReadabilityFilter) in readme
