"""write_pgvector: vectors and their metadata into a PostgreSQL table with pgvector.

Each partition is one transaction: its rows are copied into a temporary table and upserted
(`INSERT ... ON CONFLICT (id) DO UPDATE`), so a partition is in the table whole or not at
all, and a re-run (after a failure, or of a changed pipeline) updates rows instead of adding
them. Every row written by a run is stamped with the run's generation; `delete_missing`
deletes, at the end, the rows of older generations. The side table `datamill_vector_tables`
holds each table's generation and the embedding model that `datamill search` uses.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ..errors import StorageError
from ..operation import SinkOperation
from .vectors import (
    VectorSinkArgs,
    check_columns,
    dim_mismatch,
    embedding_meta,
    text_column_of,
)

SIDE_TABLE = "datamill_vector_tables"
SEEN_SUFFIX = "_datamill_seen"  # TABLE_datamill_seen(id, generation): ids a run wrote
OPERATORS = {"cosine": ("<=>", "vector_cosine_ops"), "l2": ("<->", "vector_l2_ops"),
             "dot": ("<#>", "vector_ip_ops")}


def import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ImportError("write_pgvector needs psycopg: pip install 'datamill[pgvector]'") \
            from None
    return psycopg


def server_name(url: str) -> str:
    """host:port/database of a connection URL, without credentials."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a malformed URL is reported by connect()
        return url.split("@")[-1]
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def connect(url: str, timeout: int = 10) -> Any:
    return import_psycopg().connect(url, connect_timeout=timeout)


