"""The study's storage, against a hostile user and a hostile machine: URLs parsed by SQLAlchemy, passwords
never printed, every storage failure one line (exit 2, no traceback, in seconds), SQLite shared safely by
several processes, and no trial lost or left RUNNING when a search is killed and started again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_one_line_error, import_extra, kill_a_writer_mid_transaction, run

optuna = import_extra("optuna", "search")  # the search extra: without it this module skips

from fastmlp.errors import ConfigError, StorageError  # noqa: E402
from fastmlp.search import study as studymod  # noqa: E402
from fastmlp.search.storage import display_url, open_rdb, quiet_optuna, redact, sqlite_path, storage_url  # noqa: E402
from fastmlp.search.study import open_storage  # noqa: E402

quiet_optuna()

SECRET = "s3cr3t-Pa55"


# ----------------------------------------------------------------------------- URLs

@pytest.mark.parametrize("text,path", [
    ("runs/search.db", Path("runs/search.db")),
    ("sqlite:///runs/search.db", Path("runs/search.db")),
    ("sqlite+pysqlite:///file.db", Path("file.db")),
    ("sqlite:////abs/olute.db", Path("/abs/olute.db")),
    ("sqlite:///:memory:", None),
    ("postgresql://user@host/db", None),
])
def test_storage_urls_are_parsed_by_sqlalchemy(text, path):
    assert sqlite_path(storage_url(text)) == path


def test_a_postgresql_url_without_a_driver_gets_psycopg():
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    assert storage_url("postgresql://u:pw@h/db").startswith("postgresql+psycopg://u:pw@h/db")


def test_a_password_is_hidden_wherever_a_url_is_shown():
    url = f"postgresql+psycopg://fastmlp:{SECRET}@db.example:5432/search"
    assert display_url(url) == "postgresql+psycopg://fastmlp:***@db.example:5432/search"
    assert SECRET not in redact(f"could not connect to {url} ({SECRET})", url)
    assert display_url("odd_$name.db") == "sqlite:///odd_$name.db"


@pytest.mark.parametrize("url,fragment", [
    (f"postgresql://fastmlp:{SECRET}@127.0.0.1:1/search", "cannot open the storage postgresql"),
    (f"postgresql://fastmlp:{SECRET}@127.0.0.1:notaport/search", "not a storage URL"),
    (f"postgresql+psycopg2://fastmlp:{SECRET}@127.0.0.1/search", "the database driver is not installed"),
    (f"mysql://fastmlp:{SECRET}@127.0.0.1/search", "the database driver is not installed"),
    (f"nosuchdb://fastmlp:{SECRET}@127.0.0.1/search", "cannot open the storage"),
])
@pytest.mark.parametrize("command", ["search", "report"])
def test_a_storage_that_cannot_be_opened_is_one_line_in_seconds_and_never_shows_the_password(
        tmp_path, url, fragment, command):
    # A hang shows as the timeout (generous: the machine may be busy); a refusal comes at once.
    proc = run(command, "--storage", url, "--no-verify" if command == "report" else "--trials=1", cwd=tmp_path,
               timeout=60)
    assert_one_line_error(proc, fragment)
    assert SECRET not in proc.stdout + proc.stderr


def test_an_unreachable_server_gives_up_after_the_connect_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(StorageError) as err:  # 192.0.2.0/24 is reserved for documentation: nothing answers
        open_storage(f"postgresql://fastmlp:{SECRET}@192.0.2.1/search")
    assert time.monotonic() - t0 < studymod.CONNECT_TIMEOUT + 30  # the system's own gives up after minutes
    assert SECRET not in str(err.value) and "\n" not in str(err.value)


def test_a_sqlite_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    proc = run("search", "--storage", str(tmp_path / "file" / "s.db"), "--trials", "1", cwd=tmp_path)
    assert_one_line_error(proc, "cannot create the storage's folder")


def test_the_heartbeat_interval_for_tests_is_checked(monkeypatch):
    monkeypatch.setenv("FASTMLP_HEARTBEAT_INTERVAL", "2")
    assert studymod.heartbeat_settings() == (2, 6)
    monkeypatch.setenv("FASTMLP_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="FASTMLP_HEARTBEAT_INTERVAL must be"):
        studymod.heartbeat_settings()


# ----------------------------------------------------------------------------- SQLite shared by processes

POP = """
import sys, optuna
from fastmlp.search.study import open_storage, quiet_optuna
quiet_optuna()
study = optuna.load_study(storage=open_storage(sys.argv[1]), study_name="x")
for _ in range(int(sys.argv[2])):
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
"""


def test_processes_sharing_an_sqlite_file_run_each_queued_trial_exactly_once(tmp_path):
    """Without BEGIN IMMEDIATE, two processes can both pop the same queued trial (the second then fails
    with "Cannot tell a COMPLETE trial"): this is what makes SQLite safe for several workers."""
    db = str(tmp_path / "s.db")
    study = optuna.create_study(storage=open_storage(db), study_name="x", direction="maximize")
    for i in range(30):
        study.enqueue_trial({"x": i / 100})
    script = tmp_path / "pop.py"
    script.write_text(POP)
    procs = [subprocess.Popen([sys.executable, str(script), db, "10"], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 30
    assert sorted(t.params["x"] for t in trials) == [i / 100 for i in range(30)]


# ----------------------------------------------------------------------------- killed and started again

@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "to-write"])
def test_a_storage_whose_writer_was_killed_mid_transaction_opens_at_its_last_commit(tmp_path, read_only):
    """A read-only SQLite connection cannot roll back a hot journal ("attempt to write a readonly
    database"): opening the storage lets SQLite's own recovery run first, whichever way it is opened."""
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_rdb(str(db)), study_name="x")
    kill_a_writer_mid_transaction(db)
    storage = open_rdb(str(db), read_only=read_only)
    assert [s.study_name for s in storage.get_all_studies()] == ["x"]
    assert not Path(f"{db}-journal").exists()
    import sqlalchemy
    assert "scratch" not in sqlalchemy.inspect(storage.engine).get_table_names()  # the dead transaction undone


