"""write_lancedb: vectors and their metadata into a LanceDB table (embedded: no server).

Partitions are written in parallel as Parquet files staged beside the table; once every
partition is committed, the driver merges them into the table in one `merge_insert` on the id
column, so a re-run updates rows instead of adding them, and `delete_missing` removes, in the
same commit, the rows whose ids are gone upstream. Then it records the embedding model (from
the lineage of the vector column) in the vector field's metadata, builds the ANN index once the
table reaches `index_min_rows`, and the full-text index when asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import Any, Literal

from pydantic import Field

from ..errors import PipelineError, SchemaError, StorageError
from ..image_type import storage
from ..operation import SinkOperation
from .sink import WRITER, claim_folder
from .vectors import (
    VectorSinkArgs,
    check_columns,
    dim_mismatch,
    embedding_meta,
    text_column_of,
    vector_dim,
)

META_KEY = "datamill"  # vector field metadata: model, dim, metric, text column, commit
STAGING = "_datamill_staging"
ROW_HASH = "_datamill_hash"  # of a row's values: unchanged rows are not rewritten


# --- LanceDB --------------------------------------------------------------------------------
def import_lancedb() -> Any:
    import warnings

    try:
        import lancedb
    except ImportError:
        raise ImportError("write_lancedb needs lancedb: pip install 'datamill[lancedb]'") \
            from None
    # Once imported, lancedb warns at every fork. The workers forked after it never use the
    # driver's LanceDB state: the sink stages Parquet files there, and `retrieve` opens its
    # own connection in each worker.
    warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
    return lancedb


def _exists(path: str, table: str) -> bool:
    if "://" not in path:
        return os.path.isdir(os.path.join(path, f"{table}.lance"))
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(path)
    return fs.exists(f"{root.rstrip('/')}/{table}.lance")


def open_table(path: str, table: str) -> Any | None:
    """The LanceDB table, or None when it does not exist."""
    if not _exists(path, table):
        return None
    return import_lancedb().connect(path).open_table(table)


def read_meta(schema: Any, vector_column: str) -> dict:
    field = schema.field(vector_column) if vector_column in schema.names else None
    raw = (field.metadata or {}).get(META_KEY.encode()) if field is not None else None
    return json.loads(raw) if raw else {}


def row_hashes(table: Any, id_column: str) -> Any:
    """A 64-bit hash of each row's values (the id aside), to skip rewriting unchanged rows."""
    import hashlib

    import numpy as np
    import pyarrow as pa

    columns = [c for c in table.schema.names if c != id_column]
    parts = []
    for name in columns:
        col = table[name]
        if pa.types.is_fixed_size_list(col.type):
            flat = np.asarray(col.combine_chunks().flatten().to_numpy(zero_copy_only=False))
            parts.append([r.tobytes() for r in flat.reshape(len(col), -1)])
        elif _binary(col.type):  # image bytes: hashed as they are
            parts.append([b"\x00" if v is None else b"\x01" + v
                          for v in storage(col).to_pylist()])
        else:
            parts.append([json.dumps(v, default=str).encode() for v in col.to_pylist()])
    digests = [int.from_bytes(hashlib.blake2b(b"\x1f".join(row), digest_size=8).digest(),
                              "little", signed=True) for row in zip(*parts)]
    return pa.array(digests if columns else [0] * table.num_rows, pa.int64())


def _binary(typ: Any) -> bool:
    import pyarrow as pa

    typ = getattr(typ, "storage_type", typ)  # the image type: binary underneath
    return pa.types.is_binary(typ) or pa.types.is_large_binary(typ)


class LanceDBArgs(VectorSinkArgs):
    path: str = Field(description="LanceDB database URI: a directory or an object-store URL.")
    index: Literal["auto", "ivf_hnsw_sq", "ivf_pq", "none"] = Field(
        "auto", description="ANN index once the table has index_min_rows rows (auto: "
                            "ivf_hnsw_sq).")
    fts_column: str | None = Field(None, description="Text column to index for full-text and "
                                                     "hybrid search.")


