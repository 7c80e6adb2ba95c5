"""Page 4: the row browser (`/run/{run}/step/{step:path}/rows?column=C&op=eq&value=V&page=N`)
and a row's lineage (`/run/{run}/row/{row_id}`): every step it went through, the columns
each produced, and where and why it was dropped."""

from __future__ import annotations

from typing import Any

from .data import Filter, rows_page
from .workdir import BadRequest

OPS = {"eq": "equals", "contains": "contains", "range": "between", "null": "is null",
       "notnull": "is not null"}


def parse_filter(params: Any) -> Filter | None:
    column = params.get("column") or ""
    if not column:
        return None
    op = params.get("op") or "eq"
    if op not in OPS:
        raise BadRequest(f"unknown filter {op!r} (one of {', '.join(OPS)})")

    def number(name: str) -> float | None:
        text = (params.get(name) or "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise BadRequest(f"{name} must be a number, not {text!r}") from None

    return Filter(column, op, params.get("value") or "", number("low"), number("high"))


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    from .routes_step import image_columns

    def rows(request: Any) -> Any:
        run, view = explorer.step_of(request)
        size = explorer.page_size(request)
        page_no = explorer.int_param(request, "page", 0)
        where = parse_filter(request.query_params)
        page = rows_page(run, view.name, page_no * size, size, where,
                         count_all=request.query_params.get("count") == "all")
        return explorer.render(request, "rows.html", run=run, step=view, page=page,
                               page_no=page_no, size=size, where=where, ops=OPS,
                               columns=run.visible_columns(view.name),
                               images=image_columns(run))

    def row(request: Any) -> Any:
        from .lineage import row_lineage

        run = explorer.run_of(request)
        text = request.path_params["row_id"]
        try:
            row_id = int(text)
        except ValueError:
            raise BadRequest(f"row ids are whole numbers, not {text!r}") from None
        lineage = row_lineage(run, row_id)
        return explorer.render(request, "row.html", run=run, row_id=row_id, lineage=lineage,
                               images=image_columns(run))

    return [Route("/run/{run}/step/{step:path}/rows", rows, name="rows"),
            Route("/run/{run}/row/{row_id}", row, name="row")]
