"""Thumbnails of image cells: `/run/{run}/step/{step:path}/thumb/{partition}/{position}/{column}`
(a row of the step's output) and `/run/{run}/step/{step:path}/qthumb/{partition}/{row}/{column}`
(a quarantined row). Always a PNG made on the server (media.py), never the data's bytes."""

from __future__ import annotations

from typing import Any

from .media import cached, thumbnail
from .workdir import ExploreError


def routes(explorer: Any) -> list:
    from starlette.responses import Response
    from starlette.routing import Route

    def png(data: bytes) -> Any:
        return Response(data, media_type="image/png",
                        headers={"cache-control": "private, max-age=86400"})

    def thumb(request: Any) -> Any:
        from .reading import read_at

        run, view = explorer.step_of(request)
        p = request.path_params
        column = p["column"]
        step = run.chain_step(view.name)
        if column not in step.columns or column.startswith("_"):
            raise ExploreError(f"no column {column!r} in step {view.name!r}")
        counts = run.partition_rows(view)
        if p["partition"] >= len(counts) or p["position"] >= counts[p["partition"]]:
            raise ExploreError("no such row")

        def make() -> bytes:
            value = read_at(run, step, p["partition"], [column], [p["position"]]).column(0)[0]
            return thumbnail(_bytes(value.as_py()))

        return png(cached((str(run.root), view.key, p["partition"], p["position"], column),
                          make))

    def quarantine_thumb(request: Any) -> Any:
        import pyarrow.parquet as pq

        run, view = explorer.step_of(request)
        p = request.path_params
        files = dict(run.files(view, "quarantine"))
        path = files.get(p["partition"])
        if path is None:
            raise ExploreError("no such quarantine file")

        def make() -> bytes:
            with pq.ParquetFile(path) as f:
                if p["column"] not in f.schema_arrow.names or p["column"].startswith("_") \
                        or p["row"] >= f.metadata.num_rows:
                    raise ExploreError("no such cell")
                table = f.read(columns=[p["column"]]).slice(p["row"], 1)
            return thumbnail(_bytes(table.column(0)[0].as_py()))

        return png(cached((str(run.root), view.key, "q", p["partition"], p["row"], p["column"]),
                          make))

    return [Route("/run/{run}/step/{step:path}/thumb/{partition:int}/{position:int}/{column}",
                  thumb, name="thumb"),
            Route("/run/{run}/step/{step:path}/qthumb/{partition:int}/{row:int}/{column}",
                  quarantine_thumb, name="quarantine_thumb")]


def _bytes(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) else None
