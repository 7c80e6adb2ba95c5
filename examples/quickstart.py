"""The main job: curate the Python documentation that ships with the interpreter.

    datamill run examples/quickstart.py

Input: every help topic of `pydoc_data.topics` (plus module docstrings of the standard
library), written once as JSONL into examples/data/. The pipeline drops tiny texts, counts
words, removes exact duplicates and writes Parquet with its lineage beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc

from datamill import Dataset, MapOperation

HERE = Path(__file__).parent
DATA = HERE / "data" / "python_docs.jsonl"


def generate(path: Path = DATA) -> Path:
    """Write the interpreter's own documentation as JSON Lines (once): every help topic of
    `pydoc_data.topics`, and every docstring of the standard library's modules, classes and
    functions (read with `ast`, nothing imported)."""
    if path.exists():
        return path
    import ast
    import sysconfig
    from pydoc_data.topics import topics

    rows = [{"source": f"topic:{name}", "text": text} for name, text in sorted(topics.items())]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(stdlib.rglob("*.py")):
        rel = file.relative_to(stdlib)
        if rel.parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel.parts:
            continue
        try:
            tree = ast.parse(file.read_bytes())
        except (SyntaxError, ValueError):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc:
                name = module if node is tree else f"{module}.{node.name}"
                rows.append({"source": f"stdlib:{name}", "text": doc})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


class WordCount(MapOperation):
    """Number of whitespace-separated words in a text column."""

    name = "word_count"
    consumes = {"text": "string"}
    produces = {"words": "int64"}

    def process(self, batch):
        return {"words": pc.count_substring_regex(batch["text"], pattern=r"\S+")}


pipeline = (
    Dataset.read(generate())
    .apply("text_length_filter", min_words=20)
    .apply(WordCount)
    .drop_duplicates(["text"])
    .write(HERE / "output" / "python_docs")
)
