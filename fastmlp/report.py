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

from .atomic import write_text
from .config import RULES
from .errors import StorageError, UsageError
from .plots import plot_epochs, plot_history, plot_params
from .space import Space
from .study import (SETTINGS_ATTR, display_url, format_config, format_duration, load_study, open_storage,
                    pick_study, quiet_optuna, retried_number, trial_val_acc)

PDFLATEX_TIMEOUT = 180  # seconds per pdflatex pass


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
    retried_by = {retried_number(t): t.number for t in trials if retried_number(t) is not None}
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
        if retried_number(t) is not None:
            note = f"retry of #{retried_number(t)}" + (f"; {note}" if note else "")
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


# ----------------------------------------------------------------------------- retraining

def retrain_best(best: TrialRow, out: Path, *, data_dir=None, verify: bool = True, dataset=None,
                 log=print) -> dict:
    """Train the best configuration again (same seed) on the whole training set; test once at the end.

    Reuses ``out/result.json`` when it was written for the same configuration and data.
    """
    from .data import load_dataset
    from .train import TrainConfig, train

    config = TrainConfig.from_dict({**best.config, "epochs": best.epochs})
    if dataset is None:
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
        if "space" not in self.settings:
            return []
        space = Space.from_mapping(self.settings["space"], where="stored space")
        lines = [(RULES[n].md, p.describe()) for n, p in space.params.items()]
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
                raise UsageError(f"pdflatex took longer than {PDFLATEX_TIMEOUT} s on {tex}") from None
            if proc.returncode != 0:
                log_file = folder / (tex.stem + ".log")
                src = Path(tmp) / (tex.stem + ".log")
                if src.exists():
                    shutil.copyfile(src, log_file)
                errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
                raise UsageError(f"pdflatex failed on {tex}: {errors[0][1:].strip() if errors else 'see the log'} "
                                 f"(log: {log_file})")
        os.replace(Path(tmp) / (tex.stem + ".pdf"), folder / (tex.stem + ".pdf"))
    return tex.parent / (tex.stem + ".pdf")


# ----------------------------------------------------------------------------- the report

def build_report(storage_url: str, study_name: str | None, out: str | os.PathLike, *, retrain: bool = True,
                 pdf: bool = True, data_dir=None, verify: bool = True, dataset=None, log=print) -> dict[str, Path]:
    """Write the report of a study into ``out``; returns the paths written, by kind.

    ``dataset`` (a :class:`~fastmlp.data.Dataset`) is what the best configuration is trained
    again on; by default the study's dataset is loaded from ``data_dir``.
    """
    quiet_optuna()
    storage = open_storage(storage_url, heartbeat=False, create=False)
    name = pick_study(storage, study_name)
    study = load_study(storage, name)
    rows = collect_rows(study)
    best = best_row(rows)
    if best is None:
        raise StorageError(f"study {name!r} has no completed trial yet ({len(rows)} trials); run `fastmlp search` "
                           f"longer")
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    written = {"history": plot_history(rows, out / "history.png"), "params": plot_params(rows, out / "params.png"),
               "epochs": plot_epochs(rows, best, out / "epochs.png")}
    retrained = None
    if retrain:
        retrained = retrain_best(best, out / "best", data_dir=data_dir, verify=verify, dataset=dataset, log=log)
        written["curves"] = out / "best" / "curves.png"
    data = ReportData(study_name=name, storage=display_url(storage_url), settings=settings, rows=rows, best=best,
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
