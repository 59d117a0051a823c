"""The shape of the package: floors that only import downwards, small modules that say what they own,
a layout table in docs/design.md that lists the files as they are, and a light ``fastmlp train``."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastmlp"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
MAX_LINES = 600


def test_the_floors_contract_holds():
    """pyproject.toml's import-linter layers contract: no module imports a floor above its own."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is not installed (pip install -e '.[dev]')", pytrace=False)
    proc = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout and "kept" in proc.stdout


def test_the_code_passes_ruff():
    """pyproject.toml's ruff rules (pyflakes, pycodestyle, import order, bugbear, pyupgrade) on every
    Python file of the project: package, tests and benchmarks."""
    exe = Path(sys.executable).with_name("ruff")
    if not exe.exists():
        pytest.fail("ruff is not installed (pip install -e '.[dev]')", pytrace=False)
    proc = subprocess.run([str(exe), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(PACKAGE).as_posix() for p in MODULES])
def test_every_module_is_small_and_says_what_it_owns(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name} has {len(text.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 5, f"{path.name} has no docstring saying what it owns"


def test_the_design_layout_table_lists_every_module():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = design.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`fastmlp/([a-z_/]+\.py)`", section))
    present = {p.relative_to(PACKAGE).as_posix() for p in MODULES if p.name not in ("__init__.py", "__main__.py")}
    assert listed == present


def imported_modules(*args: str) -> set[str]:
    """Modules imported by ``python -m fastmlp ARGS`` (from ``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "fastmlp", *args],
                          capture_output=True, text=True)
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_train_help_imports_neither_optuna_nor_the_search_nor_numba():
    mods = imported_modules("train", "--help")
    assert "fastmlp.cli" in mods
    for heavy in ("optuna", "fastmlp.search.workers", "fastmlp.report.builder", "numba", "sklearn"):
        assert heavy not in mods


def test_no_test_module_imports_another_or_the_conftest():
    """What tests share lives in helper modules (helpers.py, synthetic.py, model_files.py, ...): a test
    module imported by another would run its tests twice and tie the two together."""
    tests = ROOT / "tests"
    test_modules = {p.stem for p in tests.glob("test_*.py")} | {"conftest"}
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[0] in test_modules]
    assert found == []
