"""A run's curves: loss and accuracy per epoch (``curves.png``), the figure every training run writes."""

from __future__ import annotations

import os
from pathlib import Path

from ..figures import epoch_axis, save_figure, subplots

SERIES = (("train", "C0"), ("val", "C1"), ("test", "C2"))
LABELS = {"train": "train (running mean)", "val": "validation", "test": "test (reported, not used to choose)"}


def plot_curves(history, path: str | os.PathLike, title: str | None = None) -> Path:
    """Loss and accuracy per epoch for train, validation and test, side by side; a dotted line marks
    the epoch whose model the run kept (when that is not simply the last)."""
    epochs = history.column("epoch")
    ms = 6 if len(epochs) <= 3 else 3   # a run of one or two epochs is a few points: make them seen
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 4))
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
        ax_loss.plot(epochs, loss, "o-", color=color, label=label, ms=ms)
        ax_acc.plot(epochs, [None if a is None else 100 * a for a in acc], "o-", color=color, label=label, ms=ms)
    best = getattr(history, "best_epoch", None)
    if best is not None and best != epochs[-1]:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best, color="0.4", ls=":", lw=1, label=f"model.npz (epoch {best})")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        epoch_axis(ax, max((e for e in epochs if e is not None), default=1))
    cfg = history.config
    fig.suptitle(title or (f"hidden {cfg.get('hidden_sizes')}, batch {cfg.get('batch_size')}, "
                           f"lr {cfg.get('lr'):g}, seed {cfg.get('seed')}"), y=1.02)
    save_figure(fig, path)
    return Path(path)
