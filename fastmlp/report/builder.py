"""The report of a search: what was tried, the best hyperparameters, and training with them.

``fastmlp report`` reads a study from its storage and builds one document
(:mod:`fastmlp.report.document`), written into ``--out`` as ``report.md`` and ``report.tex`` (and
``report.pdf`` when ``pdflatex`` is installed):

1. the search: what each trial trained on, the space (labels from :data:`~fastmlp.config.RULES`,
   and when each conditional option was drawn), and its plots, each where the text discusses it:
   ``history.png`` (validation accuracy per trial and the best so far), ``params.png``
   (validation accuracy against each hyperparameter that varied), ``importance.png`` (Optuna's
   plot of their importances, when two trials or more completed) and ``epochs.png`` (validation
   accuracy per epoch of every trial);
2. the best hyperparameters in the homework's table (Batch Size, Hidden Sizes, eta, beta1,
   beta2, epsilon, num epochs), and the options of its training recipe in another;
3. the best configuration trained again from scratch with its seed on the whole training
   set (the validation hold-out excepted) for the epochs the trial ran: ``best/curves.png``,
   ``best/history.json``, ``best/model.npz``; its test accuracy is measured once, after the
   last epoch. A second report of the same study reuses that run (``best/result.json``);

and, in an appendix, every trial in a table: state, validation accuracy, epochs run, every
hyperparameter that varied, time, and why it ended as it did (the recipe's options in tables
of their own, as many as the page's width holds).

Every file is written atomically. The test set is used nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from ..config import RULES, TrainConfig
from ..errors import StorageError, UsageError
from ..search.space import RECIPE, Space, fmt_value, values_text
from ..search.study import (
    SETTINGS_ATTR,
    display_url,
    format_duration,
    load_study,
    open_storage,
    pick_study,
    quiet_optuna,
    retried_number,
    trial_val_acc,
)
from .document import Alt, Code, CodeBlock, Document, Figure, Paragraph, Ref, Section, Strong, Table, count, to_latex, to_markdown
from .plots import plot_epochs, plot_history, plot_importances, plot_params
from .retrain import kept_text, retrain_best

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
        config = t.user_attrs.get("config") if isinstance(t.user_attrs.get("config"), dict) else None
        rows.append(TrialRow(t.number, state, trial_val_acc(t), int(epochs), config, seconds, note.strip("; "),
                             dict(t.intermediate_values)))
    return rows


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    complete = [r for r in rows if r.state == "complete" and r.val_acc is not None and r.config]
    return max(complete, key=lambda r: (r.val_acc, -r.number)) if complete else None


# ----------------------------------------------------------------------------- retraining

#: Flags the command always gives: the homework's hyperparameters, eta's decay, the epochs and the seed.
ALWAYS = ("batch_size", "lr", "beta1", "beta2", "eps", "lr_decay", "epochs", "seed")


def train_command_parts(config: dict) -> list[str]:
    """The ``fastmlp train`` command that trains ``config`` again, one flag (with its value) a part:
    those of :data:`ALWAYS`, and every other flag of :data:`RULES` whose value is not the default."""
    defaults = TrainConfig().to_dict()
    parts = ["fastmlp train", f"--hidden {','.join(str(h) for h in config['hidden_sizes'])}"]
    for name, rule in RULES.items():
        if rule.flag is None:
            continue
        value = config.get(name, 1.0 if name == "lr_decay" else defaults.get(name))  # no decay before it existed
        if name in ALWAYS or value != defaults.get(name):
            parts.append(f"{rule.flag} {value!r}" if isinstance(value, float) else f"{rule.flag} {value}")
    if config.get("dataset", "mnist") != "mnist":
        parts.append(f"--dataset {config['dataset']}")
    return parts


# ----------------------------------------------------------------------------- formatting

def fmt_acc(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def fmt_seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def hidden_text(config: dict | None) -> str:
    return "–" if not config else "[" + ", ".join(str(h) for h in config["hidden_sizes"]) + "]"


def label(name: str) -> Alt:
    """The display label of hyperparameter ``name``, from :data:`RULES`, for both formats."""
    return Alt(RULES[name].md, RULES[name].tex)


#: The homework's hyperparameters, in the homework's order; every trial table shows them.
HOMEWORK = ("batch_size", "lr", "beta1", "beta2", "eps")
#: Fields of a configuration that belong to the run, not to what a search compares.
RUN_FIELDS = ("epochs", "seed", "val_size", "patience", "min_delta")
HIDDEN_SIZES = "Hidden Sizes"   # the list of hidden widths (RULES has its parts: layers, width)


def hyperparameter_names(rows: list[TrialRow], space: Space | None = None) -> list[str]:
    """The hyperparameters the trial table shows, in :data:`RULES`' order: the homework's, and every
    other one of the trials' configurations that varied between trials or that the space searched."""
    configs = [r.config for r in rows if r.config]
    searched = {n for n, p in space.params.items() if p.kind != "fixed"} if space else set()
    names = []
    for name in RULES:
        if name in RUN_FIELDS or not any(name in c for c in configs):
            continue
        if name in HOMEWORK or name in searched or len({c.get(name) for c in configs}) > 1:
            names.append(name)
    return names


