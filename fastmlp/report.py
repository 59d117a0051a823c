"""The report of a search: what was tried, the best hyperparameters, and training with them.

``fastmlp report`` reads a study from its storage and writes, into ``--out``:

* ``report.md`` and ``report.tex`` (and ``report.pdf`` when ``pdflatex`` is installed), with
  1. every trial in a table (hyperparameters, validation accuracy, epochs run, state, time)
     and plots of the search: ``history.png`` (validation accuracy per trial and the best so
     far), ``params.png`` (validation accuracy against each hyperparameter) and
     ``epochs.png`` (validation accuracy per epoch of every trial, where pruning shows);
  2. the best hyperparameters in the homework's table (Batch Size, Hidden Sizes, eta, beta1,
     beta2, epsilon, num epochs);
  3. the best configuration trained again from scratch with its seed on the whole training
     set (the validation hold-out excepted) for the epochs the trial ran: ``best/curves.png``,
     ``best/history.json``, ``best/model.npz``; its test accuracy is measured once, after the
     last epoch. A second report of the same study reuses that run (``best/result.json``).

Every file is written atomically. The test set is used nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text
from .search import (DEFAULT_STORAGE, SETTINGS_ATTR, format_config, format_duration, load_study, open_storage,
                     study_names, trial_val_acc)

PDFLATEX_TIMEOUT = 180  # seconds per pdflatex pass


def _cli_error(message: str) -> Exception:
    from .cli import CliError
    return CliError(message)


# ----------------------------------------------------------------------------- the trials

@dataclass
class TrialRow:
    """One trial as the report shows it."""

    number: int
    state: str                    # complete, pruned, fail, running, waiting
    val_acc: float | None         # the objective, or the last validation accuracy reported
    epochs: int                   # epochs run
    config: dict | None           # the TrainConfig of the trial
    seconds: float | None
    note: str = ""
    curve: dict = field(default_factory=dict)  # epoch -> validation accuracy


def collect_rows(study) -> list[TrialRow]:
    """Every trial of the study, with a note saying why it ended as it did."""
    trials = study.get_trials(deepcopy=False)
    retried_by: dict[int, int] = {}
    for t in trials:
        if "retry_of" in t.user_attrs:
            retried_by[int(t.user_attrs["retry_of"])] = t.number
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        state = t.state.name.lower()
        note = t.user_attrs.get("stop_reason", "")
        if state == "fail" and not note:
            note = "its worker stopped sending heartbeats (crashed or killed)"
        if t.number in retried_by and "queued again" in note:
            note = note.replace("queued again", f"queued again as #{retried_by[t.number]}")
        elif t.number in retried_by:
            note += f"; queued again as #{retried_by[t.number]}"
        if "retry_of" in t.user_attrs:
            note = (f"retry of #{t.user_attrs['retry_of']}" + (f"; {note}" if note else ""))
        if state == "waiting":
            note += "; runs first when the search resumes"
        elif state == "running":
            note = (note + "; " if note else "") + "still running (or its worker was lost)"
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.duration is not None:
            seconds = t.duration.total_seconds()
        epochs = t.user_attrs.get("epochs_run", max(t.intermediate_values) if t.intermediate_values else 0)
        rows.append(TrialRow(t.number, state, trial_val_acc(t), int(epochs), t.user_attrs.get("config"), seconds,
                             note.strip("; "), dict(t.intermediate_values)))
    return rows


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    complete = [r for r in rows if r.state == "complete" and r.val_acc is not None]
    return max(complete, key=lambda r: (r.val_acc, -r.number)) if complete else None


# ----------------------------------------------------------------------------- plots

def _pyplot():
    from .plots import _pyplot as plots_pyplot
    return plots_pyplot()


def _save(fig, path: Path) -> Path:
    from .plots import save_figure
    save_figure(fig, path)
    return path


def _acc_limits(rows: list[TrialRow]) -> tuple[float, float]:
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


def plot_history(rows: list[TrialRow], path: Path) -> Path:
    """Validation accuracy of each trial, in the order they ran, and the best so far."""
    plt = _pyplot()
    lo, hi = _acc_limits(rows)
    fig, ax = plt.subplots(figsize=(9, 4.2))
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


def _param_panels(rows: list[TrialRow]) -> list[tuple[str, Any, str]]:
    """(label, value of a config, x scale) for each hyperparameter that varied."""
    panels = [
        ("batch size", lambda c: c["batch_size"], "log2"),
        ("hidden layers", lambda c: len(c["hidden_sizes"]), "int"),
        ("hidden units (total)", lambda c: sum(c["hidden_sizes"]), "log2"),
        ("η (eta)", lambda c: c["lr"], "log"),
        ("β1", lambda c: c["beta1"], "linear"),
        ("1 − β2", lambda c: 1.0 - c["beta2"], "log"),
        ("ε (epsilon)", lambda c: c["eps"], "log"),
        ("η decay per epoch", lambda c: c.get("lr_decay", 1.0), "linear"),
        ("epochs run", None, "int"),
    ]
    configs = [r.config for r in rows if r.config]
    out = []
    for label, fn, scale in panels:
        values = {r.epochs for r in rows} if fn is None else {fn(c) for c in configs}
        if len(values) > 1:
            out.append((label, fn, scale))
    return out


def plot_params(rows: list[TrialRow], path: Path) -> Path:
    """Validation accuracy against each hyperparameter (one panel each)."""
    plt = _pyplot()
    panels = _param_panels(rows) or [("epochs run", None, "int")]
    lo, hi = _acc_limits(rows)
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.9 * nrows), squeeze=False, sharey=True)
    for ax, (label, fn, scale) in zip(axes.flat, panels):
        for state, style in STYLE.items():
            pts = [((r.epochs if fn is None else fn(r.config)), 100 * r.val_acc) for r in rows
                   if r.state == state and r.val_acc is not None and r.config]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ys, below = _clip(list(ys), lo)
            ax.plot(xs, ys, **{**style, "label": style["label"], "alpha": 0.85})
            if any(below):
                ax.plot([x for x, b in zip(xs, below) if b], [lo] * sum(below), marker="v", ls="none",
                        color=style["color"], ms=5, clip_on=False)
        if scale == "log":
            ax.set_xscale("log")
            from matplotlib.ticker import NullFormatter
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif scale == "log2":
            ax.set_xscale("log", base=2)
            _plain_log_axis(ax)
            ticks = sorted({(r.epochs if fn is None else fn(r.config)) for r in rows if r.config})
            if len(ticks) <= 6:
                ax.set_xticks(ticks)
                ax.set_xticklabels([str(t) for t in ticks])
        elif scale == "int":
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(label)
        ax.set_ylim(lo, hi)
        ax.grid(True, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Validation accuracy against each hyperparameter", y=1.04)
    fig.tight_layout()
    return _save(fig, path)


def plot_epochs(rows: list[TrialRow], best: TrialRow | None, path: Path) -> Path:
    """Validation accuracy after each epoch of every trial: where the pruner cut."""
    plt = _pyplot()
    lo, hi = _acc_limits(rows)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    labelled = set()
    for r in rows:
        if not r.curve or (best is not None and r.number == best.number):
            continue
        kind = "complete" if r.state == "complete" else "stopped early (pruned, diverged or cut)"
        color = "C0" if r.state == "complete" else "0.6"
        steps = sorted(r.curve)
        ax.plot(steps, [max(100 * r.curve[s], lo) for s in steps], "-", color=color, lw=0.8,
                alpha=0.6 if r.state == "complete" else 0.45, marker=".", ms=3,
                label=None if kind in labelled else kind)
        labelled.add(kind)
    if best is not None and best.curve:
        steps = sorted(best.curve)
        ax.plot(steps, [max(100 * best.curve[s], lo) for s in steps], "o-", color="C3", lw=2, ms=4,
                label=f"best (trial {best.number})")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(lo, hi),
           title="Validation accuracy per epoch of every trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    _legend_below(ax)
    return _save(fig, path)


# ----------------------------------------------------------------------------- retraining

def retrain_best(best: TrialRow, settings: dict, out: Path, *, data_dir=None, verify: bool = True,
                 log=print) -> dict:
    """Train the best configuration again (same seed) on the whole training set; test once at the end.

    Reuses ``out/result.json`` when it was written for the same configuration and data.
    """
    from .data import load_dataset
    from .train import TrainConfig, train

    config = TrainConfig.from_dict({**best.config, "epochs": best.epochs})
    dataset = load_dataset(config.dataset, data_dir, verify=verify, download=True)
    key = {"config": config.to_dict(), "checksums": dataset.checksums}
    result_path = out / "result.json"
    if result_path.exists() and (out / "curves.png").exists():
        try:
            old = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("key") == key:
            log(f"report: reusing the retrained best configuration in {out}")
            return old
    log(f"report: training trial {best.number}'s configuration again on the whole training set: "
        f"{format_config(config.to_dict())}, {config.epochs} epochs, seed {config.seed}")
    t0 = time.perf_counter()
    result = train(config, dataset, out_dir=out, evaluate_test=False,
                   log=lambda line: log("  " + line) if line.startswith("epoch") else None)
    seconds = time.perf_counter() - t0
    test_loss, test_acc = result.model.evaluate(dataset.test_images, dataset.test_labels)
    last = result.history.epochs[-1]
    data = {"key": key, "trial": best.number, "config": config.to_dict(), "epochs": config.epochs,
            "train_rows": result.history.dataset.get("train_rows"), "val_rows": result.history.dataset.get("val_rows"),
            "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
            "val_acc": last["val_acc"], "test_loss": test_loss, "test_acc": test_acc,
            "test_rows": int(len(dataset.test_images)), "seconds": seconds}
    write_text(result_path, json.dumps(data, indent=2) + "\n")
    from .plots import plot_curves
    plot_curves(result.history, out / "curves.png",
                title=f"best configuration (trial {best.number}) trained again: hidden {list(config.hidden_sizes)}, "
                      f"batch {config.batch_size}; test accuracy {100 * test_acc:.2f}% after epoch {config.epochs}")
    log(f"report: test accuracy {100 * test_acc:.2f}% (measured once, after epoch {config.epochs})")
    return data


def train_command_parts(config: dict) -> list[str]:
    """The ``fastmlp train`` command that trains ``config`` again, one flag (with its value) a part."""
    parts = ["fastmlp train", f"--hidden {','.join(str(h) for h in config['hidden_sizes'])}",
             f"--batch-size {config['batch_size']}", f"--lr {config['lr']!r}", f"--beta1 {config['beta1']!r}",
             f"--beta2 {config['beta2']!r}", f"--eps {config['eps']!r}", f"--epochs {config['epochs']}",
             f"--seed {config['seed']}"]
    parts.append(f"--lr-decay {float(config.get('lr_decay', 1.0))!r}")
    if config.get("val_size", 5000) != 5000:
        parts.append(f"--val-size {config['val_size']}")
    if config.get("dataset", "mnist") != "mnist":
        parts.append(f"--dataset {config['dataset']}")
    return parts


# ----------------------------------------------------------------------------- formatting

def fmt_acc(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def fmt_sci(v: float) -> str:
    """``1.23e-03`` style, three significant digits."""
    return f"{v:.2e}"


def fmt_beta(v: float) -> str:
    """Two significant digits of ``1 - v`` (at least three decimals): 0.923, 0.99985, 0.999999."""
    if v >= 1 or v <= 0:
        return f"{v:g}"
    digits = max(3, 1 - math.floor(math.log10(1 - v)))
    return f"{v:.{digits}f}"


def fmt_seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def hidden_text(config: dict | None) -> str:
    return "–" if not config else "[" + ", ".join(str(h) for h in config["hidden_sizes"]) + "]"


HOMEWORK_COLUMNS = ("Batch Size", "Hidden Sizes", "η", "β1", "β2", "ε", "num epochs")
HOMEWORK_COLUMNS_TEX = ("Batch Size", "Hidden Sizes", r"$\eta$", r"$\beta_1$", r"$\beta_2$", r"$\epsilon$",
                        "num epochs")


def homework_values(config: dict, epochs: int) -> list[str]:
    return [str(config["batch_size"]), hidden_text(config), fmt_sci(config["lr"]), fmt_beta(config["beta1"]),
            fmt_beta(config["beta2"]), fmt_sci(config["eps"]), str(epochs)]


TRIAL_COLUMNS = ("#", "state", "val. acc. (%)", "epochs", "batch", "hidden sizes", "η", "β1", "β2", "ε",
                 "time (s)", "note")
TRIAL_COLUMNS_TEX = ("\\#", "state", "val.\\ acc.\\ (\\%)", "ep.", "batch", "hidden sizes", r"$\eta$",
                     r"$\beta_1$", r"$\beta_2$", r"$\epsilon$", "time (s)", "note")


def trial_values(r: TrialRow) -> list[str]:
    c = r.config
    if c:
        hyper = [str(c["batch_size"]), hidden_text(c), fmt_sci(c["lr"]), fmt_beta(c["beta1"]), fmt_beta(c["beta2"]),
                 fmt_sci(c["eps"])]
    else:
        hyper = ["–"] * 6
    return [str(r.number), r.state, fmt_acc(r.val_acc), str(r.epochs), *hyper, fmt_seconds(r.seconds), r.note]


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                  "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
                  "–": "--", "—": "---", "η": r"$\eta$", "β": r"$\beta$", "ε": r"$\epsilon$", "−": "-",
                  "×": r"$\times$", "’": "'"}


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX paragraph or table cell (pdflatex, default encoding)."""
    out = []
    for ch in str(text):
        if ch in LATEX_SPECIALS:
            out.append(LATEX_SPECIALS[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header, rows, align=None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the documents

@dataclass
class ReportData:
    study_name: str
    storage: str
    settings: dict
    rows: list[TrialRow]
    best: TrialRow
    plots: dict[str, str]               # kind -> file name relative to the report folder
    retrained: dict | None              # retrain_best's result, or None with --no-retrain
    curves: str | None                  # the retrained run's curves.png, relative
    created: str

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def counts_text(self) -> str:
        c = self.counts
        parts = [f"{c[s]} {label}" for s, label in (("complete", "complete"), ("pruned", "pruned"),
                                                     ("fail", "failed or interrupted"),
                                                     ("waiting", "queued"), ("running", "running"))
                 if c.get(s)]
        return f"{len(self.rows)} trials ({', '.join(parts)})"

    def trial_seconds(self) -> float:
        return sum(r.seconds or 0.0 for r in self.rows)

    def n_diverged(self) -> int:
        return sum(r.note.startswith("diverged") or "; diverged" in r.note for r in self.rows)

    def space_lines(self) -> list[tuple[str, str]]:
        from .search import Space
        space = Space.from_mapping(self.settings["space"], where="stored space") if "space" in self.settings \
            else None
        if space is None:
            return []
        names = {"batch_size": "Batch Size", "layers": "hidden layers", "width": "width of each hidden layer",
                 "lr": "η (eta)", "beta1": "β1", "beta2": "β2", "eps": "ε (epsilon)", "lr_decay": "η decay per epoch"}
        lines = [(names.get(n, n), p.describe()) for n, p in space.params.items()]
        lines.append(("epochs", f"at most {space.epochs}, at least {space.min_epochs} before pruning"))
        return lines

    def training_text(self) -> str:
        s = self.settings
        subset = s.get("subset")
        data = s.get("dataset", "mnist")
        rows = (f"the first {subset} of the {data} training images" if subset else
                f"the {data} training images")
        return (f"Each trial trained on {rows}, less the {s.get('val_size', 5000)} held out for validation, "
                f"and was judged on its validation accuracy after its last epoch; the test set was never used "
                f"during the search. Pruner: {s.get('pruner', '?')}; sampler: TPE, seed {s.get('seed', 0)}.")


def render_markdown(d: ReportData) -> str:
    best, c = d.best, d.best.config
    L = [f"# Hyperparameter search: {d.study_name}", "",
         f"Study `{d.study_name}` in `{d.storage}`, reported {d.created}: {d.counts_text()}, "
         f"{format_duration(d.trial_seconds())} of training summed over the trials.", "",
         "## 1. What was tried", "", d.training_text(), ""]
    if d.n_diverged():
        L += [f"{d.n_diverged()} trial(s) diverged (the loss became NaN or infinite); they are recorded as "
              f"pruned, with the reason in the table.", ""]
    space = d.space_lines()
    if space:
        L += ["The search space:", "", md_table(("hyperparameter", "values tried"), space), ""]
    L += [f"![Optimisation history]({d.plots['history']})", "",
          f"![Validation accuracy against each hyperparameter]({d.plots['params']})", "",
          f"![Validation accuracy per epoch of every trial]({d.plots['epochs']})", "",
          "Every trial (validation accuracy: after the last epoch; for a trial stopped early, the last one "
          "it reported):", "",
          md_table(TRIAL_COLUMNS, [trial_values(r) for r in d.rows],
                   ["--:", "---", "--:", "--:", "--:", "---", "--:", "--:", "--:", "--:", "--:", "---"]), "",
          "## 2. The best hyperparameters", "",
          f"Trial {best.number}, validation accuracy {100 * best.val_acc:.2f}% after {best.epochs} epochs:", "",
          md_table(HOMEWORK_COLUMNS, [homework_values(c, best.epochs)]), ""]
    if c.get("lr_decay", 1.0) != 1.0:
        L += [f"η was multiplied by {c['lr_decay']:.4g} after every epoch.", ""]
    L += ["## 3. Training with the best hyperparameters", ""]
    L += _retrain_paragraphs(d)
    if d.curves:
        L += [f"![Loss and accuracy of the best configuration]({d.curves})", ""]
    L += ["To train it again:", "", "```sh", *_wrap_command(train_command_parts({**c, "epochs": best.epochs}), 96),
          "```", ""]
    return "\n".join(L)


def _retrain_paragraphs(d: ReportData) -> list[str]:
    best, r = d.best, d.retrained
    if r is None:
        return ["Not trained again here (`--no-retrain`); without it, the report trains the best configuration "
                "again and measures its test accuracy.", ""]
    subset = d.settings.get("subset")
    same = ("" if subset else
            f" (the trial measured {100 * best.val_acc:.2f}%: the same seed and data, but another number of "
            f"threads can round sums differently)")
    text = [f"The best configuration trained again from scratch with its seed ({r['config']['seed']}) on "
            f"{r['train_rows']} training images for {r['epochs']} epochs, in {r['seconds']:.0f} s: training loss "
            f"{r['train_loss']:.3g}, validation accuracy {100 * r['val_acc']:.2f}%{same}.", ""]
    if subset:
        text += [f"The trials trained on the first {subset} images only; this run uses the whole training set, "
                 f"so its figures differ from the trial's.", ""]
    text += [f"**Test accuracy: {100 * r['test_acc']:.2f}%** (test loss {r['test_loss']:.4f}), on the "
             f"{r['test_rows']} test images, measured once, after the last epoch.", ""]
    return text


def _tex_table(header, rows, spec: str, long: bool = False, size: str = "") -> list[str]:
    env = "longtable" if long else "tabular"
    head = " & ".join(header) + r" \\ \hline"
    L = [r"{" + size, rf"\begin{{{env}}}{{{spec}}}", r"\hline", head]
    if long:
        L += [r"\endfirsthead", r"\hline", head, r"\endhead"]
    L += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in rows]
    L += [r"\hline", rf"\end{{{env}}}", "}"]
    return L


def render_latex(d: ReportData) -> str:
    best, c = d.best, d.best.config
    e = latex_escape

    def figure(path: str, caption: str, width: str = r"\linewidth") -> list[str]:
        return [r"\begin{figure}[htbp]", r"\centering", rf"\includegraphics[width={width}]{{{path}}}",
                rf"\caption{{{e(caption)}}}", r"\end{figure}", ""]

    L = [r"\documentclass[11pt,a4paper]{article}",
         r"\usepackage{graphicx}", r"\usepackage{longtable}", r"\usepackage{array}",
         r"\IfFileExists{geometry.sty}{\usepackage[margin=2cm]{geometry}}{}",
         r"\setlength{\LTcapwidth}{\linewidth}",
         rf"\title{{Hyperparameter search: {e(d.study_name)}}}", rf"\date{{{e(d.created)}}}", r"\author{fastmlp}",
         r"\begin{document}", r"\maketitle", "",
         e(f"Study {d.study_name} in {d.storage}: {d.counts_text()}, "
           f"{format_duration(d.trial_seconds())} of training summed over the trials."), "",
         r"\section{What was tried}", "", e(d.training_text()), ""]
    if d.n_diverged():
        L += [e(f"{d.n_diverged()} trial(s) diverged (the loss became NaN or infinite); they are recorded as "
                f"pruned, with the reason in the table."), ""]
    space = d.space_lines()
    if space:
        L += [r"\begin{center}"] + _tex_table(("hyperparameter", "values tried"), space, "ll") + [r"\end{center}", ""]
    L += figure(d.plots["history"], "Optimisation history: validation accuracy of each trial, in the order they "
                                    "ran, and the best so far.")
    L += figure(d.plots["params"], "Validation accuracy against each hyperparameter.")
    L += figure(d.plots["epochs"], "Validation accuracy per epoch of every trial; the pruner stopped the grey ones.")
    L += [e("Every trial (validation accuracy: after the last epoch; for a trial stopped early, the last one it "
            "reported):"), ""]
    L += _tex_table(TRIAL_COLUMNS_TEX, [trial_values(r) for r in d.rows],
                    r"r l r r r l r r r r r p{3.1cm}", long=True, size=r"\scriptsize\setlength{\tabcolsep}{3pt}")
    L += ["", r"\section{The best hyperparameters}", "",
          e(f"Trial {best.number}, validation accuracy {100 * best.val_acc:.2f}% after {best.epochs} epochs:"), "",
          r"\begin{center}"]
    L += _tex_table(HOMEWORK_COLUMNS_TEX, [homework_values(c, best.epochs)], "r l l l l l r")
    L += [r"\end{center}", ""]
    if c.get("lr_decay", 1.0) != 1.0:
        L += [e(f"η was multiplied by {c['lr_decay']:.4g} after every epoch."), ""]
    L += [r"\section{Training with the best hyperparameters}", ""]
    for para in _retrain_paragraphs(d):
        if para.startswith("**"):
            bold, rest = para[2:].split("**", 1)
            L.append(rf"\textbf{{{e(bold)}}}{e(rest)}")
        else:
            L.append(e(para.replace("`", "")))
    if d.curves:
        L += figure(d.curves, "Loss and accuracy per epoch of the best configuration, trained again.")
    L += [e("To train it again:"), r"{\small", r"\begin{verbatim}"]
    L += _wrap_command(train_command_parts({**c, "epochs": best.epochs}))
    L += [r"\end{verbatim}", "}", "", r"\end{document}", ""]
    return "\n".join(L)


def _wrap_command(parts: list[str], width: int = 64) -> list[str]:
    """Shell lines of at most about ``width`` characters, continued with backslashes."""
    lines, line = [], ""
    for part in parts:
        if line and len(line) + 1 + len(part) > width:
            lines.append(line + " \\")
            line = "    " + part
        else:
            line = f"{line} {part}" if line else part
    return lines + [line]


def compile_pdf(tex: Path, log=print) -> Path | None:
    """``pdflatex`` twice (the long table settles its widths) in a temporary folder; None without it."""
    exe = shutil.which("pdflatex")
    if exe is None:
        return None
    folder = tex.parent.resolve()
    # no leading dot: TeX's default paranoid output policy refuses to write into hidden folders
    with tempfile.TemporaryDirectory(prefix="latex-tmp-", dir=folder) as tmp:
        for _ in range(2):
            try:
                proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                                       f"-output-directory={tmp}", tex.name], cwd=folder, capture_output=True,
                                      text=True, errors="replace", timeout=PDFLATEX_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise _cli_error(f"pdflatex took longer than {PDFLATEX_TIMEOUT} s on {tex}") from None
            if proc.returncode != 0:
                log_file = folder / (tex.stem + ".log")
                src = Path(tmp) / (tex.stem + ".log")
                if src.exists():
                    shutil.copyfile(src, log_file)
                errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
                raise _cli_error(f"pdflatex failed on {tex}: {errors[0][1:].strip() if errors else 'see the log'} "
                                 f"(log: {log_file})")
        os.replace(Path(tmp) / (tex.stem + ".pdf"), folder / (tex.stem + ".pdf"))
    return tex.parent / (tex.stem + ".pdf")


