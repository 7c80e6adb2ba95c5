"""One direction of dependency: no module imports a floor above its own (docs/architecture.md).

Every import counts, those inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "datamill"
FLOORS = [
    {"_version", "errors", "schema", "image_type", "messages", "cache", "code_fingerprint",
     "environments"},
    {"operation", "remap", "registry", "storage", "integrity"},
    # the DAG and its stored form
    {"dataset", "formats", "plan", "reader", "manifest", "cache_history"},
    {"executors", "io"},
    {"running", "rows", "ops", "search", "evaluate", "kubeflow", "explore", "testing",
     "packaging", "templates"},
    {"cli", "__init__", "__main__"},
]


def floor_of(module: str) -> int:
    top = module.split(".")[0]
    for n, names in enumerate(FLOORS):
        if top in names:
            return n
    raise AssertionError(f"datamill.{module} is on no floor: add it to FLOORS and to "
                         "docs/architecture.md")


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported datamill module, line) for every import in the file."""
    package = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - node.level + 1])
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [(".".join([*base, n]), node.lineno) for n in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datamill."):
            found.append((node.module[len("datamill."):], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name[len("datamill."):], node.lineno) for a in node.names
                      if a.name.startswith("datamill.")]
    return found


def test_no_module_imports_a_floor_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = floor_of(module)
        for target, line in imports_of(path):
            if target and floor_of(target) > own:
                upward.append(f"{module}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    probe = PACKAGE / "executors" / "base.py"
    targets = {t for t, _ in imports_of(probe)}
    assert "dataset" in targets and "storage" in targets
    assert floor_of("executors.base") > floor_of("dataset") > floor_of("storage")
