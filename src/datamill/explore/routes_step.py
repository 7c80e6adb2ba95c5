"""Page 2: a step (`/run/{run}/step/{step:path}/`): its spec, arguments, counters, drop reasons
with a sample of the dropped rows each, quarantined rows; and the paged lists of the rows it
dropped (`.../dropped?reason=R&page=N`) and quarantined (`.../quarantine?page=N`)."""

from __future__ import annotations

from typing import Any

from .data import set_aside_page
from .workdir import RunView, StepView

SAMPLE = 5  # rows shown per reason on the step page


def spec(operation: str) -> dict[str, Any]:
    """The registered operation's description and argument docs ({} when not registered:
    a function defined in the pipeline file)."""
    from .. import registry
    from ..errors import DatamillError

    try:
        cls = registry.get(operation)
    except (DatamillError, ImportError):
        return {}
    fields = {(f.alias or n): f.description or "" for n, f in cls.Args.model_fields.items()}
    return {"description": cls.description(), "arguments": fields,
            "consumes": {c: str(t) for c, t in cls.consumes.items()},
            "produces": {c: str(t) for c, t in cls.produces.items()}}


def image_columns(run: RunView) -> set[str]:
    return {c for c, t in run.column_types().items() if t == "image"}


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    def step_page(request: Any) -> Any:
        run, view = explorer.step_of(request)
        samples = {reason: set_aside_page(run, view, "dropped", 0, SAMPLE, reason)
                   for reason in view.record.get("dropped", {})}
        quarantine = set_aside_page(run, view, "quarantine", 0, SAMPLE)
        record = run.full_record(view)
        return explorer.render(request, "step.html", run=run, step=view, record=record,
                               spec=spec(view.record.get("operation", "")), samples=samples,
                               quarantine=quarantine, images=image_columns(run),
                               readers=[s for s in run.steps.values() if view.name in s.inputs])

    def dropped(request: Any) -> Any:
        run, view = explorer.step_of(request)
        reason = request.query_params.get("reason") or None
        size = explorer.page_size(request)
        page_no = explorer.int_param(request, "page", 0)
        page = set_aside_page(run, view, "dropped", page_no * size, size, reason)
        return explorer.render(request, "set_aside.html", run=run, step=view, kind="dropped",
                               reason=reason, page=page, page_no=page_no, size=size,
                               images=image_columns(run), reasons=view.record.get("dropped", {}),
                               content_step=_parent(run, view))

    def quarantine(request: Any) -> Any:
        run, view = explorer.step_of(request)
        size = explorer.page_size(request)
        page_no = explorer.int_param(request, "page", 0)
        page = set_aside_page(run, view, "quarantine", page_no * size, size)
        return explorer.render(request, "set_aside.html", run=run, step=view, kind="quarantine",
                               reason=None, page=page, page_no=page_no, size=size,
                               images=image_columns(run), reasons={}, content_step=None)

    return [Route("/run/{run}/step/{step:path}/", step_page, name="step"),
            Route("/run/{run}/step/{step:path}/dropped", dropped, name="dropped"),
            Route("/run/{run}/step/{step:path}/quarantine", quarantine, name="quarantine")]


def _parent(run: RunView, view: StepView) -> str | None:
    """The step whose output rows the dropped rows' content comes from."""
    return view.inputs[0] if view.inputs else None
