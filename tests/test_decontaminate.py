"""decontaminate: rows sharing word n-grams with a real evaluation set (English passages of
Debian manual pages) are dropped or flagged, also when case, punctuation and spacing differ;
near misses and unrelated text are kept."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill as dm
from datamill.errors import ArgumentError, OperationError, PipelineError
from datamill.ops.decontaminate import Decontaminate, FlagContamination

from .conftest import write_jsonl

SAMPLE = Path(__file__).parent / "data" / "langid" / "debian_manpages.jsonl"


def _english() -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["lang"] == "en" and len(r["text"].split()) >= 20]


def _perturb_case(text: str) -> str:
    return " ".join(w.upper() if i % 3 == 0 else w.lower() for i, w in enumerate(text.split()))


def _perturb_punctuation(text: str) -> str:
    text = re.sub(r"[.,;:()'\"]", "", text)           # drop punctuation
    return text.replace(" ", " -- ", 3).replace(" ", "\n  ", 2) + "!!"


def _training_rows(eval_set: list[str], others: list[dict]) -> list[dict]:
    """Positives (kind starting with "hit") and negatives, each with its expectation."""
    a, b, c, d = eval_set[:4]
    words = a.split()
    rows = [
        {"text": f"Some introduction. {a} And a conclusion.", "kind": "hit_embedded"},
        {"text": _perturb_case(b), "kind": "hit_case"},
        {"text": "Prefix text here " + _perturb_punctuation(c), "kind": "hit_punctuation"},
        {"text": "x " + " ".join(d.split()[5:18]) + " y", "kind": "hit_exactly_13_words"},
        {"text": " ".join(words[:12]) + " and then something else entirely",
         "kind": "miss_12_words"},
        {"text": " ".join(reversed(words)), "kind": "miss_reversed"},
        {"text": "", "kind": "miss_empty"},
        {"text": "   \n\t ", "kind": "miss_whitespace"},
        {"text": None, "kind": "miss_null"},
        {"text": "\x00\x01\ufffd\ufffd" * 100 + bytes(range(256)).decode("latin-1"),
         "kind": "miss_junk"},
    ]
    for other in others:
        # clusterdb's page repeats an option description of vacuumdb's, which is in the
        # evaluation set: real shared text, caught
        shared = ("clusterdb" in other["page"]
                  and other["text"].startswith("Specifies the name of the database"))
        rows.append({"text": other["text"],
                     "kind": "hit_sibling_page" if shared else "miss_other_passage"})
    return rows


@pytest.fixture
def eval_file(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    english = _english()
    eval_set, others = [r["text"] for r in english[:6]], english[6:]
    assert any("vacuumdb" in r["page"] for r in english[:6])
    path = write_jsonl(tmp_path / "eval.jsonl", [{"question": t, "id": i}
                                                  for i, t in enumerate(eval_set)])
    return path, eval_set, others


def test_drop_mode_catches_perturbed_copies(tmp_path, eval_file):
    path, eval_set, others = eval_file
    assert len(others) >= 8
    rows = _training_rows(eval_set, others)
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    ds = dm.Dataset.read(data, schema={"text": "string", "kind": "string"}).apply(
        "decontaminate", eval_path=str(path), eval_column="question")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    kept = ds.collect(tmp_path / "w")["kind"].to_pylist()
    expected_hits = [r["kind"] for r in rows if r["kind"].startswith("hit")]
    assert kept == [r["kind"] for r in rows if not r["kind"].startswith("hit")]
    assert result.step("decontaminate")["dropped"] == {"contaminated": len(expected_hits)}


def test_flag_mode_keeps_rows_and_counts_ngrams(tmp_path, eval_file):
    path, eval_set, others = eval_file
    rows = _training_rows(eval_set, others)
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    ds = dm.Dataset.read(data, schema={"text": "string", "kind": "string"}).apply(
        "flag_contamination", eval_path=str(path), eval_column="question")
    out = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert out.num_rows == len(rows)
    assert out.schema.field("contaminated").type == pa.bool_()
    flags = dict(zip(out["kind"].to_pylist(), out["contaminated"].to_pylist()))
    assert all(flags[k] == k.startswith("hit") for k in flags)
    counts = dict(zip(out["kind"].to_pylist(), out["contamination_ngrams"].to_pylist()))
    words = len(re.findall(r"\w+", eval_set[0]))
    assert counts["hit_embedded"] == words - 13 + 1  # every window of the copied passage
    assert counts["hit_exactly_13_words"] == 1
    # a stricter threshold over the same count
    strict = Decontaminate(eval_texts=eval_set, min_matches=5)
    mask, _ = strict.process(pa.table({"text": [r["text"] for r in rows[:4]]}))
    assert mask.tolist() == [False, False, False, True]


def test_short_eval_texts_are_one_ngram(tmp_path):
    op = FlagContamination(eval_texts=["Who wrote Hamlet, really?", "Paris", "yes no"], n=13)
    texts = ["Quiz: who WROTE hamlet (really)? Shakespeare.", "who wrote hamlet",
             "I went to Paris, yes no maybe.", "who wrote hamlet really"]
    out = op.process(pa.table({"text": texts}))
    # 4 words: matched as a whole; 1 and 2 words: under min_eval_words, ignored
    assert out["contaminated"].tolist() == [True, False, False, True]
    loose = Decontaminate(eval_texts=["yes no"], min_eval_words=1)
    assert loose.process(pa.table({"text": ["yes no maybe"]}))[0].tolist() == [False]


def test_eval_file_formats(tmp_path):
    passage = ("the configuration file is read at start up and when it is missing the "
               "defaults of the program apply to every option")
    other = "the output is written to standard output unless a file name is given on the line"
    pq.write_table(pa.table({"prompt": [passage, None]}), tmp_path / "e.parquet")
    (tmp_path / "e.txt").write_text(f"\n{passage}\n\n")
    with gzip.open(tmp_path / "e.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"choices": [other, passage]}) + "\n")
    texts = pa.table({"text": [passage.upper(), other, "unrelated words only"]})
    for path, column in ((tmp_path / "e.parquet", "prompt"), (tmp_path / "e.txt", "text"),
                         (tmp_path / "e.jsonl.gz", "choices")):
        op = Decontaminate(eval_path=str(path), eval_column=column)
        mask, _ = op.process(texts)
        expected = [False, column != "choices", True]
        assert mask.tolist() == expected, path
    both = Decontaminate(eval_path=str(tmp_path / "e.txt"), eval_texts=[other])
    assert both.process(texts)[0].tolist() == [False, False, True]


def test_changed_eval_file_invalidates_the_cache(tmp_path):
    passage = " ".join(f"word{i}" for i in range(20))
    evals = tmp_path / "eval.txt"
    evals.write_text("nothing in common with the training rows at all, none whatsoever\n")
    data = write_jsonl(tmp_path / "t.jsonl", [{"text": passage}, {"text": "other row"}])

    def run() -> tuple[int, dm.executors.local.RunResult]:
        ds = dm.Dataset.read(data).apply("decontaminate", eval_path=str(evals))
        result = ds.run(tmp_path / "w", workers=1, progress=False)
        return ds.collect(tmp_path / "w").num_rows, result

    assert run()[0] == 2
    evals.write_text(passage + "\n")
    rows, result = run()
    assert rows == 1
    assert result.step("decontaminate")["dropped"] == {"contaminated": 1}


def test_errors_name_the_file_line_and_column(tmp_path):
    with pytest.raises(ArgumentError, match="eval_path and/or eval_texts"):
        Decontaminate()
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ArgumentError, match="nope.jsonl"):
        Decontaminate(eval_path=str(missing))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"prompt": "no text key"}\n')
    with pytest.raises(PipelineError, match=r"bad.jsonl.*line 2.*'text'.*prompt"):
        Decontaminate(eval_path=str(bad)).setup()
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(PipelineError, match="line 2: not JSON"):
        Decontaminate(eval_path=str(bad)).setup()
    bad.write_text('{"text": 42}\n')
    with pytest.raises(PipelineError, match="expected text, got int"):
        Decontaminate(eval_path=str(bad)).setup()
    pq.write_table(pa.table({"a": ["x"]}), tmp_path / "e.parquet")
    with pytest.raises(PipelineError, match=r"no column 'text' \(columns: a\)"):
        Decontaminate(eval_path=str(tmp_path / "e.parquet")).setup()
    # in a pipeline, the error names the step
    data = write_jsonl(tmp_path / "t.jsonl", [{"text": "a row"}])
    bad.write_text("not json\n")
    ds = dm.Dataset.read(data).apply("decontaminate", eval_path=str(bad))
    with pytest.raises((PipelineError, OperationError), match="decontaminate"):
        ds.run(tmp_path / "w", workers=1, progress=False)


def test_fifty_megabyte_document_in_bounded_memory(tmp_path):
    script = textwrap.dedent("""
        import json, resource
        import pyarrow as pa
        from datamill.ops.decontaminate import FlagContamination
        para = ("Die Konfigurationsdatei wird beim Start gelesen; fehlt sie, gelten die "
                "Voreinstellungen des Programms. ")
        hit = "the quick brown fox jumps over the lazy dog while the farmer watches the barn"
        op = FlagContamination(eval_texts=[hit, "ein ganz anderer Satz"])
        op.setup()
        table = pa.table({"text": [para * (50_000_000 // len(para)) + hit, "kurz"]})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = op.process(table)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"flags": out["contaminated"].tolist(),
                          "counts": out["contamination_ngrams"].tolist(),
                          "grown_mb": grown}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["flags"] == [True, False] and out["counts"] == [3, 0], out
    assert out["grown_mb"] < 600, out  # the document is 50 MB; no per-word Python objects


def test_pipeline_with_bad_rows_and_large_document(tmp_path, eval_file):
    path, eval_set, _ = eval_file
    big = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 200_000) + eval_set[1]
    data = write_jsonl(tmp_path / "t.jsonl", [{"text": big}, {"text": ""}, {"text": None},
                                               {"text": "\x00\x07\ufffd junk \x1b[0m"}])
    ds = dm.Dataset.read(data).apply("decontaminate", eval_path=str(path),
                                     eval_column="question")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    assert result.step("decontaminate")["dropped"] == {"contaminated": 1}
