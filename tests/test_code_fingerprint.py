"""The cache sees code: editing an operation's code recomputes its step, and
`datamill inspect` says why each step recomputed (code, arguments, input, damage)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamill
from datamill.cli import main
from datamill.code_fingerprint import code_fingerprint, origin

from .conftest import write_jsonl
from .test_cli import step_line

PIPELINE = '''\
import pyarrow as pa
import datamill as dm

SUFFIX = "-s1"
MIN_WORDS = 1


def decorate(text):
    return text + SUFFIX


class Tag(dm.MapOperation):
    name = "fp_tag"
    consumes = {"text": "string"}
    produces = {"tag": "string"}

    def process(self, batch):
        return {"tag": pa.array(["T1"] * batch.num_rows, pa.string())}


class Styled(dm.MapOperation):
    name = "fp_styled"
    consumes = {"text": "string"}
    produces = {"styled": "string"}

    def process(self, batch):
        return {"styled": pa.array([decorate(t) for t in batch["text"].to_pylist()])}


@dm.map_operation(consumes={"text": "string"}, produces={"mark": "string"})
def mark(batch):
    return {"mark": pa.array(["M1"] * batch.num_rows, pa.string())}


def extra(batch):
    return {"extra": pa.array(["E1"] * batch.num_rows, pa.string())}


def unused():
    return "U1"


pipeline = (dm.Dataset.read("data.jsonl")
            .apply(Tag)
            .apply(Styled)
            .apply(mark)
            .map(extra, produces={"extra": "string"}, consumes=["text"])
            .apply("text_length_filter", min_words=MIN_WORDS)
            .write("out/"))
'''
STEPS = ["read_jsonl", "fp_tag", "fp_styled", "mark", "python_map", "text_length_filter",
         "write_parquet"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_jsonl(tmp_path / "data.jsonl",
                [{"text": f"row number {i} of words"} for i in range(20)])
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader prepends the file's folder
    return tmp_path


def run(project: Path, capsys: pytest.CaptureFixture) -> str:
    assert main(["run", "pipeline.py", "--workdir", "wd", "--workers", "1",
                 "--no-progress"]) == 0
    return capsys.readouterr().out


def edit(project: Path, old: str, new: str) -> None:
    path = project / "pipeline.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def why(project: Path, capsys: pytest.CaptureFixture) -> dict[str, list[str] | None]:
    """Step name -> why it recomputed (None: cached), from `datamill inspect --json`."""
    assert main(["inspect", str(project / "wd"), "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["datasets"][0]["steps"]
    return {s["name"]: None if s["cached"] else s["recomputed"]["because"] for s in steps}


def output(project: Path, column: str) -> set:
    return set(pq.read_table(project / "out", columns=[column]).column(column).to_pylist())


def inspect_table(project: Path, capsys: pytest.CaptureFixture) -> str:
    assert main(["inspect", str(project / "wd")]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("step", "column", "old", "new"), [
    ("fp_tag", "tag", '["T1"]', '["T2-edited"]'),  # a class's process()
    ("mark", "mark", '["M1"]', '["M2-edited"]'),  # a @dm.map_operation function
    ("python_map", "extra", '["E1"]', '["E2-edited"]'),  # a python_map function
    ("fp_styled", "styled", 'return text + SUFFIX', 'return text + SUFFIX + "!"'),  # a helper
    ("fp_styled", "styled", 'SUFFIX = "-s1"', 'SUFFIX = "-s2"'),  # a constant it reads
])
def test_editing_code_recomputes_its_step_and_says_code(project, capsys, step, column, old,
                                                        new):
    run(project, capsys)
    assert all(r == ["new"] for r in why(project, capsys).values())
    before = output(project, column)
    edit(project, old, new)
    out = run(project, capsys)
    reasons = why(project, capsys)
    at = STEPS.index(step)
    assert reasons == {s: (None if i < at else ["code"] if i == at else ["input"])
                       for i, s in enumerate(STEPS)}
    assert output(project, column) != before
    for text in (out, inspect_table(project, capsys)):  # `datamill run`, `datamill inspect`
        table = text.split("why recomputed:")[1]
        assert step_line(table, step)[1:5] == ["code", "the", "code", "of"]
        assert step_line(table, "write_parquet")[1] == "input"


def test_unchanged_rerun_and_unrelated_edits_stay_cached(project, capsys):
    run(project, capsys)
    out = run(project, capsys)
    assert all(r is None for r in why(project, capsys).values())
    assert "computed" not in out
    edit(project, '"U1"', '"U2, a function no step calls"')
    edit(project, "pipeline = (", "# a comment\npipeline = (")
    run(project, capsys)
    assert all(r is None for r in why(project, capsys).values())


def test_argument_change_says_arguments_and_downstream_input(project, capsys):
    run(project, capsys)
    edit(project, "MIN_WORDS = 1", "MIN_WORDS = 5")
    run(project, capsys)
    reasons = why(project, capsys)
    assert reasons["text_length_filter"] == ["arguments"]
    assert reasons["write_parquet"] == ["input"]
    assert all(reasons[s] is None for s in STEPS[:5])
    table = inspect_table(project, capsys).split("why recomputed:")[1]
    assert step_line(table, "text_length_filter")[1:] == ["arguments", "min_words", "changed"]
    assert step_line(table, "write_parquet")[1:] == ["input", "upstream", "step",
                                                     "'text_length_filter'", "changed"]


def test_damage_and_unfinished_runs_are_named(project, capsys):
    run(project, capsys)
    wd = project / "wd"
    manifest = json.loads((wd / "manifest.json").read_text())
    keys = {s["name"]: s["cache_key"] for s in manifest["datasets"][0]["steps"]}
    next((wd / "steps" / keys["mark"]).glob("part-*.parquet")).unlink()
    run(project, capsys)
    reasons = why(project, capsys)
    assert reasons["mark"] == ["file missing or corrupt"]
    assert reasons["python_map"] == ["input"] and reasons["fp_styled"] is None
    (wd / "steps" / keys["python_map"] / "_SUCCESS.json").unlink()  # killed before its record
    run(project, capsys)
    assert why(project, capsys)["python_map"] == ["unfinished"]


def test_step_record_stores_the_code_fingerprint(project, capsys):
    run(project, capsys)
    manifest = json.loads((project / "wd" / "manifest.json").read_text())
    for s in manifest["datasets"][0]["steps"]:
        record = json.loads((project / "wd" / "steps" / s["cache_key"] / "_SUCCESS.json")
                            .read_text())
        assert len(record["code"]) == 16
        assert set(record["key_parts"]) == {"code", "arguments", "inputs"}
    assert main(["run", "pipeline.py", "--workdir", "wd", "--no-cache", "--no-progress"]) == 0
    capsys.readouterr()
    assert set(map(tuple, why(project, capsys).values())) == {("cache off",)}


# --- where code comes from ----------------------------------------------------------------
def test_installed_code_counts_by_distribution_and_datamill_by_version_and_source():
    assert origin("pyarrow.compute") == f"pyarrow=={pa.__version__}"
    assert origin("json") == ""  # the standard library
    assert origin("datamill.operation") == ""  # the framework's base classes
    label = origin("datamill.ops.text")
    assert label.startswith(f"datamill=={datamill.__version__} datamill.ops.text:")
    assert origin("tests.test_code_fingerprint") is None  # local: followed by its source


def test_datamill_code_counts_with_the_datamill_modules_it_imports():
    from datamill import code_fingerprint

    used = code_fingerprint._datamill_imports("datamill.ops.quality.gopher")
    assert "datamill.ops.quality.kernels" in used  # imported by the module
    assert not any(m.startswith(("datamill.executors", "datamill.operation")) for m in used)
    closure = set()
    todo = ["datamill.ops.quality.gopher"]
    while todo:  # followed through the imports of what it imports
        m = todo.pop()
        closure.add(m)
        todo += [n for n in code_fingerprint._datamill_imports(m) if n not in closure]
    assert "datamill.ops.quality.tokenize" in closure
    assert code_fingerprint._c_source_digest("datamill.ops.quality.kernels").startswith("+c:")


def _define(source: str, name: str, namespace: dict | None = None):
    """Define `name` from `source` as a notebook or `python -c` would: no source file."""
    namespace = namespace if namespace is not None else {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace[name]


def test_code_without_a_source_file_counts_by_its_bytecode():
    a = _define("def f(batch):\n    return batch + 1\n", "f")
    same = _define("def f(batch):\n    return batch + 1\n", "f")
    other = _define("def f(batch):\n    return batch + 2\n", "f")
    assert code_fingerprint(a) == code_fingerprint(same) != code_fingerprint(other)


def test_redefining_a_helper_in_a_notebook_changes_the_callers_fingerprint():
    cell = {"__name__": "__main__"}
    _define("def helper(x):\n    return x + 1\n", "helper", cell)
    caller = _define("def caller(x):\n    return helper(x)\n", "caller", cell)
    first = code_fingerprint(caller)
    assert code_fingerprint(caller) == first
    _define("def helper(x):\n    return x + 2\n", "helper", cell)  # the cell run again, edited
    assert code_fingerprint(caller) != first


def test_a_corrupt_file_found_on_read_is_named(project, capsys):
    run(project, capsys)
    wd = project / "wd"
    manifest = json.loads((wd / "manifest.json").read_text())
    keys = {s["name"]: s["cache_key"] for s in manifest["datasets"][0]["steps"]}
    part = next((wd / "steps" / keys["mark"]).glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: found by its checksum when read
    part.write_bytes(bytes(data))
    edit(project, "MIN_WORDS = 1", "MIN_WORDS = 5")  # the sink reads `mark` again
    run(project, capsys)
    reasons = why(project, capsys)
    assert reasons["mark"] == ["file missing or corrupt"]
    assert reasons["text_length_filter"] == ["arguments"]
    assert reasons["fp_tag"] is None


def test_lazy_datamill_imports_are_digested_without_being_imported():
    """An op module's lazy imports (`from .runtime import Runtime` in a method) count in its
    digest by their source, read from where they would load: fingerprinting imports none of
    them (nor `module.attribute` names' modules), so a cached re-run stays light."""
    import subprocess

    code = (
        "import sys\n"
        "from datamill import code_fingerprint as cf\n"
        "import datamill.ops.llm.base\n"
        "deps = cf._datamill_imports('datamill.ops.llm.base')\n"
        "assert 'datamill.ops.llm.runtime' in deps, deps\n"
        "assert not any(d.endswith('.Runtime') for d in deps), deps\n"
        "cf.datamill_digest('datamill.ops.llm.base')\n"
        "assert 'datamill.ops.llm.runtime' not in sys.modules\n"
        "assert cf.file_digest('datamill.ops.llm.runtime') != 'no-file'\n"
        "assert 'datamill.ops.llm.runtime' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
