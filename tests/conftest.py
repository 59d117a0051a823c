"""Shared fixtures for the whole test suite.

Real data
    ``mnist``: the real MNIST :class:`fastmlp.data.datasets.Dataset`, loaded (and verified) once per
    session from ``$FASTMLP_DATA_DIR/mnist/``. Without it the tests that use it are skipped,
    unless ``FASTMLP_REQUIRE_DATA=1`` (CI), where they fail instead. Its arrays are shared by
    every test and are read-only views: never modify them in place. Tests that use ``mnist``
    are marked ``mnist`` automatically, so ``pytest -m "not mnist"`` deselects them.

    ``mnist_model``: ``(path, model)``, an MLP 784-256-10 trained for 3 epochs on real MNIST
    (about 97% test accuracy, a few seconds), saved as ``model.npz``; once per session.

Synthetic data
    ``synthetic``: a tiny MNIST-shaped :class:`SyntheticDataset` (12 training and 7 test images
    of 28x28) with a :class:`fastmlp.data.datasets.DatasetSpec` whose MD5s are computed (tests/synthetic.py) from the
    IDX bytes, so ``load_dataset(spec=synthetic.spec, data_dir=...)`` verifies it like the real
    thing. ``synthetic.write(folder, form)`` writes it as gzipped IDX, raw IDX or ``.npy``.
    ``make_synthetic`` is the class itself, for other sizes, names or arrays.
    ``small_dataset``: a learnable in-memory :class:`fastmlp.data.datasets.Dataset` (300 training and
    100 test images of 28x28, each class a bright block in its own place, plus noise), on which
    a search or a report runs in a second or two. ``small_data_dir``: the same arrays as files,
    under MNIST's names, for the command (``--data-dir DIR --no-verify``).

    ``no_data_env``: no ``$FASTMLP_DATA_DIR`` and an empty current directory (so no ``./data``):
    dataset look-ups see only what the test puts in place.

Optional extras
    ``onnxruntime``: the ``onnxruntime`` module (with ``onnx`` importable), from the ``onnx``
    extra. Without it the tests that use it are skipped, unless ``FASTMLP_REQUIRE_EXTRAS=1``
    (CI), where they fail instead. ``helpers.import_extra(module, extra)`` does the same for any
    module, also at a test module's top (the search's tests need the ``search`` extra).

SciPy's array-API mode is switched on before anything imports SciPy, so that scikit-learn's
estimator checks run their array-API input check (NumPy namespace) instead of skipping it.

Browser
    ``browser``: a factory of Selenium drivers of Debian's headless Chromium (``/usr/bin/chromium``
    driven by ``/usr/bin/chromedriver``: nothing is downloaded), each with a fresh profile and
    quit at the end of the test. Without them, or without Selenium, the tests that use it skip,
    unless ``FASTMLP_REQUIRE_EXTRAS=1`` (CI, whose ``.ci/run`` installs them), where they fail.

PostgreSQL
    ``postgres``: a throwaway server for the session; ``postgres_url``: a new database on it
    (see ``tests/postgres_server.py``; ``FASTMLP_REQUIRE_POSTGRES=1`` makes its absence a failure).
"""

from __future__ import annotations

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

from pathlib import Path

import pytest
from synthetic import SyntheticDataset, learnable_arrays

from fastmlp.data import datasets as data

try:  # the PostgreSQL fixtures live beside this file (absent where this file is copied alone)
    from postgres_server import postgres, postgres_url  # noqa: F401
except ImportError:
    pass

# ----------------------------------------------------------------------------- real MNIST

def _no_real_data(reason: str):
    if os.environ.get("FASTMLP_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason}; FASTMLP_REQUIRE_DATA=1 says the real-data tests must run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the real MNIST files (``$FASTMLP_DATA_DIR``), for tests that run the command."""
    root = os.environ.get("FASTMLP_DATA_DIR")
    if not root:
        _no_real_data("real MNIST not available: FASTMLP_DATA_DIR is not set")
    if not (Path(root) / "mnist").is_dir():
        _no_real_data(f"real MNIST not available: no mnist/ folder in FASTMLP_DATA_DIR={root}")
    return Path(root)


@pytest.fixture(scope="session")
def mnist(mnist_dir) -> data.Dataset:
    """The real, verified MNIST dataset (uint8 arrays), loaded once per session."""
    return data.load_dataset("mnist", data_dir=mnist_dir)


@pytest.fixture(scope="session")
def mnist_model(mnist, tmp_path_factory):
    """``(path of model.npz, MLP)``: 784-256-10, 3 epochs of batch 128 on all 60,000 training images.

    Trained by ``fastmlp train`` in its own process, so that the kernels this process compiles
    are only the tests' own (``test_kernels`` counts their signatures).
    """
    import subprocess
    import sys

    from fastmlp.training.model import MLP
    out = tmp_path_factory.mktemp("mnist_model")
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--hidden", "256", "--batch-size", "128",
                           "--epochs", "3", "--val-size", "0", "--seed", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    model, _ = MLP.load(out / "model.npz")
    return out / "model.npz", model


def pytest_collection_modifyitems(config, items):
    for item in items:
        if {"mnist", "mnist_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)


# ----------------------------------------------------------------------------- optional extras

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Headless, and quiet: without the background-networking flags Chromium keeps calling home, and a
# closed network refuses it.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1100")


@pytest.fixture
def browser(tmp_path):
    """``open_browser()``: a new Selenium driver of headless Chromium; every one is quit after the test."""
    from helpers import import_extra, missing_extra  # here: this file also serves alone (test_data's probe)
    webdriver = import_extra("selenium.webdriver", "dev")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing_extra(f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    drivers = []

    def open_browser():
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'chromium-{len(drivers)}'}"):
            options.add_argument(flag)
        drivers.append(webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options))
        return drivers[-1]
    yield open_browser
    for driver in drivers:
        driver.quit()


@pytest.fixture(scope="session")
def onnxruntime():
    """The ``onnxruntime`` module; ``onnx`` is importable too."""
    from helpers import import_extra
    import_extra("onnx", "onnx")
    return import_extra("onnxruntime", "onnx")


# ----------------------------------------------------------------------------- synthetic data

@pytest.fixture
def synthetic() -> SyntheticDataset:
    """A tiny verified MNIST-shaped dataset called ``synthetic`` (nothing written yet)."""
    return SyntheticDataset()


@pytest.fixture
def make_synthetic():
    """The :class:`SyntheticDataset` class, to build other sizes, names or arrays."""
    return SyntheticDataset


@pytest.fixture(scope="session")
def small_dataset() -> data.Dataset:
    """A learnable in-memory dataset named ``small``: 300 training and 100 test images."""
    return SyntheticDataset("small", arrays=learnable_arrays(300, 100)).dataset()


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """A data folder holding ``small_dataset``'s arrays under MNIST's file names (read with --no-verify):
    what ``fastmlp train --data-dir DIR --no-verify`` trains on in a second or two."""
    folder = tmp_path_factory.mktemp("small_data")
    SyntheticDataset("mnist", arrays=learnable_arrays(300, 100)).write(folder / "mnist", "gz")
    return folder


@pytest.fixture
def no_data_env(monkeypatch, tmp_path) -> Path:
    """Unset $FASTMLP_DATA_DIR and chdir into an empty folder; returns that folder."""
    monkeypatch.delenv("FASTMLP_DATA_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd
