"""The `datamill` command line: run, ops, inspect, errors and exit codes, startup cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datamill import __version__
from datamill.cli import main

from .conftest import write_jsonl

TEXTS = ["one two three four", "short", "the quick brown fox", "two words",
         "one two three four", "x"]  # 3 rows with < 3 words, one duplicate

PIPELINE = """\
from datamill import Dataset

pipeline = (Dataset.read("data.jsonl")
            .apply("text_length_filter", min_words=3)
            .apply("drop_duplicates", columns=["text"])
            .write("out/"))
"""

MULTI = """\
from datamill import Dataset

raw = Dataset.read("data.jsonl")
long = raw.apply("text_length_filter", min_words=3).write("long/")

def both():
    return [long, raw.write("all/", format="jsonl")]

def broken():
    return raw.apply("no_such_op")
"""


@pytest.fixture(autouse=True)
def _restore_environment():
    """main() run in-process quiets third-party logs for the process: undo it after."""
    import logging
    import os

    from datamill.cli import THIRD_PARTY_LOGGERS

    env = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    yield
    os.environ.clear()
    os.environ.update(env)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datamill.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def step_line(output: str, step: str) -> list[str]:
    """The whitespace-split cells of the table row whose first cell is `step`."""
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == step:
            return cells
    raise AssertionError(f"no row for {step!r} in:\n{output}")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with data.jsonl and pipeline.py, made the current directory."""
    write_jsonl(tmp_path / "data.jsonl", [{"text": t, "n": i} for i, t in enumerate(TEXTS)])
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "multi.py").write_text(MULTI)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader prepends the file's folder
    return tmp_path


