"""Search a vector index written by `write_lancedb` or `write_pgvector`.

The index says how its vectors were made: the sinks store the embedding model, its options,
the vector size and metric, and the embedded text column (from the lineage of the vector
column). A query is embedded with that model, so searching needs no model argument.
Used by `datamill search` and by the `retrieve` operation.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import PipelineError

SOURCE_COLUMNS = ("url", "path", "title", "source", "heading_path")
CLIP_SPACE = ("embed_images", "embed_text_clip")  # queries embed through a CLIP text tower
RRF_K = 60  # reciprocal rank fusion: score = sum of 1 / (RRF_K + rank)
_MAX_DEPTH = 4096  # search_distinct never asks for more candidates than this


@dataclass
class Hit:
    id: Any
    score: float
    text: str | None
    source: dict = field(default_factory=dict)
    also: list[dict] = field(default_factory=list)  # identical passages collapsed into this one


def collapse_identical(hits: list[Hit]) -> list[Hit]:
    """One hit per distinct passage text (whitespace aside), the best-ranked one; the ids and
    sources of the identical passages it stands for go to its `also`. Hits without text are
    kept as they are."""
    out: list[Hit] = []
    first: dict[str, Hit] = {}
    for hit in hits:
        key = " ".join(hit.text.split()) if hit.text else None
        if key is None or key not in first:
            out.append(hit)
            if key is not None:
                first[key] = hit
        else:
            first[key].also.append({"id": hit.id, **hit.source})
    return out


class Index:
    """An open vector index: its metadata, and nearest neighbours of a vector."""

    meta: dict
    columns: list[str]
    where: str

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def id_column(self) -> str:
        return self.meta.get("id_column", "_id")

    @property
    def text_column(self) -> str | None:
        from .io.vectors import text_column_of

        return text_column_of(self.meta, self.columns)

    def _wanted(self) -> list[str]:
        wanted = [self.id_column]
        text = self.text_column
        if text:
            wanted.append(text)
        wanted += [c for c in (*SOURCE_COLUMNS, "_parent_id")
                   if c in self.columns and c not in wanted]
        return wanted

    def _hit(self, row: dict, score: float) -> Hit:
        text = self.text_column
        source = {c: row[c] for c in (*SOURCE_COLUMNS, "_parent_id")
                  if c in row and c != text and row[c] is not None}
        return Hit(row[self.id_column], float(score), row.get(text) if text else None, source)

    def search(self, vector: Any, k: int, text: str | None = None) -> list[Hit]:
        """The k nearest rows of `vector`; with `text`, hybrid (vector + full text)."""
        raise NotImplementedError

    def search_distinct(self, vector: Any, k: int, text: str | None = None) -> list[Hit]:
        """The k nearest distinct passages: identical texts (the same chunk indexed from
        several pages) collapse into one hit that lists the others in `also`. Searches
        deeper until k distinct passages are found or the index has no more."""
        depth = k
        while True:
            hits = self.search(vector, depth, text=text)
            distinct = collapse_identical(hits)
            if len(distinct) >= k or len(hits) < depth or depth >= _MAX_DEPTH:
                return distinct[:k]
            depth = min(depth * 4, _MAX_DEPTH)

    def close(self) -> None:
        pass


class LanceIndex(Index):
    def __init__(self, path: str, table: str | None):
        from .io.lancedb import import_lancedb, read_meta

        db_path, table = _lance_location(path, table)
        db = import_lancedb().connect(db_path)
        self.where = f"LanceDB table {table!r} at {db_path}"
        try:
            self.table = db.open_table(table)
        except (FileNotFoundError, ValueError) as exc:
            raise PipelineError(f"cannot open {self.where}: {exc}") from None
        schema = self.table.schema
        self.columns = list(schema.names)
        vector = next((f.name for f in schema if f.metadata and b"datamill" in f.metadata),
                      "embedding")
        self.meta = read_meta(schema, vector) or {"vector_column": vector}
        if "dim" not in self.meta and vector in self.columns:
            self.meta["dim"] = schema.field(vector).type.list_size

    def search(self, vector: Any, k: int, text: str | None = None) -> list[Hit]:
        vc = self.meta.get("vector_column", "embedding")
        metric = self.meta.get("metric", "cosine")
        if text is not None:
            fts = [i for i in self.table.list_indices() if i.index_type == "FTS"]
            if not fts:
                raise PipelineError(f"{self.where} has no full-text index for hybrid search; "
                                    "write it with fts_column=")
            query = self.table.search(query_type="hybrid", vector_column_name=vc) \
                .vector(vector).text(text).distance_type(metric)
            rows = query.limit(k).select(self._wanted()).to_arrow().to_pylist()
            return [self._hit(r, r["_relevance_score"]) for r in rows]
        rows = self.table.search(vector, vector_column_name=vc).distance_type(metric) \
            .limit(k).select([*self._wanted(), "_distance"]).to_arrow().to_pylist()
        sign = -1.0 if metric == "l2" else 1.0
        return [self._hit(r, (1.0 - r["_distance"]) if sign > 0 else -r["_distance"])
                for r in rows]


def _lance_location(path: str, table: str | None) -> tuple[str, str]:
    """(database, table) from `db`, `db/table` or `db/table.lance`."""
    from .io.lancedb import import_lancedb

    path = path.rstrip("/")
    if table:
        return path, table
    if path.endswith(".lance"):
        return os.path.dirname(path) or ".", os.path.basename(path)[:-6]
    parent, name = os.path.split(path)
    if "://" not in path and os.path.isdir(path + ".lance"):
        return parent or ".", name
    if "://" not in path and not os.path.isdir(path):
        raise PipelineError(f"no LanceDB database or table at {path}")
    listed = import_lancedb().connect(path).list_tables()
    names = list(getattr(listed, "tables", listed))  # the first page is enough here
    if len(names) != 1:
        raise PipelineError(f"{path} holds {len(names)} tables ({', '.join(names) or 'none'}); "
                            "name one: DB/TABLE")
    return path, names[0]


class PgIndex(Index):
    def __init__(self, url: str, table: str | None):
        from .io.pgvector import SIDE_TABLE, connect, import_psycopg, server_name

        psycopg = import_psycopg()
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        table = table or query.pop("table", None)
        url = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            self.conn = connect(url)
            rows = self.conn.execute(f"SELECT name, meta FROM {SIDE_TABLE}").fetchall()
        except psycopg.Error as exc:
            raise PipelineError(f"cannot read the vector tables of PostgreSQL "
                                f"{server_name(url)}: {' '.join(str(exc).split())}") from None
        tables = {name: meta for name, meta in rows}
        if table is None and len(tables) == 1:
            table = next(iter(tables))
        if table not in tables:
            raise PipelineError(f"PostgreSQL {server_name(url)} has no vector table "
                                f"{table!r} (tables: {', '.join(sorted(tables)) or 'none'}); "
                                "pass ?table=NAME")
        self.name = table
        self.meta = tables[table]
        self.where = f"PostgreSQL {server_name(url)}, table {table!r}"
        self.columns = [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped", (table,)).fetchall()]

    def search(self, vector: Any, k: int, text: str | None = None) -> list[Hit]:
        from psycopg import sql

        from .io.pgvector import OPERATORS

        metric = self.meta.get("metric", "cosine")
        op = sql.SQL(OPERATORS[metric][0])
        vec = "[" + ",".join(repr(float(x)) for x in vector) + "]"
        cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c))
                                  for c in self._wanted())
        table = sql.Identifier(self.name)
        distance = sql.SQL("{} {} %(q)s::vector").format(
            sql.Identifier(self.meta["vector_column"]), op)
        if text is None:
            query = sql.SQL("SELECT {}, {} AS _distance FROM {} t ORDER BY _distance LIMIT %(k)s"
                            ).format(cols, distance, table)
            cur = self.conn.execute(query, {"q": vec, "k": k})
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            return [self._hit(r, (1.0 - r["_distance"]) if metric == "cosine"
                              else -r["_distance"]) for r in rows]
        fts = self.meta.get("fts_column")
        if not fts:
            raise PipelineError(f"{self.where} has no full-text column for hybrid search; "
                                "write it with fts_column=")
        doc = sql.SQL("to_tsvector(%(cfg)s::regconfig, {})").format(sql.Identifier(fts))
        tsq = sql.SQL("plainto_tsquery(%(cfg)s::regconfig, %(text)s)")
        idc = sql.Identifier(self.id_column)
        query = sql.SQL(
            "WITH v AS (SELECT {id} AS _hid, row_number() OVER (ORDER BY {dist}) AS r FROM {t} "
            "ORDER BY {dist} LIMIT %(n)s), "
            "f AS (SELECT {id} AS _hid, row_number() OVER (ORDER BY ts_rank_cd({doc}, {tsq}) DESC)"
            " AS r FROM {t} WHERE {doc} @@ {tsq} ORDER BY ts_rank_cd({doc}, {tsq}) DESC "
            "LIMIT %(n)s) "
            "SELECT {cols}, coalesce(1.0 / ({rrf} + v.r), 0) + coalesce(1.0 / ({rrf} + f.r), 0)"
            " AS _score FROM v FULL JOIN f USING (_hid) JOIN {t} t ON t.{id} = _hid "
            "ORDER BY _score DESC LIMIT %(k)s").format(
            id=idc, dist=distance, t=table, doc=doc, tsq=tsq, cols=cols,
            rrf=sql.Literal(RRF_K))
        cur = self.conn.execute(query, {"q": vec, "k": k, "n": max(k * 4, 20), "text": text,
                                        "cfg": self.meta.get("fts_language", "english")})
        names = [d.name for d in cur.description]
        return [self._hit(dict(zip(names, r)), float(r[-1])) for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


def open_index(spec: str, table: str | None = None) -> Index:
    """A LanceDB database/table path or URI, or a postgresql:// URL (`?table=NAME`)."""
    if spec.startswith(("postgresql://", "postgres://")):
        return PgIndex(spec, table)
    return LanceIndex(spec, table)


