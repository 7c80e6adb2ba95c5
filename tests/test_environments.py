"""Operations that declare `requirements` run in isolated environments (environments.py,
executors/isolated.py): two versions of one package in one pipeline.

The environments are made once per machine under the user's cache folder (pip downloads
`six` the first time); later runs find them there."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datamill.cli import main
from datamill.environments import ensure_environment, environment_dir, environment_key

from .conftest import make_rows, write_jsonl

OLD, NEW = "six==1.15.0", "six==1.16.0"
PIPELINE = '''
import os
import sys

import datamill as dm


@dm.map_operation(consumes={"n": "int64"}, produces={"six_old": "string", "pid_old": "int64",
                                                     "prefix_old": "string"},
                  requirements=["six==1.15.0"])
def six_old(batch):
    import six

    rows = batch.num_rows
    return {"six_old": [six.__version__] * rows, "pid_old": [os.getpid()] * rows,
            "prefix_old": [sys.prefix] * rows}


@dm.map_operation(consumes={"n": "int64"}, produces={"six_new": "string"},
                  requirements=["six==1.16.0"], batch_format="pandas")
def six_new(frame):
    import six

    return {"six_new": [six.__version__] * len(frame)}


@dm.filter_operation(consumes={"n": "int64"}, requirements=["six==1.16.0"])
def not_seven(batch, bad: int = -1):
    import pyarrow.compute as pc

    ns = batch.column("n").to_pylist()
    if bad in ns:
        raise ValueError(f"row with n={bad}")
    return pc.not_equal(pc.bit_wise_and(batch.column("n"), 7), 0), "multiple of 8"


def here(batch):
    import six

    return {"six_here": [six.__version__] * batch.num_rows}


def build(bad=-1):
    return (dm.Dataset.read("INPUT")
            .apply(six_old)
            .apply(not_seven, bad=bad)
            .apply(six_new, produces={"six_new": "six_newer"})  # remapped, as any op
            .map(here, produces={"six_here": "string"})
            .write("out/rows.parquet"))


pipeline = build()
broken = build(bad=BAD)
'''


@pytest.fixture(scope="module")
def environments() -> None:
    """Both environments, made (or found in the cache) once for the module."""
    for requirement in (OLD, NEW):
        ensure_environment([requirement])


def _project(tmp_path: Path, bad: int = 42) -> Path:
    rows = make_rows(3000, seed=5)
    data = write_jsonl(tmp_path / "input" / "docs.jsonl", rows)
    path = tmp_path / "pipe.py"
    path.write_text(PIPELINE.replace("INPUT", str(data)).replace("BAD", str(bad)))
    return path


def _output(tmp_path: Path) -> list[dict]:
    return pq.read_table(tmp_path / "out" / "rows.parquet").to_pylist()


def test_two_versions_of_a_package_in_one_pipeline(tmp_path: Path, environments,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    import six

    pipeline = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(pipeline), "--workdir", str(tmp_path / "work"), "--workers", "2",
                 "--no-progress"]) == 0
    rows = _output(tmp_path)
    assert len(rows) == 3000 - 3000 // 8
    assert {r["six_old"] for r in rows} == {"1.15.0"}
    assert {r["six_newer"] for r in rows} == {"1.16.0"}
    assert {r["six_here"] for r in rows} == {six.__version__} != {"1.15.0"}
    assert all(r["n"] % 8 for r in rows)
    old_env = environment_dir([OLD])
    assert {r["prefix_old"] for r in rows} == {str(old_env)}
    records = {s["name"]: s for d in json.loads((tmp_path / "work" / "manifest.json")
                                                .read_text())["datasets"] for s in d["steps"]}
    assert records["six_old"]["environment"] == {"requirements": [OLD],
                                                 "key": environment_key([OLD])}
    assert records["python_map"]["environment"] is None
    capsys.readouterr()
    assert main(["ops", "show", "six_old"]) == 0  # registered when the file was loaded
    assert "requirements: six==1.15.0" in capsys.readouterr().out
    # one long-lived worker per pool process (2 workers), not one per batch or partition
    assert len(list((tmp_path / "out" / "rows.parquet").glob("*.parquet"))) > 2
    assert 1 <= len({r["pid_old"] for r in rows}) <= 2


def test_an_error_in_the_environment_names_step_and_row(tmp_path: Path, environments,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    pipeline = _project(tmp_path, bad=42)
    monkeypatch.chdir(tmp_path)
    code = main(["run", f"{pipeline}:broken", "--workdir", str(tmp_path / "work"),
                 "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "step 'not_seven'" in err and "ValueError: row with n=42" in err
    assert "operation 'not_seven', in its environment: " in err and "pipe.py" in err
    assert "row _id=" in err


def test_the_environment_is_part_of_the_cache_key() -> None:
    import datamill as dm

    def make(requirements):
        @dm.map_operation(consumes={"n": "int64"}, produces={"v": "string"},
                          requirements=requirements, name="six_version_probe")
        def probe(batch):
            return {"v": ["x"] * batch.num_rows}
        return probe

    from datamill.cache import key_parts

    keys = {key_parts(make(r)(), ["in"]).code for r in ([OLD], [NEW], [])}
    assert len(keys) == 3
    assert environment_key([OLD]) != environment_key([NEW])


def test_environment_is_made_once_and_atomically(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes asking at once make it once (the lock); no half-made folder stays."""
    import multiprocessing as mp

    monkeypatch.setenv("DATAMILL_ENV_DIR", str(tmp_path / "envs"))
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=ensure_environment, args=([],)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    made = [p for p in (tmp_path / "envs").iterdir() if not p.name.endswith(".lock")]
    assert made == [environment_dir([])]
    marker = json.loads((made[0] / "datamill-environment.json").read_text())
    assert marker["requirements"] == []
    python = made[0] / "bin" / "python"
    assert python.exists() and importlib.util.find_spec("pyarrow") is not None


