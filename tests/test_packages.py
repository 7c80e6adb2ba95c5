"""Operations as packages: the repository's plugin (plugins/datamill-textstats) built into a
wheel, installed into a throwaway virtual environment and used by name from a pipeline; and
`datamill ops new` packages of every kind, built, installed and passing their own tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import datamill
from datamill import PipelineError
from datamill.cli import main
from datamill.packaging import new_package, readme_section, write_readme

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "datamill-textstats"
DATAMILL_SRC = str(Path(datamill.__file__).resolve().parents[1])  # the datamill under test


def _env(*paths: str) -> dict:
    """The environment of a subprocess that imports this datamill (and `paths`)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, DATAMILL_SRC]),
            "PYTHONDONTWRITEBYTECODE": "1"}


def _call(args: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _wheels(sources: list[Path], into: Path) -> list[Path]:
    """Build a wheel of each package folder (copied first: setuptools builds in-tree)."""
    copies = []
    for src in sources:
        copy = into / "src" / src.name
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                  "__pycache__"))
        copies.append(str(copy))
    _call([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "-q", "-w", str(into / "wheels"), *copies])
    return sorted((into / "wheels").glob("*.whl"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A throwaway virtual environment (seeing this interpreter's packages) with the
    plugin's wheel installed by pip; returns its python."""
    root = tmp_path_factory.mktemp("plugin")
    wheels = _wheels([PLUGIN], root)
    assert [w.name for w in wheels] == ["datamill_textstats-0.1.0-py3-none-any.whl"]
    _call([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")])
    python = root / "venv" / "bin" / "python"
    # the venv sees this interpreter's packages (pyarrow, pip, ...) after its own, whether
    # this interpreter is itself a venv or not (--system-site-packages would give the base's)
    purelib = _call([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"]).strip()
    parents = [p for p in sys.path if p and Path(p).is_dir()
               and ("site-packages" in p or "dist-packages" in p)]
    (Path(purelib) / "_parent_site.pth").write_text(
        f"import site; list(map(site.addsitedir, {parents!r}))\n")
    _call([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
           str(wheels[0])])
    return python


PIPELINE = textwrap.dedent('''
    import json, sys
    import datamill as dm

    root = sys.argv[1]
    rows = [{"body": "The cat sat on the mat. It was a sunny day.", "title": "plain"},
            {"body": "Notwithstanding considerable methodological heterogeneity, the "
                     "investigators characterized multidimensional socioeconomic "
                     "determinants comprehensively.", "title": "dense"},
            {"body": None, "title": "none"}]
    with open(root + "/in.jsonl", "w") as fh:
        fh.write("\\n".join(json.dumps(r) for r in rows))
    ds = (dm.Dataset.read(root + "/in.jsonl")
          .apply("readability", consumes={"text": "body"}, produces={"grade_level": "grade"})
          .apply("readability_filter", max_grade=12, consumes={"text": "body"}))
    result = ds.run(root + "/work", workers=1, progress=False)
    table = ds.collect(root + "/work", progress=False)
    print(json.dumps({"rows": table.to_pylist(),
                      "steps": {s["name"]: s for s in result.steps}}))
''')


def test_plugin_runs_from_a_pipeline_by_name(venv, tmp_path):
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    out = json.loads(_call([str(venv), str(tmp_path / "pipeline.py"), str(tmp_path)]))
    assert [r["title"] for r in out["rows"]] == ["plain"]
    row = out["rows"][0]
    assert row["readability_words"] == 11 and row["reading_ease"] > 90 and row["grade"] < 2
    steps = out["steps"]
    assert steps["readability_filter"]["dropped"] == {"readability:too_hard": 1,
                                                      "readability:too_few_words": 1}
    plugin = {"name": "datamill-textstats", "version": "0.1.0"}
    assert steps["readability"]["distribution"] == plugin
    assert steps["readability_filter"]["distribution"] == plugin
    assert steps["read_jsonl"]["distribution"] == {"name": "datamill",
                                                   "version": datamill.__version__}
    assert steps["readability"]["remapped"] == {"consumes": {"text": "body"},
                                                "produces": {"grade_level": "grade"}}


def test_ops_list_shows_the_distribution_and_version(venv):
    listing = _call([str(venv), "-m", "datamill", "ops", "list"])
    lines = {line.split()[0]: line for line in listing.splitlines() if line.strip()}
    assert "datamill-textstats 0.1.0" in lines["readability"]
    assert "datamill-textstats 0.1.0" in lines["readability_filter"]
    assert f"datamill {datamill.__version__}" in lines["text_length_filter"]
    shown = _call([str(venv), "-m", "datamill", "ops", "show", "readability_filter"])
    assert "provided by:  datamill-textstats 0.1.0" in shown
    assert "max_grade" in shown and "readability:too_hard" in shown


def test_plugin_passes_its_own_tests_installed(venv, tmp_path):
    tests = tmp_path / "plugin"
    shutil.copytree(PLUGIN, tests, ignore=shutil.ignore_patterns("src", "build", "*.egg-info",
                                                                  "__pycache__"))
    out = _call([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                cwd=tests)
    assert " passed" in out and "failed" not in out and "error" not in out


def test_scaffolded_packages_of_every_kind_build_install_and_pass_their_tests(tmp_path):
    made = [new_package(f"scaffold_{kind}", kind, tmp_path / "new")
            for kind in ("map", "filter", "expand", "global")]
    assert [p.name for p in made] == ["datamill-scaffold-map", "datamill-scaffold-filter",
                                      "datamill-scaffold-expand", "datamill-scaffold-global"]
    pyproject = (made[0] / "pyproject.toml").read_text()
    assert '[project.entry-points."datamill.operations"]' in pyproject
    assert 'scaffold_map = "datamill_scaffold_map.ops:ScaffoldMap"' in pyproject
    readme = (made[0] / "README.md").read_text()
    assert "| `min_length` | `int` | `1` | Count only the words" in readme
    assert "- produces: scaffold_map: int64" in readme
    wheels = _wheels(made, tmp_path / "build")
    assert len(wheels) == 4
    target = tmp_path / "site"
    _call([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
           "--target", str(target), *map(str, wheels)])
    env = _env(str(target))
    out = _call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 *(str(p / "tests") for p in made)], cwd=tmp_path, env=env)
    assert "20 passed" in out, out
    listing = _call([sys.executable, "-m", "datamill", "ops", "list"], env=env)
    assert any(line.startswith("scaffold_global") and "datamill-scaffold-global 0.1.0" in line
               for line in listing.splitlines()), listing


def test_ops_new_refuses_bad_names_and_existing_folders(tmp_path, capsys):
    with pytest.raises(PipelineError, match="lowercase letters, digits and _"):
        new_package("Word-Count", "map", tmp_path)
    with pytest.raises(PipelineError, match="'text_length_filter' exists already"):
        new_package("text_length_filter", "map", tmp_path)
    with pytest.raises(PipelineError, match="--kind is one of map, filter, expand, global"):
        new_package("fine_name", "sink", tmp_path)
    assert main(["ops", "new", "fine_name", "--kind", "filter", "--dir", str(tmp_path)]) == 0
    assert "datamill-fine-name" in capsys.readouterr().out
    assert main(["ops", "new", "fine_name", "--dir", str(tmp_path)]) == 1
    assert "exists already" in capsys.readouterr().err


def test_readme_section_is_written_from_the_spec_and_kept_up_to_date(tmp_path, capsys):
    from datamill import registry

    cls = registry.get("text_length_filter")
    section = readme_section(cls)
    for name, spec in cls.Args.model_fields.items():
        assert f"| `{spec.alias or name}` |" in section and spec.description in section
    readme = tmp_path / "README.md"
    readme.write_text("# My package\n\nWords of my own.\n")
    assert write_readme(cls, readme) is True
    assert write_readme(cls, readme) is False
    text = readme.read_text()
    assert text.startswith("# My package\n\nWords of my own.\n") and section in text
    readme.write_text(text.replace("A **filter** operation", "A stale description") + "After.\n")
    assert main(["ops", "readme", "text_length_filter", "-o", str(readme)]) == 0
    assert "updated" in capsys.readouterr().out
    assert section in readme.read_text() and readme.read_text().endswith("After.\n")
    assert main(["ops", "readme", "text_length_filter"]) == 0
    assert capsys.readouterr().out == section
