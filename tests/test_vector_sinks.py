"""Vector sinks: LanceDB (embedded) and PostgreSQL + pgvector (a real server on loopback).

Vectors here are synthetic (a seeded hash of the text) so that the sinks are tested fast;
tests/test_search.py embeds with the real model.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import datamill as dm
from datamill import Arguments, Field, MapOperation
from datamill.errors import SchemaError, StorageError
from datamill.io.lancedb import open_table, read_meta
from datamill.io.pgvector import WritePgVector

from . import pg_server

STORES = ["lancedb", "pgvector"]


class FakeEmbedArgs(Arguments):
    dim: int = Field(8)


class FakeEmbed(MapOperation):
    """Deterministic pseudo-embeddings of `text` (tests only)."""

    name = "test_fake_embed"
    Args = FakeEmbedArgs
    consumes = {"text": "string"}

    def resolve_produces(self, schema: dict) -> dict:
        return {"embedding": pa.list_(pa.float32(), self.args.dim)}

    def process(self, batch: Any) -> Any:
        dim = self.args.dim
        rows = [np.random.default_rng(zlib.crc32(t.encode())).random(dim, dtype=np.float32)
                for t in batch["text"].to_pylist()]
        flat = np.concatenate(rows) if rows else np.zeros(0, np.float32)
        return {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)}


@pytest.fixture(scope="module")
def pg() -> pg_server.PgServer:
    try:
        return pg_server.server()
    except Exception as exc:  # a clear failure, never a skip
        pytest.fail(f"cannot start the PostgreSQL test server: {exc}")


def write_docs(folder: Path, files: int, rows: int, upper: int | None = None) -> str:
    """`files` JSONL files of `rows` documents; ids depend on (file, line) only. `upper`
    upper-cases the text of that row of each file (same length: same ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    for f in range(files):
        with open(folder / f"part{f:02d}.jsonl", "w", encoding="utf-8") as fh:
            for r in range(rows):
                text = f"document {f}-{r} about topic {r % 5}"
                if r == upper:
                    text = text.upper()
                fh.write(json.dumps({"text": text, "url": f"https://example.org/{f}/{r}",
                                     "title": f"Doc {f}.{r}"}) + "\n")
    return str(folder / "*.jsonl")


class Store:
    """Write to and read back from one kind of vector store."""

    def __init__(self, kind: str, tmp_path: Path, pg: pg_server.PgServer | None):
        self.kind = kind
        self.tmp = tmp_path
        self.runs = 0
        self.table = f"t_{tmp_path.name.lower().replace('-', '_')}"[:60]
        self.target = str(tmp_path / "db") if kind == "lancedb" else pg.url
        self.url = pg.url if pg else None

    def write(self, docs: str, workers: int = 2, dim: int = 8, **args: Any) -> dm.Dataset:
        ds = dm.Dataset.read(docs).apply(FakeEmbed, dim=dim)
        return ds.write(self.target, format=self.kind, table=self.table, **args)

    def run(self, docs: str, **args: Any) -> dm.RunResult:
        self.runs += 1  # a fresh workdir: the sink really writes again
        workers = args.pop("workers", 2)
        return self.write(docs, **args).run(self.tmp / f"work{self.runs}", workers=workers,
                                            progress=False)

    def rows(self) -> list[dict]:
        if self.kind == "lancedb":
            return open_table(self.target, self.table).to_arrow().to_pylist()
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            return conn.execute(f"SELECT * FROM {self.table}").fetchall()

    def meta(self) -> dict:
        if self.kind == "lancedb":
            return read_meta(open_table(self.target, self.table).schema, "embedding")
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT meta FROM datamill_vector_tables WHERE name = %s",
                                (self.table,)).fetchone()[0]

    def has_ann_index(self) -> bool:
        if self.kind == "lancedb":
            return any(i.columns == ["embedding"]
                       for i in open_table(self.target, self.table).list_indices())
        import psycopg

        with psycopg.connect(self.url) as conn:
            defs = [r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (self.table,))]
        return any("USING hnsw" in d for d in defs)


@pytest.fixture(params=STORES)
def store(request, tmp_path: Path) -> Store:
    server = request.getfixturevalue("pg") if request.param == "pgvector" else None
    return Store(request.param, tmp_path, server)


