"""The dashboard: optuna-dashboard on a search's storage (SQLite or PostgreSQL), seen in a real headless
browser, on 127.0.0.1, never showing a password; beside a running search; stopped cleanly by Ctrl-C;
and one-line errors."""

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import import_extra, kill_a_writer_mid_transaction
from synthetic import SyntheticDataset, learnable_arrays

import_extra("optuna", "search")  # the search extra: without it this module skips
from fastmlp.search.study import open_storage, quiet_optuna, resolve_settings  # noqa: E402
from fastmlp.search.workers import run_search  # noqa: E402

quiet_optuna()

SPACE = {"layers": "1", "width": "16,32", "batch_size": "25,50", "lr": "2e-3:5e-3", "epochs": "3", "min_epochs": "1"}
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/dashboard")


@pytest.fixture(scope="module")
def optuna_dashboard():
    return import_extra("optuna_dashboard", "dashboard")


def small_search(storage: str, dataset, trials: int = 2) -> None:
    settings = resolve_settings(None, storage=storage, study_name="small", space_flags=SPACE, val_size=100,
                                dataset="small", pruner="none")
    run_search(settings, trials=trials, dataset=dataset, log=lambda line: None)


def fastmlp(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastmlp", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def served_url(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The dashboard's URL, from the first of ``proc``'s lines that names one (the lines read up to it
    are kept in ``proc.said``)."""
    lines, until = [], time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < until:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if URL.search(line):
                    proc.said = lines
                    return URL.search(line).group(0)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"no dashboard URL: {''.join(lines) + out + err}")


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C, and what the process printed."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return out, err


def study_id(storage: str, name: str = "small") -> int:
    return open_storage(storage, heartbeat=False).get_study_id_from_name(name)


def wait_for_text(driver, *texts: str, timeout: float = 60) -> str:
    """The page's text once every one of ``texts`` shows in it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))
    return driver.find_element(By.TAG_NAME, "body").text


def screenshot(driver, tmp_path) -> Path:
    """A PNG of the page in ``tmp_path``; also as ``dashboard.png`` in ``$FASTMLP_SCREENSHOT_DIR`` when set
    (docs/search.md's picture is made so)."""
    path = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(path))
    if os.environ.get("FASTMLP_SCREENSHOT_DIR"):
        shutil.copyfile(path, Path(os.environ["FASTMLP_SCREENSHOT_DIR"]) / "dashboard.png")
    return path


