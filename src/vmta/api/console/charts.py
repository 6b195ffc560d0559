"""The Rates chart: one polyline per outcome over the last hour, drawn as inline SVG by
the page itself (no charting service, no script)."""

from __future__ import annotations

from dataclasses import dataclass

from vmta.store.delivery_rates import OUTCOMES, Rates

WIDTH = 600
HEIGHT = 160
PAD = 24


@dataclass(frozen=True)
class Line:
    outcome: str
    points: str  # the SVG polyline's "x,y x,y ..."


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int  # the largest count per minute: the height of the plot
    lines: list[Line]
    baseline: int


def rates_chart(rates: Rates) -> Chart:
    top = max([1, *(max(rates.per_minute[o]) for o in OUTCOMES)])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    lines = []
    for outcome in OUTCOMES:
        counts = rates.per_minute[outcome]
        step = plot_w / max(1, len(counts) - 1)
        points = " ".join(
            f"{PAD + i * step:.1f},{PAD + plot_h - plot_h * n / top:.1f}"
            for i, n in enumerate(counts)
        )
        lines.append(Line(outcome, points))
    return Chart(WIDTH, HEIGHT, top, lines, PAD + plot_h)