def _steps(pipeline: Path, name: str) -> list:
    from datamill.cli import load_pipeline_file

    return [s for s in getattr(load_pipeline_file(pipeline), name).step.chain()]


def test_ray_runtime_env_of_a_stage(tmp_path: Path) -> None:
    """A stage whose operations share one set of requirements: Ray's pip runtime_env (and
    the operations run in the task's process); several sets: none (each operation runs in
    a worker of its own environment on the node); an image: the container."""
    from datamill.executors.ray import stage_runtime_env

    steps = _steps(_project(tmp_path), "pipeline")
    by_name = {s.name: s for s in steps}
    assert stage_runtime_env(steps) is None  # 1.15.0 and 1.16.0 in one fused stage
    assert stage_runtime_env([by_name["read_jsonl"], by_name["six_old"]]) == {
        "pip": [OLD], "env_vars": {"DATAMILL_ENVIRONMENT": environment_key([OLD])}}
    assert stage_runtime_env([by_name["not_seven"], by_name["six_new"],
                              by_name["python_map"]])["pip"] == [NEW]
    assert stage_runtime_env([by_name["read_jsonl"], by_name["python_map"]]) is None
    type(by_name["six_new"].op).image = "registry.example/six:1.16"
    assert stage_runtime_env(steps) == {"image_uri": "registry.example/six:1.16"}


RAY_PIPELINE = '''
import os

import datamill as dm


@dm.map_operation(consumes={"n": "int64"}, produces={"six_old": "string", "env": "string"},
                  requirements=["six==1.15.0"])
def six_old(batch):
    import six

    rows = batch.num_rows
    return {"six_old": [six.__version__] * rows,
            "env": [os.environ.get("DATAMILL_ENVIRONMENT", "")] * rows}


pipeline = dm.Dataset.read("INPUT").apply(six_old)
'''


