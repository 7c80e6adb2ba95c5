"""Page 7: search. `/run/{run}/search?index=N&q=TEXT&k=K` queries a LanceDB table the run
wrote (its `write_lancedb` steps), with the model the index records, through the code of
`datamill search` (search_page.py). Hits come with their metadata, and with a thumbnail for
an index of embedded images (re-encoded on the server by the thumbnail route)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .workdir import BadRequest

RUN_NAV = [("Search", "search")]


def routes(explorer: Any) -> list:
    from starlette.routing import Route

    from . import search_page
    from .rowread import locate, steps_of

    def search(request: Any) -> Any:
        run = explorer.run_of(request)
        found = search_page.indexes(run.manifest)
        number = explorer.int_param(request, "index", 0)
        query = request.query_params.get("q", "")
        if len(query) > search_page.MAX_QUERY_CHARS:
            raise BadRequest(f"the query is longer than {search_page.MAX_QUERY_CHARS} "
                             "characters")
        k = explorer.int_param(request, "k", 10, 1, search_page.MAX_K)
        if found and number >= len(found):
            raise BadRequest(f"no index number {number} (this run wrote {len(found)})")
        result = None
        thumbs: dict[Any, tuple[int, int]] = {}
        if found and query.strip():
            try:
                result = search_page.run_search(run.manifest, number, query, k)
            except InputError as exc:
                raise BadRequest(str(exc)) from None
            images = [h for h in result.hits if h["image"]]
            if images:
                steps = steps_of(run)
                step = steps.step(images[0]["image"]["step"])
                thumbs = locate(steps, step, [h["id"] for h in images
                                              if isinstance(h["id"], int)])
        return explorer.render(request, "search.html", run=run, indexes=found, number=number,
                               query=query, k=k, result=result, thumbs=thumbs,
                               max_chars=search_page.MAX_QUERY_CHARS)

    return [Route("/run/{run}/search", search, name="search")]
