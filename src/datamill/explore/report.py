"""`datamill report WORKDIR -o report.html`: the run overview as one self-contained HTML file.

The same overview as the live app (step graph, funnel, the steps' table and counters), then
per step its drop reasons with a few dropped rows each and its quarantined rows. Everything
is inline (CSS, SVG charts, thumbnails as `data:` PNGs): the file needs no network and no
server, so it can be attached to a pull request or kept as a CI artifact. It carries no
script, and its own Content-Security-Policy forbids any.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from .data import set_aside_page
from .workdir import RunView

SAMPLE = 5  # dropped rows shown per reason
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


def anchor(*parts: str) -> str:
    """An HTML id from step names and reasons (any text): letters, digits and dashes."""
    import re

    return "-".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-") or "x" for p in parts)


def render_report(path: str | os.PathLike) -> str:
    """The report of the workdir `path`, as HTML text."""
    from .app import HERE, make_environment
    from .media import thumbnail
    from .routes_run import overview
    from .routes_step import image_columns

    run = RunView(path)
    charts = overview(run, lambda name: "#" + anchor("step", name),
                      lambda name, reason: "#" + anchor("step", name, reason),
                      lambda name: "#" + anchor("step", name))
    images = image_columns(run)
    steps = []
    for view in run.steps.values():
        if view.kind == "sink":
            continue
        reasons = {r: set_aside_page(run, view, "dropped", 0, SAMPLE, r)
                   for r in view.record.get("dropped", {})}
        quarantine = set_aside_page(run, view, "quarantine", 0, SAMPLE)
        steps.append({"view": view, "reasons": reasons, "quarantine": quarantine})

    def inline_image(value: Any) -> str | None:
        if not isinstance(value, bytes):
            return None
        return "data:image/png;base64," + base64.b64encode(thumbnail(value, 128)).decode()

    env = make_environment()
    css = (HERE / "static" / "style.css").read_text()
    if "</" in css:  # it goes inside <style> unescaped: it must not close the element
        raise ValueError("style.css must not contain '</'")
    return env.get_template("report.html").render(
        run=run, report=True, css=css, csp=REPORT_CSP, steps=steps, images=images,
        inline_image=inline_image, anchor=anchor, url=None, **charts)


def write_report(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the report of workdir `path` to `out` (never inside the workdir)."""
    from .workdir import ExploreError, Workdir

    out = Path(out).expanduser().resolve()
    if out.is_relative_to(Workdir(path).root):
        raise ExploreError(f"the report goes outside the workdir it describes, not to {out}")
    html = render_report(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
