"""The catalogue: built-ins, and operations that other packages publish by entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from datamill import registry


def test_builtins_registered():
    ops = registry.load_all()
    for name in ("read_jsonl", "read_parquet", "read_csv", "read_text_files", "write_parquet",
                 "write_jsonl", "write_csv", "select", "rename", "drop", "text_length_filter",
                 "python_map", "python_filter", "sample", "limit", "drop_duplicates"):
        assert name in ops, name
        assert ops[name].summary(), f"{name} has no docstring"


def test_entry_point_plugin(tmp_path):
    """A separately installed package's operation shows up in the catalogue and runs."""
    pkg = tmp_path / "site"
    (pkg / "acme_ops").mkdir(parents=True)
    (pkg / "acme_ops" / "__init__.py").write_text(textwrap.dedent('''
        import pyarrow.compute as pc
        from datamill import MapOperation

        class Shout(MapOperation):
            """Upper-case the text."""
            name = "acme_shout"
            consumes = {"text": "string"}
            produces = {"loud": "string"}

            def process(self, batch):
                return {"loud": pc.utf8_upper(batch["text"])}
    '''))
    dist = pkg / "acme_ops-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ops\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[datamill.operations]\nshout = acme_ops:Shout\n")
    code = textwrap.dedent('''
        import json, sys
        import datamill as dm
        from datamill import registry
        assert "acme_shout" in registry.load_all()
        path = sys.argv[1] + "/in.jsonl"
        open(path, "w").write('{"text": "hi there"}\\n')
        t = dm.Dataset.read(path).apply("acme_shout").collect(sys.argv[1] + "/w",
                                                             progress=False)
        print(t["loud"].to_pylist())
    ''')
    env = {"PYTHONPATH": str(pkg), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "['HI THERE']" in out.stdout


def test_readme_catalogue_lists_every_builtin():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name, cls in registry.load_all().items():
        if (cls.__module__ or "").startswith("datamill."):
            assert f"`{name}`" in readme, f"{name} missing from the README catalogue"


def test_index_of_builtins_matches_their_modules():
    """`get` imports only the module the index names: each indexed name is registered by
    that module (an operation the index lacks still resolves, through load_all)."""
    ops = registry.load_all()
    wrong = {name: module for name, module in registry._MODULE_OF.items()
             if name not in ops or ops[name].__module__ != module}
    assert not wrong
    for name in ("read_jsonl", "detect_language", "drop_duplicates", "minhash_dedup"):
        assert name in registry._MODULE_OF


def test_get_imports_only_the_operations_module():
    code = textwrap.dedent('''
        import sys
        from datamill import registry
        cls = registry.get("drop_duplicates")
        print(cls.__module__, "datamill.ops.image.embed" in sys.modules, registry._loaded)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["datamill.ops.dedup", "False", "False"]