# ----------------------------------------------------------------------------- the command

def add_report_parser(sub) -> None:
    from .cli import cmd_report
    p = sub.add_parser("report", help="report of a search: report.md, report.tex (and .pdf), plots",
                       description="Write the report of a search: every trial and plots of the search, the best "
                                   "hyperparameters, and the best configuration trained again with its test "
                                   "accuracy, as Markdown and LaTeX (and PDF when pdflatex is installed).")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"the search's Optuna storage (default {DEFAULT_STORAGE})")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="the study (default: the only one in the storage, else mnist)")
    p.add_argument("--out", default="report", help="output folder (default report)")
    p.add_argument("--no-retrain", action="store_true",
                   help="do not train the best configuration again (no test accuracy)")
    p.add_argument("--no-pdf", action="store_true", help="do not run pdflatex even when it is installed")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="BLAS threads for the retraining")
    p.add_argument("--data-dir", default=None, help="folder holding <dataset>/ (default $FASTMLP_DATA_DIR, ./data)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification (custom data)")
    p.set_defaults(func=cmd_report)


def _pick_study(storage, name: str | None) -> str:
    if name is not None:
        return name
    names = study_names(storage)
    if len(names) == 1:
        return names[0]
    if "mnist" in names or not names:
        return "mnist"
    raise _cli_error(f"the storage holds several studies ({', '.join(names)}); choose one with --study-name")


