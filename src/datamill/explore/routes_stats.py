"""Page 3: column statistics of a step (`/run/{run}/step/{step:path}/stats`): histograms of
numeric columns, lengths and top values of strings, null counts. Computed lazily (stats.py),
cached per step cache key: the first visit shows the page at once and fetches the
statistics into it (htmx) when they are ready."""

from __future__ import annotations

from typing import Any


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    def stats_page(request: Any) -> Any:
        """The statistics when cached (or `?part=page`: computed first); else a page that
        fetches them (`?part=grid`, with htmx) while it says they are being computed."""
        from .stats import cached_stats, step_stats

        run, view = explorer.step_of(request)
        part = request.query_params.get("part")
        if part == "grid":
            return explorer.render(request, "_stats_grid.html", run=run, step=view,
                                   stats=step_stats(run, view.name))
        stats = step_stats(run, view.name) if part == "page" else cached_stats(run, view.name)
        return explorer.render(request, "stats.html", run=run, step=view, stats=stats)

    return [Route("/run/{run}/step/{step:path}/stats", stats_page, name="stats")]
