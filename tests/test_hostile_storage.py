"""Hostile storages for the search, its status, its report and its dashboard.

* A secret in a storage URL (a password in the user info, with an ``@`` in it or percent-encoded,
  or in a query parameter) shows nowhere: not in an error line, a log line, the report, the
  dashboard's console.
* Another program's data is never touched: a database that is not an Optuna storage, an Optuna
  study that fastmlp search did not make; a missing file is one line and stays missing.
* A ``--storage`` value without ``://`` is a file path, taken literally.
* The questions (``search --status``, ``report``, ``dashboard``) read a read-only storage in a
  read-only folder, and write nothing beside it.
* The report keeps a title, author or study name outside ASCII: as it is in Markdown; in LaTeX
  as pdflatex can typeset it, else as ``[U+XXXX]``, never as ``?``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import PROMPT, import_extra, pdflatex_or_skip

optuna = import_extra("optuna", "search")  # the search extra: without it this module skips

from fastmlp.cli import main  # noqa: E402
from fastmlp.errors import StorageError  # noqa: E402
from fastmlp.report import document as doc  # noqa: E402
from fastmlp.search.storage import display_url, redact, sqlite_path, storage_url  # noqa: E402
from fastmlp.search.study import SETTINGS_ATTR, open_storage, quiet_optuna, resolve_settings  # noqa: E402
from fastmlp.search.workers import run_search  # noqa: E402

quiet_optuna()

SECRET = "Zq7-s3cr3t"
SPACE = {"layers": "1", "width": "16", "batch_size": "25", "lr": "2e-3:5e-3", "epochs": "1"}
NO_DASHBOARD = importlib.util.find_spec("optuna_dashboard") is None
QUESTIONS = (["search", "--status"], ["report", "--no-retrain", "--no-pdf"],
             pytest.param(["dashboard", "--port", "0"], marks=pytest.mark.skipif(
                 NO_DASHBOARD, reason="optuna-dashboard is not installed (pip install 'fastmlp[dashboard]')")))
READERS = (["search", "--status"], ["report", "--no-retrain", "--no-pdf"])
#: Every command that opens a storage, for a loop inside one test.
EVERY = (["search", "--trials", "1"], *READERS, *([] if NO_DASHBOARD else [["dashboard", "--port", "0"]]))


def run(args, cwd: Path, prefix=(), timeout: float = PROMPT) -> subprocess.CompletedProcess:
    """``fastmlp ARGS`` in ``cwd`` (behind ``prefix``, a command such as setpriv), the network out of reach."""
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_DATA_DIR"}
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([*prefix, sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single ``fastmlp: error:`` line of a command that failed with exit status 2."""
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def small_search(storage, dataset, study_name: str = "mnist", trials: int = 1, log=lambda line: None) -> None:
    settings = resolve_settings(None, storage=str(storage), study_name=study_name, space_flags=SPACE, val_size=100,
                                dataset="small", pruner="none")
    run_search(settings, trials=trials, dataset=dataset, log=log)