def test_rerun_does_not_duplicate_and_metadata_travels(store: Store, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "in", files=3, rows=20)
    store.run(docs)
    first = store.rows()
    store.run(docs)
    rows = store.rows()
    assert len(first) == len(rows) == 60
    assert len({r["_id"] for r in rows}) == 60
    by_id = {r["_id"]: r for r in rows}
    some = by_id[min(by_id)]
    assert some["url"] == "https://example.org/0/0" and some["title"] == "Doc 0.0"
    assert some["text"] == "document 0-0 about topic 0"
    expected = np.random.default_rng(zlib.crc32(b"document 0-0 about topic 0")).random(
        8, dtype=np.float32)
    got = some["embedding"]
    got = json.loads(got) if isinstance(got, str) else got  # pgvector's text form
    assert np.allclose(np.asarray(got, np.float32), expected, atol=1e-6)
    meta = store.meta()
    assert meta["dim"] == 8 and meta["metric"] == "cosine" and meta["text_column"] == "text"
    assert meta["embedded_by"] == {"step": "test_fake_embed", "operation": "test_fake_embed"}


def test_upsert_updates_and_delete_missing_removes(store: Store, tmp_path: Path) -> None:
    store.run(write_docs(tmp_path / "in", files=3, rows=10))
    # the last file disappears upstream and row 2 of each file changes
    docs = write_docs(tmp_path / "in", files=2, rows=10, upper=2)
    store.run(docs)
    rows = store.rows()
    assert len(rows) == 30  # upsert alone keeps the vanished file's rows
    assert sum(r["text"].isupper() for r in rows) == 2
    store.run(docs, delete_missing=True)
    rows = store.rows()
    assert len(rows) == 20 and len({r["_id"] for r in rows}) == 20
    assert {r["url"].split("/")[3] for r in rows} == {"0", "1"}
    assert sum(r["text"].isupper() for r in rows) == 2


def test_a_dropped_table_is_written_again_by_the_cached_pipeline(store: Store,
                                                                 tmp_path: Path) -> None:
    ds = store.write(write_docs(tmp_path / "in", files=2, rows=5))
    ds.run(tmp_path / "w", workers=2, progress=False)
    assert ds.step.key in ds.run(tmp_path / "w", workers=2, progress=False).cached
    if store.kind == "lancedb":
        import lancedb

        lancedb.connect(store.target).drop_table(store.table)
    else:
        import psycopg

        with psycopg.connect(store.url) as conn:
            conn.execute(f"DROP TABLE {store.table}")
    assert ds.step.key not in ds.run(tmp_path / "w", workers=2, progress=False).cached
    assert len(store.rows()) == 10


def test_ann_index_is_built_from_the_threshold(store: Store, tmp_path: Path) -> None:
    store.run(write_docs(tmp_path / "in", files=2, rows=40), index_min_rows=100)
    assert not store.has_ann_index()
    store.run(write_docs(tmp_path / "in", files=3, rows=40), index_min_rows=100)
    assert store.has_ann_index()


def test_dimension_mismatch_is_refused_before_running(store: Store, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "in", files=1, rows=5)
    store.run(docs)
    with pytest.raises(SchemaError, match=r"holds vectors of 8 dimensions but this pipeline "
                                          r"writes 16") as err:
        store.write(docs, dim=16)  # building the pipeline is enough
    assert f"{store.table!r}" in str(err.value)
    assert len(store.rows()) == 5
    store.run(docs, dim=16, mode="overwrite")  # replacing the table is allowed
    assert store.meta()["dim"] == 16 and len(store.rows()) == 5


def test_lancedb_refuses_other_columns_before_running(tmp_path: Path) -> None:
    store = Store("lancedb", tmp_path, None)
    docs = write_docs(tmp_path / "in", files=1, rows=3)
    store.run(docs)
    with pytest.raises(SchemaError, match=r"has other columns than this pipeline writes "
                                          r"\(differing: title\)"):
        dm.Dataset.read(docs).apply(FakeEmbed).drop("title").write(
            store.target, format="lancedb", table=store.table)