class WriteLanceDB(SinkOperation):
    """Write vectors and every other visible column into a LanceDB table, idempotently:
    rows are merged on `id_column` (`_id` by default), so re-running a pipeline never
    duplicates vectors, and `delete_missing=True` also removes rows whose ids are gone
    upstream. Rows with a null vector are not written. The embedding model (from the lineage
    of the vector column) is stored in the vector field's metadata, where `datamill search`
    and `retrieve` find it. An ANN index (IVF-HNSW-SQ or IVF-PQ) is built once the table has
    `index_min_rows` rows, a full-text index on `fts_column` when given. A table whose vectors
    have another size is refused when the pipeline is built. Needs `datamill[lancedb]`."""

    name = "write_lancedb"
    Args = LanceDBArgs
    private_columns = ("_id", "_parent_id")  # the engine passes these to the writer

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self._schema: dict = {}

    def resolve_consumes(self, schema: dict) -> dict:
        a = self.args
        dim = check_columns(self.name, a, schema)
        self._schema = dict(schema)
        self._check_existing(dim)
        return dict(schema)

    def _where(self) -> str:
        return f"LanceDB table {self.args.table!r} at {self.args.path}"

    def _check_existing(self, dim: int) -> None:
        if self.args.mode == "overwrite":
            return
        table = open_table(self.args.path, self.args.table)
        if table is None:
            return
        typ = table.schema.field(self.args.vector_column).type \
            if self.args.vector_column in table.schema.names else None
        existing = getattr(typ, "list_size", None)
        if existing is not None and existing != dim:
            raise dim_mismatch(self.name, self._where(), existing, dim)
        ours = {c for c in self._schema if not c.startswith("_")}
        theirs = {c for c in table.schema.names if not c.startswith("_")}
        if ours != theirs:
            raise SchemaError(f"{self._where()} has other columns than this pipeline writes "
                              f"(differing: {', '.join(sorted(ours ^ theirs))}); pass "
                              "mode='overwrite' to replace it", operation=self.name)

    # --- staging --------------------------------------------------------------------------
    @property
    def _staging(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(self.args.path)
        return fs, f"{root.rstrip('/')}/{STAGING}/{self.args.table}"

    def prepare(self, fresh: bool = True) -> None:
        import_lancedb()
        if self._schema:
            self._check_existing(vector_dim(self._schema, self.args.vector_column, self.name))
        fs, root = self._staging
        if fresh and fs.exists(root):
            for path in fs.ls(root, detail=False):
                if path.rsplit("/", 1)[-1] != WRITER:  # the claim stays held
                    fs.rm(path, recursive=True)
        fs.makedirs(root, exist_ok=True)

    def claim(self, workdir: Any) -> contextlib.AbstractContextManager[bool]:
        """Hold the staging folder for this run: another workdir's run writing the same
        table meanwhile is refused (it would replace what this one staged)."""
        fs, root = self._staging
        return claim_folder(fs, root, self._where(), workdir)

    def open_partition(self, index: int) -> _StagedPartition:
        return _StagedPartition(self, index)

    def outputs_ok(self, record: dict) -> bool:
        if "cache_key" not in record:  # a partition: its staged file is still there
            fs, root = self._staging
            return all(fs.exists(f"{root}/{o['file']}") for o in record.get("outputs", []))
        try:  # the step: the table holds this step's last commit
            table = open_table(self.args.path, self.args.table)
        except Exception:  # noqa: BLE001 - unreadable counts as missing
            return False
        return table is not None and read_meta(table.schema, self.args.vector_column).get(
            "commit") == record["cache_key"]

    # --- the merge ------------------------------------------------------------------------
    def finalize(self, record: dict, lineage: dict) -> None:
        try:
            self._merge(record, lineage)
        except (PipelineError, StorageError):
            raise
        except Exception as exc:
            raise StorageError(f"{self.name}: cannot write {self._where()}: "
                               f"{type(exc).__name__}: {exc}") from exc
        fs, root = self._staging
        with contextlib.suppress(Exception):
            fs.rm(root, recursive=True)

    def _staged_reader(self, record: dict) -> Any:
        import pyarrow.dataset as pads

        fs, root = self._staging
        files = [f"{root}/{o['file']}" for o in record.get("outputs", [])]
        if not files:
            return None
        return pads.dataset(files, format="parquet", filesystem=fs)

    def _empty_schema(self) -> Any:
        import pyarrow as pa

        fields = [(self.args.id_column, pa.int64())] if self.args.id_column == "_id" else []
        return pa.schema(fields + [(c, t) for c, t in self._schema.items()
                                   if not c.startswith("_")] + [(ROW_HASH, pa.int64())])

    def _merge(self, record: dict, lineage: dict) -> None:
        a = self.args
        db = import_lancedb().connect(a.path)
        staged = self._staged_reader(record)
        schema = staged.schema if staged is not None else self._empty_schema()
        dim = schema.field(a.vector_column).type.list_size
        meta = embedding_meta(lineage, a.vector_column, dim, a.metric)
        meta.update(id_column=a.id_column, commit=record.get("cache_key"),
                    written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if meta.get("text_column") not in schema.names:
            meta["text_column"] = text_column_of(meta, schema.names)
        data = staged.to_batches() if staged is not None else []
        table = open_table(a.path, a.table)
        changed = True
        if table is None or a.mode == "overwrite":
            import pyarrow as pa

            reader = pa.RecordBatchReader.from_batches(schema, data)
            table = db.create_table(a.table, reader, schema=schema, mode="overwrite")
        else:
            existing = table.schema.field(a.vector_column).type.list_size
            if existing != dim:
                raise dim_mismatch(self.name, self._where(), existing, dim)
            missing = sorted(set(schema.names) ^ set(table.schema.names))
            if missing:
                raise SchemaError(f"{self._where()} has other columns than this pipeline "
                                  f"writes (differing: {', '.join(missing)}); pass "
                                  "mode='overwrite' to replace it", operation=self.name)
            import pyarrow as pa

            reader = pa.RecordBatchReader.from_batches(schema, data)
            merge = table.merge_insert(a.id_column) \
                .when_matched_update_all(where=f"target.{ROW_HASH} != source.{ROW_HASH}") \
                .when_not_matched_insert_all()
            if a.delete_missing:
                merge = merge.when_not_matched_by_source_delete()
            result = merge.execute(reader)
            changed = bool(result.num_inserted_rows + result.num_updated_rows
                           + result.num_deleted_rows)
        self._build_indexes(table, changed)
        table.update_field_metadata(
            {"path": a.vector_column, "metadata": {META_KEY: json.dumps(meta)}})

    def _build_indexes(self, table: Any, changed: bool) -> None:
        from lancedb.index import FTS, IvfHnswSq, IvfPq

        a = self.args
        indexed = {tuple(i.columns) for i in table.list_indices()}
        if indexed and changed:
            table.optimize()  # adds the new and changed rows to the existing indexes
        if a.index != "none" and (a.vector_column,) not in indexed and \
                table.count_rows() >= a.index_min_rows:
            config = (IvfPq if a.index == "ivf_pq" else IvfHnswSq)(distance_type=a.metric)
            table.create_index(a.vector_column, config=config, replace=True)
        if a.fts_column and (a.fts_column,) not in indexed:
            table.create_index(a.fts_column, config=FTS(), replace=True)


class _StagedPartition:
    """One partition's rows with a vector, in one Parquet file renamed into place on close."""

    def __init__(self, sink: WriteLanceDB, index: int):
        self.sink = sink
        self.fs, self.root = sink._staging
        self.name = f"part-{index:05d}.parquet"
        self.tmp = f"{self.root}/.{self.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.fh = self.writer = None
        self.rows = 0

    def write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        column = self.sink.args.vector_column
        table = table.filter(table[column].is_valid())
        table = table.append_column(ROW_HASH, row_hashes(table, self.sink.args.id_column))
        try:
            if self.writer is None:
                self.fh = self.fs.open(self.tmp, "wb")
                self.writer = pq.ParquetWriter(self.fh, table.schema)
            self.writer.write_table(table)
        except OSError as exc:
            self.abort()
            raise StorageError(f"{self.sink.name}: cannot stage {self.tmp}: {exc}") from exc
        self.rows += table.num_rows

    def close(self) -> list[dict]:
        if self.writer is None:
            return []
        self.writer.close()
        self.fh.close()
        final = f"{self.root}/{self.name}"
        self.fs.mv(self.tmp, final)
        return [{"file": self.name, "rows": self.rows, "size": self.fs.info(final)["size"]}]

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.writer is not None:
                self.writer.close()
            if self.fh is not None:
                self.fh.close()
        with contextlib.suppress(Exception):
            self.fs.rm(self.tmp)
        self.writer = self.fh = None
