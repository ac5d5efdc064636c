"""Self-contained SVG charts for the HTML report: no JavaScript, no network, opens anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]
WIDTH, HEIGHT = 640, 300
MARGIN = {"left": 56, "right": 150, "top": 36, "bottom": 48}


def _frame(title: str, body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
        f' role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="12">'
        f'<text x="{MARGIN["left"]}" y="20" font-size="14" font-weight="600">{escape(title)}</text>{body}</svg>'
    )


def _nice_range(values: Sequence[float], lo: float | None, hi: float | None) -> tuple[float, float]:
    vmin = min(values) if lo is None else lo
    vmax = max(values) if hi is None else hi
    if vmax == vmin:
        vmax = vmin + 1
    return vmin, vmax


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    y_min: float | None = None,
    y_max: float | None = None,
    y_format: str = "{:.2f}",
) -> str:
    """One line per series over shared x labels; None leaves a gap."""
    values = [v for s in series.values() for v in s if v is not None]
    if not values or not x_labels:
        return _frame(title, f'<text x="{MARGIN["left"]}" y="60">no data</text>')
    lo, hi = _nice_range(values, y_min, y_max)
    plot_w = WIDTH - MARGIN["left"] - MARGIN["right"]
    plot_h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]

    def x(i: int) -> float:
        return MARGIN["left"] + (plot_w * i / max(len(x_labels) - 1, 1))

    def y(v: float) -> float:
        return MARGIN["top"] + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [_axes(lo, hi, y, plot_w, y_format)]
    step = max(1, len(x_labels) // 8)
    for i, label in enumerate(x_labels):
        if i % step == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - MARGIN["bottom"] + 16}" text-anchor="middle">{escape(label)}</text>'
            )
    for n, (name, points) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        path, pen_down = [], False
        for i, v in enumerate(points):
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x(i):.1f},{y(v):.1f}")
            pen_down = True
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>')
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(_legend_entry(n, name, color))
    return _frame(title, "".join(parts))


def bar_chart(
    title: str, bars: Sequence[tuple[str, float]], *, y_max: float | None = None, y_format: str = "{:.2f}"
) -> str:
    """Horizontal bars, one per label, largest first as given."""
    if not bars:
        return _frame(title, f'<text x="{MARGIN["left"]}" y="60">no data</text>')
    row_h = 20
    height = MARGIN["top"] + row_h * len(bars) + 20
    label_w = 170
    plot_w = WIDTH - label_w - 80
    top = max(v for _, v in bars) if y_max is None else y_max
    top = top or 1.0
    parts = []
    for i, (label, value) in enumerate(bars):
        y0 = MARGIN["top"] + i * row_h
        w = max(0.0, plot_w * value / top)
        parts.append(f'<text x="{label_w - 6}" y="{y0 + 14}" text-anchor="end">{escape(label[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y0 + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[0]}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y0 + 14}">{escape(y_format.format(value))}</text>')
    return _frame(title, "".join(parts), height)


def paired_bar_chart(
    title: str, rows: Sequence[tuple[str, float, float]], names: tuple[str, str], *, y_format: str = "{:.2f}"
) -> str:
    """Two bars per label (for example a model's score by people and by the judge)."""
    if not rows:
        return _frame(title, f'<text x="{MARGIN["left"]}" y="60">no data</text>')
    row_h = 28
    height = MARGIN["top"] + row_h * len(rows) + 40
    label_w = 170
    plot_w = WIDTH - label_w - 90
    top = max(max(a, b) for _, a, b in rows) or 1.0
    parts = []
    for i, (label, a, b) in enumerate(rows):
        y0 = MARGIN["top"] + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y0 + 16}" text-anchor="end">{escape(label[:28])}</text>')
        for j, value in enumerate((a, b)):
            w = max(0.0, plot_w * value / top)
            parts.append(
                f'<rect x="{label_w}" y="{y0 + 2 + j * 12}" width="{w:.1f}" height="11" fill="{PALETTE[j]}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y0 + 11 + j * 12}" font-size="10">'
                f"{escape(y_format.format(value))}</text>"
            )
    for j, name in enumerate(names):
        parts.append(
            f'<rect x="{label_w + j * 140}" y="{height - 24}" width="10" height="10" fill="{PALETTE[j]}"/>'
            f'<text x="{label_w + 14 + j * 140}" y="{height - 15}">{escape(name)}</text>'
        )
    return _frame(title, "".join(parts), height)


def _axes(lo: float, hi: float, y: object, plot_w: float, y_format: str) -> str:
    parts = []
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        yy = y(v)  # type: ignore[operator]
        parts.append(
            f'<line x1="{MARGIN["left"]}" x2="{MARGIN["left"] + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{MARGIN["left"] - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(y_format.format(v))}</text>'
        )
    return "".join(parts)


def _legend_entry(n: int, name: str, color: str) -> str:
    x0 = WIDTH - MARGIN["right"] + 12
    y0 = MARGIN["top"] + 4 + n * 18
    return (
        f'<rect x="{x0}" y="{y0}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x0 + 14}" y="{y0 + 9}">{escape(name[:20])}</text>'
    )