def test_rows_without_vector_are_not_written(store: Store, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "in", files=1, rows=6)

    def hollow(batch):  # null vectors for odd rows
        emb = batch["embedding"]
        mask = pa.array([i % 2 == 1 for i in range(len(emb))])
        return {"embedding": pa.FixedSizeListArray.from_arrays(
            pa.concat_arrays([c.flatten() for c in emb.chunks]) if emb.num_chunks
            else pa.array([], pa.float32()), 8, mask=mask)}

    ds = dm.Dataset.read(docs).apply(FakeEmbed).map(
        hollow, produces={"embedding": pa.list_(pa.float32(), 8)}, overwrite=True)
    ds.write(store.target, format=store.kind, table=store.table).run(
        tmp_path / "w", workers=1, progress=False)
    assert len(store.rows()) == 3


def test_vector_column_must_be_fixed_size_float32(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "in", files=1, rows=2)
    with pytest.raises(SchemaError, match=r"vector column 'embedding' is missing \(columns: "
                                          r"text, title, url\)"):
        dm.Dataset.read(docs).write(str(tmp_path / "db"), format="lancedb")
    with pytest.raises(SchemaError, match="must be fixed_size_list<float32>"):
        dm.Dataset.read(docs).write(str(tmp_path / "db"), format="lancedb",
                                    vector_column="text")


def test_postgresql_url_picks_the_pgvector_sink(pg: pg_server.PgServer) -> None:
    from datamill.formats import resolve_sink

    assert resolve_sink(pg.url, None, {}).name == "write_pgvector"
    assert resolve_sink("/tmp/x", "lancedb", {}).name == "write_lancedb"


def killing_sink(url: str, table: str, kill_at: int, **args: Any) -> WritePgVector:
    """write_pgvector whose partition `kill_at` takes the server away mid-transaction (after
    its rows are copied, before they are committed), once."""
    sink = WritePgVector(path=url, table=table, **args)
    open_partition = sink.open_partition
    killed: list[bool] = []

    def open_and_kill(index: int) -> Any:
        writer = open_partition(index)
        close = writer.close

        def close_after_kill() -> list[dict]:
            if index == kill_at and not killed:
                killed.append(True)
                pg_server.server().kill()
            return close()

        writer.close = close_after_kill
        return writer

    sink.open_partition = open_and_kill
    return sink


@pytest.mark.parametrize("delete_missing", [False, True])
def test_server_killed_mid_write_then_rerun_completes_without_duplicates(
        pg: pg_server.PgServer, tmp_path: Path, delete_missing: bool) -> None:
    # with delete_missing, the rows that the first attempt committed must survive the resume
    table = f"killed_{int(delete_missing)}"
    docs = write_docs(tmp_path / "in", files=8, rows=25)
    sink = killing_sink(pg.url, table, kill_at=3, delete_missing=delete_missing)
    ds = dm.Dataset.read(docs).apply(FakeEmbed).write(sink)
    with pytest.raises(StorageError) as err:
        ds.run(tmp_path / "w", workers=1, progress=False)
    message = str(err.value)
    assert "write_pgvector" in message and f"127.0.0.1:{pg.port}/postgres" in message
    assert f"table {table!r}" in message and "partition 3" in message
    pg_server.server()  # the server comes back
    store = Store("pgvector", tmp_path, pg)
    store.table = table
    assert len(store.rows()) == 3 * 25  # partitions 0-2 committed, 3 rolled back
    ds.run(tmp_path / "w", workers=1, progress=False)  # resumes from partition 3
    rows = store.rows()
    assert len(rows) == 8 * 25 and len({r["_id"] for r in rows}) == 8 * 25
    assert store.meta()["commit"] == ds.step.key
    import psycopg

    with psycopg.connect(pg.url) as conn:  # one run, resumed: one generation
        assert conn.execute("SELECT generation, pending FROM datamill_vector_tables WHERE "
                            "name = %s", (table,)).fetchone() == (1, 1)


def test_lancedb_table_written_by_another_workdirs_run_is_refused(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    from datamill.io.lancedb import STAGING
    from datamill.io.sink import claim_folder

    lance = Store("lancedb", tmp_path, None)
    docs = write_docs(tmp_path / "docs", files=2, rows=20)
    staging = str(tmp_path / "db" / STAGING / lance.table)
    with claim_folder(LocalFileSystem(), staging, "the table", tmp_path / "other-work"), \
            pytest.raises(dm.OutputBusyError, match="other-work"):
        lance.run(docs)  # the other run holds the table's staging folder
    lance.run(docs)  # it is gone: this one writes
    assert len(lance.rows()) == 40
