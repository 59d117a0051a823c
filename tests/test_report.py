"""The report of a search: its files, the trial table, the homework's table holding the best
trial, the retrained best configuration tested once, LaTeX that compiles, and one-line errors."""

import json
import re
import shutil

import optuna
import pytest

from fastmlp import report
from fastmlp.cli import main
from fastmlp.search import run_search
from fastmlp.study import quiet_optuna, resolve_settings

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
                         report.fmt_beta(c["beta1"]), report.fmt_beta(c["beta2"]), f"{c['eps']:.2e}", "1"]]
    assert f"Trial {best.number}, validation accuracy {100 * best.value:.2f}% after 1 epochs" in md

    rows = table_after(md, "| # | state |")
    assert [int(r[0]) for r in rows] == [t.number for t in trials]
    by_number = {int(r[0]): r for r in rows}
    assert by_number[best.number][1:3] == ["complete", f"{100 * best.value:.2f}"]
    diverged = by_number[3]
    assert diverged[1] == "pruned" and diverged[-1].startswith("diverged: loss became")
    assert "1 trial(s) diverged" in md

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


def test_the_latex_escapes_awkward_names_and_compiles_where_pdflatex_is(study_db, tmp_path):
    out = tmp_path / "100%_my&report#1"
    db = tmp_path / "odd_$name.db"
    shutil.copyfile(study_db, db)
    assert run_report(db, out, "--no-retrain") == 0
    tex = (out / "report.tex").read_text()
    assert r"odd\_\$name.db" in tex and "odd_$name" not in tex
    if shutil.which("pdflatex"):
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    else:
        assert not (out / "report.pdf").exists()


def test_latex_specials_are_escaped():
    assert report.latex_escape("a_b & 50% #1 {x} $y ~ ^ \\") == \
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{} \textbackslash{}"
    assert report.latex_escape("η – β") == r"$\eta$ -- $\beta$"


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