def test_the_dashboard_shows_the_trials_of_a_search_in_a_real_browser(optuna_dashboard, browser, small_dataset,
                                                                      tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    small_search(storage, small_dataset, trials=6)
    proc = fastmlp("dashboard", "--storage", storage, "--port", "0", cwd=tmp_path)
    url = served_url(proc)
    driver = browser()
    driver.get(f"{url}/studies/{study_id(storage)}/trials")
    # a trial: its validation accuracy after each epoch, and its hyperparameters by the homework's names
    text = wait_for_text(driver, "small", "Trial 0", "Trial 5", "Intermediate Values")
    assert "Batch Size" in text and "Hidden Sizes" in text and "η" in text
    driver.get(f"{url}/studies/{study_id(storage)}")
    wait_for_text(driver, "History", "validation accuracy", "Hyperparameter Importance")  # the objective by its name
    assert screenshot(driver, tmp_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert "".join(proc.said).splitlines() + out.splitlines() == [
        f"fastmlp: dashboard of {storage} at {url} (Ctrl-C stops it)", "fastmlp: dashboard stopped"]
    assert not err  # no request log, no warning


def test_on_postgresql_the_password_shows_neither_in_the_page_nor_in_the_servers_output(
        optuna_dashboard, browser, small_dataset, postgres_url, tmp_path):
    password = re.search(r"://[^:]+:([^@]+)@", postgres_url).group(1)
    small_search(postgres_url, small_dataset)
    proc = fastmlp("dashboard", "--storage", postgres_url, "--port", "0", cwd=tmp_path)
    url = served_url(proc)
    driver = browser()
    driver.get(f"{url}/studies/{study_id(postgres_url)}/trials")
    wait_for_text(driver, "small", "Trial 0")
    driver.get(url)
    wait_for_text(driver, "small")
    api = urllib.request.urlopen(url.replace("/dashboard", "/api/studies"), timeout=30).read().decode()
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert "small" in json.loads(api)["study_summaries"][0]["study_name"]
    for text in (driver.page_source, api, "".join(proc.said), out, err):
        assert password not in text
    assert "postgresql://fastmlp:***@127.0.0.1" in proc.said[0]


def test_a_search_serves_its_dashboard_while_it_runs_and_stops_it_with_the_search(optuna_dashboard, tmp_path):
    SyntheticDataset("mnist", arrays=learnable_arrays(300, 100)).write(tmp_path / "data" / "mnist")
    db = tmp_path / "s.db"
    proc = fastmlp("search", "--storage", str(db), "--dashboard", "0", "--data-dir", str(tmp_path / "data"),
                   "--no-verify", "--val-size", "100", "--trials", "100000", "--pruner", "none", *sum(
                       ([f"--{k.replace('_', '-')}", v] for k, v in SPACE.items()), []), cwd=tmp_path)
    url = served_url(proc)
    api = url.replace("/dashboard", f"/api/studies/{1}?after=0")
    trials, until = [], time.monotonic() + 60
    while len(trials) < 2 and time.monotonic() < until:  # a trial finished, and the next one under way
        time.sleep(0.2)
        try:
            trials = json.loads(urllib.request.urlopen(api, timeout=10).read())["trials"]
        except OSError:  # the study is not created yet
            continue
    out, err = stop(proc)
    assert len(trials) >= 2, out + err
    assert trials[0]["intermediate_values"] and trials[0]["params"]
    assert proc.returncode == 130 and "search: interrupted" in out
    assert f"search: dashboard of sqlite:///{db} at {url} while the search runs" in "".join(proc.said)
    port = int(URL.search(url).group(1))
    with socket.socket() as s:  # nothing listens on the port any more: the dashboard stopped with the search
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the connections in TIME_WAIT
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_read_that_meets_a_killed_searchs_journal_fails_once_in_one_line_and_the_next_succeeds(
        optuna_dashboard, small_dataset, tmp_path):
    db = tmp_path / "s.db"
    small_search(f"sqlite:///{db}", small_dataset, trials=1)
    proc = fastmlp("dashboard", "--storage", str(db), "--port", "0", cwd=tmp_path)
    api = served_url(proc).replace("/dashboard", "/api/studies")
    kill_a_writer_mid_transaction(db)
    with pytest.raises(urllib.error.HTTPError, match="500"):
        urllib.request.urlopen(api, timeout=30)
    studies = json.loads(urllib.request.urlopen(api, timeout=30).read())["study_summaries"]
    out, err = stop(proc)
    assert [s["study_name"] for s in studies] == ["small"] and proc.returncode == 0
    assert err.splitlines() == [f"fastmlp: {db}: a process was killed while writing this storage; its unfinished "
                                f"transaction is rolled back now, and the next read sees the last commit"]


# ----------------------------------------------------------------------------- one-line errors

def one_line_error(proc: subprocess.Popen, *fragments: str) -> None:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_without_the_extra_the_dashboard_is_one_line_naming_the_install_command(tmp_path):
    code = ("import sys; sys.modules['optuna_dashboard'] = None; from fastmlp.cli import main; "
            "sys.exit(main(['dashboard', '--storage', 's.db']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    one_line_error(proc, "pip install 'fastmlp[dashboard]'")


def test_a_missing_storage_a_taken_port_or_a_bad_one_is_one_line(optuna_dashboard, small_dataset, tmp_path):
    one_line_error(fastmlp("dashboard", "--storage", "nothing.db", cwd=tmp_path), "no search storage here")
    assert not (tmp_path / "nothing.db").exists()
    storage = f"sqlite:///{tmp_path / 's.db'}"
    small_search(storage, small_dataset, trials=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(fastmlp("dashboard", "--storage", storage, "--port", str(port), cwd=tmp_path),
                       f"cannot serve the dashboard on 127.0.0.1:{port}")
    one_line_error(fastmlp("dashboard", "--storage", storage, "--port", "70000", cwd=tmp_path),
                   "--port must be in 0..65535")
