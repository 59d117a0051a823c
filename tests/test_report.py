"""The report of a search: its files, the trial table, the homework's table holding the best
trial, the retrained best configuration tested once, one document rendered alike to Markdown and
LaTeX, LaTeX that compiles, and one-line errors."""

import json
import re
import shutil
import subprocess

import pytest
from helpers import import_extra, pdflatex_or_skip

optuna = import_extra("optuna", "search")  # the search extra: without it this module skips

from fastmlp.cli import main  # noqa: E402
from fastmlp.config import RULES, TrainConfig  # noqa: E402
from fastmlp.report import builder as report  # noqa: E402
from fastmlp.report import document as doc  # noqa: E402
from fastmlp.report import plots  # noqa: E402
from fastmlp.search.space import fmt_beta, fmt_value  # noqa: E402
from fastmlp.search.study import quiet_optuna, resolve_settings  # noqa: E402
from fastmlp.search.workers import run_search  # noqa: E402

quiet_optuna()

SPACE = {"layers": "1", "width": "16,32", "batch_size": "25,50", "lr": "2e-3:5e-3", "epochs": "1"}
TINY = ["--subset", "2000", "--epochs", "1", "--layers", "1", "--width", "16,32", "--batch-size", "25,50",
        "--lr", "1e-3:3e-3"]
PNG = b"\x89PNG\r\n\x1a\n"


def small_search(db, dataset, trials: int, **space) -> None:
    settings = resolve_settings(None, storage=str(db), study_name="mnist", space_flags={**SPACE, **space},
                                val_size=100, dataset="small")
    run_search(settings, trials=trials, dataset=dataset, log=lambda line: None)


@pytest.fixture(scope="module")
def study_db(small_dataset, tmp_path_factory):
    """A finished small search: three trials that completed and one that diverged."""
    db = tmp_path_factory.mktemp("study") / "search.db"
    small_search(db, small_dataset, 3)
    small_search(db, small_dataset, 1, lr="1e30")
    return db


def best_of(db):
    study = optuna.load_study(study_name="mnist", storage=f"sqlite:///{db}")
    return study.best_trial, study.get_trials(deepcopy=False)


def run_report(db, out, *args) -> int:
    return main(["report", "--storage", str(db), "--out", str(out), *args])


