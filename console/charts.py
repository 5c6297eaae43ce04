"""Small charts rendered on the server as SVG (no JavaScript): bars and sparklines.

Each chart has ``role="img"`` and a label, and every bar or point a ``<title>`` with its
value, so the numbers are there for a screen reader and on hover.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def bars(points: Sequence[tuple[str, float | None, str]], *, label: str, unit: str = "",
         width: int = 560, height: int = 160) -> Markup:
    """Vertical bars: (label, value, css class) each; the last label shown under each bar."""
    values = [float(v or 0) for _l, v, _c in points]
    top = max(values, default=0) or 1.0
    n = max(len(points), 1)
    gap, pad_bottom, pad_top = 6, 28, 14
    bar_w = max(4.0, (width - gap * (n + 1)) / n)
    parts = [f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<line class="axis" x1="0" y1="{height - pad_bottom}" x2="{width}" y2="{height - pad_bottom}"/>']
    for i, ((name, _v, css), value) in enumerate(zip(points, values, strict=True)):
        h = (height - pad_bottom - pad_top) * value / top
        x = gap + i * (bar_w + gap)
        y = height - pad_bottom - h
        text = f"{name}: {_fmt(value)}{unit}"
        parts.append(f'<rect class="bar {escape(css)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                     f'height="{max(h, 1):.1f}"><title>{escape(text)}</title></rect>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{_fmt(value)}</text>')
        short = name[-6:] if len(name) > 10 else name
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(short)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[float | None], *, label: str, width: int = 120, height: int = 28) -> Markup:
    """A line of a definition's item count over runs; the last point marked."""
    known = [(i, float(v)) for i, v in enumerate(values) if v is not None]
    if not known:
        return Markup('<span class="muted">–</span>')
    lo, hi = min(v for _i, v in known), max(v for _i, v in known)
    span = (hi - lo) or 1.0
    step = width / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return i * step, height - 3 - (height - 6) * (v - lo) / span

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in known))
    last_x, last_y = xy(*known[-1])
    title = escape(f"{label}: " + ", ".join(_fmt(v) if v is not None else "–" for v in values))
    return Markup(f'<svg class="chart spark" role="img" aria-label="{title}" viewBox="-2 0 {width + 4} {height}" '
                  f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
                  f'<polyline class="line" points="{points}"/>'
                  f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5" class="bar"/></svg>')
