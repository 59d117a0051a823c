"""The search's plots for the report (matplotlib, Agg backend; imported only when a plot is drawn):
:func:`plot_history` (validation accuracy per trial and the best so far), :func:`plot_params`
(validation accuracy against each hyperparameter), :func:`plot_epochs` (validation accuracy
per epoch of every trial, where the pruner cut), and :func:`plot_importances` (Optuna's plot of
the hyperparameters' importances, with the labels of :data:`~fastmlp.config.RULES`).

Optuna draws the same three search plots (``plot_optimization_history``, ``plot_slice``,
``plot_intermediate_values``) from the completed trials alone; with a pruner most trials are
pruned, so ours are drawn here from every trial, each point marked with how its trial ended.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import RULES
from ..figures import epoch_axis, pyplot, save_figure, subplots

# The search plots are drawn near the size a report page shows them (about 6 inches wide), so
# that their text reads at the size of the page's own.
SEARCH_FIGSIZE = (6.4, 3.3)


def _save(fig, path: Path) -> Path:
    save_figure(fig, path)
    return path


# The search plots take the report's trial rows: objects with number, state ("complete",
# "pruned", "fail", ...), val_acc (fraction or None), epochs, config (a TrainConfig dict or
# None) and curve (epoch -> validation accuracy).

def _acc_limits(rows: list) -> tuple[float, float]:
    """A y range (%) that shows the good trials well; worse ones are drawn at its bottom edge.

    From the worst completed trial (but no more than 8 points below the best) to the best.
    """
    done = [100 * r.val_acc for r in rows if r.val_acc is not None and r.state == "complete"]
    every = [100 * r.val_acc for r in rows if r.val_acc is not None]
    if not every:
        return 0.0, 100.0
    hi = max(every)
    lo = max(min(done or every), hi - 8.0)
    lo = min(lo, hi - 0.5)
    pad = 0.06 * (hi - lo)
    return max(0.0, lo - pad), min(100.0, hi + pad)


def _clip(values: list[float], lo: float) -> tuple[list[float], list[bool]]:
    return [max(v, lo) for v in values], [v < lo for v in values]


def _legend_below(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(handles), fontsize=8, frameon=False)


def _plain_log_axis(ax) -> None:
    """Tick labels 64, 128, 0.001 rather than 2^6 or a crowd of minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


STYLE = {
    "complete": dict(marker="o", color="C0", label="complete", ms=5, ls="none"),
    "pruned": dict(marker="x", color="0.55", label="pruned (last epoch reported)", ms=5, ls="none"),
}


