"""Page 5: duplicate clusters. `/run/{run}/duplicates?step=S&page=N` lists the clusters of a
deduplication step, largest first; `/run/{run}/duplicates/{step}/{kept}` shows the kept row
beside the rows dropped as its duplicates, text differences highlighted word by word (a diff
computed here, every piece escaped by the template), images as thumbnails."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .workdir import BadRequest, ExploreError

RUN_NAV = [("Duplicates", "duplicates")]
SNIPPET = 300  # characters of the kept row's text in the list of clusters


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    from . import duplicates as dup
    from .rowread import column_types, rows_by_id, steps_of

    def clusters(request: Any) -> Any:
        run = explorer.run_of(request)
        steps = steps_of(run)
        names = dup.dedup_steps(steps)
        chosen = request.query_params.get("step") or (names[0] if names else "")
        if names and chosen not in names:
            raise BadRequest(f"step {chosen!r} records no duplicate clusters (steps that do: "
                             f"{', '.join(names)})")
        size = explorer.page_size(request)
        page_no = explorer.int_param(request, "page", 0)
        page = dup.clusters(steps, chosen, page_no * size, size) if names else None
        snippets: dict[int, str] = {}
        parent = None
        if page and page.clusters:
            step = steps.step(chosen)
            parent = step.parent or step
            text = next((c for c, t in column_types(steps, parent).items()
                         if str(t) in ("string", "large_string")), None)
            if text:
                for r in rows_by_id(steps, parent, [c["cluster_id"] for c in page.clusters],
                                    [text]):
                    snippets[r["_id"]] = r.get(text)
        return explorer.render(request, "duplicates.html", run=run, steps=names, chosen=chosen,
                               page=page, page_no=page_no, size=size, snippets=snippets,
                               snippet_chars=SNIPPET)

    def cluster(request: Any) -> Any:
        run = explorer.run_of(request)
        steps = steps_of(run)
        name = request.path_params["step"]
        if name not in dup.dedup_steps(steps):
            raise ExploreError(f"step {name!r} records no duplicate clusters")
        try:
            got = dup.cluster(steps, name, request.path_params["kept"])
        except InputError as exc:
            raise ExploreError(str(exc)) from None
        step = steps.step(name)
        parent = step.parent.name if step.parent else name
        similarity = {r["_id"]: {c: dup.similarity(p) for c, p in r["diffs"].items()}
                      for r in got.duplicates}
        return explorer.render(request, "cluster.html", run=run, cluster=got, parent=parent,
                               similarity=similarity, kept_id=request.path_params["kept"])

    return [Route("/run/{run}/duplicates", clusters, name="duplicates"),
            Route("/run/{run}/duplicates/{step}/{kept:int}", cluster, name="cluster")]