def table_after(md: str, header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header_start``."""
    lines = md.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_the_report_has_every_trial_the_best_in_the_homework_table_and_the_plots(study_db, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_report(study_db, out, "--no-retrain", "--no-pdf") == 0
    for name in ("report.md", "report.tex", "history.png", "params.png", "epochs.png"):
        assert (out / name).exists(), name
    for name in ("history.png", "params.png", "epochs.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert not (out / "best").exists()
    md, tex = (out / "report.md").read_text(), (out / "report.tex").read_text()
    best, trials = best_of(study_db)
    c = best.user_attrs["config"]

    homework = table_after(md, "| Batch Size | Hidden Sizes | η | β1 | β2 | ε | num epochs |")
    assert homework == [[str(c["batch_size"]), f"[{c['hidden_sizes'][0]}]", f"{c['lr']:.2e}",
                         fmt_beta(c["beta1"]), fmt_beta(c["beta2"]), f"{c['eps']:.2e}", "1"]]
    assert f"Trial {best.number} reached the best validation accuracy, {100 * best.value:.2f}% after 1 epoch," in md

    rows = table_after(md, "| # | state |")
    assert [int(r[0]) for r in rows] == [t.number for t in trials]
    by_number = {int(r[0]): r for r in rows}
    assert by_number[best.number][1:3] == ["complete", f"{100 * best.value:.2f}"]
    diverged = by_number[3]
    assert diverged[1] == "pruned" and diverged[-1].startswith("diverged: loss became")
    assert "1 trial diverged" in md

    for name in ("history.png", "params.png", "epochs.png"):
        assert f"]({name})" in md and f"{{{name}}}" in tex
    assert r"\begin{longtable}" in tex and r"$\eta$ & $\beta_1$ & $\beta_2$ & $\epsilon$ & num epochs" in tex
    assert f"{c['batch_size']} & [{c['hidden_sizes'][0]}] & {c['lr']:.2e}" in tex
    assert "Not trained again here" in md


def test_the_best_configuration_is_trained_again_and_tested_once(study_db, small_dataset, tmp_path):
    out = tmp_path / "report"
    log = []
    written = report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset,
                                  log=log.append)
    result = json.loads((out / "best" / "result.json").read_text())
    history = json.loads((out / "best" / "history.json").read_text())
    best, _ = best_of(study_db)
    assert result["trial"] == best.number and result["config"]["seed"] == best.user_attrs["config"]["seed"]
    assert result["train_rows"] == 200 and result["epochs"] == 1 == len(history["epochs"])  # 300 less 100 held out
    assert all(e["test_acc"] is None for e in history["epochs"])  # not during training: once, at the end
    assert 0 <= result["test_acc"] <= 1 and result["test_rows"] == 100
    assert written["curves"].read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert f"**Test accuracy: {100 * result['test_acc']:.2f}%**" in md
    assert "](best/curves.png)" in md and "{best/curves.png}" in (out / "report.tex").read_text()
    assert f"--seed {result['config']['seed']}" in md

    log.clear()
    report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=log.append)
    assert any("reusing the retrained best configuration" in line for line in log)  # a second report reuses it


def test_a_run_of_the_users_own_where_the_report_retrains_is_refused_and_kept(study_db, small_dataset, tmp_path):
    from fastmlp.errors import UsageError
    from fastmlp.training.train import train
    out = tmp_path / "report"
    train(TrainConfig(hidden_sizes=(5,), batch_size=20, epochs=1, val_size=50), small_dataset, out_dir=out / "best")
    before = {p.name: p.read_bytes() for p in (out / "best").iterdir()}
    with pytest.raises(UsageError, match="holds another training run"):
        report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=lambda line: None)
    assert {p.name: p.read_bytes() for p in (out / "best").iterdir()} == before


def test_a_users_run_put_beside_an_earlier_reports_result_is_neither_reused_nor_trained_over(
        study_db, small_dataset, tmp_path):
    from fastmlp.errors import UsageError
    from fastmlp.training.train import train
    out = tmp_path / "report"
    report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=lambda line: None)
    train(TrainConfig(hidden_sizes=(5,), batch_size=20, epochs=1, val_size=50, seed=7), small_dataset,
          out_dir=out / "best")  # replaces the retrain's files; result.json stays
    before = {p.name: p.read_bytes() for p in (out / "best").iterdir()}
    with pytest.raises(UsageError, match="holds another training run"):
        report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=lambda line: None)
    assert {p.name: p.read_bytes() for p in (out / "best").iterdir()} == before


def test_a_retrain_cut_short_is_done_again_by_the_next_report(study_db, small_dataset, tmp_path):
    out = tmp_path / "report"
    report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=lambda line: None)
    (out / "best" / "result.json").unlink()  # as if stopped before the end: its history is the same configuration's
    log = []
    report.build_report(f"sqlite:///{study_db}", None, out, pdf=False, dataset=small_dataset, log=log.append)
    assert (out / "best" / "result.json").exists() and any("training trial" in line for line in log)


@pytest.mark.slow
def test_the_report_command_on_mnist_retrains_on_the_whole_training_set(mnist, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["search", "--storage", str(db), "--trials", "1", *TINY]) == 0
    out = tmp_path / "report"
    assert run_report(db, out) == 0
    log = capsys.readouterr().out
    result = json.loads((out / "best" / "result.json").read_text())
    assert result["train_rows"] == 55000 and result["test_rows"] == 10000 and 0.5 < result["test_acc"] <= 1
    if shutil.which("pdflatex"):
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
        assert not list(out.glob("latex-tmp-*"))
    else:
        assert "no pdflatex here" in log


@pytest.fixture(scope="module")
def pdflatex() -> str:
    """pdflatex's path; the test skips without it, and fails under ``FASTMLP_REQUIRE_EXTRAS=1`` (CI)."""
    return pdflatex_or_skip()


def test_the_latex_escapes_awkward_names_and_compiles(study_db, tmp_path, pdflatex):
    out = tmp_path / "100%_my&report#1"
    db = tmp_path / "odd_$name.db"
    shutil.copyfile(study_db, db)
    assert run_report(db, out, "--no-retrain") == 0
    tex = (out / "report.tex").read_text()
    assert r"odd\_\$name.db" in tex.replace(r"\allowbreak{}", "") and "odd_$name" not in tex
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(out.glob("latex-tmp-*"))


@pytest.mark.parametrize("search", ["study_db", "recipe_db"])  # the plain space's, the recipe's (wider tables)
def test_the_pdf_has_every_reference_resolved_and_nothing_past_the_margins(search, request, tmp_path, pdflatex):
    out = tmp_path / "report"
    assert run_report(request.getfixturevalue(search), out, "--no-retrain", "--no-pdf") == 0
    for _ in range(2):
        proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=out,
                              capture_output=True, text=True, errors="replace", timeout=180)
        assert proc.returncode == 0, proc.stdout[-2000:]
    log = (out / "report.log").read_text(errors="replace")
    assert not re.search(r"Reference `[^']*' on page \d+ undefined", log)  # every \\ref found its label
    assert "Overfull \\hbox" not in log  # no line, table or figure wider than the text


