"""Charts drawn by the server as SVG: nothing to load, nothing to run in the browser.

Colours and strokes come from dashboard.css through class names (the CSP allows no
inline style); each bar and point carries a <title>, the browser's own tooltip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22


@dataclass(frozen=True)
class Day:
    key: str  # YYYY-MM-DD
    payments: int
    succeeded: int
    attempted: int
    success_rate: str | None  # "0.9500", None when nothing was attempted


def _frame(label: str, body: list[str], y_top: str, y_bottom: str, first: str, last: str) -> Markup:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(y_top)}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">{escape(y_bottom)}</text>',
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 6}">{escape(first)}</text>',
        f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{escape(last)}</text>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))


def volume(days: Sequence[Day]) -> Markup:
    """Payments created per day: the whole bar, and its succeeded part in front of it."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max([d.payments for d in days] + [1])
    step = plot_w / max(len(days), 1)
    bar_w = max(step * 0.7, 1.0)
    body = []
    for i, day in enumerate(days):
        x = LEFT + i * step + (step - bar_w) / 2
        for count, cls in ((day.payments, "bar-total"), (day.succeeded, "bar-ok")):
            if count:
                h = plot_h * count / top
                body.append(f'<rect class="{cls}" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}"'
                            f' height="{h:.1f}"><title>{escape(day.key)}: {day.payments} payments, '
                            f'{day.succeeded} succeeded</title></rect>')
    first, last = (days[0].key, days[-1].key) if days else ("", "")
    return _frame("Payments per day", body, str(top), "0", first, last)


def success_rate(days: Sequence[Day]) -> Markup:
    """Success rate per day in percent; days with nothing attempted leave a gap in the line."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days), 1)
    body, run = [], []
    for i, day in enumerate(days):
        if day.success_rate is None:
            if len(run) > 1:
                body.append(f'<polyline class="line" points="{" ".join(run)}"/>')
            run = []
            continue
        rate = Decimal(day.success_rate)
        x, y = LEFT + i * step + step / 2, TOP + plot_h * (1 - float(rate))
        run.append(f"{x:.1f},{y:.1f}")
        body.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(day.key)}: '
                    f'{rate * 100:.1f}% of {day.attempted} attempted</title></circle>')
    if len(run) > 1:
        body.append(f'<polyline class="line" points="{" ".join(run)}"/>')
    first, last = (days[0].key, days[-1].key) if days else ("", "")
    return _frame("Success rate per day", body, "100%", "0%", first, last)
