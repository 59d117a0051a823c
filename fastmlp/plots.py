"""Plots of training (matplotlib, Agg backend; imported only when a plot is drawn)."""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import atomic_path

SERIES = (("train", "C0"), ("val", "C1"), ("test", "C2"))
LABELS = {"train": "train (running mean)", "val": "validation", "test": "test"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save a figure as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_curves(history, path: str | os.PathLike, title: str | None = None) -> Path:
    """Loss and accuracy per epoch for train, validation and test, side by side."""
    plt = _pyplot()
    epochs = history.column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    train_on = history.epochs[-1].get("train_on", "plain") if history.epochs else "plain"
    for name, color in SERIES:
        loss, acc = history.column(f"{name}_loss"), history.column(f"{name}_acc")
        if all(v is None for v in acc):
            continue
        label = LABELS[name]
        if name == "train" and train_on != "plain":  # measured on warped / dropped-out batches
            label = f"train (running mean on {train_on} batches)"
        if name in ("val", "test") and history.config.get("ema"):
            label += " (averaged weights)"
        ax_loss.plot(epochs, loss, "o-", color=color, label=label, ms=3)
        ax_acc.plot(epochs, [None if a is None else 100 * a for a in acc], "o-", color=color, label=label, ms=3)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        ax.xaxis.get_major_locator().set_params(integer=True)
    cfg = history.config
    fig.suptitle(title or (f"hidden {cfg.get('hidden_sizes')}, batch {cfg.get('batch_size')}, "
                           f"lr {cfg.get('lr'):g}, seed {cfg.get('seed')}"))
    save_figure(fig, path)
    return Path(path)