# Ours, not Optuna's plot_optimization_history: that one leaves out the pruned and failed trials.
def plot_history(rows: list, path: Path) -> Path:
    """Validation accuracy of each trial, in the order they ran, and the best so far."""
    lo, hi = _acc_limits(rows)
    fig, ax = subplots(figsize=SEARCH_FIGSIZE)
    below_any = False
    for state, style in STYLE.items():
        pts = [(r.number, 100 * r.val_acc) for r in rows if r.state == state and r.val_acc is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ys, below = _clip(list(ys), lo)
        ax.plot([x for x, b in zip(xs, below) if not b], [y for y, b in zip(ys, below) if not b], **style)
        if any(below):
            below_any = True
            ax.plot([x for x, b in zip(xs, below) if b], [lo] * sum(below), marker="v", ls="none",
                    color=style["color"], ms=5, clip_on=False)
    best_x, best_y, best = [], [], -1.0
    for r in rows:
        if r.state == "complete" and r.val_acc is not None and 100 * r.val_acc > best:
            best = 100 * r.val_acc
        if best >= 0:
            best_x.append(r.number)
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="C3", lw=1.5, label="best so far")
    failed = [r.number for r in rows if r.state == "fail"]
    if failed:
        ax.plot(failed, [lo] * len(failed), marker="|", color="C3", ls="none", ms=10, clip_on=False,
                label="failed or interrupted")
    ax.set(xlabel="trial", ylabel="validation accuracy (%)", ylim=(lo, hi),
           title="Optimisation history" + ("  (▼: below the axis)" if below_any else ""))
    ax.grid(True, alpha=0.3)
    _legend_below(ax)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def _param_panels(rows: list, names: list[str] | None = None, active=None) -> list[tuple[str, Any, Any]]:
    """(label, value of a config, x scale) for each hyperparameter that varied.

    ``names``: the hyperparameters to consider, in order (default: every rule of RULES); labels
    are RULES' LaTeX ones (matplotlib's mathtext draws them). ``layers`` stands for the hidden
    sizes: their number and their total. ``active(name, config)``: False where the trial did not
    draw ``name`` (its value is then a default that did nothing, and is not plotted). A word's
    scale is its rule's choices, plotted at 0, 1, 2...
    """
    panels = []
    drawn = active or (lambda name, config: True)
    for name in names if names is not None else list(RULES):
        rule = RULES[name]
        if name == "layers":
            panels += [(rule.tex, lambda c: len(c["hidden_sizes"]), "int"),
                       ("Hidden units (total)", lambda c: sum(c["hidden_sizes"]), "log2")]
        elif name not in ("width", "epochs", "seed", "val_size"):
            scale = (rule.choices if rule.choices else "log2" if rule.scale == "log" and rule.type is int else
                     "log" if rule.scale in ("log", "log1m") else "linear")

            def value(c, n=name, rule=rule):
                v = c.get(n) if drawn(n, c) else None
                if v is None:
                    return None
                return rule.choices.index(v) if rule.choices else 1.0 - v if rule.scale == "log1m" else v
            panels.append((f"1 − {rule.tex}" if rule.scale == "log1m" else rule.tex, value, scale))
    panels.append(("epochs run", None, "int"))
    configs = [r.config for r in rows if r.config]
    out = []
    for label, fn, scale in panels:
        values = {r.epochs for r in rows} if fn is None else {fn(c) for c in configs}
        values.discard(None)
        if len(values) > 1:
            out.append((label, fn, scale))
    return out


