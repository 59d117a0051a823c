"""Helpers shared by the test modules (imported by them; no test module imports another)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.config import TrainConfig
from fastmlp.data.datasets import Dataset, validation_split
from fastmlp.engine import augment
from fastmlp.engine.records import Aug, Data, Net, Optim, allocate_work, make_call, make_recipe
from fastmlp.engine.step import run_call
from fastmlp.training.history import History
from fastmlp.training.model import MLP
from fastmlp.training.optim import Adam

# ----------------------------------------------------------------------------- optional extras

def import_extra(module: str, extra: str):
    """``import module``, or skip (fail under ``FASTMLP_REQUIRE_EXTRAS=1``) naming the extra to install;
    at a test module's top it skips (or fails) the whole module."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing_extra(f"{module} is not installed (pip install 'fastmlp[{extra}]')")


def missing_extra(reason: str):
    """Skip with ``reason``, or fail under ``FASTMLP_REQUIRE_EXTRAS=1``."""
    if os.environ.get("FASTMLP_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"{reason}; FASTMLP_REQUIRE_EXTRAS=1 says the tests of the extras must run", pytrace=False)
    pytest.skip(reason, allow_module_level=True)



def pdflatex_or_skip() -> str:
    """pdflatex's path; skips without it (fails under ``FASTMLP_REQUIRE_EXTRAS=1``: CI installs it)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        missing_extra("pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended)")
    return exe

# ----------------------------------------------------------------------------- the engine

#: Every option of the recipe on: one-cycle over 40 steps (8 of warm-up) to a floor of 0.01, weight
#: decay 0.01, max-norm 3, average 0.9, label smoothing 0.1, input dropout 0.2, hidden dropout 0.3.
FULL_RECIPE = dict(schedule=2, warmup=8, total=40, floor=0.01, weight_decay=0.01, max_norm=3.0, ema=0.9,
                   smoothing=0.1, dropout_input=0.2, dropout=0.3)
#: The warp of the full recipe (elastic) and its arguments as the reference takes them.
WARP = dict(rotate=12.0, scale=0.1, shear=0.15, shift=2.5, alpha=34.0, sigma=4.0)


def random_images(rng, n, n_in=784):
    """``n`` random uint8 images of ``n_in`` pixels and labels 0..9 (uint8)."""
    return rng.integers(0, 256, (n, n_in), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def warp_record(side=28, flip=0.0, crop=0, erase=0.0, **warp) -> Aug:
    """The kernels' :class:`~fastmlp.engine.records.Aug` for a warp (default :data:`WARP`), with the
    clothes-photo transforms' chances (none by default)."""
    w = {**WARP, **warp}
    return Aug(*augment.aug_params(w["rotate"], w["scale"], w["shear"], w["shift"], w["alpha"], w["sigma"], side,
                                   flip, crop, erase))


def engine_and_reference(sizes, seed=0):
    """An engine MLP and a float64 reference NN with the same weights (the reference's init)."""
    net = ref.NN(sizes, np.random.default_rng(seed), dtype=np.float64)
    model = MLP(sizes)
    model.set_from([p.astype(np.float32) for p in net.parameters()])
    return model, net


def run_steps(model, adam, images, labels, order, n_steps, batch, *, first=0, lr=1e-3, recipe=None, aug=None, seed=0,
              epoch=0, alpha=0.0, threads=2, columns=False, small=0, work=None, weights=None):
    """``n_steps`` training steps of ``model`` with ``adam``'s state, in one kernel call on ``threads``
    threads, as row shards or in the column split; ``recipe``: a dict of
    :func:`~fastmlp.engine.records.make_recipe`'s fields (None: the plain recipe); ``labels`` 2-D
    float32: regression targets; ``weights``: the examples' float32 weights. Returns
    ``(losses, correct)``; the caller advances ``adam`` if it goes on."""
    if work is None:
        scratch = augment.scratch_size(28) if aug is not None else 1
        work = allocate_work(model.sizes, batch, max(threads, 8), scratch, columns=columns, regression=labels.ndim == 2)
    losses = np.zeros(n_steps)
    call = make_call(first, n_steps, batch, adam.t, seed, epoch, lr, adam.beta1, adam.beta2, adam.eps, alpha, small)
    correct = run_call(columns, threads, Net(model.layout, model.params), Data(images, labels, order, weights), work,
                       Optim(adam.m, adam.v, adam.ema), aug, make_recipe(**recipe) if recipe else None, call, losses)
    return losses, correct


def fresh_adam(model, **kw) -> Adam:
    """An :class:`~fastmlp.training.optim.Adam` for ``model`` whose average starts at its parameters."""
    adam = Adam(model.num_parameters, **kw)
    adam.start_average(model.params)
    return adam


def activations(sizes, batch):
    """``(x, y, z, h, d, act_off)``: a workspace's activation buffers for batches of ``batch`` rows."""
    work = allocate_work(sizes, batch, 1)
    return work.x, work.y, work.z, work.h, work.d, work.act_off


# ----------------------------------------------------------------------------- training runs

#: The keys of an epoch record that are timings (they differ from run to run).
TIMING_KEYS = {"train_seconds", "samples_per_s", "elapsed_s"}


def synthetic_dataset(n_train=600, n_test=200, n_in=784, seed=0) -> Dataset:
    """Random images whose label is the brightest of ten fixed pixel groups: learnable."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_in)[:10 * 8].reshape(10, 8)

    def make(n):
        images = rng.integers(0, 40, (n, n_in), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, groups[y]] = 255
        return images, labels

    (tri, trl), (tei, tel) = make(n_train), make(n_test)
    return Dataset("synthetic", tri, trl, tei, tel, source=Path("memory"), checksums={})


def unlearnable_validation(val_size=100) -> Dataset:
    """:func:`synthetic_dataset` with its validation hold-out's labels shuffled: the validation accuracy
    wanders around chance from epoch to epoch, so its best epoch is seldom the last, and it stalls."""
    data = synthetic_dataset()
    labels = data.train_labels.copy()
    _, val_idx = validation_split(len(labels), val_size)
    labels[val_idx] = np.random.default_rng(1).permutation(labels[val_idx])
    return replace(data, train_labels=labels)


def small_config(**kw) -> TrainConfig:
    """A configuration that trains :func:`synthetic_dataset` in a fraction of a second (``kw`` overrides it)."""
    base = TrainConfig(hidden_sizes=(32, 16), batch_size=50, lr=1e-3, lr_decay=1.0, epochs=2, val_size=100, seed=3)
    return replace(base, **kw)


def without_timings(history: History) -> list[dict]:
    """A history's epoch records without their timings: what two runs of one configuration share."""
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history.epochs]