def pg_type(typ: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(typ):
        return "bigint"
    if pa.types.is_floating(typ):
        return "double precision"
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_date(typ):
        return "date"
    if pa.types.is_timestamp(typ):
        return "timestamptz" if typ.tz else "timestamp"
    return "jsonb"  # lists, structs, maps, binary (base64 by json.dumps' default=str)


def vector_literals(column: Any) -> list:
    """'[x,y,...]' strings (pgvector's text form) of a fixed_size_list<float32> column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = column.type.list_size
    values = pc.cast(column.flatten(), pa.string())
    offsets = pa.array(range(0, len(values) + 1, dim), pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, values), ",")
    return pc.binary_join_element_wise("[", joined, "]", "").to_pylist()


def table_dim(conn: Any, table: str, column: str) -> int | None:
    """The declared size of a vector column (None: no such table or column)."""
    row = conn.execute(
        "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
        "AND a.attname = %s AND NOT a.attisdropped", (table, column)).fetchone()
    return row[0] if row and row[0] > 0 else None


class PgVectorArgs(VectorSinkArgs):
    path: str = Field(description="PostgreSQL connection URL: postgresql://user@host:port/db.")
    index: Literal["auto", "hnsw", "ivfflat", "none"] = Field(
        "auto", description="ANN index once the table has index_min_rows rows (auto: hnsw).")
    fts_column: str | None = Field(None, description="Text column to index (GIN on its "
                                                     "tsvector) for hybrid search.")
    fts_language: str = Field("english", description="Text search configuration.")


class WritePgVector(SinkOperation):
    """Write vectors and every other visible column into a PostgreSQL table (pgvector),
    idempotently: each partition is one transaction that upserts on `id_column`, so a re-run
    (after the server went away mid-write, say) completes without duplicates, and
    `delete_missing=True` removes rows whose ids are gone upstream. Rows with a null vector
    are not written. The embedding model (from the lineage of the vector column) is stored in
    the side table `datamill_vector_tables` for `datamill search` and `retrieve`. An HNSW (or
    IVFFlat) index is built once the table has `index_min_rows` rows, a GIN full-text index
    on `fts_column` when given. A table whose vectors have another size is refused. Needs
    `datamill[pgvector]` and the server's `vector` extension."""

    name = "write_pgvector"
    Args = PgVectorArgs
    private_columns = ("_id", "_parent_id")  # the engine passes these to the writer

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self._schema: dict = {}
        self._generation: int | None = None

    @property
    def server(self) -> str:
        return f"PostgreSQL {server_name(self.args.path)}, table {self.args.table!r}"

    def failure(self, what: str, exc: BaseException) -> StorageError:
        message = " ".join(str(exc).split())
        return StorageError(f"{self.name}: {what} ({self.server}): {type(exc).__name__}: "
                            f"{message}")

    def resolve_consumes(self, schema: dict) -> dict:
        a = self.args
        dim = check_columns(self.name, a, schema)
        self._schema = dict(schema)
        if a.mode == "upsert":
            psycopg = import_psycopg()
            try:
                with connect(a.path, timeout=3) as conn:
                    existing = table_dim(conn, a.table, a.vector_column)
            except psycopg.OperationalError:
                existing = None  # unreachable now: prepare() checks again before writing
            if existing is not None and existing != dim:
                raise dim_mismatch(self.name, self.server, existing, dim)
        return dict(schema)

    def _columns(self) -> dict[str, str]:
        """{column: SQL type} of the table this pipeline writes (id first)."""
        a = self.args
        cols = {a.id_column: "bigint"}
        if a.id_column == "_id":
            cols["_parent_id"] = "bigint"  # the source document of a chunk (null otherwise)
        for name, typ in self._schema.items():
            if name == a.vector_column:
                cols[name] = f"vector({typ.list_size})"
            elif name != a.id_column:
                cols[name] = pg_type(typ)
        return cols

    def prepare(self, fresh: bool = True) -> None:
        from psycopg import sql

        a = self.args
        psycopg = import_psycopg()
        cols = self._columns()
        dim = int(cols[a.vector_column][7:-1])
        table = sql.Identifier(a.table)
        seen = sql.Identifier(a.table + SEEN_SUFFIX)
        try:
            with connect(a.path) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, meta jsonb NOT NULL "
                    "DEFAULT '{{}}', generation bigint NOT NULL DEFAULT 0, pending bigint NOT "
                    "NULL DEFAULT 0)").format(sql.Identifier(SIDE_TABLE)))
                if a.mode == "overwrite" and fresh:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(seen))
                existing = table_dim(conn, a.table, a.vector_column)
                if existing is not None and existing != dim:
                    raise dim_mismatch(self.name, self.server, existing, dim)
                defs = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                        for c, t in cols.items()]
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))")
                             .format(table, sql.SQL(", ").join(defs),
                                     sql.Identifier(a.id_column)))
                if a.delete_missing:
                    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, "
                                         "generation bigint NOT NULL)").format(seen))
                for c, t in cols.items():  # columns added upstream since the table was made
                    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}")
                                 .format(table, sql.Identifier(c), sql.SQL(t)))
                side = sql.Identifier(SIDE_TABLE)
                conn.execute(sql.SQL("INSERT INTO {} (name) VALUES (%s) ON CONFLICT DO NOTHING")
                             .format(side), (a.table,))
                # a new generation, unless resuming a run that has not finished
                bump = "CASE WHEN %s OR generation = pending THEN " \
                    "greatest(generation, pending) + 1 ELSE pending END"
                self._generation = conn.execute(
                    sql.SQL("UPDATE {} SET pending = " + bump + " WHERE name = %s "
                            "RETURNING pending").format(side), (fresh, a.table)).fetchone()[0]
        except psycopg.Error as exc:
            raise self.failure("cannot prepare the table", exc) from exc

    def open_partition(self, index: int) -> _PgPartition:
        return _PgPartition(self, index)

    def outputs_ok(self, record: dict) -> bool:
        if "cache_key" not in record:  # a partition: committed by the run being resumed
            return all(o.get("generation") == self._generation
                       for o in record.get("outputs", []))
        try:
            with connect(self.args.path, timeout=3) as conn:
                row = conn.execute(f"SELECT meta->>'commit' FROM {SIDE_TABLE} WHERE name = %s "
                                   "AND to_regclass(%s) IS NOT NULL",
                                   (self.args.table, self.args.table)).fetchone()
        except Exception:  # noqa: BLE001 - unreachable or no side table: not written
            return False
        return bool(row) and row[0] == record["cache_key"]

    def finalize(self, record: dict, lineage: dict) -> None:
        from psycopg import sql

        a = self.args
        psycopg = import_psycopg()
        table = sql.Identifier(a.table)
        cols = self._columns()
        meta = embedding_meta(lineage, a.vector_column, int(cols[a.vector_column][7:-1]),
                              a.metric)
        if meta.get("text_column") not in cols:
            meta["text_column"] = text_column_of(meta, list(cols))
        meta.update(id_column=a.id_column, commit=record.get("cache_key"),
                    fts_column=a.fts_column, fts_language=a.fts_language)
        try:
            with connect(a.path) as conn:
                if a.delete_missing:
                    seen = sql.Identifier(a.table + SEEN_SUFFIX)
                    conn.execute(sql.SQL(
                        "DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE s.id = "
                        "t.{} AND s.generation = %(g)s)").format(
                        table, seen, sql.Identifier(a.id_column)), {"g": self._generation})
                    conn.execute(sql.SQL("DELETE FROM {} WHERE generation <> %s").format(seen),
                                 (self._generation,))
                rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)
                                    ).fetchone()[0]
                if a.index != "none" and rows >= a.index_min_rows:
                    method = "ivfflat" if a.index == "ivfflat" else "hnsw"
                    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({} {})")
                                 .format(sql.Identifier(f"{a.table}_{a.vector_column}_ann"),
                                         table, sql.SQL(method),
                                         sql.Identifier(a.vector_column),
                                         sql.SQL(OPERATORS[a.metric][1])))
                if a.fts_column:
                    conn.execute(sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING gin "
                        "(to_tsvector({}::regconfig, {}))").format(
                        sql.Identifier(f"{a.table}_{a.fts_column}_fts"), table,
                        sql.Literal(a.fts_language), sql.Identifier(a.fts_column)))
                conn.execute(sql.SQL("UPDATE {} SET generation = pending, meta = %s "
                                     "WHERE name = %s").format(sql.Identifier(SIDE_TABLE)),
                             (json.dumps(meta), a.table))
        except psycopg.Error as exc:
            raise self.failure("cannot finish the write", exc) from exc


