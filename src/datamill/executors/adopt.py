"""Keep the partitions of unchanged input files when other files of the input change.

A source's cache key covers every input file (names, sizes, times), so fixing one bad file
gives every step a new key. Each row-wise step before the first global step also has a
*family* (its key as if the files had not changed) and, per partition, a description of what
the partition reads (`SourceOperation.partition_fingerprint`: the file, its size and time,
the byte range). When a stage starts, a partition that a step of the same family already
committed from the same description is adopted: its files are linked (or copied) under the
new key, its stats marker last, and it is not computed again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..dataset import Step
from ..plan import Stage
from ..reader import source_partitions
from ..storage import (
    Workdir,
    atomic_write_json,
    checksum_matches,
    parquet_file_ok,
    part_name,
    read_json,
)

DESCRIPTION = "_partitions.json"


def adoptable(step: Step) -> bool:
    return bool(step.family) and step.kind != "sink"


def describe(workdir: Workdir, step: Step) -> list[str | None]:
    """What each partition of the step's source reads (None: cannot tell)."""
    source = step.chain()[0]
    describe_one = getattr(source.op, "partition_fingerprint", None)
    if describe_one is None:
        return []
    return [describe_one(part) for part in source_partitions(workdir, source)]


def adopt_partitions(workdir: Workdir, stage: Stage, count: int) -> int:
    """Adopt what earlier runs committed for this stage's steps; returns how many step
    partitions were adopted."""
    steps = [s for s in stage.steps if adoptable(s)]
    if not steps or stage.steps[0].kind != "source":
        return 0
    parts = describe(workdir, steps[0])
    if len(parts) != count:
        return 0
    adopted = 0
    ready = [True] * count  # every step before this one holds the partition
    for step in stage.steps:
        if not adoptable(step):
            break
        folder = workdir.step_dir(step.key)
        atomic_write_json(folder / DESCRIPTION, {"family": step.family, "partitions": parts})
        earlier = _earlier(workdir, step)
        for p, description in enumerate(parts):
            if not ready[p]:
                continue
            if _committed(folder, p):
                continue
            found = earlier.get(description) if description is not None else None
            if found is None or not _link_partition(found[0], found[1], folder, p):
                ready[p] = False
                continue
            adopted += 1
    return adopted


def _earlier(workdir: Workdir, step: Step) -> dict[str, tuple[Path, int]]:
    """description -> (folder, partition) committed by other steps of the same family,
    the most recent first."""
    root = workdir.step_dir(step.key).parent
    folders = []
    for folder in root.iterdir():
        if folder.name == step.key:
            continue
        info = read_json(folder / DESCRIPTION)
        if isinstance(info, dict) and info.get("family") == step.family:
            folders.append((os.path.getmtime(folder / DESCRIPTION), folder, info))
    found: dict[str, tuple[Path, int]] = {}
    for _, folder, info in sorted(folders, key=lambda f: f[0]):  # newer ones win
        for q, description in enumerate(info.get("partitions", [])):
            if description is not None and _committed(folder, q):
                found[description] = (folder, q)
    return found


def _committed(folder: Path, p: int) -> bool:
    stats = read_json(folder / part_name("stats", p, "json"))
    if not isinstance(stats, dict):
        return False
    return all(parquet_file_ok(folder / name, _size(entry))
               for name, entry in stats.get("files", {}).items())


def _size(entry: Any) -> int | None:
    if isinstance(entry, dict):
        return entry.get("size")
    return entry


def _link_partition(source: Path, q: int, target: Path, p: int) -> bool:
    """Link (or copy) partition q's files of `source` as partition p of `target`, then
    write its stats marker."""
    stats = read_json(source / part_name("stats", q, "json"))
    if not isinstance(stats, dict):
        return False
    checksums = stats.get("checksums", {})
    renamed = {name: part_name(name.split("-", 1)[0], p, name.rsplit(".", 1)[-1])
               for name in stats.get("files", {})}
    for name, new in renamed.items():
        if name in checksums and not checksum_matches(source / name, checksums[name]):
            return False  # damaged since it was committed: compute it again
        try:
            _link(source / name, target / new)
        except OSError:
            return False
    atomic_write_json(target / part_name("stats", p, "json"), {
        **stats, "files": {renamed[n]: v for n, v in stats.get("files", {}).items()},
        "checksums": {renamed[n]: v for n, v in checksums.items() if n in renamed},
        "adopted_from": source.name})
    return True


def _link(old: Path, new: Path) -> None:
    tmp = new.with_name(f".{new.name}.adopt-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(old, tmp)
    except OSError:
        shutil.copy2(old, tmp)
    os.replace(tmp, new)
