"""Page 8: compare two runs. `/run/{run}/compare?a=M&a_run=ID&b_run=ID` sets run "b" (this
workdir's last run, or `b_run`) against run "a": another workdir the explorer serves (`a`,
its number) or an earlier run of the same workdir (`a_run`; by default the run before the
last). It shows how many rows flipped from kept to dropped and back, by step and reason,
and which steps differ (their arguments, code or input); `/run/{run}/compare/rows?...&kind=K`
pages through the flipped rows by id (compare.py)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .workdir import BadRequest

RUN_NAV = [("Compare", "compare")]


def _sides(explorer: Any, request: Any) -> tuple[Any, Any, dict]:
    """(run a, run b, the choices as query values) from the request; BadRequest when a
    choice names nothing."""
    from .compare import open_run, runs_of

    run = explorer.run_of(request)
    params = request.query_params
    a_index = explorer.int_param(request, "a", run.index)
    if a_index >= len(explorer.runs):
        raise BadRequest(f"no workdir number {a_index} (the explorer serves "
                         f"{len(explorer.runs)})")
    a_view = explorer.runs[a_index]
    b_runs = runs_of(run.root)
    a_runs = b_runs if a_view is run else runs_of(a_view.root)
    b_run = params.get("b_run") or None
    a_run = params.get("a_run") or None
    if a_run is None and a_view is run:
        newest = b_run or (b_runs[0]["run_id"] if b_runs else None)
        older = [r["run_id"] for r in b_runs if r["run_id"] != newest]
        a_run = older[0] if older else newest
    try:
        a = open_run(a_view.root, a_run)
        b = open_run(run.root, b_run)
    except InputError as exc:
        raise BadRequest(str(exc)) from None
    choice = {"a": a_index, "a_run": a.manifest.get("run_id"), "b_run": b.manifest.get("run_id")}
    return a, b, {"choice": choice, "a_runs": a_runs, "b_runs": b_runs}


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    from . import compare as cmp

    def page(request: Any) -> Any:
        run = explorer.run_of(request)
        a, b, ctx = _sides(explorer, request)
        result = cmp.compare(a, b)
        return explorer.render(request, "compare.html", run=run, a=a, b=b, result=result,
                               runs=explorer.runs, kinds=cmp.KINDS, **ctx)

    def rows(request: Any) -> Any:
        run = explorer.run_of(request)
        a, b, ctx = _sides(explorer, request)
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in cmp.KINDS:
            raise BadRequest(f"unknown kind of flip {kind!r} (kinds: {', '.join(cmp.KINDS)})")
        size = explorer.page_size(request)
        page_no = explorer.int_param(request, "page", 0)
        total, found = cmp.flipped_rows(a, b, kind, page_no * size, size)
        page = {"total": total, "rows": found, "offset": page_no * size, "capped": False}
        return explorer.render(request, "compare_rows.html", run=run, a=a, b=b, kind=kind,
                               page=page, page_no=page_no, size=size, runs=explorer.runs,
                               kinds=cmp.KINDS, **ctx)

    return [Route("/run/{run}/compare", page, name="compare"),
            Route("/run/{run}/compare/rows", rows, name="compare_rows")]
