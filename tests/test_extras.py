"""``pip install fastmlp`` alone: the command trains without the search and images extras, and a command
that needs one of them says in one line which extra to install.

Each test runs the command in a fresh interpreter whose ``sitecustomize`` (in a temporary folder on
``PYTHONPATH``) makes Optuna, SQLAlchemy, alembic and Pillow unimportable. matplotlib, a core
dependency, needs Pillow to write PNG files and depends on it itself, so Pillow stays importable to
matplotlib (and to Pillow's own modules): to fastmlp it is missing.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import assert_one_line_error, run

from fastmlp.training.model import MLP

BLOCKER = '''
import sys

BLOCKED = {"optuna", "sqlalchemy", "alembic", "PIL"}
PIL_USERS = ("matplotlib", "PIL")  # matplotlib depends on Pillow itself (it writes PNG files with it)


def importer() -> str:
    """The module whose import statement is running (the first frame outside importlib)."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen")
                                 or frame.f_globals.get("__name__", "").startswith("importlib")):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""


class Blocker:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in BLOCKED or (top == "PIL" and importer().startswith(PIL_USERS)):
            return None
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Blocker())
'''


@pytest.fixture(scope="module")
def without_extras(tmp_path_factory) -> dict:
    """The environment of an interpreter without the search and images extras."""
    folder = tmp_path_factory.mktemp("no_extras")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": str(folder)}


def test_the_extras_are_unimportable_and_pillow_only_to_matplotlib(without_extras):
    code = ("import importlib\n"
            "for name in ('optuna', 'sqlalchemy', 'alembic', 'PIL'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "        print(name, 'imported')\n"
            "    except ImportError:\n"
            "        print(name, 'missing')\n"
            "import matplotlib.colors\n"
            "print('matplotlib imported')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **without_extras})
    assert proc.stdout.splitlines() == ["optuna missing", "sqlalchemy missing", "alembic missing", "PIL missing",
                                        "matplotlib imported"], proc.stderr


def test_train_works_without_the_search_and_images_extras(without_extras, small_data_dir, tmp_path):
    proc = run("train", "--hidden", "16", "--epochs", "2", "--val-size", "100", "--threads", "1", "--no-verify",
               "--data-dir", small_data_dir, "--out", tmp_path / "run", env=without_extras)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "history.json").read_text())["status"] == "completed"
    assert (tmp_path / "run" / "curves.png").exists()


def test_search_without_optuna_names_the_extra_to_install(without_extras, tmp_path):
    assert_one_line_error(run("search", "--trials", "1", "--storage", tmp_path / "s.db", env=without_extras),
                          "fastmlp search needs optuna: pip install 'fastmlp[search]'")


def test_report_without_optuna_names_the_extra_to_install(without_extras, tmp_path):
    assert_one_line_error(run("report", "--storage", tmp_path / "s.db", env=without_extras),
                          "fastmlp report needs optuna: pip install 'fastmlp[search]'")


def test_predict_without_pillow_names_the_extra_to_install(without_extras, tmp_path):
    model = tmp_path / "model.npz"
    MLP([784, 10]).save(model)
    (tmp_path / "seven.png").write_bytes(b"not read")
    assert_one_line_error(run("predict", model, tmp_path / "seven.png", env=without_extras),
                          "fastmlp predict needs Pillow: pip install 'fastmlp[images]'")


def test_the_core_dependencies_leave_the_search_and_the_images_to_their_extras():
    import re
    from pathlib import Path
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}  # noqa: E731
    core, extras = names(project["dependencies"]), project["optional-dependencies"]
    assert not core & {"optuna", "sqlalchemy", "alembic", "pillow", "scikit-learn"}
    assert {"optuna", "sqlalchemy"} <= names(extras["search"]) and names(extras["images"]) == {"pillow"}
    assert "matplotlib" in core  # curves.png is every run's