def test_latex_specials_are_escaped():
    assert doc.latex_escape("a_b & 50% #1 {x} $y ~ ^ \\") == \
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{} \textbackslash{}"
    assert doc.latex_escape("η – β") == r"$\eta$ -- $\beta$"


def test_a_missing_storage_is_a_one_line_error_and_is_not_created(tmp_path, capsys):
    db = tmp_path / "nothing.db"
    assert run_report(db, tmp_path / "out", "--no-retrain") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no search storage here" in err[0]
    assert not db.exists()


def test_a_study_without_a_completed_trial_is_a_one_line_error(small_dataset, tmp_path, capsys):
    db = tmp_path / "s.db"
    small_search(db, small_dataset, 1, lr="1e30")
    assert run_report(db, tmp_path / "out", "--no-retrain") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no completed trial yet" in err[0]
    assert run_report(db, tmp_path / "out", "--study-name", "other") == 2
    assert "no study named 'other' (studies there: mnist)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one document, two renderings

def md_sections(md: str) -> list[str]:
    return [re.sub(r"^## (\d+|Appendix [A-Z])\. ", "", line) for line in md.splitlines() if line.startswith("## ")]


def tex_sections(tex: str) -> list[str]:
    return re.findall(r"\\section\{([^}]*)\}", tex)


def md_tables(md: str) -> list[list[str]]:
    """The first cell of every body row, table by table."""
    tables, rows, lines = [], None, md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(-+:?\|)+", lines[i + 1]):
            rows = []
            tables.append(rows)
        elif line.startswith("|") and rows is not None and not re.fullmatch(r"\|(-+:?\|)+", line):
            rows.append(line.split("|")[1].strip())
        elif not line.startswith("|"):
            rows = None
    return tables


def tex_tables(tex: str) -> list[list[str]]:
    tables = []
    for _, body in re.findall(r"\\begin\{(table|longtable)\}(.*?)\\end\{\1\}", tex, re.S):
        rows = body.split(r"\endlastfoot")[-1] if r"\endlastfoot" in body else body.split(r"\midrule", 1)[1]
        tables.append([line.split(" & ")[0].strip() for line in rows.splitlines()
                       if line.endswith(r"\\") and not line.startswith("\\")])
    return tables


def test_markdown_and_latex_render_the_same_document(study_db, tmp_path):
    out = tmp_path / "report"
    assert run_report(study_db, out, "--no-retrain", "--no-pdf") == 0
    md, tex = (out / "report.md").read_text(), (out / "report.tex").read_text()
    assert md_sections(md) == tex_sections(tex) == ["The search", "The best hyperparameters",
                                                     "Training with the best hyperparameters", "Every trial"]
    mt, tt = md_tables(md), tex_tables(tex)
    assert len(mt) == len(tt) == 4  # the space, the best hyperparameters, their recipe, every trial
    assert [len(t) for t in mt] == [len(t) for t in tt]
    assert mt[2] == [RULES["lr_decay"].md] and tt[2] == [RULES["lr_decay"].tex]  # the plain space's one option
    assert mt[3] == tt[3] == [str(t.number) for t in best_of(study_db)[1]]
    # the space's rows are RULES' labels, each in its format
    assert mt[0][:2] == [RULES["batch_size"].md, RULES["layers"].md] and tt[0][:2] == [RULES["batch_size"].tex,
                                                                                        RULES["layers"].tex]
    # every figure is referred to before it stands: "Figure N" / Figure~\ref{fig:...}
    labels = re.findall(r"\\label\{(fig:[a-z]+)\}", tex)
    assert labels == ["fig:history", "fig:params", "fig:importance", "fig:epochs"]
    for n, label in enumerate(labels, 1):
        assert tex.index(rf"Figure~\ref{{{label}}}") < tex.index(rf"\label{{{label}}}")
        assert md.index(f"Figure {n} ") < md.index(f"![Figure {n}:") < md.index(f"*Figure {n}:")
    # the command stays on one page with its lead-in
    lead = tex.index("The command that trains it again:")
    assert tex.rindex(r"\begin{minipage}", 0, lead) > tex.rfind(r"\end{minipage}", 0, lead)
    assert tex.index(r"\end{verbatim}", lead) < tex.index(r"\end{minipage}", lead)