def homework_table(config: dict, epochs: int) -> Table:
    header = (label("batch_size"), HIDDEN_SIZES, label("lr"), label("beta1"), label("beta2"), label("eps"),
              label("epochs"))
    row = (str(config["batch_size"]), hidden_text(config), *(fmt_value(n, config[n]) for n in HOMEWORK[1:]),
           str(epochs))
    return Table(header, [row], ("r", "l", "r", "r", "r", "r", "r"), caption="The best hyperparameters.",
                 label="tab:best")


RECIPE_COLUMNS = 8  # options of the recipe per table: as many as the page's width holds in small type


def cell(name: str, config: dict | None, space: Space | None = None) -> str:
    """The value of ``name`` in ``config`` as the tables show it; "–" where the space did not draw it
    (its condition did not hold, so the option did nothing)."""
    if not config:
        return "–"
    if name == "layers":
        return hidden_text(config)
    if space is not None and name in space.params and not space.active(name, config):
        return "–"
    return fmt_value(name, config.get(name))


def trial_tables(rows: list[TrialRow], names: list[str], study_name: str, space: Space | None = None) -> list[Table]:
    """Every trial: state, validation accuracy, epochs, the hyperparameters ``names``, time, and a
    note where one says more than the state (no note column where none does). The options of the
    recipe among ``names`` follow in tables of their own, RECIPE_COLUMNS at most each, so that no
    table runs past the margin."""
    hyper = _with_hidden([n for n in names if n not in RECIPE])
    recipe = [n for n in names if n in RECIPE]
    notes = [table_note(r) for r in rows]
    header = ("#", "state", "val. acc. (%)", "epochs",
              *(HIDDEN_SIZES if n == "layers" else label(n) for n in hyper), "time (s)")
    body = [(str(r.number), r.state, fmt_acc(r.val_acc), str(r.epochs), *(cell(n, r.config, space) for n in hyper),
             fmt_seconds(r.seconds)) for r in rows]
    align = ("r", "l", "r", "r", *("l" if n == "layers" else "r" for n in hyper), "r")
    if any(notes):
        header, align = (*header, "note"), (*align, "*")
        body = [(*row, note) for row, note in zip(body, notes)]
    tables = [Table(header, body, align, caption=("Every trial of study ", Code(study_name), "."), label="tab:trials",
                    long=True, small=True)]
    for k, first in enumerate(range(0, len(recipe), RECIPE_COLUMNS), 2):
        part = recipe[first:first + RECIPE_COLUMNS]
        tables.append(Table(("#", *(label(n) for n in part)),
                            [(str(r.number), *(cell(n, r.config, space) for n in part)) for r in rows],
                            ("r",) * (1 + len(part)), label=f"tab:trials-{k}", long=True, small=True,
                            caption=("The training recipe of every trial of study ", Code(study_name),
                                     " (continued)" if k > 2 else " (–: not drawn, the option was off)", ".")))
    return tables


def table_note(r: TrialRow) -> str:
    """The trial's note, less what its state and epochs already say ("pruned after epoch 2")."""
    return "" if r.state == "pruned" and r.note == f"pruned after epoch {r.epochs}" else r.note


def _with_hidden(names: list[str]) -> list[str]:
    """``names`` with the hidden sizes (shown as one column, under ``layers``) after the batch size."""
    return names[:1] + ["layers"] + names[1:] if names[:1] == ["batch_size"] else ["layers"] + names


# ----------------------------------------------------------------------------- the document

DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


