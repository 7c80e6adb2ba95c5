"""Compile a pipeline file to a Kubeflow Pipelines (v2) pipeline: one task per stage.

Every task runs the same pipeline file with `datamill run FILE --until STEP`, STEP being the
last step of its stage, in one workdir on a shared volume (a PersistentVolumeClaim mounted
at the same path in every task). Task k finds the steps of the earlier stages committed in
the workdir and runs only its own; a retried task resumes from what its attempt committed.
So KFP's own caching is off for every task: datamill's cache decides what is up to date.

A task's container image is `image`, or the `image` its stage's operations declare; its
CPU, memory and GPU requests are those the operations declare (`Resources`) times the
task's workers. The pipeline file travels inside the YAML (written to the volume by the task
before it runs) unless `pipeline_path` names where the image holds it. `kfp` and
`kfp-kubernetes` are imported only here (`pip install 'datamill[kfp]'`).
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dataset import LazyDataset, Step
from .errors import DatamillError, PipelineError
from .executors.ray import stage_resources
from .plan import build_stages

MOUNT_PATH = "/mnt/datamill"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class Task:
    """One KFP task: the steps of one stage, run by `datamill run ... --until last`."""

    name: str
    steps: list[Step]
    after: list[int]  # indexes of the tasks it waits for
    image: str

    @property
    def until(self) -> str:
        return self.steps[-1].name


def plan_tasks(datasets: list[LazyDataset], image: str) -> list[Task]:
    """The pipeline's stages, in order, as tasks (a step shared by several datasets runs
    once, in the task of the first dataset that reaches it)."""
    tasks: list[Task] = []
    task_of: dict[str, int] = {}
    names: set[str] = set()
    for ds in datasets:
        chain = ds.step.chain()
        for stage in build_stages(chain, set(task_of)):
            last = stage.steps[-1]
            same_name = [s for d in datasets for s in d.step.chain()
                         if s.name == last.name and s.key != last.key]
            if same_name:
                raise PipelineError(
                    f"two different steps are named {last.name!r}: a task could not name its "
                    "stage's last step alone; give one a step_name=", step=last.name)
            after = [] if stage.input_step is None else [task_of[stage.input_step.key]]
            name = _task_name(f"{len(tasks) + 1}-{last.name}", names)
            tasks.append(Task(name, stage.steps, after, _stage_image(stage.steps, image)))
            for step in stage.steps:
                task_of[step.key] = len(tasks) - 1
    return tasks


def _task_name(text: str, taken: set[str]) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", f"stage-{text}".lower()).strip("-")[:60]
    while name in taken:
        name += "-x"
    taken.add(name)
    return name


def _stage_image(steps: list[Step], default: str) -> str:
    images = {s.op.image for s in steps if getattr(s.op, "image", None)}
    if len(images) > 1:
        raise PipelineError(
            f"steps {', '.join(s.name for s in steps)} run in one fused stage but their "
            f"operations declare different images ({', '.join(sorted(images))}); a stage "
            "runs in one container")
    return images.pop() if images else default


def task_script(task: Task, *, pipeline: str, target: str | None, mount_path: str,
                workdir: str, workers: int, source_digest: str | None) -> str:
    """The shell script a task runs. With `source_digest`, the pipeline's source comes as the
    script's first argument and is written (atomically) under the volume first."""
    q = shlex.quote
    lines = ["set -e"]
    if source_digest is not None:
        folder = f"{mount_path}/.datamill/pipelines/{source_digest}"
        pipeline = f"{folder}/{Path(pipeline).name}"
        lines += [f"mkdir -p {q(folder)}",
                  f'printf "%s" "$1" > {q(pipeline)}.$$',
                  f"mv {q(pipeline)}.$$ {q(pipeline)}"]
    spec = pipeline + (f":{target}" if target else "")
    envs = q(f"{mount_path}/.datamill/envs")  # operations' environments: made once, shared
    lines += [f"cd {q(mount_path)}",
              f'[ -n "$DATAMILL_ENV_DIR" ] || export DATAMILL_ENV_DIR={envs}',
              f"exec datamill run {q(spec)} --workdir {q(mount_path + '/' + workdir)} "
              f"--until {q(task.until)} --workers {workers} --no-progress"]
    return "\n".join(lines)


