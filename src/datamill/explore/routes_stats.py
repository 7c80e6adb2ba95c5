"""Page 3: column statistics of a step (`/run/{run}/step/{step:path}/stats`): histograms of
numeric columns, lengths and top values of strings, null counts. Computed lazily (stats.py),
cached per step cache key."""

from __future__ import annotations

from typing import Any


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    def stats_page(request: Any) -> Any:
        from .stats import step_stats

        run, view = explorer.step_of(request)
        stats = step_stats(run, view.name)
        return explorer.render(request, "stats.html", run=run, step=view, stats=stats)

    return [Route("/run/{run}/step/{step:path}/stats", stats_page, name="stats")]