def prose(text: str) -> str:
    """``text`` without its code blocks and verbatim (the command line spells flags its own way)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"\\begin\{verbatim\}.*?\\end\{verbatim\}", "", text, flags=re.S)


def test_plurals_and_labels_are_written_one_way(study_db, tmp_path):
    out = tmp_path / "report"
    assert run_report(study_db, out, "--no-retrain", "--no-pdf") == 0
    md, tex = (out / "report.md").read_text(), (out / "report.tex").read_text()
    for text in (md, tex):
        assert not re.search(r"\b1 (epochs|trials|images)\b", text)
        assert not re.search(r"\w\(s\)", text)  # no "trial(s)"
    assert "after 1 epoch," in md and "4 trials (3 complete, 1 pruned)" in md
    # beta and friends: β1 in Markdown, $\beta_1$ in LaTeX, never spelt out
    assert not re.search(r"\b(beta|eta|epsilon)[ _]?\d?\b", prose(md), re.I)
    assert not re.search(r"(?<!\\)\b(beta|epsilon)", prose(tex))
    homework = next(line for line in md.splitlines() if line.startswith("| Batch Size | Hidden Sizes"))
    for name in ("lr", "beta1", "beta2", "eps"):
        assert f" {RULES[name].md} " in homework and RULES[name].tex in tex
    assert doc.count(1, "epoch") == "1 epoch" and doc.count(0, "trial") == "0 trials"
    assert doc.count(2, "hidden layer") == "2 hidden layers" and doc.count(3, "is", "are") == "3 are"


def test_every_hyperparameter_that_varied_has_a_column(study_db, tmp_path):
    out = tmp_path / "report"
    assert run_report(study_db, out, "--no-retrain", "--no-pdf") == 0
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # | state |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    _, trials = best_of(study_db)
    configs = [t.user_attrs["config"] for t in trials]
    varied = [n for n in RULES if n not in ("seed", "epochs", "val_size") and any(n in c for c in configs)
              and len({c.get(n) for c in configs}) > 1]
    assert "lr_decay" in varied  # the default space searches it
    for name in varied:
        assert RULES[name].md in columns, name
    assert "Hidden Sizes" in columns
    rows = table_after(md, "| # | state |")
    decay = columns.index(RULES["lr_decay"].md)
    assert [r[decay] for r in rows] == [fmt_value("lr_decay", c["lr_decay"]) for c in configs]


def test_a_hyperparameter_the_search_space_lacks_gets_a_column_once_it_varies():
    def row(n, **cfg):
        return report.TrialRow(n, "complete", 0.9, 1, {"hidden_sizes": [16], "batch_size": 32, "lr": 1e-3,
                                                      "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "lr_decay": 1.0,
                                                      "alpha": 0.0, "seed": n, "epochs": 1, **cfg}, 1.0)
    same = [row(0), row(1)]
    assert report.hyperparameter_names(same) == ["batch_size", "lr", "beta1", "beta2", "eps"]
    assert report.hyperparameter_names(same + [row(2, alpha=1e-4)])[-1] == "alpha"
    rows = same + [row(2, alpha=1e-4)]
    tables = report.trial_tables(rows, report.hyperparameter_names(rows), "s")
    assert [RULES["alpha"].md in [doc.plain(h) for h in t.header] for t in tables] == [False, True]  # the recipe's


def test_the_subset_sentence_says_the_subset_comes_after_the_hold_out(small_dataset, tmp_path):
    db = tmp_path / "s.db"
    settings = resolve_settings(None, storage=str(db), study_name="mnist", space_flags=SPACE, val_size=100,
                                subset=150, dataset="small")
    run_search(settings, trials=2, dataset=small_dataset, log=lambda line: None)
    out = tmp_path / "report"
    assert run_report(db, out, "--no-retrain", "--no-pdf") == 0
    md = (out / "report.md").read_text()
    assert "trained a multi-layer perceptron with Adam on the first 150 of the small training images left after " \
           "holding out 100 for validation" in md


def test_title_and_author(study_db, tmp_path):
    out = tmp_path / "report"
    assert run_report(study_db, out, "--no-retrain", "--no-pdf", "--title", "MLP & Adam: 100% search",
                      "--author", "Ada Lovelace") == 0
    md, tex = (out / "report.md").read_text(), (out / "report.tex").read_text()
    assert md.startswith("# MLP & Adam: 100% search\n\nAda Lovelace · ")
    assert r"\title{MLP \& Adam: 100\% search}" in tex and r"\author{Ada Lovelace}" in tex
    assert run_report(study_db, out, "--no-retrain", "--no-pdf") == 0
    md, tex = (out / "report.md").read_text(), (out / "report.tex").read_text()
    assert md.startswith("# Hyperparameter search for a multi-layer perceptron on small\n")
    assert r"\author{}" in tex


def test_the_document_model_numbers_refers_and_escapes_alike():
    d = doc.Document("T", [
        doc.Paragraph(("See ", doc.Ref("fig:b"), " and ", doc.Ref("tab:t"), " in ", doc.Ref("app:x"), ".")),
        doc.Section("One", [doc.Figure("a.png", "A", "fig:a"),
                            doc.Figure("b.png", ("B, ", doc.Alt("β1", r"$\beta_1$")), "fig:b")], label="sec:one"),
        doc.Section("X", [doc.Table(("k", doc.Alt("η", r"$\eta$")), [("a_b", doc.Code("x/y"))], ("l", "r"),
                                    caption="C", label="tab:t"),
                          doc.CodeBlock(["run --it"], lead="Run:")], label="app:x", appendix=True)])
    md, tex = doc.to_markdown(d), doc.to_latex(d)
    assert "See Figure 2 and Table 1 in Appendix A." in md
    assert r"See Figure~\ref{fig:b} and Table~\ref{tab:t} in Appendix~\ref{app:x}." in tex
    assert "## 1. One" in md and "## Appendix A. X" in md and r"\appendix" in tex
    assert "*Figure 2: B, β1*" in md and r"\caption{B, $\beta_1$}\label{fig:b}" in tex
    assert "| a_b | `x/y` |" in md and r"a\_b & \texttt{x/\allowbreak{}y} \\" in tex
    assert "Run:\n\n```\nrun --it\n```" in md
    assert re.search(r"\\begin\{minipage\}\{\\linewidth\}\nRun:\n.*\\begin\{verbatim\}\nrun --it\n\\end\{verbatim\}\n"
                     r"\\end\{minipage\}", tex, re.S)


def test_a_one_epoch_search_plots_points_on_a_whole_epoch_axis(monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.setdefault("fig", fig))
    rows = [report.TrialRow(n, "complete", 0.8 + n / 100, 1, None, 1.0, curve={1: 0.8 + n / 100}) for n in range(5)]
    plots.plot_epochs(rows, rows[4], tmp_path / "epochs.png")
    ax = drawn["fig"].axes[0]
    assert ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1]
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert len(lines) == 5 and all(line.get_marker() == "o" and line.get_markersize() >= 6 for line in lines)
    xs = [line.get_xdata()[0] for line in lines]
    assert len(set(xs)) == 5 and all(0.8 <= x <= 1.2 for x in xs)  # side by side, not on top of each other


def test_the_command_gives_every_flag_whose_value_is_not_the_default():
    from fastmlp.config import TrainConfig
    config = {**TrainConfig().to_dict(), "hidden_sizes": [64, 32], "dropout": 0.25, "seed": 7}
    parts = report.train_command_parts(config)
    assert parts[:2] == ["fastmlp train", "--hidden 64,32"]
    assert "--dropout 0.25" in parts and "--seed 7" in parts and "--lr-decay 0.7" in parts
    assert not any(p.startswith(("--alpha", "--val-size", "--augment")) for p in parts)  # defaults stay implicit
    old = {k: v for k, v in config.items() if k != "lr_decay"}  # a study from before eta's decay existed
    assert "--lr-decay 1.0" in report.train_command_parts(old)


# ----------------------------------------------------------------------------- a search of the recipe

@pytest.fixture(scope="module")
def recipe_db(small_dataset, tmp_path_factory):
    """A finished small search of the recipe space: six trials, none pruned."""
    db = tmp_path_factory.mktemp("recipe") / "search.db"
    settings = resolve_settings(None, storage=str(db), study_name="mnist", space_file="recipe", val_size=100,
                                space_flags={"width": "16,32", "batch_size": "25,50", "epochs": "2"},
                                dataset="small", pruner="none")
    run_search(settings, trials=6, dataset=small_dataset, log=lambda line: None)
    return db


def test_the_report_of_a_recipe_search_ranks_the_hyperparameters_and_lists_the_best_trials_recipe(recipe_db,
                                                                                                  tmp_path):
    out = tmp_path / "report"
    assert run_report(recipe_db, out, "--no-retrain", "--no-pdf") == 0
    md = (out / "report.md").read_text()
    assert (out / "importance.png").read_bytes()[:8] == PNG and "](importance.png)" in md
    assert "ranks the hyperparameters by their importance" in md and "of the 6 completed trials" in md
    best, trials = best_of(recipe_db)
    c = best.user_attrs["config"]
    recipe = dict(table_after(md, "| option | value |"))
    for name in ("schedule", "warmup", "weight_decay", "dropout_input", "dropout", "label_smoothing", "ema",
                 "augment", "aug_rotate", "aug_scale", "aug_shear", "aug_shift"):
        assert recipe[RULES[name].md] == fmt_value(name, c[name]), name
    elastic = c["augment"] == "elastic"  # the elastic strengths only where the trial drew them
    assert (RULES["elastic_alpha"].md in recipe) == elastic == (RULES["elastic_sigma"].md in recipe)
    assert RULES["lr_decay"].md not in recipe and RULES["max_norm"].md not in recipe  # not drawn; off
    space = dict((row[0], row[2]) for row in table_after(md, "| hyperparameter | values tried | drawn when |"))
    assert space[RULES["elastic_alpha"].md] == f"{RULES['augment'].md} is elastic"
    assert space[RULES["dropout"].md] == "always"
    # every trial's recipe, in tables that fit the page: – where a trial did not draw the option
    alphas = [r[0:1] + r[-2:] for r in table_after(md, f"| # | {RULES['aug_rotate'].md} |")]
    assert [a[0] for a in alphas] == [str(t.number) for t in trials]
    for row, t in zip(alphas, trials):
        assert (row[1] == "–") == (t.params["augment"] == "affine")


def test_the_importance_plot_names_each_hyperparameter_by_its_label():
    assert plots.param_label("lr") == RULES["lr"].tex and plots.param_label("width_2") == f"{RULES['width'].tex} 2"
    assert plots.param_label("one_minus_beta2") == f"1 − {RULES['beta2'].tex}"
    assert plots.param_label("elastic_alpha") == r"elastic $\alpha$"


def test_with_fewer_than_two_completed_trials_the_report_says_why_it_ranks_nothing(small_dataset, tmp_path):
    db = tmp_path / "s.db"
    small_search(db, small_dataset, 1)
    out = tmp_path / "report"
    assert run_report(db, out, "--no-retrain", "--no-pdf") == 0
    md = (out / "report.md").read_text()
    assert "needs at least two completed trials whose hyperparameters differ; this study has 1 completed trial." in md
    assert not (out / "importance.png").exists() and "fig:importance" not in (out / "report.tex").read_text()

