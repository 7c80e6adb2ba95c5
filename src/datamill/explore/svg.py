"""Charts drawn on the server as SVG: the step graph, the funnel, histograms.

Every text and link that comes from the data goes through `esc`; shapes use presentation
attributes and classes only (no `style` attribute, so that the page's CSP needs no inline
styles). Each function returns a `markupsafe.Markup` ready for a template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

PALETTE = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#7f7f7f", "#1f77b4", "#2ca02c"]


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def human(n: float) -> str:
    """1234567 -> 1.2M; small numbers as they are."""
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.3g}"


def reason_colors(reasons: Sequence[str]) -> dict[str, str]:
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(dict.fromkeys(reasons))}


def funnel(steps: Sequence[dict], step_url: Callable[[str], str],
           reason_url: Callable[[str, str], str] | None = None,
           error_url: Callable[[str], str] | None = None, width: int = 760) -> Markup:
    """Rows per step as horizontal bars, each followed by its drops split by reason, then
    its errors (rows quarantined or skipped), in grey.
    `steps`: dicts with name, rows_in, rows_out, dropped ({reason: n}), errors."""
    label_w, row_h, pad = 200, 26, 4
    top = max([s.get("rows_in", 0) or 0 for s in steps] + [s.get("rows_out", 0) or 0
                                                           for s in steps] + [1])
    scale = (width - label_w - 90) / top
    colors = reason_colors([r for s in steps for r in s.get("dropped", {})])
    out = [f'<svg class="chart funnel" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{len(steps) * row_h + 8}" role="img" aria-label="rows per step">']
    for i, s in enumerate(steps):
        y = 4 + i * row_h
        name = s["name"]
        out.append(f'<a href="{esc(step_url(name))}" class="step-link">'
                   f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
                   f'{esc(name[:30])}</text>')
        kept = (s.get("rows_out", 0) or 0) * scale
        out.append(f'<rect x="{label_w}" y="{y}" width="{kept:.1f}" height="{row_h - pad}" '
                   f'fill="#4c78a8"><title>{esc(name)}: {s.get("rows_out", 0):,} rows out'
                   f'</title></rect></a>')
        x = label_w + kept
        for reason, n in s.get("dropped", {}).items():
            w = max(n * scale, 1.5)
            bar = (f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - pad}" '
                   f'fill="{colors[reason]}" class="drop"><title>{esc(name)}: {n:,} dropped '
                   f'({esc(reason)})</title></rect>')
            if reason_url is not None:
                bar = f'<a href="{esc(reason_url(name, reason))}" class="reason-link">{bar}</a>'
            out.append(bar)
            x += w
        if s.get("errors"):
            w = max(s["errors"] * scale, 1.5)
            bar = (f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - pad}" '
                   f'fill="#555" class="drop errors"><title>{esc(name)}: {s["errors"]:,} '
                   f'errors (quarantined or skipped)</title></rect>')
            if error_url is not None:
                bar = f'<a href="{esc(error_url(name))}" class="error-link">{bar}</a>'
            out.append(bar)
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="count">'
                   f'{esc(human(s.get("rows_out", 0) or 0))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def legend(reasons: Sequence[str], errors: bool = False) -> Markup:
    colors = reason_colors(reasons)
    if errors:
        colors["errors (quarantined or skipped)"] = "#555"
    items = [f'<svg width="12" height="12" xmlns="http://www.w3.org/2000/svg"><rect width="12" '
             f'height="12" fill="{c}"/></svg> {esc(r)}' for r, c in colors.items()]
    return Markup(" &nbsp; ".join(f'<span class="legend-item">{i}</span>' for i in items))


def step_graph(nodes: Sequence[dict], edges: Sequence[tuple[str, str]],
               step_url: Callable[[str], str]) -> Markup:
    """Boxes for the steps, laid out by depth (left to right) and branch (top to bottom),
    with arrows from each step to those that read it. `nodes`: dicts with name, operation,
    kind, rows_out, seconds, cached."""
    box_w, box_h, gap_x, gap_y = 180, 64, 36, 14
    depth: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    for a, b in edges:
        parents.setdefault(b, []).append(a)
    for n in nodes:  # nodes come in run order: a step after its inputs
        depth[n["name"]] = 1 + max((depth.get(p, 0) for p in parents.get(n["name"], [])),
                                   default=-1)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for n in nodes:
        d = depth[n["name"]]
        place[n["name"]] = (d, rows.get(d, 0))
        rows[d] = rows.get(d, 0) + 1
    cols = max(depth.values(), default=0) + 1
    height = max(rows.values(), default=1) * (box_h + gap_y) + gap_y
    width = cols * (box_w + gap_x) + gap_x

    def xy(name: str) -> tuple[int, int]:
        d, r = place[name]
        return gap_x + d * (box_w + gap_x), gap_y + r * (box_h + gap_y)

    out = [f'<svg class="chart graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" role="img" aria-label="steps of the run">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
           'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/>'
           '</marker></defs>']
    for a, b in edges:
        if a in place and b in place:
            (x1, y1), (x2, y2) = xy(a), xy(b)
            out.append(f'<line x1="{x1 + box_w}" y1="{y1 + box_h // 2}" x2="{x2}" '
                       f'y2="{y2 + box_h // 2}" stroke="#888" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = xy(n["name"])
        cls = "cached" if n.get("cached") else "computed"
        out.append(
            f'<a href="{esc(step_url(n["name"]))}" class="step-link">'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" class="box {cls}"/>'
            f'<text x="{x + 8}" y="{y + 17}" class="name">{esc(n["name"][:24])}</text>'
            f'<text x="{x + 8}" y="{y + 33}" class="sub">{esc(n.get("kind", "?"))} · '
            f'{esc(str(n.get("operation", "?"))[:18])}</text>'
            f'<text x="{x + 8}" y="{y + 49}" class="sub">{esc(human(n.get("rows_out", 0) or 0))}'
            f' rows · {float(n.get("seconds") or 0):.2f} s · {cls}</text>'
            f'<title>{esc(n["name"])}</title></a>')
    out.append("</svg>")
    return Markup("".join(out))


def histogram(edges: Sequence[float], counts: Sequence[int], width: int = 420,
              height: int = 120) -> Markup:
    """Vertical bars of `counts` between consecutive `edges`, with the range below."""
    if not counts:
        return Markup("")
    top = max(max(counts), 1)
    bar_w = (width - 10) / len(counts)
    out = [f'<svg class="chart hist" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height + 18}" role="img" aria-label="histogram">']
    for i, c in enumerate(counts):
        h = (height - 4) * c / top
        out.append(f'<rect x="{5 + i * bar_w:.1f}" y="{height - h:.1f}" '
                   f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="#4c78a8">'
                   f'<title>[{esc(num(edges[i]))}, {esc(num(edges[i + 1]))}): {c:,}</title>'
                   f'</rect>')
    out.append(f'<text x="5" y="{height + 14}" class="axis">{esc(num(edges[0]))}</text>'
               f'<text x="{width - 5}" y="{height + 14}" class="axis" text-anchor="end">'
               f'{esc(num(edges[-1]))}</text></svg>')
    return Markup("".join(out))


def num(x: float) -> str:
    """A number for people: whole ones with thousands separators, others with 4 digits."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"
