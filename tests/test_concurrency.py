"""Thread and process safety, as stated properties.

A fitted estimator's ``predict`` and ``predict_proba`` may be called from several Python threads
at once, and independent fits may run in several threads at once: every answer is the one the
same call gives alone, bit for bit (each call has its own workspace; a call that finds the engine's
thread pool busy runs alone on its own thread). A process forked after a fit (``multiprocessing``'s
default on Linux) trains and predicts as the parent does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from helpers import import_extra

import_extra("sklearn", "sklearn")

from fastmlp import MLPClassifier  # noqa: E402


def learnable(n=3000, features=196, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, features), dtype=np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    return X, y


def fit(X, y, seed=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=3, random_state=seed).fit(X, y)


def in_threads(fn, n):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn()
        except BaseException as exc:  # re-raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_predict_proba_from_four_threads_at_once_gives_the_answers_of_one():
    X, y = learnable()
    clf = fit(X, y)
    alone = clf.predict_proba(X)
    for _ in range(3):
        for answer in in_threads(lambda: clf.predict_proba(X), 4):
            np.testing.assert_array_equal(answer, alone)


def test_two_fits_in_two_threads_give_the_weights_and_losses_of_a_fit_alone():
    X, y = learnable()
    alone = fit(X, y)
    for _ in range(2):
        for clf in in_threads(lambda: fit(X, y), 2):
            assert clf.loss_curve_ == alone.loss_curve_
            for a, b in zip(clf.coefs_ + clf.intercepts_, alone.coefs_ + alone.intercepts_):
                np.testing.assert_array_equal(a, b)


def run_script(code: str, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter (a hang or an abort there fails this test, not the test run)."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script still ran after {timeout} s (a hang)")


FORK_SCRIPT = """
    import multiprocessing, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from fastmlp import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.random((3000, 196), dtype=np.float32)
    y = X[:, :10].argmax(axis=1)
    def fit():
        return MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=2, random_state=1).fit(X, y)
    parent = fit()
    expected = parent.predict_proba(X)
    def child(_):
        again = fit()
        return (np.array_equal(parent.predict_proba(X), expected),
                all(np.array_equal(a, b) for a, b in zip(again.coefs_, parent.coefs_)))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print(pool.map(child, range(4)))
"""


def test_a_process_forked_after_a_fit_predicts_and_fits_as_the_parent():
    proc = run_script(FORK_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([(True, True)] * 4)


def test_numbas_threading_layer_setting_changes_nothing_for_fits_in_two_threads():
    """The engine runs its parts on its own Python threads (no Numba parallel region), so
    ``NUMBA_THREADING_LAYER`` neither aborts two fits in two threads nor changes their weights."""
    import os
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    code = """
        import threading, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        from fastmlp import MLPClassifier
        rng = np.random.default_rng(0)
        X = rng.random((2000, 64), dtype=np.float32)
        y = X[:, :10].argmax(axis=1)
        fits = [None, None]
        def run(i):
            fits[i] = MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=1).fit(X, y)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(np.array_equal(fits[0].coefs_[0], fits[1].coefs_[0]))
    """
    proc = run_script(code, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