# Ours, not Optuna's plot_slice: that one leaves out the pruned trials, and the hidden sizes' total.
def plot_params(rows: list, path: Path, names: list[str] | None = None, active=None) -> Path:
    """Validation accuracy against each hyperparameter that varied (one panel each; ``names`` and
    ``active`` as :func:`_param_panels` takes them)."""
    panels = _param_panels(rows, names, active) or [("epochs run", None, "int")]
    lo, hi = _acc_limits(rows)
    cols = 4 if len(panels) > 6 else min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = subplots(nrows, cols, figsize=(2.25 * cols, 2.0 * nrows), squeeze=False, sharey=True)
    for ax, (label, fn, scale) in zip(axes.flat, panels):
        for state, style in STYLE.items():
            pts = [((r.epochs if fn is None else fn(r.config)), 100 * r.val_acc) for r in rows
                   if r.state == state and r.val_acc is not None and r.config
                   and (fn is None or fn(r.config) is not None)]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ys, below = _clip(list(ys), lo)
            ax.plot(xs, ys, **{**style, "label": style["label"], "alpha": 0.85})
            if any(below):
                ax.plot([x for x, b in zip(xs, below) if b], [lo] * sum(below), marker="v", ls="none",
                        color=style["color"], ms=5, clip_on=False)
        if isinstance(scale, tuple):
            ax.set_xticks(range(len(scale)), scale)
            ax.set_xlim(-0.5, len(scale) - 0.5)
        elif scale == "log":
            ax.set_xscale("log")
            from matplotlib.ticker import NullFormatter
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif scale == "log2":
            ax.set_xscale("log", base=2)
            _plain_log_axis(ax)  # ticks at powers of two: 32, 64, 128 (values in between crowd their labels)
        elif scale == "int":
            ticks = sorted({(r.epochs if fn is None else fn(r.config)) for r in rows if r.config} - {None})
            if len(ticks) <= 8:
                ax.set_xticks(range(ticks[0], ticks[-1] + 1))
                ax.set_xlim(ticks[0] - 0.5, ticks[-1] + 0.5)
            else:
                ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(label)
        ax.set_ylim(lo, hi)
        ax.grid(True, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("val. accuracy (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Validation accuracy against each hyperparameter", y=1.04)
    fig.tight_layout()
    return _save(fig, path)


# Ours, not Optuna's plot_intermediate_values: that one marks neither the best trial nor the pruned ones.
def plot_epochs(rows: list, best: object | None, path: Path) -> Path:
    """Validation accuracy after each epoch of every trial: where the pruner cut.

    When every trial ran one epoch, the trials' points are spread a little across the epoch's
    tick (in trial order), so that they do not hide each other.
    """
    lo, hi = _acc_limits(rows)
    last = max((max(r.curve) for r in rows if r.curve), default=1)
    shown = [r for r in rows if r.curve]
    spread = {r.number: 0.3 * (i / (len(shown) - 1) - 0.5) if last == 1 and len(shown) > 1 else 0.0
              for i, r in enumerate(shown)}
    fig, ax = subplots(figsize=SEARCH_FIGSIZE)
    labelled = set()
    ms = 6 if last <= 3 else 3
    for r in shown:
        if best is not None and r.number == best.number:
            continue
        kind = "complete" if r.state == "complete" else "stopped early (pruned, diverged or cut)"
        color = "C0" if r.state == "complete" else "0.55"
        steps = sorted(r.curve)
        ax.plot([s + spread[r.number] for s in steps], [max(100 * r.curve[s], lo) for s in steps], "-",
                color=color, lw=0.8, alpha=0.7 if r.state == "complete" else 0.6, marker="o", ms=ms,
                label=None if kind in labelled else kind)
        labelled.add(kind)
    if best is not None and best.curve:
        steps = sorted(best.curve)
        ax.plot([s + spread.get(best.number, 0.0) for s in steps], [max(100 * best.curve[s], lo) for s in steps],
                "o-", color="C3", lw=2, ms=ms + 2, label=f"best (trial {best.number})", zorder=3)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(lo, hi),
           title="Validation accuracy per epoch of every trial")
    epoch_axis(ax, last)
    ax.grid(True, alpha=0.3)
    _legend_below(ax)
    return _save(fig, path)


def param_label(name: str) -> str:
    """RULES' LaTeX label of a parameter of the search as Optuna names it (``width_2`` and
    ``one_minus_beta2`` included)."""
    if name.startswith("one_minus_"):
        return f"1 − {param_label(name[len('one_minus_'):])}"
    base, _, index = name.rpartition("_")
    if base == "width" and index.isdigit():
        return f"{RULES['width'].tex} {index}"
    return RULES[name].tex if name in RULES else name


def plot_importances(study, path: Path, evaluator) -> Path:
    """Optuna's plot of the importance of each parameter of ``study`` by ``evaluator``, labelled by
    :func:`param_label` (Optuna's own plot: it says what ours would)."""
    import warnings

    import matplotlib
    from optuna.visualization.matplotlib import plot_param_importances
    pyplot()
    with matplotlib.rc_context(), warnings.catch_warnings():  # its ggplot style, and its notes on few trials
        warnings.simplefilter("ignore")
        ax = plot_param_importances(study, evaluator=evaluator, target_name="validation accuracy")
        ax.set_yticks(ax.get_yticks(), [param_label(t.get_text()) for t in ax.get_yticklabels()])
        ax.figure.set_size_inches(SEARCH_FIGSIZE[0], max(SEARCH_FIGSIZE[1], 0.35 * len(ax.get_yticks()) + 1))
        return _save(ax.figure, path)