class Encoder:
    """Embeds queries like the index's vectors were embedded (model, normalization)."""

    def __init__(self, meta: dict, model: str | None = None, where: str = "the index"):
        name = model or meta.get("model")
        by = meta.get("embedded_by", {}).get("operation")
        if not name:
            raise PipelineError(f"{where} records no embedding model (its vectors came from "
                                f"{by or 'an unknown step'}); pass the model to use")
        self.name = name
        if by in CLIP_SPACE:
            self._clip(meta, name, where, by)
            return
        from .ops.embed import embedding_dim, local_model_dir

        try:
            folder = local_model_dir(name)
            dim = embedding_dim(folder)
        except (FileNotFoundError, ValueError) as exc:
            raise PipelineError(f"query model: {exc}") from None
        if meta.get("dim") and dim != int(meta["dim"]):
            raise PipelineError(f"model {name!r} embeds into {dim} dimensions but {where} "
                                f"holds vectors of {meta['dim']}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError("searching needs sentence-transformers: "
                              "pip install 'datamill[embed]'") from None
        self.normalize = bool(meta.get("normalize", False))
        with contextlib.suppress(Exception):  # no "Loading weights" bar on the terminal
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(str(folder), local_files_only=True)

    def _clip(self, meta: dict, name: str, where: str, by: str) -> None:
        """Queries through the text tower of the CLIP-like model that embedded the index's
        images (or texts): text and images share its space."""
        from .ops.image.models import find_model, load_encoder, pick_device, pick_dtype

        try:
            ref = find_model(name, meta.get("backend", "auto"), meta.get("weights"))
        except (FileNotFoundError, ValueError) as exc:
            raise PipelineError(f"query model: {exc}") from None
        if ref.backend not in ("clip", "open_clip"):
            raise PipelineError(f"{where} holds embeddings of {by} with {name!r} "
                                f"({ref.backend}), which has no text tower: text queries need "
                                "a CLIP-like model")
        if meta.get("dim") and ref.dim != int(meta["dim"]):
            raise PipelineError(f"model {name!r} embeds into {ref.dim} dimensions but {where} "
                                f"holds vectors of {meta['dim']}")
        device = pick_device("auto")
        self.clip = load_encoder(ref, device, pick_dtype("float32", device))
        self.normalize = bool(meta.get("normalize", True))

    def __call__(self, texts: list[str]) -> Any:
        if hasattr(self, "clip"):
            import numpy as np
            import torch

            with torch.inference_mode():
                vectors = self.clip.texts(texts)
            if self.normalize:
                vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True),
                                               1e-12)
            return vectors
        return self.model.encode(texts, normalize_embeddings=self.normalize,
                                 convert_to_numpy=True, show_progress_bar=False)


