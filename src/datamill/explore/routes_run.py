"""Page 1: the list of workdirs (`/`) and a run's overview (`/run/{run}/`): the step graph,
the funnel, and per dataset a table of its steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .svg import funnel, legend, step_graph
from .workdir import RunView


def overview(run: RunView, step_url: Callable[[str], str],
             reason_url: Callable[[str, str], str] | None,
             error_url: Callable[[str], str] | None = None) -> dict[str, Any]:
    """The charts of the overview (shared with the report)."""
    steps = list(run.steps.values())
    nodes = [{"name": s.name, "operation": s.record.get("operation"), "kind": s.kind,
              "rows_out": s.record.get("rows_out", 0), "cached": s.record.get("cached"),
              "seconds": s.record.get("wall_seconds", s.record.get("seconds"))} for s in steps]
    edges = [(i, s.name) for s in steps for i in s.inputs]
    rows = [{"name": s.name, **{k: s.record.get(k, 0) for k in ("rows_in", "rows_out",
                                                                  "errors")},
             "dropped": s.record.get("dropped", {})} for s in steps if s.kind != "sink"]
    reasons = [r for s in steps for r in s.record.get("dropped", {})]
    return {"graph": step_graph(nodes, edges, step_url),
            "funnel": funnel(rows, step_url, reason_url, error_url),
            "legend": legend(reasons, any(r["errors"] for r in rows))}


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    def index(request: Any) -> Any:
        from .app import path_for

        if len(explorer.runs) == 1:
            from starlette.responses import RedirectResponse

            return RedirectResponse(path_for(request, "run", run=0), status_code=302)
        return explorer.render(request, "index.html", runs=explorer.runs)

    def run_page(request: Any) -> Any:
        from .app import path_for

        run = explorer.run_of(request)

        def step_url(name: str) -> str:
            return path_for(request, "step", run=run.index, step=name)

        def reason_url(name: str, reason: str) -> str:
            from .templating import query

            return path_for(request, "dropped", run=run.index, step=name) + query(
                {}, reason=reason)

        def error_url(name: str) -> str:
            return path_for(request, "quarantine", run=run.index, step=name)

        return explorer.render(request, "run.html", run=run, report=False,
                               **overview(run, step_url, reason_url, error_url))

    return [Route("/", index, name="index"),
            Route("/run/{run}/", run_page, name="run")]
