"""Isolated environments of operations that declare `requirements` (docs/environments.md).

An environment is a virtual environment under the user's cache folder
(`$DATAMILL_ENV_DIR`, else `$XDG_CACHE_HOME/datamill/envs`, else `~/.cache/datamill/envs`),
named by the digest of its requirements, the Python version and the interpreter, and made
once per machine:

- `python -m venv --without-pip`, from this interpreter;
- a `.pth` file that adds this interpreter's site-packages *after* the environment's own, so
  that the environment sees datamill, pyarrow and everything installed here, while the
  requirements, installed into it by `pip` (this interpreter's pip, run inside it), shadow
  the versions installed here;
- built in a temporary folder and renamed into place when complete, under a lock file, so
  that two runs (or two workers) that need it at once build it once, and a killed build
  leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import uuid
from pathlib import Path

from .errors import DatamillError

READY = "datamill-environment.json"  # written last: the environment is complete
PIP_TIMEOUT = 1800  # seconds for pip to install an environment's requirements


def normalized(requirements: list[str] | tuple[str, ...] | None) -> list[str]:
    """The requirements as a sorted list of distinct, stripped strings."""
    return sorted({r.strip() for r in requirements or () if r and r.strip()})


def environment_key(requirements: list[str] | tuple[str, ...]) -> str:
    """What a step's cache key records of its environment: the requirements and the Python
    version they are installed for (a change of either recomputes the step)."""
    python = f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}"
    return hashlib.sha256(json.dumps({"requirements": normalized(requirements),
                                      "python": python}).encode()).hexdigest()[:16]


def environments_root() -> Path:
    if os.environ.get("DATAMILL_ENV_DIR"):
        return Path(os.environ["DATAMILL_ENV_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "datamill" / "envs"


def environment_dir(requirements: list[str] | tuple[str, ...]) -> Path:
    """Where the environment of `requirements` lives for this interpreter."""
    made_by = {"requirements": normalized(requirements), "python": sys.version,
               "interpreter": os.path.realpath(sys.executable)}
    name = hashlib.sha256(json.dumps(made_by).encode()).hexdigest()[:20]
    return environments_root() / name


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_environment(requirements: list[str] | tuple[str, ...]) -> Path:
    """The environment's folder, built first if no run built it yet."""
    reqs = normalized(requirements)
    final = environment_dir(reqs)
    if (final / READY).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.with_name(final.name + ".lock")):
        if (final / READY).is_file():  # another process built it while we waited
            return final
        if final.exists():  # not ready: left by an older layout or by hand
            shutil.rmtree(final)
        temp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        try:
            _build(temp, reqs)
            temp.rename(final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def _build(folder: Path, requirements: list[str]) -> None:
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)], requirements,
         "create their virtual environment")
    python = python_of(folder)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in _site_dirs()]
    (Path(purelib) / "_datamill_parent.pth").write_text("\n".join(lines) + "\n")
    if requirements:
        _run([str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
              "--quiet", *requirements], requirements, "install them")
    (folder / READY).write_text(json.dumps({
        "requirements": requirements, "python": sys.version,
        "interpreter": os.path.realpath(sys.executable)}, indent=1))


def _run(command: list[str], requirements: list[str], what: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the env's own view
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                              env=environ)
    except subprocess.TimeoutExpired:
        raise DatamillError(f"requirements {requirements}: could not {what}, no answer in "
                            f"{PIP_TIMEOUT} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise DatamillError(f"requirements {requirements}: could not {what} "
                            f"({' '.join(command[:4])} ... exited {proc.returncode}):\n{tail}")