def build_report(storage_url: str, study_name: str | None, out: str | os.PathLike, *, retrain: bool = True,
                 pdf: bool = True, data_dir=None, verify: bool = True, log=print) -> dict[str, Path]:
    """Write the report of a study into ``out``; returns the paths written, by kind."""
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(storage_url, heartbeat=False, create=False)
    name = _pick_study(storage, study_name)
    study = load_study(storage, name)
    rows = collect_rows(study)
    best = best_row(rows)
    if best is None:
        raise _cli_error(f"study {name!r} has no completed trial yet ({len(rows)} trials); run `fastmlp search` "
                         f"longer")
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"history": plot_history(rows, out / "history.png"), "params": plot_params(rows, out / "params.png"),
               "epochs": plot_epochs(rows, best, out / "epochs.png")}
    retrained = None
    if retrain:
        retrained = retrain_best(best, settings, out / "best", data_dir=data_dir, verify=verify, log=log)
        written["curves"] = out / "best" / "curves.png"
    data = ReportData(study_name=name, storage=storage_url, settings=settings, rows=rows, best=best,
                      plots={k: p.name for k, p in written.items() if k != "curves"}, retrained=retrained,
                      curves="best/curves.png" if retrained else None,
                      created=time.strftime("%Y-%m-%d %H:%M"))
    write_text(out / "report.md", render_markdown(data))
    write_text(out / "report.tex", render_latex(data))
    written["md"], written["tex"] = out / "report.md", out / "report.tex"
    if pdf:
        path = compile_pdf(out / "report.tex", log=log)
        if path is not None:
            written["pdf"] = path
    return written


def run_report_cli(args) -> int:
    """``fastmlp report``: read the study, write the report, say where it is."""
    from .search import storage_url
    if args.threads is not None and args.threads < 1:
        raise _cli_error(f"--threads must be >= 1; got {args.threads}")
    limiter = None
    if args.threads is not None:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=args.threads)
    try:
        written = build_report(storage_url(args.storage), args.study_name, args.out, retrain=not args.no_retrain,
                               pdf=not args.no_pdf, data_dir=args.data_dir, verify=not args.no_verify,
                               log=lambda line: print(line, flush=True))
    finally:
        if limiter is not None:
            limiter.unregister()
    kinds = [written[k] for k in ("md", "tex", "pdf") if k in written]
    print(f"report: wrote {', '.join(str(p) for p in kinds)}"
          + ("" if "pdf" in written or args.no_pdf else " (no pdflatex here: no PDF)"), flush=True)
    return 0
