"""Figures without pyplot: a figure on an Agg canvas of its own, saved as PNG atomically.

matplotlib is imported only when a figure is drawn; pyplot only where a library's plot needs it
(Optuna's importances), whose import costs a command a third of a second.
"""

from __future__ import annotations

import os

from .atomic import atomic_path


def pyplot():
    """matplotlib's pyplot on the Agg backend (for a library that draws through it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def subplots(*args, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` makes them, on an Agg canvas of its own: no pyplot
    and no figure left open."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save a figure as PNG atomically (a pyplot figure is closed after)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    import sys
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def epoch_axis(ax, last: int) -> None:
    """Whole epochs on the x axis; with a few epochs (even one), every one ticked and room either side."""
    if last <= 12:
        ax.set_xticks(range(1, max(1, last) + 1))
        ax.set_xlim(0.5, max(1, last) + 0.5)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