class _PgPartition:
    """One partition: rows copied into a temporary table, upserted and committed on close."""

    def __init__(self, sink: WritePgVector, index: int):
        self.sink = sink
        self.index = index
        self.conn = None
        self.columns: list[str] = []
        self.rows = 0

    def _start(self, names: list[str]) -> None:
        from psycopg import sql

        self.conn = connect(self.sink.args.path)
        self.columns = names
        self.conn.execute(sql.SQL("CREATE TEMP TABLE datamill_stage ON COMMIT DROP AS "
                                  "SELECT {} FROM {} WITH NO DATA").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(self.sink.args.table)))

    def write(self, table: Any) -> None:
        import pyarrow as pa
        from psycopg import sql

        sink = self.sink
        psycopg = import_psycopg()
        table = table.filter(table[sink.args.vector_column].is_valid())
        names = [c for c in table.schema.names if c in sink._columns()]
        try:
            if self.conn is None:
                self._start(names)
            columns = []
            for name in names:
                col = table[name]
                if name == sink.args.vector_column:
                    columns.append(vector_literals(col))
                elif pg_type(col.type) == "jsonb":
                    columns.append([None if v is None else json.dumps(v, default=str)
                                    for v in col.to_pylist()])
                else:
                    columns.append(col.to_pylist())
            statement = sql.SQL("COPY datamill_stage ({}) FROM STDIN").format(
                sql.SQL(", ").join(map(sql.Identifier, names)))
            with self.conn.cursor() as cur, cur.copy(statement) as copy:
                for row in zip(*columns):
                    copy.write_row(row)
            self.rows += table.num_rows
        except (psycopg.Error, pa.ArrowException) as exc:
            self.abort()
            raise sink.failure(f"cannot write partition {self.index}", exc) from exc

    def close(self) -> list[dict]:
        from psycopg import sql

        if self.conn is None:
            return []
        sink = self.sink
        psycopg = import_psycopg()
        id_col = sink.args.id_column
        names = [sql.Identifier(c) for c in self.columns]
        table = sql.Identifier(sink.args.table)
        values = [c for c in names if c != sql.Identifier(id_col)]
        upsert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM datamill_stage ON CONFLICT ({}) "
                         ).format(table, sql.SQL(", ").join(names), sql.SQL(", ").join(names),
                                  sql.Identifier(id_col))
        if values:  # identical rows are left as they are: no new tuple, no index update
            upsert += sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(c, c) for c in values),
                sql.SQL(", ").join(sql.SQL("{}.{}").format(table, c) for c in values),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in values))
        else:
            upsert += sql.SQL("DO NOTHING")
        try:
            self.conn.execute(upsert)
            if sink.args.delete_missing:  # remember the ids this run wrote
                self.conn.execute(sql.SQL(
                    "INSERT INTO {} (id, generation) SELECT {}, %s FROM datamill_stage "
                    "ON CONFLICT (id) DO UPDATE SET generation = EXCLUDED.generation").format(
                    sql.Identifier(sink.args.table + SEEN_SUFFIX), sql.Identifier(id_col)),
                    (sink._generation,))
            self.conn.commit()
            self.conn.close()
        except psycopg.Error as exc:
            self.abort()
            raise sink.failure(f"cannot commit partition {self.index}", exc) from exc
        self.conn = None
        return [{"table": sink.args.table, "partition": self.index, "rows": self.rows,
                 "generation": sink._generation}]

    def abort(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # an open transaction is rolled back
            except Exception:  # noqa: BLE001 - the server may be gone already
                pass
        self.conn = None