@dataclass
class ReportData:
    study_name: str
    storage: str
    settings: dict
    rows: list[TrialRow]
    best: TrialRow
    plots: dict[str, str]               # kind -> file name relative to the report folder
    retrained: dict | None              # retrain_best's result (fastmlp.report.retrain), or None with --no-retrain
    curves: str | None                  # the retrained run's curves.png, relative
    created: str
    title: str | None = None
    author: str = ""
    importance: str | None = None       # why there is no plot of the importances; None when there is

    @property
    def space(self) -> Space | None:
        return Space.from_mapping(self.settings["space"], where="stored space") if "space" in self.settings else None

    @property
    def dataset_name(self) -> str:
        name = self.settings.get("dataset", "mnist")
        return DATASET_NAMES.get(name, name)

    def counts_text(self) -> str:
        c: dict[str, int] = {}
        for r in self.rows:
            c[r.state] = c.get(r.state, 0) + 1
        parts = [f"{c[s]} {word}" for s, word in (("complete", "complete"), ("pruned", "pruned"),
                                                   ("fail", "failed or interrupted"), ("waiting", "queued"),
                                                   ("running", "running")) if c.get(s)]
        return f"{count(len(self.rows), 'trial')} ({', '.join(parts)})"

    def trial_seconds(self) -> float:
        return sum(r.seconds or 0.0 for r in self.rows)

    def n_diverged(self) -> int:
        return sum(r.note.startswith("diverged") or "; diverged" in r.note for r in self.rows)


def space_table(space: Space) -> Table:
    """Each hyperparameter and the values tried; where the space draws some only in some trials, when."""
    conditional = [n for n in space.params if space.shows_when(n) and space.params[n].when]
    rows = [(label(n), p.describe(), *([_when(p.when)] if conditional else [])) for n, p in space.params.items()]
    rows.append((label("epochs"), f"at most {space.epochs}, at least {space.min_epochs} before pruning",
                 *([""] if conditional else [])))
    header = ("hyperparameter", "values tried", *(["drawn when"] if conditional else []))
    return Table(header, rows, ("l", "l", *(["*"] if conditional else [])), caption="The search space.",
                 label="tab:space")


def _when(when) -> tuple:
    """``augmentation is elastic`` with RULES' labels; "always" for no condition."""
    parts: list = []
    for parent, values in when:
        parts += [" and " if parts else "", label(parent), f" is {values_text(values)}"]
    return tuple(parts) or "always"


def search_section(d: ReportData) -> Section:
    s, space, best = d.settings, d.space, d.best
    val = s.get("val_size", 5000)
    subset = s.get("subset")
    which = (f"the first {subset} of the {d.dataset_name} training images left after holding out {val} for "
             f"validation" if subset else
             f"the {d.dataset_name} training images left after holding out {val} for validation")
    blocks = [Paragraph(f"Each trial trained a multi-layer perceptron with Adam on {which}, and was judged on its "
                        f"validation accuracy after its last epoch; the test set was never used during the search.")]
    if space is not None:
        pruning = (f"after any epoch from epoch {space.min_epochs} on, the pruner ({s.get('pruner', '?')}) could "
                   f"stop it, from its validation accuracy against that of the other trials"
                   if space.min_epochs < space.epochs else "no trial could be stopped early")
        blocks += [Paragraph((f"The sampler (TPE, seed {s.get('seed', 0)}) drew each trial's hyperparameters from "
                              "the space in ", Ref("tab:space"), f". A trial ran at most "
                              f"{count(space.epochs, 'epoch')}; {pruning}.")),
                   space_table(space)]
    if d.n_diverged():
        blocks.append(Paragraph(f"{count(d.n_diverged(), 'trial')} diverged (the loss became NaN or infinite); "
                                f"{'it is' if d.n_diverged() == 1 else 'they are'} recorded as pruned, with the "
                                f"reason in the table of every trial."))
    blocks += [Paragraph((Ref("fig:history"), " shows the validation accuracy of each trial in the order they ran, "
                          f"and the best so far; trial {best.number} was the best, with "
                          f"{100 * best.val_acc:.2f}%.")),
               Figure(d.plots["history"], "Optimisation history: validation accuracy of each trial, and the best "
                                          "so far.", "fig:history", width=0.8),
               Paragraph((Ref("fig:params"), " plots the validation accuracy of the trials against each "
                          "hyperparameter that varied.")),
               Figure(d.plots["params"], "Validation accuracy against each hyperparameter.", "fig:params"),
               *importance_blocks(d),
               Paragraph(epochs_paragraph(d)),
               Figure(d.plots["epochs"], epochs_caption(d), "fig:epochs", width=0.8),
               Paragraph((Ref("tab:trials"), " in ", Ref("app:trials"), " lists every trial with its "
                          "hyperparameters, validation accuracy, epochs run and time."))]
    return Section("The search", blocks, label="sec:search")


def importance_evaluator():
    """PED-ANOVA, Optuna's default evaluator since 4.x, named so that older Optuna does not pick
    fANOVA (which needs scikit-learn); it also weighs parameters that only some trials drew."""
    from optuna.importance import PedAnovaImportanceEvaluator
    return PedAnovaImportanceEvaluator()


