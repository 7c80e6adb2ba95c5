"""Integrity of committed files: checked when a file is read, all at once by `verify`.

Each partition's stats marker records the size and checksum of every file it commits (a
sink's too, for the files it wrote in its output folder). A file read back from the cache is
checksummed first, once per process; a mismatch raises `CorruptFileError`, and the run marks
the file damaged (`mark_damaged`: file and partition marker removed, `_DAMAGED.json` noted)
so that exactly its partition is recomputed. `verify_workdir` checks every committed file.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CorruptFileError
from .storage import (
    Workdir,
    atomic_write_json,
    checksum_matches,
    parquet_file_ok,
    part_name,
    read_json,
)

DAMAGED = "_DAMAGED.json"
SUCCESS = "_SUCCESS.json"
_verified: set[tuple] = set()  # (path, size, mtime, inode) of files checked in this run


def forget_verified() -> None:
    """Check every file again when next read (a new run: bytes may have rotted since)."""
    _verified.clear()


@dataclass
class Damage:
    """One committed file that is not as it was committed."""

    step: str
    key: str
    partition: int
    file: str  # its path: in the step's folder, or in a sink's output folder
    problem: str
    output: bool = False  # a file a sink wrote (outside the workdir)


def file_problem(path: Path, size: int | None, checksum: str | None) -> str | None:
    """What is wrong with a committed local file, or None when it is intact."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if size is not None and st.st_size != size:
        return f"size {st.st_size} bytes, {size} when committed"
    if checksum is not None:
        if not checksum_matches(path, checksum):
            return "checksum mismatch: its bytes changed since it was committed"
    elif path.suffix == ".parquet" and not parquet_file_ok(path):
        return "not a Parquet file"  # committed before checksums were recorded
    return None


def check_step_file(workdir: Workdir, key: str, step: str, partition: int, path: Path) -> None:
    """Before a step's file is read: raise CorruptFileError if it is not as committed.
    Checked once per process for a file of unchanged size, mtime and inode."""
    try:
        st = path.stat()
        seen = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        seen = None
    if seen is not None and seen in _verified:
        return
    stats = read_json(path.parent / part_name("stats", partition, "json")) or {}
    problem = file_problem(path, stats.get("files", {}).get(path.name),
                           stats.get("checksums", {}).get(path.name))
    if problem is not None:
        raise corrupt(workdir, key, step, partition, path, problem)
    if seen is not None:
        _verified.add(seen)


def check_part_file(workdir: Workdir, key: str, step: str, path: Path) -> None:
    """`check_step_file` for any file named `KIND-PPPPP.parquet` (dropped, quarantine)."""
    check_step_file(workdir, key, step, int(path.stem.rsplit("-", 1)[1]), path)


def corrupt(workdir: Workdir, key: str, step: str, partition: int, path: Path,
            problem: str) -> CorruptFileError:
    return CorruptFileError(
        f"step {step!r}, partition {partition}: {path} is damaged ({problem}). A run of the "
        "pipeline over this workdir recomputes it; `datamill verify "
        f"{workdir.root}` checks every file", workdir=str(workdir.root), key=key, step=step,
        partition=partition, path=str(path), problem=problem)


def mark_damaged(workdir: Workdir, damages: list[Damage]) -> None:
    """Make the next run recompute exactly the partitions of `damages`: remove their stats
    markers and damaged files, and note them in the step's `_DAMAGED.json` (which the step
    record keeps as `repaired` once they are recomputed)."""
    by_key: dict[str, list[Damage]] = {}
    for d in damages:
        by_key.setdefault(d.key, []).append(d)
    for key, found in by_key.items():
        folder = workdir.step_dir(key)
        for d in found:
            with contextlib.suppress(OSError):
                (folder / part_name("stats", d.partition, "json")).unlink()
            if not d.output:  # a sink's damaged file is replaced when it is rewritten
                with contextlib.suppress(OSError):
                    Path(d.file).unlink()
        noted = read_json(folder / DAMAGED) or []
        when = time.strftime("%Y-%m-%dT%H:%M:%S")
        noted += [{**asdict(d), "found": when} for d in found]
        atomic_write_json(folder / DAMAGED, noted)


