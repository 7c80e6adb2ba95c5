"""Page 6: threshold what-if. `/run/{run}/whatif` lists the filters that decide from stored
numeric columns (quality stats, language scores); `/run/{run}/whatif/{step}?ARG=VALUE...`
shows the filter's numeric arguments in a form, and what it would keep with the values given:
how many rows flip each way, by reason, and a sample of them, computed from the stored
columns without re-running (whatif.py)."""

from __future__ import annotations

from typing import Any

from ..errors import ArgumentError
from .workdir import BadRequest, ExploreError

RUN_NAV = [("What-if", "whatif_index")]
RESERVED = ("sample",)


def short_labels(columns: list[str]) -> dict[str, str]:
    """Column headers without the prefix they all share (`gopher_words` -> `words`)."""
    import os

    prefix = os.path.commonprefix(columns) if len(columns) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1]
    return {c: c[len(prefix):] or c for c in columns}


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    from . import whatif
    from .rowread import steps_of

    def index(request: Any) -> Any:
        run = explorer.run_of(request)
        found = whatif.candidates(steps_of(run))
        return explorer.render(request, "whatif_index.html", run=run, candidates=found)

    def page(request: Any) -> Any:
        run = explorer.run_of(request)
        steps = steps_of(run)
        name = request.path_params["step"]
        found = {c.step: c for c in whatif.candidates(steps)}
        if name not in found:
            raise ExploreError(f"step {name!r} is not a filter that decides from stored "
                               f"numeric columns (those that are: {', '.join(found) or 'none'})")
        given = {k: v for k, v in request.query_params.items() if k not in RESERVED}
        sample = explorer.int_param(request, "sample", 20, 0, whatif.MAX_SAMPLE)
        try:
            result = whatif.what_if(steps, name, given, sample=sample)
        except ArgumentError as exc:
            raise BadRequest(str(exc)) from None
        return explorer.render(request, "whatif.html", run=run, candidate=found[name],
                               result=result, given=given, record=steps.records[name],
                               labels=short_labels(found[name].consumed))

    return [Route("/run/{run}/whatif", index, name="whatif_index"),
            Route("/run/{run}/whatif/{step}", page, name="whatif")]