def importance_note(study) -> str | None:
    """Why the importances of the study's hyperparameters cannot be told, or None when they can."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    names = {name for t in complete for name in t.params}
    varied = [n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1]
    if len(complete) < 2 or not varied:
        return (f"The importance of each hyperparameter needs at least two completed trials whose hyperparameters "
                f"differ; this study has {count(len(complete), 'completed trial')}"
                + ("." if len(complete) < 2 else ", all with the same hyperparameters."))
    return None


def importance_blocks(d: ReportData) -> list:
    if d.importance is not None:
        return [Paragraph(d.importance)]
    n = sum(r.state == "complete" for r in d.rows)
    return [Paragraph((Ref("fig:importance"), " ranks the hyperparameters by their importance to the best trials: "
                       "how differently each was distributed among the best tenth of the "
                       f"{count(n, 'completed trial')} than among all of them (Optuna's PED-ANOVA; a hyperparameter "
                       "that only some trials drew is weighed over those).")),
            Figure(d.plots["importance"], "Importance of each hyperparameter to the best validation accuracies.",
                   "fig:importance", width=0.8)]


def epochs_paragraph(d: ReportData) -> tuple:
    most = max((r.epochs for r in d.rows), default=0)
    if most <= 1:
        return (Ref("fig:epochs"), " shows the validation accuracy of every trial after its only epoch, one "
                "point a trial: with a single epoch, no trial could be stopped early.")
    stopped = sum(r.state != "complete" for r in d.rows if r.curve)
    return (Ref("fig:epochs"), " follows every trial epoch by epoch; "
            + (f"the grey curves are the {count(stopped, 'trial')} stopped before the last epoch (pruned, diverged "
               f"or cut short)." if stopped else "every trial ran to its last epoch."))


def epochs_caption(d: ReportData) -> str:
    if max((r.epochs for r in d.rows), default=0) <= 1:
        return "Validation accuracy of every trial after its only epoch (trials side by side, in the order they ran)."
    return "Validation accuracy per epoch of every trial; the grey ones stopped early."


def best_section(d: ReportData) -> Section:
    best, c = d.best, d.best.config
    blocks = [Paragraph((f"Trial {best.number} reached the best validation accuracy, {100 * best.val_acc:.2f}% "
                         f"after {count(best.epochs, 'epoch')}, with the hyperparameters of ", Ref("tab:best"), ".")),
              homework_table(c, best.epochs)]
    names = recipe_names(d)
    if names:
        blocks += [Paragraph(("Beyond the homework's hyperparameters, it trained with the recipe of ", Ref("tab:recipe"),
                              "; the options of ", Code("fastmlp train"), " not listed there were off.")),
                   Table(("option", "value"), [(label(n), cell(n, c, d.space)) for n in names], ("l", "r"),
                         caption="The training recipe of the best trial, beyond the homework's hyperparameters.",
                         label="tab:recipe")]
    return Section("The best hyperparameters", blocks, label="sec:best")


def recipe_names(d: ReportData) -> list[str]:
    """The options of the best trial beyond the homework's that its table lists: each one the search
    drew or varied, and each one that is on; none that the trial did not draw."""
    c, defaults = d.best.config, TrainConfig().to_dict()
    varied = hyperparameter_names(d.rows, d.space)
    names = []
    for n in RULES:
        if n in HOMEWORK or n in RUN_FIELDS or n in ("layers", "width") or n not in c:
            continue
        on = c[n] != defaults.get(n) and not (n == "lr_decay" and c[n] == 1.0)
        if (n in varied or on) and cell(n, c, d.space) != "–":
            names.append(n)
    return names


def retrain_section(d: ReportData) -> Section:
    best, r, c = d.best, d.retrained, d.best.config
    if r is None:
        blocks = [Paragraph(("Not trained again here (", Code("--no-retrain"), "); without it, the report trains the "
                             "best configuration again and measures its test accuracy."))]
    else:
        subset = d.settings.get("subset")
        same = ("" if subset else
                f" (the trial measured {100 * best.val_acc:.2f}%: the same seed and data, but another number of "
                f"threads can round sums differently)")
        blocks = [Paragraph(f"The best configuration was trained again from scratch with its seed "
                            f"({r['config']['seed']}) on {r['train_rows']} training images for "
                            f"{count(r['epochs'], 'epoch')}, in {r['seconds']:.0f} s: training loss "
                            f"{r['train_loss']:.3g}, validation accuracy {100 * r['val_acc']:.2f}%{same}.")]
        if subset:
            blocks.append(Paragraph(f"The trials trained on {subset} images only; this run uses the whole training "
                                    f"set, so its figures differ from the trial's."))
        kept = r.get("kept_epoch", r["epochs"])
        blocks.append(Paragraph((Strong(f"Test accuracy: {100 * r['test_acc']:.2f}%"),
                                 f" (test loss {r['test_loss']:.4f}), on the {r['test_rows']} test images, measured "
                                 f"once, on the model of epoch {kept} ({kept_text(r)}).")))
        if d.curves:
            blocks += [Paragraph((Ref("fig:curves"), " shows its loss and accuracy after each epoch.")),
                       Figure(d.curves, "Loss and accuracy per epoch of the best configuration, trained again.",
                              "fig:curves", width=0.95)]
    blocks.append(CodeBlock(_wrap_command(train_command_parts({**c, "epochs": best.epochs})),
                            lead="The command that trains it again:", language="sh"))
    return Section("Training with the best hyperparameters", blocks, label="sec:retrain")


def report_document(d: ReportData) -> Document:
    """The whole report, once: :func:`~fastmlp.report.document.to_markdown` and ``to_latex`` render it."""
    intro = Paragraph(("This report covers study ", Code(d.study_name), " in ", Code(d.storage), f": "
                       f"{d.counts_text()}, {format_duration(d.trial_seconds())} of training summed over the "
                       "trials. ", Ref("sec:search"), " describes the search, ", Ref("sec:best"), " gives the best "
                       "hyperparameters, and ", Ref("sec:retrain"), " trains them again and measures the test "
                       "accuracy."))
    trials = Section("Every trial", [
        Paragraph("Validation accuracy is the one after a trial's last epoch (for a trial stopped early, the last "
                  "one it reported); time is the trial's own, in seconds."),
        *trial_tables(d.rows, hyperparameter_names(d.rows, d.space), d.study_name, d.space)], label="app:trials",
        appendix=True)
    title = d.title or f"Hyperparameter search for a multi-layer perceptron on {d.dataset_name}"
    return Document(title, [intro, search_section(d), best_section(d), retrain_section(d), trials],
                    author=d.author, date=d.created)


def _wrap_command(parts: list[str], width: int = 72) -> list[str]:
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
                 pdf: bool = True, data_dir=None, verify: bool = True, dataset=None, title: str | None = None,
                 author: str = "", log=print) -> dict[str, Path]:
    """Write the report of a study into ``out``; returns the paths written, by kind.

    ``dataset`` (a :class:`~fastmlp.data.datasets.Dataset`) is what the best configuration is trained
    again on; by default the study's dataset is loaded from ``data_dir``. ``title`` and
    ``author`` head the document (by default a title naming the dataset, and no author).
    """
    quiet_optuna()
    storage = open_storage(storage_url, heartbeat=False, read_only=True)
    name = pick_study(storage, study_name)
    study = load_study(storage, name)
    rows = collect_rows(study)
    best = best_row(rows)
    if best is None:
        raise StorageError(f"study {name!r} has no completed trial yet ({count(len(rows), 'trial')}); run "
                           f"`fastmlp search` longer")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    data = ReportData(study_name=name, storage=display_url(storage_url),
                      settings=study.user_attrs.get(SETTINGS_ATTR, {}), rows=rows, best=best, plots={},
                      retrained=None, curves=None, created=time.strftime("%Y-%m-%d %H:%M"), title=title,
                      author=author or "")
    names, space = hyperparameter_names(rows, data.space), data.space
    active = (lambda name, config: name not in space.params or space.active(name, config)) if space else None
    written = {"history": plot_history(rows, out / "history.png"),
               "params": plot_params(rows, out / "params.png", _with_hidden(names), active),
               "epochs": plot_epochs(rows, best, out / "epochs.png")}
    data.importance = importance_note(study)
    if data.importance is None:
        written["importance"] = plot_importances(study, out / "importance.png", importance_evaluator())
    data.plots = {k: p.name for k, p in written.items()}
    if retrain:
        data.retrained = retrain_best(best.number, best.config, best.epochs, out / "best", data_dir=data_dir,
                                      verify=verify, dataset=dataset, log=log)
        written["curves"] = out / "best" / "curves.png"
        data.curves = "best/curves.png"
    document = report_document(data)
    write_text(out / "report.md", to_markdown(document))
    write_text(out / "report.tex", to_latex(document))
    written["md"], written["tex"] = out / "report.md", out / "report.tex"
    if pdf:
        path = compile_pdf(out / "report.tex", log=log)
        if path is not None:
            written["pdf"] = path
    return written