# ----------------------------------------------------------------------------- the command

def run(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """``python -m fastmlp ARGS`` in its own process, with ``env`` over this one's environment."""
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(proc, *fragments, status=2):
    """The command failed with ``status`` and one ``fastmlp: error:`` line holding every fragment."""
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------- hostile input

# A bad input is reported before any work: a command still running after this long has started some.
PROMPT = 30


def run_offline(args, cwd: Path, timeout: float = PROMPT) -> subprocess.CompletedProcess:
    """``python -m fastmlp ARGS`` in ``cwd``, without ``$FASTMLP_DATA_DIR`` and with the network out of reach."""
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_DATA_DIR"}
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")  # no download gets out
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit_2(args, cwd: Path, *fragments: str) -> str:
    """Run the command; it must fail with one ``fastmlp: error:`` line, before doing any work (within
    PROMPT seconds, a bound no real run meets). Returns the line."""
    try:
        result = run_offline(args, cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fastmlp {' '.join(map(str, args))} still running after {PROMPT} s")
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- SQLite

DIE_MID_TRANSACTION = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA cache_size=1")  # pages spill into the file before the commit: the journal is hot
connection.execute("BEGIN IMMEDIATE")
connection.execute("CREATE TABLE scratch (x BLOB)")
for _ in range(200):
    connection.execute("INSERT INTO scratch VALUES (zeroblob(5000))")
os._exit(0)  # as if killed: no rollback, no commit
"""


def kill_a_writer_mid_transaction(db) -> None:
    """A process that dies inside an SQLite transaction on ``db``, leaving its hot journal (a table ``scratch``)."""
    subprocess.run([sys.executable, "-c", DIE_MID_TRANSACTION, str(db)], check=True, timeout=60)
    assert Path(f"{db}-journal").stat().st_size > 0
