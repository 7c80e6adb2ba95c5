"""From a dataset's chain of steps to stages: fused row-wise passes and global barriers.

A step is *complete* when its data is committed in the workdir and so are its ancestors'
(a cached step is only usable if everything it references is). The complete prefix of a
chain is skipped; the rest is cut into stages:

- a *row-wise* stage fuses consecutive source/map/filter/expand/project/sink steps into one
  pass per partition that reads only the columns it needs;
- a *global* stage holds one global step and runs in phases (scan, reduce, apply).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dataset import ID, ColumnRef, Step

ROW_WISE = ("source", "map", "filter", "expand", "project", "sink")


def stores_index(step: Step) -> bool:
    """Does the step's stored output carry `_index` (positions into its input rows)?"""
    kind = step.kind
    if kind in ("filter", "expand"):
        return True
    if kind == "global":
        return bool(getattr(step.op, "drops_rows", True))
    if kind == "map":
        return step.on_error != "raise"
    return False


def stores_data(step: Step) -> bool:
    if step.kind == "project":
        return False
    if step.kind == "source":
        return bool(getattr(step.op, "materialize", True))
    return True


@dataclass
class Stage:
    kind: str  # "rowwise" | "global"
    steps: list[Step]
    input_step: Step | None  # last complete step before the stage (None: stage starts at source)
    needed: list[ColumnRef] = field(default_factory=list)  # columns read from the input

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]


def input_refs(steps: list[Step]) -> list[ColumnRef]:
    """Columns a row-wise stage must read from its input: what its steps consume (and, for a
    sink or a step that quarantines failing rows whole, every visible column) minus what the
    stage itself produces; plus the row id."""
    produced: set[ColumnRef] = set()
    needed: dict[ColumnRef, None] = {}
    first = steps[0]
    if first.kind == "source":
        return input_refs(steps[1:]) if len(steps) > 1 else [first.columns[ID]]
    id_ref = first.parent.columns[ID]
    needed[id_ref] = None
    for step in steps:
        parent_cols = step.parent.columns
        if step.kind == "sink":
            wanted = [ref for name, ref in parent_cols.items()]
        else:
            wanted = [parent_cols[c] for c in step.consumed]
            if step.on_error == "quarantine":
                wanted += [ref for name, ref in parent_cols.items() if not name.startswith("_")]
        for ref in wanted:
            if ref not in produced:
                needed[ref] = None
        for _name, ref in step.columns.items():
            if ref.step == step.name:
                produced.add(ref)
    return list(needed)


def build_stages(chain: list[Step], complete: set[str]) -> list[Stage]:
    """Cut the incomplete suffix of `chain` into stages (keys in `complete` are skipped)."""
    first_incomplete = len(chain)
    for i, step in enumerate(chain):
        if step.key not in complete:
            first_incomplete = i
            break
    stages: list[Stage] = []
    current: list[Step] = []
    for step in chain[first_incomplete:]:
        if step.kind == "global":
            if current:
                stages.append(Stage("rowwise", current, current[0].parent))
                current = []
            stages.append(Stage("global", [step], step.parent))
        else:
            current.append(step)
    if current:
        stages.append(Stage("rowwise", current, current[0].parent))
    for stage in stages:
        if stage.kind == "rowwise":
            stage.needed = input_refs(stage.steps)
    return stages


def resumed(stage: Stage, first: int) -> Stage:
    """The row-wise `stage` from its step `first` on, reading what the steps before it
    committed (for partitions whose first steps are already there)."""
    if first == 0:
        return stage
    steps = stage.steps[first:]
    return Stage("rowwise", steps, steps[0].parent, input_refs(steps))
