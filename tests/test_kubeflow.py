"""`datamill compile kfp`: a KFP v2 pipeline whose tasks, run in order on one volume, give
the output of a plain `datamill run`; and `datamill run --until STEP`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import datamill
from datamill.cli import main

from .conftest import make_rows, write_jsonl

pytest.importorskip("kfp")
pytest.importorskip("kfp.kubernetes")

MOUNT = "/mnt/datamill"
PIPELINE = '''
import datamill as dm
from datamill.operation import Resources


@dm.map_operation(consumes={"text": "string"}, produces={"words": "int64"},
                  resources=Resources(cpus=2, memory=3 * 2**30))
def word_count(batch):
    return [len(t.split()) for t in batch.column("text").to_pylist()]


@dm.map_operation(consumes={"text": "string"}, produces={"shout": "string"},
                  resources=Resources(gpus=1))
def shout(batch):
    return [t.upper() for t in batch.column("text").to_pylist()]


pipeline = (
    dm.Dataset.read("INPUT")
    .apply(word_count)
    .filter(lambda row: row["words"] >= 3, row=True)
    .drop_duplicates(["text"])
    .apply(shout)
    .write("out/docs.jsonl")
)
'''


def _project(tmp_path: Path) -> Path:
    data = write_jsonl(tmp_path / "input" / "docs.jsonl", make_rows(400, seed=3) * 2)
    (tmp_path / "pipeline.py").write_text(PIPELINE.replace("INPUT", str(data)))
    return tmp_path / "pipeline.py"


def _environment() -> dict[str, str]:
    src = str(Path(datamill.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _load(path: Path) -> tuple[dict, dict]:
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec, platform = list(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields raise
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _run_tasks_in_order(spec: dict, volume: Path) -> list[str]:
    """Run each task's container command here, its dependencies first, the volume's mount
    path pointing at `volume`; returns the task names in the order they ran."""
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    done: list[str] = []
    while len(done) < len(tasks):
        ready = [name for name, task in tasks.items() if name not in done
                 and all(d in done for d in task.get("dependentTasks", []))]
        assert ready, "the tasks' dependencies form a cycle"
        name = ready[0]
        component = spec["components"][tasks[name]["componentRef"]["name"]]
        container = executors[component["executorLabel"]]["container"]
        command = [c.replace(MOUNT, str(volume)) for c in container["command"]]
        args = [a.replace(MOUNT, str(volume)) for a in container["args"]]
        proc = subprocess.run(command + args, capture_output=True, text=True,
                              env=_environment(), timeout=240)
        assert proc.returncode == 0, proc.stderr
        done.append(name)
    return done


def test_compiled_tasks_run_in_order_give_the_plain_run_output(tmp_path: Path) -> None:
    pipeline = _project(tmp_path)
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", "kfp", str(pipeline), "-o", str(out), "--image", "reg/dm:1",
                 "--volume", "datamill-pvc", "--workers", "2"]) == 0

    from kfp import components

    loaded = components.load_component_from_file(str(out))  # a pipeline is a component
    assert loaded.name == "pipeline"
    spec, platform = _load(out)
    tasks = spec["root"]["dag"]["tasks"]
    # stages: read+word_count+filter | drop_duplicates | shout+write
    assert len(tasks) == 3
    names = sorted(tasks)
    assert [tasks[n]["taskInfo"]["name"].split(": ")[1] for n in names] == [
        "read_jsonl, word_count, python_filter", "drop_duplicates", "shout, write_jsonl"]
    assert tasks[names[1]]["dependentTasks"] == [names[0]]
    assert tasks[names[2]]["dependentTasks"] == [names[1]]
    for task in tasks.values():  # KFP's cache off: datamill's cache decides
        assert not task.get("cachingOptions", {}).get("enableCache", False)
    executors = spec["deploymentSpec"]["executors"]
    label = {n: spec["components"][tasks[n]["componentRef"]["name"]]["executorLabel"]
             for n in names}
    first = executors[label[names[0]]]["container"]
    assert first["image"] == "reg/dm:1"
    assert first["resources"]["resourceCpuLimit"] == "4000m"  # 2 cpus x 2 workers
    assert first["resources"]["resourceMemoryLimit"] == "6144Mi"  # 3 GiB x 2 workers
    last = executors[label[names[2]]]["container"]["resources"]
    assert last["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert last["accelerator"]["resourceCount"] == "2"
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(mounts) == set(label.values())
    for mount in mounts.values():
        assert mount["pvcMount"][0]["mountPath"] == MOUNT
        assert mount["pvcMount"][0]["constant"] == "datamill-pvc"

    volume = tmp_path / "volume"
    volume.mkdir()
    ran = _run_tasks_in_order(spec, volume)
    assert ran == names
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = subprocess.run([sys.executable, "-m", "datamill.cli", "run", str(pipeline),
                           "--workers", "2", "--no-progress"], cwd=plain,
                          capture_output=True, text=True, env=_environment(), timeout=240)
    assert proc.returncode == 0, proc.stderr
    ours, theirs = _written(volume / "out" / "docs.jsonl"), _written(plain / "out" / "docs.jsonl")
    assert ours == theirs
    assert sum(len(data.splitlines()) for data in ours.values()) > 100
    # the pipeline run again (a retry, a rerun): every stage is cached, the output unchanged
    assert _run_tasks_in_order(spec, volume) == names
    assert _written(volume / "out" / "docs.jsonl") == ours


def _written(folder: Path) -> dict[str, bytes]:
    """The data files a sink wrote (its lineage file records run ids and times)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith("_datamill")}


def test_each_task_runs_only_its_own_stage(tmp_path: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`--until`: the steps up to STEP run; a later run of the rest reuses them."""
    pipeline = _project(tmp_path)
    work = tmp_path / "work"
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(pipeline), "--workdir", str(work), "--until", "python_filter",
                 "--workers", "1", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "python_filter" in first and "drop_duplicates" not in first
    assert not (tmp_path / "out").exists()
    assert main(["run", str(pipeline), "--workdir", str(work), "--workers", "1",
                 "--no-progress"]) == 0
    rest = capsys.readouterr().out
    for step in ("read_jsonl", "word_count", "python_filter"):
        line = next(x for x in rest.splitlines() if x.split() and x.split()[0] == step)
        assert "cached" in line.split()[-1:], line
    assert (tmp_path / "out" / "docs.jsonl").exists()


def test_until_names_an_unknown_step(tmp_path: Path, capsys) -> None:
    pipeline = _project(tmp_path)
    assert main(["run", str(pipeline), "--workdir", str(tmp_path / "w"),
                 "--until", "word_cont"]) == 2
    err = capsys.readouterr().err
    assert "word_cont" in err and "word_count" in err


def test_stage_with_an_operation_image_runs_in_it(tmp_path: Path) -> None:
    from datamill.kubeflow import plan_tasks

    pipeline = _project(tmp_path)

    module_ns: dict = {}
    exec(compile(pipeline.read_text(), str(pipeline), "exec"), module_ns)
    ds = module_ns["pipeline"]
    chain = ds.step.chain()
    shout_op = next(s.op for s in chain if s.name == "shout")
    type(shout_op).image = "reg/shout:2"
    tasks = plan_tasks([ds], "reg/dm:1")
    assert [t.image for t in tasks] == ["reg/dm:1", "reg/dm:1", "reg/shout:2"]
    assert [t.until for t in tasks] == ["python_filter", "drop_duplicates", "write_jsonl"]