def _quantities(steps: list[Step], workers: int) -> dict[str, Any]:
    res = stage_resources(steps)
    out: dict[str, Any] = {"cpu": f"{math.ceil(res.cpus * workers * 1000)}m"}
    if res.memory:
        out["memory"] = f"{math.ceil(res.memory * workers / 2**20)}Mi"
    if res.gpus:
        out["gpu"] = max(1, math.ceil(res.gpus * workers))
    return out


def _import_kfp() -> Any:
    try:
        import kfp.kubernetes  # noqa: F401 - the PVC mount
        from kfp import dsl
    except ImportError as exc:
        raise DatamillError("compiling to Kubeflow needs kfp and kfp-kubernetes: "
                            "pip install 'datamill[kfp]'") from exc
    return dsl


def compile_kfp(datasets: list[LazyDataset], pipeline_file: str | Path, output: str | Path,
                *, image: str, volume: str, target: str | None = None,
                mount_path: str = MOUNT_PATH, workdir: str = "datamill-work",
                workers: int = 1, pipeline_path: str | None = None,
                name: str | None = None) -> list[Task]:
    """Write the KFP v2 pipeline YAML of `datasets` (loaded from `pipeline_file`) to `output`;
    returns its tasks. `volume` is the PersistentVolumeClaim every task mounts."""
    dsl = _import_kfp()
    from kfp import compiler, kubernetes

    pipeline_file = Path(pipeline_file)
    tasks = plan_tasks(datasets, image)
    source = pipeline_file.read_text()
    digest = None if pipeline_path else hashlib.sha256(source.encode()).hexdigest()[:16]
    where = pipeline_path or pipeline_file.name
    components = []
    for task in tasks:
        script = task_script(task, pipeline=where, target=target, mount_path=mount_path,
                             workdir=workdir, workers=workers, source_digest=digest)
        args = [script, "datamill"] + ([source] if digest else [])
        components.append(_component(dsl, task.name.replace("-", "_"), task.image, args))

    def pipeline_fn():  # noqa: ANN202 - kfp reads the (absent) return annotation
        made = []
        for task, component in zip(tasks, components):
            t = component()
            t.set_display_name(f"{task.name}: {', '.join(s.name for s in task.steps)}")
            t.set_caching_options(False)  # datamill's cache and resume decide
            wanted = _quantities(task.steps, workers)
            t.set_cpu_request(wanted["cpu"]).set_cpu_limit(wanted["cpu"])
            if "memory" in wanted:
                t.set_memory_request(wanted["memory"]).set_memory_limit(wanted["memory"])
            if "gpu" in wanted:
                t.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(wanted["gpu"])
            kubernetes.mount_pvc(t, pvc_name=volume, mount_path=mount_path)
            for i in task.after:
                t.after(made[i])
            made.append(t)

    pipeline_name = name or re.sub(r"[^a-z0-9]+", "-", pipeline_file.stem.lower()).strip("-")
    pipeline_fn.__name__ = pipeline_name.replace("-", "_") or "datamill"
    compiled = dsl.pipeline(name=pipeline_name or "datamill",
                            description=f"datamill pipeline {pipeline_file.name}")(pipeline_fn)
    compiler.Compiler().compile(compiled, str(output))
    return tasks


def _component(dsl: Any, name: str, image: str, args: list[str]) -> Any:
    def stage():  # noqa: ANN202 - kfp reads the (absent) return annotation
        return dsl.ContainerSpec(image=image, command=["sh", "-c"], args=list(args))

    stage.__name__ = name
    return dsl.container_component(stage)
