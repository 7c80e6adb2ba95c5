"""retrieve: the nearest passages of a vector index for each row's query text."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..operation import Arguments, MapOperation


class RetrieveArgs(Arguments):
    index: str = Field(description="A LanceDB database[/table] or a postgresql:// URL "
                                   "(`?table=NAME`) written by write_lancedb/write_pgvector.")
    table: str | None = Field(None, description="Table name, when `index` does not say.")
    column: str = Field("query", description="Column with the query texts.")
    k: int = Field(5, gt=0, description="Neighbours per query.")
    output: str = Field("retrieved", description="Prefix of the produced columns: "
                                                 "{output}_ids, {output}_texts, "
                                                 "{output}_scores.")
    model: str | None = Field(None, description="Query model; default: the one the index "
                                                "records (the model that embedded it).")
    hybrid: bool = Field(False, description="Vector + full-text search (needs the index's "
                                            "fts_column); scores are then fused ranks.")
    distinct: bool = Field(True, description="Identical passages (one chunk indexed from "
                                             "several pages) count once, as their best hit.")


class Retrieve(MapOperation):
    """For each row, the `k` passages of a vector index nearest to its `column` text, as
    three list columns: `{output}_ids`, `{output}_texts` and `{output}_scores` (best
    first; cosine similarity, or fused rank scores with `hybrid`). Queries are embedded with
    the model the index records, loaded once per worker; a null or blank query gets empty
    lists."""

    name = "retrieve"
    version = "2"  # 2: identical passages count once (distinct=True)
    Args = RetrieveArgs
    consumes = {"{column}": "string"}

    def resolve_produces(self, schema: dict) -> dict:
        import pyarrow as pa

        out = self.args.output
        return {f"{out}_ids": pa.list_(pa.int64()), f"{out}_texts": pa.list_(pa.string()),
                f"{out}_scores": pa.list_(pa.float32())}

    def setup(self) -> None:
        from ..search import Encoder, open_index

        self._index = open_index(self.args.index, self.args.table)
        self._encoder = Encoder(self._index.meta, self.args.model, self._index.where)

    def teardown(self) -> None:
        index = self.__dict__.pop("_index", None)
        if index is not None:
            index.close()

    def process(self, batch: Any) -> Any:
        queries = batch[self.args.column].to_pylist()
        asked = [i for i, q in enumerate(queries) if q is not None and q.strip()]
        ids: list[list] = [[] for _ in queries]
        texts: list[list] = [[] for _ in queries]
        scores: list[list] = [[] for _ in queries]
        if asked:
            vectors = self._encoder([queries[i] for i in asked])
            for i, vector in zip(asked, vectors):
                text = queries[i] if self.args.hybrid else None
                find = self._index.search_distinct if self.args.distinct \
                    else self._index.search
                hits = find(vector, self.args.k, text=text)
                ids[i] = [int(h.id) for h in hits]
                texts[i] = [h.text for h in hits]
                scores[i] = [h.score for h in hits]
        out = self.args.output
        return {f"{out}_ids": ids, f"{out}_texts": texts, f"{out}_scores": scores}
