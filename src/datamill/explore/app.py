"""The explorer's ASGI app: `create_app(paths)` builds it, one page family per routes module.

Adding a page (the extension pattern):
1. Write `src/datamill/explore/routes_NAME.py` with a function `routes(explorer) ->
   list[Route]` (Starlette routes, GET only; path parameter `run` is the workdir's number,
   `step` a step name: declare it `{step:path}`, since a name may hold a `/`). Handlers get
   the `Explorer` from the closure or `request.app.state.explorer`; `explorer.run_of(request)`
   and `explorer.step_of(request)` resolve the path parameters (404 for unknown ones);
   `path_for(request, route, **params)` makes a link; `explorer.render(request, "NAME.html",
   **context)` renders `templates/NAME.html`, which extends `base.html`.
2. Optionally give the module `RUN_NAV = [(label, route_name)]`: links shown in the header of
   every page of a run (the route takes the `run` parameter only), or
   `STEP_NAV = [(label, route_name)]`: links on every step page (route takes `run`, `step`).
3. Add the module's name to `PAGES` below: the only line to edit outside the new files.
Handlers that read data are plain `def` functions (Starlette runs them in worker threads, so
a slow one does not hold the others); keep module-level caches in an `lru.LRU` (thread-safe).
Templates are Jinja2 with autoescape on: never mark data `|safe`. Pages take no inline
script or style (the CSP forbids them): behaviour goes in `static/*.js`, looks in
`static/style.css`. Read data through `RunView` (workdir.py), `reading.py` (rows by position)
and `data.py` (pages of rows): never from a path built from a request. Cap every page size
with `explorer.page_size(request)`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .workdir import BadRequest, ExploreError, RunView, StepView, Unreadable, load_runs

PAGES = ["routes_run", "routes_step", "routes_stats", "routes_rows", "routes_media",
         "routes_duplicates", "routes_whatif", "routes_search", "routes_compare"]
PAGE_SIZE = 50  # rows per page by default
MAX_PAGE_SIZE = 200
HERE = Path(__file__).resolve().parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8"}


class Explorer:
    """What every route shares: the runs, the templates, the caches."""

    def __init__(self, runs: Sequence[RunView], modules: Sequence[Any] = ()):
        self.runs = list(runs)
        self.modules = list(modules)
        self.env = make_environment()
        self.static = static_files()

    # --- path parameters -> objects (404 when unknown) ---
    def run_of(self, request: Any) -> RunView:
        text = request.path_params.get("run", "")
        if not str(text).isdigit() or int(text) >= len(self.runs):
            raise ExploreError(f"no workdir number {text!r}")
        return self.runs[int(text)]

    def step_of(self, request: Any) -> tuple[RunView, StepView]:
        run = self.run_of(request)
        return run, run.step(request.path_params.get("step", ""))

    @staticmethod
    def int_param(request: Any, name: str, default: int = 0, low: int = 0,
                  high: int = 1 << 62) -> int:
        text = request.query_params.get(name, "")
        try:
            value = int(text) if text != "" else default
        except ValueError:
            raise BadRequest(f"{name} must be a whole number, not {text!r}") from None
        return min(max(value, low), high)

    def page_size(self, request: Any) -> int:
        return self.int_param(request, "size", PAGE_SIZE, 1, MAX_PAGE_SIZE)

    # --- rendering ---
    def render(self, request: Any, template: str, status: int = 200, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        run = context.get("run")
        nav = [(label, path_for(request, name, run=run.index))
               for m in self.modules for label, name in getattr(m, "RUN_NAV", [])] \
            if isinstance(run, RunView) else []
        step = context.get("step")
        step_nav = [(label, path_for(request, name, run=run.index, step=step.name))
                    for m in self.modules for label, name in getattr(m, "STEP_NAV", [])] \
            if isinstance(step, StepView) and isinstance(run, RunView) else []
        def url(route: str, /, **params: Any) -> str:
            return path_for(request, route, **params)

        html = self.env.get_template(template).render(
            request=request, explorer=self, nav=nav, step_nav=step_nav, url=url, **context)
        return HTMLResponse(html, status_code=status)


def path_for(request: Any, route: str, /, **params: Any) -> str:
    """The path of route `route`, each parameter percent-encoded (a step or column name may
    hold any character)."""
    from urllib.parse import quote

    return request.app.url_path_for(route, **{k: quote(str(v), safe="")
                                              for k, v in params.items()})


def make_environment() -> Any:
    import jinja2

    from . import templating

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    templating.install(env)
    from .svg import histogram

    env.globals["histogram"] = histogram
    return env


def static_files() -> dict[str, tuple[bytes, str]]:
    """The files under static/ (regular files only, read once): URL name -> (bytes, type)."""
    out = {}
    root = HERE / "static"
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            kind = STATIC_TYPES.get(path.suffix)
            if kind is None or path.is_symlink():
                continue  # licenses and the like are shipped, not served
            out[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return out


def create_app(paths: Sequence[str | os.PathLike], host: str = "127.0.0.1",
               token: str | None = None) -> Any:
    """The ASGI app serving the workdirs `paths` (read-only). `host`: the address bound (a
    non-loopback one is also accepted in the Host header); `token`: required on every
    request when given (see security.py)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from ..errors import DatamillError
    from .security import LOOPBACK, Guard

    runs = load_runs(list(paths))
    modules = [importlib.import_module(f"{__package__}.{name}") for name in PAGES]
    explorer = Explorer(runs, modules)

    async def static(request: Any) -> Any:
        found = explorer.static.get(request.path_params["name"])
        if found is None:
            return PlainTextResponse("not found\n", status_code=404)
        return Response(found[0], media_type=found[1],
                        headers={"cache-control": "private, max-age=3600"})

    routes = [route for m in modules for route in m.routes(explorer)]
    routes.append(Route("/static/{name:path}", static, name="static"))

    async def bad_request(request: Any, exc: Exception) -> Any:
        return explorer.render(request, "error.html", status=400, title="Bad request",
                               message=str(exc))

    async def not_found(request: Any, exc: Exception) -> Any:
        return explorer.render(request, "error.html", status=404, title="Not found",
                               message=str(exc) if isinstance(exc, ExploreError)
                               else "No such page.")

    async def data_error(request: Any, exc: Exception) -> Any:
        return explorer.render(request, "error.html", status=500, title="Cannot read the data",
                               message=str(exc))

    async def http_error(request: Any, exc: Any) -> Any:
        if exc.status_code == 404:
            return await not_found(request, exc)
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)

    from starlette.exceptions import HTTPException

    app = Starlette(routes=routes, exception_handlers={
        BadRequest: bad_request, Unreadable: data_error, ExploreError: not_found,
        DatamillError: data_error,
        HTTPException: http_error})
    app.state.explorer = explorer
    app.router.redirect_slashes = False  # a URL answers itself or 404s, never redirects
    wildcard = host in ("0.0.0.0", "::", "")
    hosts = [] if host in LOOPBACK else machine_names() if wildcard else [host]
    return Guard(app, hosts=hosts, token=token, any_ip=wildcard)


def machine_names() -> list[str]:
    """The names of this machine, accepted in the Host header when bound to every interface."""
    import socket

    return [n for n in {socket.gethostname(), socket.getfqdn()} if n]
