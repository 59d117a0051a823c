"""Digits drawn the way a person hands them over: pen strokes on paper, as PNG-ready pixels.

Each digit is a few strokes in a box 0.6 wide and 1 high (y down), the way people write
them: a ``7`` is a bar and a diagonal, a ``4`` is open at the top, a ``1`` is one line. A
:class:`Hand` gives the writing its slant, size, pen width, wobble and place on the page;
:func:`draw_digit` renders it with Pillow's ImageDraw, supersampled 4x and averaged down so
the edges are soft like a scan, in dark ink on off-white paper with a little noise.

:func:`photograph` turns an MNIST digit into a photo of it on paper: dark ink on a light,
grainy page lit unevenly, larger than MNIST's and anywhere on the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float, n: int = 40) -> Stroke:
    """Points of an elliptical arc from angle t0 to t1 (degrees, clockwise from +x on screen)."""
    t = np.radians(np.linspace(t0, t1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def line(*points: tuple[float, float], n: int = 12) -> Stroke:
    """A polyline through ``points``, each segment sampled at ``n`` points (so it can wobble)."""
    out: Stroke = []
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        for s in np.linspace(0, 1, n, endpoint=False):
            out.append((x0 + s * (x1 - x0), y0 + s * (y1 - y0)))
    out.append(points[-1])
    return out


STROKES: dict[int, list[Stroke]] = {
    0: [arc(0.3, 0.5, 0.27, 0.49, -100, 268)],
    1: [line((0.36, 0.0), (0.27, 1.0))],
    2: [arc(0.3, 0.27, 0.26, 0.25, 195, 395) + line((0.5, 0.45), (0.03, 0.98), (0.6, 0.97))[1:]],
    3: [arc(0.3, 0.25, 0.25, 0.23, 200, 450) + arc(0.3, 0.73, 0.29, 0.26, -90, 155)],
    4: [line((0.36, 0.0), (0.02, 0.64), (0.6, 0.64)), line((0.46, 0.28), (0.45, 1.0))],
    5: [line((0.57, 0.0), (0.12, 0.01), (0.08, 0.45)) + arc(0.3, 0.7, 0.28, 0.29, -135, 160)],
    6: [line((0.5, 0.0), (0.3, 0.1), (0.13, 0.32), (0.05, 0.62), n=8)
        + arc(0.3, 0.74, 0.25, 0.25, 180, -165)],
    7: [line((0.02, 0.03), (0.6, 0.0), (0.22, 1.0))],
    8: [arc(0.3, 0.25, 0.22, 0.24, 90, 450), arc(0.3, 0.72, 0.28, 0.27, -90, 270)],
    9: [arc(0.3, 0.28, 0.26, 0.27, 0, 362), line((0.56, 0.3), (0.5, 1.0))],
}

#: The other way many people write some digits: a 1 with a flag, a closed 4, a 7 with a bar
#: across, a 9 whose tail curls, a 2 with a loop at its foot.
OTHER_STROKES: dict[int, list[Stroke]] = {
    **STROKES,
    1: [line((0.12, 0.22), (0.38, 0.0), (0.3, 1.0))],
    2: [arc(0.3, 0.27, 0.26, 0.25, 195, 395) + line((0.5, 0.45), (0.08, 0.92))[1:]
        + arc(0.13, 0.9, 0.07, 0.07, 300, 30)[1:] + line((0.2, 0.93), (0.6, 0.96))[1:]],
    4: [line((0.45, 0.0), (0.02, 0.64), (0.6, 0.64)), line((0.45, 0.0), (0.43, 1.0))],
    7: [line((0.02, 0.03), (0.6, 0.0), (0.22, 1.0)), line((0.15, 0.5), (0.52, 0.48))],
    9: [arc(0.3, 0.28, 0.26, 0.27, 0, 362), line((0.56, 0.3), (0.52, 0.8), n=6) + arc(0.3, 0.8, 0.22, 0.2, 0, 150)],
}


@dataclass
class Hand:
    """How a person writes: digit height in pixels, pen width, slant (x shift per unit of
    height, positive leans right), wobble (amplitude in box units), and where the digit's
    box starts on a page of ``page`` (height, width) pixels; ``shapes`` is :data:`STROKES` or
    :data:`OTHER_STROKES`."""

    height: int = 160
    pen: float = 10.0
    slant: float = 0.15
    wobble: float = 0.02
    page: tuple[int, int] = (240, 200)
    top_left: tuple[int, int] = (40, 50)
    ink: int = 30
    paper: int = 245
    seed: int = 0
    shapes: dict = None  # STROKES when None

    def strokes(self, digit: int) -> list[Stroke]:
        return (self.shapes or STROKES)[digit]


def draw_digit(digit: int, hand: Hand, supersample: int = 4) -> np.ndarray:
    """``digit`` written by ``hand``: uint8 (H, W) grey, dark ink on light paper."""
    rng = np.random.default_rng(hand.seed * 10 + digit)
    k = supersample
    page_h, page_w = hand.page
    img = Image.new("L", (page_w * k, page_h * k), 255)
    draw = ImageDraw.Draw(img)
    phase = rng.uniform(0, 2 * np.pi, 4)
    for stroke in hand.strokes(digit):
        pts = []
        for x, y in stroke:
            # A slow wobble of the hand, then the slant, then onto the page.
            x += hand.wobble * np.sin(2 * np.pi * 1.3 * y + phase[0]) + hand.wobble * np.sin(5 * x + phase[1])
            y += hand.wobble * np.sin(2 * np.pi * 1.1 * x + phase[2])
            x += hand.slant * (1 - y)
            px = (hand.top_left[1] + x * hand.height) * k
            py = (hand.top_left[0] + y * hand.height) * k
            pts.append((px, py))
        width = max(1, round(hand.pen * k))
        draw.line(pts, fill=0, width=width, joint="curve")
        for px, py in (pts[0], pts[-1]):  # round pen ends
            r = width / 2
            draw.ellipse((px - r, py - r, px + r, py + r), fill=0)
    a = np.asarray(img, dtype=np.float64).reshape(page_h, k, page_w, k).mean(axis=(1, 3)) / 255
    grey = hand.ink + (hand.paper - hand.ink) * a + rng.normal(0, 3, a.shape)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def photograph(digit: np.ndarray, rng: np.random.Generator, *, scale: int = 3, page: tuple[int, int] = (160, 220),
               paper: tuple[float, float] = (190, 235), ink: tuple[float, float] = (20, 80),
               gradient: tuple[float, float] = (20, 60), noise: tuple[float, float] = (3, 8)) -> np.ndarray:
    """An MNIST ``digit`` (28x28 uint8, ink bright) as a photo: uint8 (H, W) grey of a ``page``.

    The digit is scaled ``scale`` times (bicubic) and put at a random place on the page, in
    dark ink on light paper. Each range is drawn from uniformly per photo: the paper's and the
    ink's grey levels, the light's gradient (grey levels from one side of the page to the
    other, in a random direction), and the paper's grain (Gaussian noise, its sd in grey levels).
    """
    side = 28 * scale
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float64) / 255
    height, width = page
    a = np.zeros(page)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    a[top:top + side, left:left + side] = np.clip(big, 0, 1)
    p, k = rng.uniform(*paper), rng.uniform(*ink)
    y, x = np.mgrid[:height, :width]
    angle = rng.uniform(0, 2 * np.pi)
    light = (np.cos(angle) * (x / width - 0.5) + np.sin(angle) * (y / height - 0.5)) * rng.uniform(*gradient)
    grey = p + light - (p - k) * a + rng.normal(0, rng.uniform(*noise), a.shape)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)