# --- version and startup ----------------------------------------------------------------
def test_version(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"datamill {__version__}"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"datamill {__version__}"


def test_version_imports_only_the_standard_library(tmp_path: Path) -> None:
    # a fast start, counted as work: `--version` loads no third-party package at all
    code = ("import sys; before = set(sys.modules); import datamill.cli; "
            "datamill.cli.main(['--version']); "
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.splitlines()[-1].split())
    third_party = {m for m in loaded - {"datamill"} if m not in sys.stdlib_module_names}
    assert not third_party, f"`datamill --version` imports {sorted(third_party)}"
    assert {"pyarrow", "numpy", "pydantic", "rich", "fsspec"}.isdisjoint(loaded)
    assert cli(tmp_path, "--version").returncode == 0


def test_no_command_prints_usage(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "run" in capsys.readouterr().err
    assert main(["run"]) == 2  # missing PIPELINE argument: argparse usage error


# --- run ----------------------------------------------------------------------------------
def test_run_summary_outputs_cache_and_no_cache(project: Path) -> None:
    proc = cli(project, "run", "pipeline.py", "--workdir", "wd", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert step_line(out, "read_jsonl")[1:5] == ["source", "6", "->", "6"]
    assert step_line(out, "text_length_filter")[1:6] == ["filter", "6", "->", "3", "3"]
    assert step_line(out, "drop_duplicates")[1:6] == ["global", "3", "->", "2", "1"]
    reasons = out.split("drops by reason:")[1]  # a table of their own: the summary stays narrow
    assert step_line(reasons, "text_length_filter")[1:] == ["too_few_words", "3"]
    assert step_line(reasons, "drop_duplicates")[1:] == ["duplicate", "1"]
    assert step_line(out, "write_parquet")[-1] == "computed"
    assert "output: out/" in out
    assert f"manifest: {project / 'wd' / 'manifest.json'}" in out
    assert list((project / "out").glob("*.parquet"))
    assert (project / "wd" / "manifest.json").is_file()
    assert proc.stderr == ""  # --no-progress: no log lines

    again = cli(project, "run", "pipeline.py", "--workdir", "wd", "--no-progress")
    assert again.returncode == 0, again.stderr
    for step in ("read_jsonl", "text_length_filter", "drop_duplicates", "write_parquet"):
        assert step_line(again.stdout, step)[-1] == "cached"
    assert step_line(again.stdout, "drop_duplicates")[2:5] == ["3", "->", "2"]

    fresh = cli(project, "run", "pipeline.py", "--workdir", "wd", "--no-cache")
    assert fresh.returncode == 0, fresh.stderr
    for step in ("read_jsonl", "text_length_filter", "drop_duplicates", "write_parquet"):
        assert step_line(fresh.stdout, step)[-1] == "computed"
    # progress left to its default with stderr not a terminal: plain log lines on stderr
    assert "datamill: text_length_filter: 6 -> 3 rows (dropped too_few_words: 3)" in fresh.stderr


def test_run_default_workdir_is_in_cwd(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(project / "pipeline.py"), "--workers", "1", "--no-progress"]) == 0
    assert (project / "datamill-work" / "manifest.json").is_file()
    reasons = capsys.readouterr().out.split("drops by reason:")[1]
    assert step_line(reasons, "text_length_filter")[1:] == ["too_few_words", "3"]


def test_run_selects_target_by_name(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "multi.py", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "several Datasets: raw, long" in err and "multi.py:NAME" in err

    assert main(["run", "multi.py:long", "--workdir", "wd1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "text_length_filter" in out and "output: long/" in out and "all/" not in out

    # a function returning a list of datasets: both sinks run, the shared source once
    assert main(["run", "multi.py:both", "--workdir", "wd2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "output: long/" in out and "output: all/" in out
    assert out.count("read_jsonl") == 1
    assert step_line(out, "write_jsonl")[2:5] == ["6", "->", "6"]
    assert list((project / "all").glob("*.jsonl"))

    assert main(["run", "multi.py:broken"]) == 2
    err = capsys.readouterr().err
    assert "multi.py:broken() raised PipelineError" in err and "no_such_op" in err
    assert 'return raw.apply("no_such_op")' in err  # the user's line

    assert main(["run", "multi.py:nope"]) == 2
    err = capsys.readouterr().err
    assert "has no attribute 'nope' (it defines raw, long, both, broken)" in err
    assert main(["run", "multi.py:bothh"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("did you mean 'both'?")
    (project / "notds.py").write_text("pipeline = 42\n")
    assert main(["run", "notds.py"]) == 2
    assert "not a Dataset" in capsys.readouterr().err


def test_import_error_names_file_and_line(project: Path) -> None:
    (project / "bad.py").write_text(
        "from datamill import Dataset\n\n"
        "pipeline = Dataset.read('data.jsonl').apply('text_length_filter', min_wordz=3)\n")
    proc = cli(project, "run", "bad.py")
    assert proc.returncode == 2
    assert str(project / "bad.py") in proc.stderr
    assert "ArgumentError" in proc.stderr and "did you mean 'min_words'" in proc.stderr
    assert "line 3" in proc.stderr and "min_wordz=3)" in proc.stderr
    assert "Traceback" not in proc.stderr

    debug = cli(project, "run", "bad.py", "--debug")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


def test_syntax_error_and_missing_file(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "syntax.py").write_text("x = 1\ndef f(:\n    pass\n")
    assert main(["run", "syntax.py"]) == 2
    err = capsys.readouterr().err
    assert "syntax.py" in err and "SyntaxError" in err and "line 2" in err
    assert main(["run", "missing.py"]) == 2
    assert "no such pipeline file" in capsys.readouterr().err


def test_error_during_run_exits_1(project: Path) -> None:
    (project / "fails.py").write_text(
        "from datamill import Dataset\n\n"
        "def boom(batch):\n    raise ValueError('bad row')\n\n"
        "pipeline = Dataset.read('data.jsonl').map(boom, produces={'y': 'string'}).write('o/')\n")
    proc = cli(project, "run", "fails.py", "--workdir", "wd", "--workers", "1")
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "bad row" in proc.stderr and "python_map" in proc.stderr
    assert "Traceback" not in proc.stderr
    debug = cli(project, "run", "fails.py", "--workdir", "wd", "--workers", "1", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_interrupt_exits_130(project: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture) -> None:
    from datamill.executors.local import LocalExecutor

    def interrupted(self, datasets):
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalExecutor, "run", interrupted)
    assert main(["run", "pipeline.py"]) == 130
    assert "resumes" in capsys.readouterr().err


# --- ops ----------------------------------------------------------------------------------
def test_ops_list(tmp_path: Path) -> None:
    proc = cli(tmp_path, "ops", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()[1:]
    assert max(map(len, lines)) <= 100  # long summaries wrap under their column
    names = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert {"text_length_filter", "drop_duplicates", "read_jsonl", "write_parquet"} <= set(names)
    assert names == sorted(names)
    from datamill import __version__

    # the distribution that provides each operation, and its version
    assert step_line(proc.stdout, "drop_duplicates")[1:6] == ["global", "1", "datamill",
                                                              __version__, "Drop"]


def test_ops_show(capsys: pytest.CaptureFixture) -> None:
    assert main(["ops", "show", "text_length_filter"]) == 0
    out = capsys.readouterr().out
    assert "filter operation, version 1" in out and "too_few_words" in out
    assert step_line(out, "min_chars") == ["min_chars", "int", "|", "None", "None", "Drop",
                                           "rows", "with", "fewer", "characters."]
    assert step_line(out, "column")[1:3] == ["str", "'text'"]
    assert "consumes:     {column}: string" in out
    assert "resources:    cpus=1.0, gpus=0.0" in out

    assert main(["ops", "show", "read_jsonl"]) == 0
    out = capsys.readouterr().out
    assert step_line(out, "path")[1:5] == ["str", "|", "list[str]", "required"]
    assert step_line(out, "schema")[1] == "dict[str,"  # alias of `schema_`, type readable


def test_ops_show_unknown_suggests(capsys: pytest.CaptureFixture) -> None:
    assert main(["ops", "show", "text_lenght_filter"]) == 1
    assert "did you mean 'text_length_filter'" in capsys.readouterr().err


# --- inspect ------------------------------------------------------------------------------
def test_inspect(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "pipeline.py", "--workdir", "wd", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inspect", "wd"]) == 0
    out = capsys.readouterr().out
    row = step_line(out, "text_length_filter")
    assert row[1:7] == ["text_length_filter", "filter", "6", "3", "3", "0"] and row[-1] == "no"
    assert step_line(out, "drop_duplicates")[5:7] == ["1", "0"]
    reasons = out.split("drops by reason:")[1]
    assert step_line(reasons, "text_length_filter")[1:] == ["too_few_words", "3"]
    assert step_line(reasons, "drop_duplicates")[1:] == ["duplicate", "1"]

    assert main(["run", "pipeline.py", "--workdir", "wd", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inspect", "wd", "--dropped"]) == 0
    out = capsys.readouterr().out
    assert step_line(out, "text_length_filter")[-1] == "yes"
    assert "dropped rows: 4" in out
    # one table per step: id, reason, then the row's columns
    by_filter = out.split("dropped by text_length_filter: 3 (showing 3)\n")[1]
    lines = by_filter.split("\n\n")[0].splitlines()
    assert lines[0].split() == ["id", "reason", "text", "n"]
    assert sorted(" ".join(line.split()[2:]) for line in lines[1:]) == [
        "short 1", "two words 3", "x 5"]
    by_dedup = out.split("dropped by drop_duplicates: 1 (showing 1)\n")[1].splitlines()
    assert by_dedup[0].split() == ["id", "reason", "cluster_id", "text", "n"]
    assert by_dedup[1].split()[1:] == ["duplicate", "0", "one", "two", "three", "four", "4"]

    assert main(["inspect", "wd", "--dropped", "drop_duplicates", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["datasets"][0]["steps"]][1] == "text_length_filter"
    assert data["dropped_rows"]["total"] == 1
    assert data["dropped_rows"]["sample"][0]["_reason"] == "duplicate"
    assert data["dropped_rows"]["sample"][0]["text"] == "one two three four"

    assert main(["inspect", "wd", "--dropped", "text_lenght_filter"]) == 1
    assert "did you mean 'text_length_filter'" in capsys.readouterr().err


LONG_NAMES = """\
from datamill import Dataset

pipeline = (Dataset.read("data.jsonl", step_name="read_the_data_jsonl_file")
            .apply("text_length_filter", min_words=3,
                   step_name="keep_texts_of_three_words_or_more")
            .apply("drop_duplicates", columns=["text"], step_name="drop_duplicated_texts")
            .write("out/"))
"""


def test_inspect_shows_long_step_names_whole(project: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Step names are never cut or wrapped (`keep_texts_of_three_words_or_more` in the
    first column); the other columns shrink, names among them wrapping after an
    underscore, and every line stays within the width."""
    (project / "long.py").write_text(LONG_NAMES)
    assert main(["run", "long.py", "--workdir", "wl", "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["inspect", "wl"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    row = step_line(out, "keep_texts_of_three_words_or_more")
    assert row[2:7] == ["filter", "6", "3", "3", "0"] and row[-1] == "no"
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(row[0]))
    start = lines[at].index(row[1])  # the operation column: its name wraps after `_`
    wrapped = [row[1]] + [line[start:].split()[0] for line in lines[at + 1:at + 3]]
    assert "".join(wrapped) == "text_length_filter" and wrapped[0].endswith("_")
    assert step_line(out, "read_the_data_jsonl_file")[1:3] == ["read_jsonl", "source"]
    assert step_line(out, "drop_duplicated_texts")[1:3] == ["drop_", "global"]
    reasons = out.split("drops by reason:")[1]
    assert step_line(reasons, "keep_texts_of_three_words_or_more")[1:] == ["too_few_words", "3"]


QUARANTINE = """\
from datamill import Dataset

def inverse(row):
    return {"inverse": 1 / (row["n"] - 2)}

pipeline = (Dataset.read("bad.jsonl", on_error="quarantine")
            .map(inverse, produces={"inverse": "float64"}, row=True, on_error="quarantine")
            .apply("drop_duplicates", columns=["text"])
            .write("out/"))
"""


def test_inspect_shows_the_rows_set_aside(project: Path, capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # long paths on one line
    long = "a long document " * 20
    lines = [json.dumps({"text": t, "n": i})
             for i, t in enumerate(["zero", "one", "two", long, long, "five"])]
    lines.insert(4, '{"text": "broken')  # line 5
    (project / "bad.jsonl").write_text("\n".join(lines) + "\n")
    (project / "quarantine.py").write_text(QUARANTINE)
    assert main(["run", "quarantine.py", "--workdir", "wq", "--no-progress"]) == 0
    capsys.readouterr()

    assert main(["inspect", "wq", "--quarantine"]) == 0
    out = capsys.readouterr().out
    assert "quarantined rows: 2" in out
    reader = out.split("quarantined by read_jsonl: 1 (showing 1)\n")[1].splitlines()
    assert reader[0].split() == ["id", "error", "file", "line", "raw", "line"]
    assert "truncated line" in reader[1] and str(project / "bad.jsonl") in out
    assert reader[1].split()[-3:] == ['5', '{"text":', '"broken']  # line, raw bytes
    mapped = out.split("quarantined by python_map: 1 (showing 1)\n")[1].splitlines()
    assert mapped[0].split() == ["id", "error", "file", "text", "n"]
    assert mapped[1].split()[1:5] == ["ZeroDivisionError:", "division", "by", "zero"]
    assert out.count("division by zero") == 1  # the error once, not twice
    assert mapped[1].split()[-2:] == ["two", "2"]

    assert main(["inspect", "wq", "--quarantine", "python_map", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["quarantined_rows"]["python_map"]["rows"]
    assert [(r["text"], r["n"], r["_error"]) for r in rows] == [
        ("two", 2, "ZeroDivisionError: division by zero")]  # the whole row, to replay it

    assert main(["inspect", "wq", "--dropped", "--columns", "n"]) == 0
    out = capsys.readouterr().out
    dup = out.split("dropped by drop_duplicates: 1 (showing 1)\n")[1].splitlines()
    assert dup[0].split() == ["id", "reason", "cluster_id", "n"]
    kept = int(dup[1].split()[2])

    assert main(["inspect", "wq", "--duplicates", str(kept)]) == 0
    out = capsys.readouterr().out
    assert f"row {kept}, kept by drop_duplicates:" in out
    assert "a long document a long" in out and "\u2026" in out  # text cut to fit
    assert long.strip() not in out
    assert f"duplicates of row {kept} dropped by drop_duplicates: 1" in out
    assert main(["inspect", "wq", "--duplicates", str(kept), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["duplicates"]
    assert data["row"]["text"] == long and data["rows"][0]["n"] == 4

    assert main(["inspect", "wq", "--duplicates", "12345"]) == 1
    assert "no row with _id 12345" in capsys.readouterr().err
    assert main(["inspect", "wq", "--dropped", "--columns", "txt"]) == 1
    assert "did you mean 'text'" in capsys.readouterr().err
    assert main(["inspect", "wq", "--quarantine", "--limit", "0"]) == 2
    assert main(["run", "pipeline.py", "--workdir", "wd", "--no-progress"]) == 0
    assert main(["inspect", "wd", "--dropped", "text_length_filter", "--limit", "2"]) == 0
    assert "dropped by text_length_filter: 3 (showing 2)" in capsys.readouterr().out
    assert main(["inspect", "wd", "--duplicates", "5"]) == 1  # no row has this id
    assert "no row with _id 5" in capsys.readouterr().err


def test_inspect_errors(tmp_path: Path) -> None:
    proc = cli(tmp_path, "inspect", "nowhere")
    assert proc.returncode == 1 and "no such workdir: nowhere" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cli(tmp_path, "inspect", "empty")
    assert proc.returncode == 1 and "no manifest.json in empty" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- polish: pipes, workers, width, hints, third-party logs ---------------------------------
def test_inspect_into_a_closed_pipe_ends_quietly(project: Path) -> None:
    assert cli(project, "run", "pipeline.py", "--workdir", "wd").returncode == 0
    for command in (["inspect", "wd"], ["inspect", "wd", "--json"], ["ops", "list"]):
        proc = subprocess.run(f"{sys.executable} -m datamill.cli {' '.join(command)} | head -1",
                              shell=True, cwd=project, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_workers_must_be_positive(project: Path, capsys: pytest.CaptureFixture,
                                  value: str) -> None:
    assert main(["run", "pipeline.py", "--workers", value]) == 2
    err = capsys.readouterr().err
    assert "argument --workers:" in err and value in err
    assert not (project / "datamill-work").exists()
    from datamill.executors.local import LocalExecutor

    with pytest.raises(ValueError, match="workers must be a whole number of at least 1"):
        LocalExecutor(project / "wd", workers=0)


def test_summaries_fit_100_columns_however_long_the_reasons(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reasons = [f"reason_number_{i}_with_a_rather_long_explanation" for i in range(8)]
    (project / "wide.py").write_text(
        "from datamill import Dataset\n\n"
        f"REASONS = {reasons!r}\n\n"
        "def why(row):\n"
        "    n = row['n']\n"
        "    return (False, REASONS[n % len(REASONS)]) if n % 9 else True\n\n"
        "pipeline = (Dataset.read('data.jsonl').filter(why, row=True, step_name="
        "'a_filter_with_a_name_that_is_long_too').write('wide/'))\n")
    write_jsonl(project / "data.jsonl", [{"text": "t", "n": i} for i in range(40)])
    monkeypatch.delenv("COLUMNS", raising=False)
    for env in ({}, {"COLUMNS": "100"}):
        run = subprocess.run([sys.executable, "-m", "datamill.cli", "run", "wide.py",
                              "--workdir", "wd", "--no-progress"], cwd=project,
                             capture_output=True, text=True, timeout=120,
                             env={**__import__("os").environ, **env})
        assert run.returncode == 0, run.stderr
        shown = cli(project, "inspect", "wd").stdout
        for out in (run.stdout, shown):
            assert all(reason in out.replace("\n", " ") or reason[:20] in out
                       for reason in reasons)
            too_wide = [line for line in out.splitlines() if len(line) > 100
                        and not line.startswith(("manifest:", "output:"))]
            assert not too_wide


def test_misspelled_step_options_are_suggested(project: Path) -> None:
    from datamill import Dataset
    from datamill.errors import ArgumentError

    with pytest.raises(ArgumentError, match=r"did you mean the step option 'on_error'\?"):
        Dataset.read("data.jsonl").apply("text_length_filter", min_words=3, on_eror="skip")
    with pytest.raises(ArgumentError, match=r"did you mean the step option 'on_error'\?"):
        Dataset.read("data.jsonl", on_eror="skip")
    with pytest.raises(ArgumentError, match=r"did you mean the step option 'step_name'\?"):
        Dataset.read("data.jsonl").write("o/", stepname="out")
    # an argument of the operation's own stays the suggestion when it is the closer one
    with pytest.raises(ArgumentError, match=r"did you mean 'min_words'\? \(arguments"):
        Dataset.read("data.jsonl").apply("text_length_filter", min_wordz=3)


def test_no_question_mark_then_period(project: Path) -> None:
    """A did-you-mean hint ends its clause: never followed by '.' in a message."""
    import re

    from datamill import Dataset
    from datamill.errors import DatamillError

    messages = []
    for build in (lambda: Dataset.read("data.jsonl").apply("text_length_filter", colum="t"),
                  lambda: Dataset.read("data.jsonl").select("txet"),
                  lambda: Dataset.read("data.jsonl").apply("text_lenght_filter"),
                  lambda: Dataset.read("data.jsonl").apply("text_length_filter",
                                                           column="txt")):
        with pytest.raises(DatamillError) as info:
            build()
        messages.append(str(info.value))
    assert all("did you mean" in m for m in messages)
    assert not [m for m in messages if "?." in m]
    source = Path(__file__).parents[1] / "src" / "datamill"
    stray = [f"{p}:{n}" for p in source.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"""\?\.["'\s]|\{hint\}\.""", line)]
    assert not stray


def test_third_party_logs_only_with_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from datamill import cli as cli_module

    for key in cli_module.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RUST_LOG", "debug")  # the user's own setting wins
    for name in ("ray", "lance"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    cli_module.quiet_third_party(verbose=True)
    assert logging.getLogger("ray").level == logging.NOTSET
    assert "LANCE_LOG" not in __import__("os").environ
    cli_module.quiet_third_party(verbose=False)
    assert logging.getLogger("ray").level == logging.ERROR
    assert __import__("os").environ["LANCE_LOG"] == "error"
    assert __import__("os").environ["RUST_LOG"] == "debug"
    assert main(["--verbose", "--version"]) == 0


def test_lance_warnings_show_only_with_verbose(tmp_path: Path) -> None:
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = pa.array([[0.1, 0.2], [0.3, 0.4]], pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"text": ["a", "b"], "embedding": vectors}), tmp_path / "v.parquet")
    (tmp_path / "index.py").write_text(
        "from datamill import Dataset\n"
        "pipeline = Dataset.read('v.parquet').write('db', format='lancedb', table='t')\n")
    from datamill.cli import QUIET_ENV

    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV}
    runs = {}
    for flag in ("", "--verbose"):
        runs[flag] = subprocess.run(
            [sys.executable, "-m", "datamill.cli", "run", "index.py", "--workdir", f"w{flag}",
             "--no-progress", *([flag] if flag else [])], cwd=tmp_path, capture_output=True,
            text=True, timeout=120, env=env)
        assert runs[flag].returncode == 0, runs[flag].stderr
        (tmp_path / "db").rename(tmp_path / f"db{flag or '-quiet'}")  # lance warns when new
    assert "WARN" not in runs[""].stderr + runs[""].stdout
    assert "WARN" in runs["--verbose"].stderr and "lance" in runs["--verbose"].stderr