def take_damaged(workdir: Workdir, key: str) -> list[dict]:
    """The damage noted for step `key` (now recomputed): returned and forgotten."""
    path = workdir.step_dir(key) / DAMAGED
    noted = read_json(path) or []
    with contextlib.suppress(OSError):
        path.unlink()
    return noted


def verify_workdir(workdir: str | os.PathLike | Workdir) -> list[Damage]:
    """Check every committed file of every step in the workdir (and the files sinks wrote),
    by size and checksum. Returns what is damaged; changes nothing."""
    wd = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    steps = wd.root / "steps"
    if not steps.is_dir():
        return []
    damages: list[Damage] = []
    for folder in sorted(p for p in steps.iterdir() if p.is_dir()):
        record = read_json(folder / SUCCESS) or {}
        name = record.get("name", folder.name)
        for marker in sorted(folder.glob("stats-*.json")):
            stats = read_json(marker)
            if stats is None:
                continue  # torn: the partition was never committed
            partition = int(marker.stem.split("-")[1])
            checksums = stats.get("checksums", {})
            for file, size in stats.get("files", {}).items():
                problem = file_problem(folder / file, size, checksums.get(file))
                if problem:
                    damages.append(Damage(name, folder.name, partition, str(folder / file),
                                          problem))
            outputs = stats.get("outputs", [])
            root = _output_location(record)
            if outputs and root:
                damages += [Damage(name, folder.name, partition, url, problem, output=True)
                            for url, problem in _output_problems(root, outputs)]
    return damages


def _output_location(record: dict) -> str | None:
    """Where a sink step wrote its files (None when not known for sure)."""
    if record.get("output_location"):
        return record["output_location"]
    path = str(record.get("arguments", {}).get("path") or "")
    return path if "://" in path or os.path.isabs(path) else None  # relative: to what?


def _output_problems(root: str, outputs: list[dict]) -> list[tuple[str, str]]:
    """(url, problem) of each damaged file a sink partition wrote under `root`."""
    from fsspec.core import url_to_fs

    from .storage import Checksum

    try:
        fs, base = url_to_fs(root)
    except Exception:  # noqa: BLE001 - an unreachable output is not ours to judge
        return []
    found = []
    for out in outputs:
        url = f"{root.rstrip('/')}/{out['file']}".removeprefix("file://")
        path = f"{base.rstrip('/')}/{out['file']}"
        try:
            size = fs.info(path)["size"]
        except FileNotFoundError:
            found.append((url, "missing"))
            continue
        except Exception:  # noqa: BLE001 - e.g. no credentials: cannot tell
            continue
        if size != out.get("size", size):
            found.append((url, f"size {size} bytes, {out['size']} when committed"))
            continue
        expected = out.get("checksum")
        if expected is None:
            continue
        h = Checksum(expected.split(":", 1)[0])
        with fs.open(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                h.update(chunk)
        if h.value() != expected:
            found.append((url, "checksum mismatch: its bytes changed since it was committed"))
    return found


@dataclass
class VerifyReport:
    """What `verify` found: damaged files (now marked for recompute unless `mark=False`),
    damage an earlier check marked and no run has recomputed yet, temp files removed."""

    damaged: list[Damage]
    pending: list[dict]
    temp_files: int
    temp_bytes: int


def verify(workdir: str | os.PathLike, mark: bool = True) -> VerifyReport:
    """Check every committed file of the workdir (holding its lock: refused during a run);
    mark the damaged ones so that the next run recomputes exactly their partitions, and
    remove the temp files killed runs left."""
    wd = Workdir(workdir)
    if not (wd.root / "steps").is_dir():
        raise FileNotFoundError(f"{wd.root} is not a datamill workdir (no steps/ folder)")
    with wd.lock():
        temp_files, temp_bytes = wd.remove_temp_files() if mark else (0, 0)
        pending = [entry for folder in sorted((wd.root / "steps").iterdir())
                   for entry in (read_json(folder / DAMAGED) or [])]
        damaged = verify_workdir(wd)
        if mark and damaged:
            mark_damaged(wd, damaged)
    return VerifyReport(damaged, pending, temp_files, temp_bytes)