def listing(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` with its bytes: what a command must leave as it was."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def cwd(tmp_path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def study_file(small_dataset, tmp_path_factory) -> Path:
    """An SQLite storage holding a finished fastmlp search (study ``mnist``, one trial)."""
    db = tmp_path_factory.mktemp("study") / "search.db"
    small_search(db, small_dataset)
    return db


# ----------------------------------------------------------------------------- secrets

SECRET_URLS = {
    "user info": f"postgresql://fastmlp:{SECRET}@127.0.0.1:1/search",
    "an @ in the password": f"postgresql://fastmlp:{SECRET}@tail@127.0.0.1:1/search",
    "percent-encoded": f"postgresql://fastmlp:{SECRET}%40tail%2F@127.0.0.1:1/search",
    "braces": f"postgresql://fastmlp:{{{SECRET}}}@127.0.0.1:1/search",
    "password=": f"postgresql+psycopg://fastmlp@127.0.0.1:1/search?password={SECRET}",
    "sslpassword=": f"postgresql://fastmlp@127.0.0.1:1/search?sslmode=prefer&sslpassword={SECRET}",
    "a bad port": f"postgresql://fastmlp:{SECRET}@tail@127.0.0.1:port/search",
}


@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("url", SECRET_URLS.values(), ids=SECRET_URLS.keys())
def test_no_error_line_shows_any_part_of_a_password(cwd, url, command):
    proc = run([*command, "--storage", url], cwd)
    line = one_line_error(proc, "***")
    assert SECRET not in proc.stdout + proc.stderr and "tail" not in line and "%40" not in line
    assert not list(cwd.iterdir())


def test_a_password_holding_an_at_sign_is_read_up_to_the_last_at_sign_before_the_host():
    url = storage_url("postgresql+psycopg://fastmlp:SEC@RET@db.example:5432/search")
    assert display_url(url) == "postgresql+psycopg://fastmlp:***@db.example:5432/search"
    from sqlalchemy.engine import make_url
    assert make_url(url).password == "SEC@RET" and make_url(url).host == "db.example"


@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
def test_a_password_whose_end_cannot_be_told_is_refused_without_any_of_it(cwd, command):
    url = f"postgresql://fastmlp:{SECRET}@tail/x?@db.example/search"  # @, then / and ? in the password
    line = one_line_error(run([*command, "--storage", url], cwd), "postgresql://fastmlp:***@...",
                          "where the password ends is unclear")
    assert SECRET not in line and "tail" not in line and "db.example" not in line


@pytest.mark.parametrize("echo", [
    "invalid dsn: user=fastmlp password={raw} host=h",                # a driver's DSN, decoded
    "could not connect to postgresql://fastmlp:{typed}@h/search",     # the URL as typed
    "FATAL: bad option in postgresql://fastmlp:{sqlalchemy}@h/search",  # as SQLAlchemy writes it
    "options: {{'password': '{raw}'}}",
])
def test_redact_hides_a_password_in_every_spelling_a_driver_may_echo(echo):
    raw, typed = f"{SECRET}@a/b c%", f"{SECRET}%40a%2Fb%20c%25"
    url = f"postgresql://fastmlp:{typed}@h/search"
    from urllib.parse import quote_plus
    text = echo.format(raw=raw, typed=typed, sqlalchemy=quote_plus(raw))
    assert SECRET not in redact(text, url) and "***" in redact(text, url)


def test_secret_query_parameters_are_hidden_and_the_others_kept():
    url = f"postgresql+psycopg://u@h/db?sslmode=require&password={SECRET}&sslpassword={SECRET}2&application_name=x"
    shown = display_url(url)
    assert SECRET not in shown
    assert "password=***" in shown and "sslpassword=***" in shown and "sslmode=require" in shown
    assert "application_name=x" in shown
    assert redact(f"error in {url}: bad") == ("error in postgresql+psycopg://u@h/db?sslmode=require&password=***&"
                                              "sslpassword=***&application_name=x: bad")


# ----------------------------------------------------------------------------- another program's data

@pytest.fixture
def other_program_db(cwd) -> Path:
    db = cwd / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table customers (name text)")
        conn.execute("insert into customers values ('Ada')")
    return db


@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
def test_a_database_of_another_program_is_refused_and_left_as_it_was(cwd, other_program_db, command):
    before = listing(cwd)
    one_line_error(run([*command, "--storage", other_program_db.name], cwd), "another program's tables (customers)",
                   "nothing was changed")
    assert listing(cwd) == before  # no table added, not even a lock file beside it


def test_a_database_of_another_program_holding_only_views_is_refused_and_left_as_it_was(cwd):
    with sqlite3.connect(cwd / "views.db") as conn:
        conn.execute("create view totals as select 42 as answer")
    before = listing(cwd)
    one_line_error(run(["search", "--trials", "1", "--storage", "views.db"], cwd), "another program's tables (totals)")
    assert listing(cwd) == before


@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
def test_a_file_that_is_not_a_database_is_one_line_and_left_as_it_was(cwd, command):
    (cwd / "notes.db").write_text("shopping list\n" * 100)
    before = listing(cwd)
    one_line_error(run([*command, "--storage", "notes.db"], cwd), "notes.db", "not a database")
    assert listing(cwd) == before


@pytest.mark.parametrize("command", QUESTIONS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("name", ["missing.db", "no/such/folder/s.db", "sqlite:///gone.db"])
def test_a_question_about_a_missing_storage_creates_nothing(cwd, command, name):
    one_line_error(run([*command, "--storage", name], cwd), "no search storage here")
    assert not list(cwd.iterdir())


@pytest.mark.parametrize("command", QUESTIONS, ids=lambda c: " ".join(c[:2]))
def test_a_question_about_an_empty_database_says_so_and_adds_no_table(cwd, command):
    (cwd / "empty.db").write_bytes(b"")  # SQLite's empty database
    one_line_error(run([*command, "--storage", "empty.db"], cwd), "no search storage here", "no table")
    assert listing(cwd) == {"empty.db": b""}


def test_a_storage_with_only_some_of_optunas_tables_and_a_study_is_damaged_and_gets_no_more(cwd):
    with sqlite3.connect(cwd / "half.db") as conn:
        conn.execute("create table studies (study_id integer primary key, study_name text)")
        conn.execute("insert into studies values (1, 'mnist')")
    before = listing(cwd)
    for command in EVERY:
        one_line_error(run([*command, "--storage", "half.db"], cwd), "damaged", "trials, version_info are missing")
    assert listing(cwd) == before


def test_a_storage_whose_making_was_cut_short_is_finished_by_a_search_and_only_by_it(cwd, mnist):
    """Optuna creates its tables one by one: a search killed among them leaves some, empty, with
    Optuna's columns. A question says so; the next search creates the rest and runs."""
    import sqlalchemy
    from optuna.storages._rdb import models
    engine = sqlalchemy.create_engine(f"sqlite:///{cwd / 'half.db'}")
    with engine.begin() as connection:
        for name in ("studies", "study_directions", "study_system_attributes"):
            models.BaseModel.metadata.tables[name].create(connection)
    engine.dispose()
    before = listing(cwd)
    for command in READERS:
        one_line_error(run([*command, "--storage", "half.db"], cwd), "making was cut short",
                       "`fastmlp search` on it finishes it")
    assert listing(cwd) == before
    env = {**os.environ, "FASTMLP_DATA_DIR": os.environ["FASTMLP_DATA_DIR"]}
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "search", "--storage", "half.db", "--trials", "1",
                           "--epochs", "1", "--subset", "300", "--val-size", "300", "--layers", "1", "--width", "8",
                           "--batch-size", "50", "--pruner", "none"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 trials (1 complete" in run(["search", "--status", "--storage", "half.db"], cwd).stdout


@pytest.fixture
def foreign_studies(cwd) -> Path:
    """An Optuna storage whose studies another program made: ``mnist`` (one objective, maximized, with
    trials) and ``pareto`` (two objectives)."""
    db = cwd / "optuna.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="mnist", direction="maximize")
    study.set_user_attr("owner", "another program")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    pareto = optuna.create_study(storage=f"sqlite:///{db}", study_name="pareto", directions=["maximize", "minimize"])
    pareto.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    return db


@pytest.mark.parametrize("name", ["mnist", "pareto"])
@pytest.mark.parametrize("command", [["search", "--trials", "1"], *READERS], ids=lambda c: " ".join(c[:2]))
def test_a_study_fastmlp_did_not_make_is_neither_read_nor_added_to(cwd, foreign_studies, command, name):
    def state(study_name):
        study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{foreign_studies}")
        return study.user_attrs, [(t.number, t.state, t.params) for t in study.get_trials()]
    before = {n: state(n) for n in ("mnist", "pareto")}
    one_line_error(run([*command, "--storage", foreign_studies.name, "--study-name", name], cwd),
                   f"study {name!r} was not made by fastmlp search", "give another --study-name")
    assert {n: state(n) for n in ("mnist", "pareto")} == before
    assert not (cwd / "report").exists()


def test_a_search_refuses_another_programs_study_even_through_the_library(foreign_studies, small_dataset):
    with pytest.raises(StorageError, match="'mnist' was not made by fastmlp search"):
        small_search(foreign_studies, small_dataset)
    study = optuna.load_study(study_name="mnist", storage=f"sqlite:///{foreign_studies}")
    assert SETTINGS_ATTR not in study.user_attrs and len(study.get_trials()) == 3


# ----------------------------------------------------------------------------- paths taken literally

@pytest.mark.parametrize("name", ["exp?1.db", "my%41.db", "a{b}.db", "r#x.db", "café 研究.db", ":memory:",
                                  "file:x.db", "{}.db"])
def test_a_storage_path_is_taken_literally(small_dataset, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    small_search(name, small_dataset)
    assert sorted(os.listdir(tmp_path)) == sorted([name, name + ".lock"])
    proc = run(["search", "--status", "--storage", name], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("study 'mnist': 1 trials (1 complete"), proc.stderr
    assert sqlite_path(name) == Path(name) and display_url(name) == f"sqlite:///{name}"


@pytest.mark.parametrize("value,fragment", [
    ("", "--storage is empty"),
    ("sqlite://", "in-memory SQLite database"),
    ("sqlite:///:memory:", "in-memory SQLite database"),
    ("sqlite:///file::memory:?uri=true", "in-memory SQLite database"),
    (".", "a folder, not a storage file"),
])
@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
def test_a_storage_value_that_names_no_file_is_one_line(cwd, command, value, fragment):
    one_line_error(run([*command, "--storage", value], cwd), fragment)
    assert not list(cwd.iterdir())


@pytest.mark.parametrize("command", [["search", "--trials", "1"], *QUESTIONS], ids=lambda c: " ".join(c[:2]))
def test_a_named_pipe_as_storage_is_one_line_not_a_hang(cwd, command):
    os.mkfifo(cwd / "pipe.db")
    one_line_error(run([*command, "--storage", "pipe.db"], cwd), "pipe.db", "not a regular file")


# ----------------------------------------------------------------------------- read-only storages

@pytest.fixture
def unprivileged() -> tuple[str, ...]:
    """A command prefix under which file permissions hold: none for an ordinary user; for root,
    setpriv without the capabilities that override them (skipped where setpriv is missing)."""
    if os.geteuid() != 0:
        return ()
    exe = shutil.which("setpriv")
    if exe is None:
        pytest.skip("running as root, and setpriv (util-linux) is missing to drop CAP_DAC_OVERRIDE")
    return (exe, "--bounding-set=-dac_override,-dac_read_search", "--")


@pytest.fixture
def read_only_storage(study_file, tmp_path):
    """A copy of the study's storage, read-only, alone in a read-only folder; writable again afterwards."""
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(study_file, folder / "search.db")
    (folder / "search.db").chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    yield folder / "search.db"
    folder.chmod(0o755)


def test_the_status_and_the_report_read_a_read_only_storage_in_a_read_only_folder(read_only_storage, unprivileged,
                                                                                 tmp_path):
    before = listing(read_only_storage.parent)
    status = run(["search", "--status", "--storage", read_only_storage], tmp_path, unprivileged)
    assert status.returncode == 0 and "1 trials (1 complete" in status.stdout, status.stderr
    report = run(["report", "--no-retrain", "--no-pdf", "--storage", read_only_storage, "--out", tmp_path / "r"],
                 tmp_path, unprivileged)
    assert report.returncode == 0 and (tmp_path / "r" / "report.md").exists(), report.stderr
    assert listing(read_only_storage.parent) == before  # no lock file, no journal, not a byte changed


def test_the_dashboard_serves_a_read_only_storage_and_refuses_changes_in_one_line(read_only_storage, unprivileged,
                                                                                  tmp_path):
    import_extra("optuna_dashboard", "dashboard")
    before = listing(read_only_storage.parent)
    proc = subprocess.Popen([*unprivileged, sys.executable, "-m", "fastmlp", "dashboard", "--storage",
                             str(read_only_storage), "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        first = proc.stdout.readline()
        assert "/dashboard" in first, first + proc.stderr.read()
        base = first.split(" at ", 1)[1].split()[0].removesuffix("/dashboard")
        studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=30).read())
        assert [s["study_name"] for s in studies["study_summaries"]] == ["mnist"]
        note = urllib.request.Request(f"{base}/api/studies/1/note", method="PUT", data=b'{"version": 1, "body": "x"}',
                                      headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(note, timeout=30)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert err.splitlines() == ["fastmlp: the dashboard reads the storage only: the change asked for (a note, a "
                                "trial's state) was not saved"]
    assert listing(read_only_storage.parent) == before


def test_a_search_into_a_read_only_storage_is_one_line(read_only_storage, unprivileged, tmp_path):
    one_line_error(run(["search", "--trials", "1", "--storage", read_only_storage], tmp_path, unprivileged),
                   "search.db: a read-only file; a search writes into its storage")
    read_only_storage.parent.chmod(0o755)
    read_only_storage.chmod(0o644)
    read_only_storage.parent.chmod(0o555)
    one_line_error(run(["search", "--trials", "1", "--storage", read_only_storage], tmp_path, unprivileged),
                   "search.db.lock: cannot create the storage's lock file")


def refused(write) -> str:
    """The messages of the exception ``write()`` raises and of its causes."""
    with pytest.raises(Exception) as info:
        write()
    texts, exc = [], info.value
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(texts)


def test_a_storage_opened_read_only_refuses_every_write(study_file):
    storage = open_storage(str(study_file), read_only=True)
    assert "attempt to write a readonly database" in refused(lambda: optuna.create_study(storage=storage))


# ----------------------------------------------------------------------------- PostgreSQL

def pg_tables(url: str) -> list[str]:
    import sqlalchemy
    engine = sqlalchemy.create_engine(storage_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_on_postgresql_neither_a_search_nor_its_status_nor_its_report_shows_the_password(
        postgres_url, small_dataset, tmp_path):
    from postgres_server import PASSWORD
    user_info, rest = postgres_url.split("@", 1)
    in_query = f"{user_info.rsplit(':', 1)[0]}@{rest}?password={PASSWORD}"  # the password as a query parameter
    lines: list[str] = []
    small_search(in_query, small_dataset, log=lines.append)
    for url in (postgres_url, in_query):
        status = run(["search", "--status", "--storage", url], tmp_path)
        report = run(["report", "--no-retrain", "--no-pdf", "--storage", url, "--out", tmp_path / "r"], tmp_path)
        assert status.returncode == 0 and report.returncode == 0, status.stderr + report.stderr
        written = "".join((tmp_path / "r" / f"report.{kind}").read_text() for kind in ("md", "tex"))
        written = written.replace(r"\allowbreak{}", "")  # the LaTeX's break points inside a URL
        for text in ("\n".join(lines), status.stdout, status.stderr, report.stdout, report.stderr, written):
            assert PASSWORD not in text
        assert "***" in (tmp_path / "r" / "report.md").read_text()
    assert any("***" in line for line in lines)


def test_a_wrong_password_given_as_a_query_parameter_is_not_shown(postgres, tmp_path):
    url = postgres.url("postgres").split("@")[1]
    for command in EVERY:
        line = one_line_error(run([*command, "--storage", f"postgresql://fastmlp@{url}?password={SECRET}"], tmp_path),
                              "password authentication failed", "password=***")
        assert SECRET not in line


def test_a_postgresql_database_of_another_program_is_left_untouched(postgres_url, tmp_path):
    import psycopg
    from sqlalchemy.engine import make_url
    parsed = make_url(postgres_url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
                         dbname=parsed.database, autocommit=True) as conn:
        conn.execute("create table customers (name text)")
    for command in EVERY:
        one_line_error(run([*command, "--storage", postgres_url], tmp_path), "another program's tables (customers)")
    assert pg_tables(postgres_url) == ["customers"]


def test_on_postgresql_the_questions_open_read_only_transactions(postgres_url, small_dataset):
    small_search(postgres_url, small_dataset)
    storage = open_storage(postgres_url, read_only=True)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["mnist"]
    assert "in a read-only transaction" in refused(lambda: optuna.create_study(storage=storage))


# ----------------------------------------------------------------------------- the report beyond ASCII

def test_latex_keeps_latin_letters_puts_greek_in_math_and_writes_the_rest_as_code_points():
    assert doc.latex_escape("Réseau Łódź Straße") == "Réseau Łódź Straße"
    assert doc.latex_escape("e\u0301t\u00e9") == "été"  # a combining accent joins its letter
    assert doc.latex_escape("λ Ω Α") == r"$\lambda$ $\Omega$ A"
    assert doc.latex_escape("研究 ą 😀") == "{[}U+7814{]}{[}U+7A76{]} {[}U+0105{]} {[}U+1F600{]}"
    assert doc.latex_escape("a\x1bb\nc") == "a{[}U+001B{]}b c"
    assert "?" not in doc.latex_escape("".join(chr(c) for c in range(0x80, 0x3000)))
    assert doc.latex_verbatim("fastmlp train # 研究 é") == "fastmlp train # [U+7814][U+7A76] é"


def test_markdown_keeps_unicode_as_it_is():
    d = doc.Document("Réseau 研究", [doc.Paragraph(("study ", doc.Code("a`b 研究")))], author="Ada\nLovelace")
    md = doc.to_markdown(d)
    assert md.startswith("# Réseau 研究\n\nAda Lovelace\n") and "study ``a`b 研究``" in md


def test_pdflatex_typesets_every_character_the_latex_keeps(tmp_path):
    pdflatex = pdflatex_or_skip()
    text = "".join(sorted(doc.LATEX_TEXT)) + " " + "".join(chr(c) for c in range(0x391, 0x3CA)) + " µ 研究 \x07"
    d = doc.Document(text, [doc.Paragraph((text, doc.Code(text), doc.Strong(text))),
                            doc.Section("S", [doc.Table(("a", "b"), [(text, doc.Code("研究"))], ("l", "*"),
                                                        caption=("C ", doc.Code(text)), label="tab:x"),
                                              doc.CodeBlock([f"fastmlp train {text}"], lead="Run:")])],
                     author=text)
    (tmp_path / "all.tex").write_text(doc.to_latex(d), encoding="utf-8")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "all.tex"], cwd=tmp_path,
                          capture_output=True, text=True, errors="replace", timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "all.log").read_text(errors="replace").replace("\n", "")
    assert "/fonts/pk/" not in log  # no bitmap font: LaTeX's own Type 1 fonts only


def test_a_report_titled_reseau_by_an_author_in_cjk_on_a_study_so_named_compiles(small_dataset, tmp_path):
    pdflatex_or_skip()
    db = tmp_path / "s.db"
    small_search(db, small_dataset, study_name="étude-研究")
    out = tmp_path / "rapport"
    assert main(["report", "--storage", str(db), "--out", str(out), "--no-retrain", "--title", "Réseau de neurones",
                 "--author", "研究 Müller"]) == 0
    md, tex = (out / "report.md").read_text(encoding="utf-8"), (out / "report.tex").read_text(encoding="utf-8")
    assert md.startswith("# Réseau de neurones\n\n研究 Müller · ") and "`étude-研究`" in md
    assert r"\title{Réseau de neurones}" in tex and r"\author{{[}U+7814{]}{[}U+7A76{]} Müller}" in tex
    assert "étude-{[}U+7814{]}{[}U+7A76{]}" in tex.replace(r"\allowbreak{}", "")
    assert "R?seau" not in tex and "??" not in tex
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