def search(spec: str, query: str, k: int = 5, *, hybrid: bool = False,
           model: str | None = None, table: str | None = None,
           distinct: bool = True) -> list[Hit]:
    """The k passages of the index nearest to `query` (best first). With `distinct`
    (default), identical passages count once: see `Index.search_distinct`."""
    index = open_index(spec, table)
    try:
        encoder = Encoder(index.meta, model, index.where)
        vector = encoder([query])[0]
        find = index.search_distinct if distinct else index.search
        return find(vector, k, text=query if hybrid else None)
    finally:
        index.close()


def format_hits(hits: list[Hit], width: int = 300) -> str:
    """Numbered hits: score, id and source columns, then the passage (shortened)."""
    lines = []
    for n, hit in enumerate(hits, 1):
        source = "".join(f"  {k}={v}" for k, v in hit.source.items())
        lines.append(f"{n:>2}. {hit.score:.4f}  id={hit.id}{source}")
        text = _shorten(" ".join((hit.text or "").split()), width)
        if text:
            lines.append(f"    {text}")
        if hit.also:
            where = [next((f"{k}={v}" for k, v in a.items() if k != "id"), f"id={a['id']}")
                     for a in hit.also]
            lines.append(f"    also in {len(where)} more: " + _shorten(", ".join(where), width))
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "\u2026"