HOLD_LOCKED = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_storage_another_process_keeps_locked_is_one_line_after_one_wait(tmp_path, monkeypatch):
    from fastmlp.search import storage
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_rdb(str(db)), study_name="x")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKED, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT", 1)
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="another process has held the storage locked for 1 s"):
            open_rdb(str(db), read_only=True)
        assert time.monotonic() - t0 < 30  # one wait of 1 s, not one per look at the file
    finally:
        holder.kill()
        holder.wait()


def test_a_read_only_storage_kept_open_reads_again_after_its_writer_is_killed_mid_transaction(tmp_path):
    """The dashboard's case: its read that meets the hot journal is one line, and the next reads the last commit."""
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_rdb(str(db)), study_name="x")
    watching = open_rdb(str(db), read_only=True)
    assert [s.study_name for s in watching.get_all_studies()] == ["x"]
    kill_a_writer_mid_transaction(db)
    with pytest.raises(StorageError, match="killed while writing this storage; its unfinished transaction is rolled"):
        watching.get_all_studies()
    assert [s.study_name for s in watching.get_all_studies()] == ["x"]
    assert not Path(f"{db}-journal").exists()


def test_a_read_only_storage_file_with_a_killed_writers_journal_is_one_line(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_rdb(str(db)), study_name="x")
    kill_a_writer_mid_transaction(db)
    from fastmlp.search import storage
    monkeypatch.setattr(storage.os, "access", lambda path, mode: mode != os.W_OK)  # as if chmod a-w (root ignores it)
    with pytest.raises(StorageError, match="killed while writing this storage, and the file is read-only") as err:
        open_rdb(str(db), read_only=True)
    assert "\n" not in str(err.value)

QUICK = ["--subset", "500", "--val-size", "500", "--layers", "1", "--width", "16", "--batch-size", "50",
         "--lr", "1e-3:3e-3", "--pruner", "none"]


def trials_of(db):
    return optuna.load_study(study_name="mnist", storage=f"sqlite:///{db}").get_trials()


def wait_for_a_reported_epoch(db, proc, timeout=60):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        assert proc.poll() is None, proc.communicate()
        try:
            running = [t for t in trials_of(db) if t.state.name == "RUNNING" and t.intermediate_values]
        except Exception:  # not created yet
            running = []
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError("no trial reported an epoch in time")


def test_a_search_killed_mid_trial_and_started_again_at_once_runs_that_trial_again(mnist, tmp_path):
    db = tmp_path / "s.db"
    env = {"FASTMLP_DATA_DIR": os.environ["FASTMLP_DATA_DIR"]}
    cmd = [sys.executable, "-m", "fastmlp", "search", "--storage", str(db), "--epochs", "300", *QUICK]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    running = wait_for_a_reported_epoch(db, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    again = run("search", "--storage", str(db), "--trials", "1", "--epochs", "3", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "had lost their worker on this machine" in again.stdout and "running" not in again.stdout.splitlines()[-2]
    trials = trials_of(db)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    lost, retry = trials
    assert lost.number == running.number and studymod.retried_number(retry) == lost.number
    assert retry.params == lost.params
    assert retry.user_attrs["config"]["seed"] == lost.user_attrs["config"]["seed"] == studymod.trial_seed(0, 0)


@pytest.mark.parametrize("dies", ["before marking it", "after marking it"])
def test_a_search_killed_while_it_recovers_a_lost_trial_leaves_that_trial_to_be_run_again(tmp_path, monkeypatch,
                                                                                          dies):
    """The retry is queued before the lost trial is marked failed: killed at any moment between, the
    trial is run again exactly once."""
    db = str(tmp_path / "s.db")
    study = optuna.create_study(storage=open_storage(db), study_name="x", direction="maximize")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    token = studymod.process_token(child.pid)
    child.kill()
    child.wait()
    if token is None:
        pytest.skip("/proc does not name processes here")
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}).set_user_attr("process", token)  # its worker died
    real_tell = optuna.Study.tell

    def killed(self, *args, **kwargs):
        if dies == "after marking it":
            real_tell(self, *args, **kwargs)
        raise KeyboardInterrupt  # the recovering search dies here
    monkeypatch.setattr(optuna.Study, "tell", killed)
    with pytest.raises(KeyboardInterrupt):
        studymod.recover_lost_trials(study, db)
    monkeypatch.setattr(optuna.Study, "tell", real_tell)
    studymod.recover_lost_trials(study, db)  # the next search
    lost, retry = study.get_trials()
    assert (lost.state.name, retry.state.name) == ("FAIL", "WAITING") and studymod.retried_number(retry) == 0