def test_on_ray_through_the_pip_runtime_env(tmp_path: Path, environments, ray_cluster,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Ray run: the stage's task runs in Ray's pip environment of the requirements
    (Ray makes it on the node: pip downloads `six` unless its cache has it)."""
    from datamill.cli import load_pipeline_file

    pytest.importorskip("virtualenv")  # Ray's pip runtime_env needs it on the nodes
    data = write_jsonl(tmp_path / "input" / "docs.jsonl", make_rows(500, seed=2))
    path = tmp_path / "ray_pipe.py"
    path.write_text(RAY_PIPELINE.replace("INPUT", str(data)))
    ds = load_pipeline_file(path).pipeline
    table = ds.collect(tmp_path / "w", executor="ray", address=ray_cluster.address,
                       progress=False)
    assert set(table.column("six_old").to_pylist()) == {"1.15.0"}
    assert set(table.column("env").to_pylist()) == {environment_key([OLD])}

    monkeypatch.chdir(tmp_path)
    both = load_pipeline_file(_project(tmp_path)).pipeline  # two sets in one stage
    both.run(tmp_path / "w2", executor="ray", address=ray_cluster.address, progress=False)
    rows = _output(tmp_path)
    assert {r["six_old"] for r in rows} == {"1.15.0"}
    assert {r["six_newer"] for r in rows} == {"1.16.0"}


def test_only_row_wise_operations_declare_requirements() -> None:
    from datamill.errors import PipelineError
    from datamill.operation import GlobalOperation

    with pytest.raises(PipelineError, match="only map, filter and expand"):
        class Dedup(GlobalOperation):  # noqa: F841 - defining it is the test
            requirements = ("six==1.15.0",)


SCRIPT = '''
import sys

import datamill as dm


class OldSix(dm.MapOperation):
    """The version of six this operation sees."""

    name = "old_six_script"
    requirements = ("six==1.15.0",)
    consumes = {"n": "int64"}
    produces = {"six": "string"}

    def process(self, batch):
        import six

        return {"six": [six.__version__] * batch.num_rows}


if __name__ == "__main__":  # the environment's worker loads this file without running this
    table = dm.Dataset.read(sys.argv[1]).apply(OldSix).collect(sys.argv[2], workers=1,
                                                                progress=False)
    print(sorted(set(table.column("six").to_pylist())))
'''


def test_an_operation_defined_in_a_script(tmp_path: Path, environments) -> None:
    """`python script.py`: the class lives in `__main__`; the worker loads the script as
    `__mp_main__`, so its `if __name__ == "__main__":` block does not run again."""
    import os
    import subprocess
    import sys

    import datamill

    data = write_jsonl(tmp_path / "docs.jsonl", make_rows(50))
    (tmp_path / "script.py").write_text(SCRIPT)
    src = str(Path(datamill.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(data),
                           str(tmp_path / "w")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": src})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['1.15.0']"


def test_a_failed_build_names_the_requirements_and_leaves_no_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamill.errors import DatamillError

    monkeypatch.setenv("DATAMILL_ENV_DIR", str(tmp_path / "envs"))
    bad = "!!six"  # not a requirement: pip refuses it before it asks any index
    with pytest.raises(DatamillError, match=r"(?s)requirements \['!!six'\]: could not install "
                                            r"them .*Invalid requirement"):
        ensure_environment([bad])
    assert [p.name for p in (tmp_path / "envs").iterdir()] == \
        [environment_dir([bad]).name + ".lock"]


SETUP_FAILS = '''
import datamill as dm


class NeedsModel(dm.MapOperation):
    """Loads a model in setup()."""

    name = "needs_model_env"
    requirements = ("six==1.15.0",)
    consumes = {"n": "int64"}
    produces = {"m": "int64"}

    def setup(self):
        raise RuntimeError("no model file here")

    def process(self, batch):
        return {"m": batch["n"]}


pipeline = dm.Dataset.read("INPUT").apply(NeedsModel)
'''


def test_a_setup_that_fails_in_the_environment(tmp_path: Path, environments) -> None:
    from datamill.cli import load_pipeline_file
    from datamill.errors import DatamillError

    data = write_jsonl(tmp_path / "docs.jsonl", make_rows(20))
    path = tmp_path / "setup_fails.py"
    path.write_text(SETUP_FAILS.replace("INPUT", str(data)))
    ds = load_pipeline_file(path).pipeline
    with pytest.raises(DatamillError, match="step 'needs_model_env'.*setting it up in its "
                                            "environment failed: RuntimeError: no model file"):
        ds.run(tmp_path / "w", workers=1, progress=False)
