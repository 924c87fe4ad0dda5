"""The models page's plot, drawn on the server as SVG (no plotting service, no script):
gate accuracy and loss per version, one panel each, sharing the version axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH = 640
PANEL = 150
MARGIN_LEFT = 52
MARGIN_RIGHT = 16
MARGIN_TOP = 26
GAP = 40
ACCURACY_COLOUR = "#2f7d5b"
LOSS_COLOUR = "#b4562f"
GRID_COLOUR = "#d9dcd6"
TEXT_COLOUR = "#3b3f3a"


@dataclass(frozen=True)
class Point:
    """One version's numbers (None where the version has none)."""

    version: int
    accuracy: float | None
    loss: float | None


def _x(index: int, count: int) -> float:
    inner = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    return MARGIN_LEFT + (inner * index / (count - 1) if count > 1 else inner / 2)


def _panel(
    out: list[str],
    points: Sequence[Point],
    values: list[float | None],
    *,
    top: float,
    title: str,
    colour: str,
    low: float,
    high: float,
) -> None:
    span = high - low or 1.0

    def y(value: float) -> float:
        return top + PANEL - (value - low) / span * PANEL

    out.append(
        f'<text x="{MARGIN_LEFT}" y="{top - 8}" font-size="13" font-weight="600" '
        f'fill="{TEXT_COLOUR}">{escape(title)}</text>'
    )
    for step in range(5):
        value = low + span * step / 4
        gy = y(value)
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{gy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="{TEXT_COLOUR}">{value:.3g}</text>'
        )
    coords = [(_x(i, len(points)), y(v)) for i, v in enumerate(values) if v is not None]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
    for x, yy in coords:
        out.append(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="4" fill="{colour}"/>')
    if not coords:
        out.append(
            f'<text x="{WIDTH / 2}" y="{top + PANEL / 2}" font-size="12" text-anchor="middle" '
            f'fill="{TEXT_COLOUR}">no measurements yet</text>'
        )


def metrics_svg(points: Sequence[Point]) -> str:
    """The SVG document: accuracy on [0, 1] above, loss (from 0) below."""
    height = MARGIN_TOP + PANEL * 2 + GAP + 36
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="system-ui, sans-serif" role="img">',
        "<title>Gate accuracy and loss per model version</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    if not points:
        points = []
    accuracies = [p.accuracy for p in points]
    losses = [p.loss for p in points]
    top_loss = max([v for v in losses if v is not None] or [1.0])
    _panel(
        out,
        points,
        accuracies,
        top=MARGIN_TOP,
        title="gate accuracy",
        colour=ACCURACY_COLOUR,
        low=0.0,
        high=1.0,
    )
    _panel(
        out,
        points,
        losses,
        top=MARGIN_TOP + PANEL + GAP,
        title="loss",
        colour=LOSS_COLOUR,
        low=0.0,
        high=top_loss * 1.1 or 1.0,
    )
    base = MARGIN_TOP + PANEL * 2 + GAP + 18
    for i, point in enumerate(points):
        out.append(
            f'<text x="{_x(i, len(points)):.1f}" y="{base}" font-size="11" text-anchor="middle" '
            f'fill="{TEXT_COLOUR}">v{point.version}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