def test_two_searches_started_together_on_a_new_sqlite_file_share_it(mnist, tmp_path):
    db = tmp_path / "new.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "fastmlp", "search", "--storage", str(db), "--trials", "2", "--epochs", "1", *QUICK]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not any(err.strip() for _, err in outputs), outputs
    trials = trials_of(db)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- a real PostgreSQL server

def test_two_searches_started_together_with_other_subsets_do_not_share_a_study(mnist, tmp_path):
    """The study's settings are stored under its lock: the second finds the first's and is refused."""
    db = tmp_path / "new.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subsets = ("500", "300")
    assert QUICK[:2] == ["--subset", "500"]
    procs = [subprocess.Popen([sys.executable, "-m", "fastmlp", "search", "--storage", str(db), "--trials", "1",
                               "--epochs", "1", "--subset", subset, *QUICK[2:]], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for subset in subsets]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], outputs
    (refused,) = [err for p, (_, err) in zip(procs, outputs) if p.returncode == 2]
    assert "was searched with subset" in refused and len(refused.strip().splitlines()) == 1
    (ran,) = [subset for p, subset in zip(procs, subsets) if p.returncode == 0]
    assert [t.state.name for t in trials_of(db)] == ["COMPLETE"]
    study = optuna.load_study(study_name="mnist", storage=f"sqlite:///{db}")
    assert study.user_attrs["fastmlp_settings"]["subset"] == int(ran)


def test_a_study_made_by_a_search_killed_before_it_stored_its_settings_is_finished_by_the_next(mnist, tmp_path):
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_storage(str(db)), study_name="mnist", direction="maximize")  # then killed
    proc = run("search", "--storage", str(db), "--trials", "1", "--epochs", "1", *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [t.state.name for t in trials_of(db)] == ["COMPLETE"]
    optuna.create_study(storage=open_storage(str(db)), study_name="theirs", direction="minimize")
    assert_one_line_error(run("search", "--storage", str(db), "--study-name", "theirs", "--trials", "1", *QUICK,
                              cwd=tmp_path), "was not made by fastmlp search")


def test_a_wrong_password_or_a_missing_database_is_one_line_in_seconds(postgres, tmp_path):
    for url, fragment in ((postgres.url("postgres", password=SECRET), "password authentication failed"),
                          (postgres.url("no_such_database"), 'database "no_such_database" does not exist')):
        for command in ("search", "report"):
            proc = run(command, "--storage", url, cwd=tmp_path, timeout=60)  # a hang shows as the timeout
            assert_one_line_error(proc, fragment, "postgresql+psycopg://fastmlp:***@127.0.0.1")
            assert SECRET not in proc.stdout + proc.stderr and "pg-test-secret" not in proc.stderr


def test_searches_started_together_on_a_new_postgresql_database_create_it_once(postgres_url):
    script = ("import sys; from fastmlp.search.study import open_storage; "
              "import optuna; optuna.create_study(storage=open_storage(sys.argv[1]), study_name='x', "
              "load_if_exists=True)")
    procs = [subprocess.Popen([sys.executable, "-c", script, postgres_url], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}) for _ in range(3)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(postgres_url))] == ["x"]


def test_a_trials_line_names_the_options_of_the_recipe_it_turned_on():
    from fastmlp.config import TrainConfig
    plain = TrainConfig(lr_decay=1.0).to_dict()
    assert studymod.format_config(plain) == ("batch 64, hidden [1024], eta 1.50e-03, beta1 0.900, beta2 0.99900, "
                                             "eps 1.0e-08")
    recipe = {**plain, "schedule": "onecycle", "warmup": 4.0, "dropout": 0.25, "augment": "elastic",
              "elastic_alpha": 16.0}
    assert studymod.format_config(recipe).endswith(", eps 1.0e-08, eta schedule onecycle, warm-up epochs 4, "
                                                   "dropout 0.250, augmentation elastic, elastic alpha 16")
