"""fastmlp's MLPClassifier and MLPRegressor against scikit-learn's: fit wall time, accuracy, the GEMM floor.

Both get the same hyperparameters (scikit-learn's defaults but for the ones named below), the
same number of epochs (``max_iter``, no early stop: ``n_iter_no_change`` is set past it) and
``--threads`` threads each (default 2: threadpoolctl for scikit-learn's BLAS; fastmlp's
``limit_threads`` for its own threads, its BLAS pool starting single-threaded as in the ``fastmlp``
command). scikit-learn trains in float32 when
given float32, so both fit the same float32 matrix. Runs alternate between the two (the order
flips every round) and the medians of the fit times are reported; round r uses
``random_state=r`` for both, and the accuracies are means over the rounds.

Workloads:

* ``mnist``: MNIST as float features (``images / 255``, float32), 60,000 training rows, the
  10,000 test rows for accuracy; hidden (256, 128), batch 128, 3 epochs.
* ``synthetic``: ``make_classification(n_samples=200_000, n_features=100, n_informative=60,
  n_classes=10)``, 180,000 rows to fit and 20,000 to test; hidden (256, 128), batch 128, 3 epochs.
* ``regression``: ``make_regression(n_samples=200_000, n_features=100, n_informative=60,
  n_targets=1, noise=10)`` with the target standardised, 180,000 rows to fit and 20,000 to test
  (R^2); ``MLPRegressor``, hidden (256, 128), batch 128, 3 epochs.
* ``small``: scikit-learn's bundled digits, breast cancer and wine, each standardised
  (``StandardScaler`` fitted on the training part of a stratified 75/25 split), scikit-learn's
  default network (100,) and batch ('auto'), 200 epochs; test accuracy averaged over 5 seeds.
* ``first-contact``: the same three datasets as a user first hands them over (the raw features,
  all rows) to ``MLPClassifier()`` with its defaults, and with ``max_iter=20``: warm fit times,
  medians of 5 alternating seeds (the defaults stop by scikit-learn's ``tol`` rule, so each
  implementation's epochs are given too).

Beside the two fit times, ``gemm floor`` is the time of the same matrix products alone (NumPy,
preallocated outputs, the same BLAS threads) for the same epochs: no implementation of these
steps in float32 can take less, so ``sklearn / floor`` bounds any speed-up.

    .venv/bin/python benchmarks/peers/compare_sklearn.py                       # all workloads, 3 rounds
    .venv/bin/python benchmarks/peers/compare_sklearn.py --rounds 1 --workloads synthetic,small

``--out`` writes the tables, ``--json`` the measurements (each fit's seconds, the medians, the
accuracies, the floors) with the run's date, command line, commit, machine and BLAS kernel family.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

from fastmlp.training.threads import limit_threads, single_threaded_blas

single_threaded_blas()  # before NumPy loads, as the fastmlp command does (threadpoolctl raises it for scikit-learn)

import common  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

HIDDEN, BATCH, EPOCHS = (256, 128), 128, 3


def estimators(regression: bool = False, **params):
    """The two classifiers (or regressors) with identical parameters: (name, instance) pairs; no early
    stop unless ``params`` set ``n_iter_no_change``."""
    from sklearn import neural_network

    import fastmlp

    kind = "MLPRegressor" if regression else "MLPClassifier"
    common = dict(solver="adam", activation="relu", random_state=0, **{"n_iter_no_change": 10 ** 6, **params})
    return [("fastmlp", getattr(fastmlp, kind)(**common)), ("sklearn", getattr(neural_network, kind)(**common))]


def fit_seconds(clf, X, y, threads: int | None = None) -> float:
    """Seconds of ``clf.fit(X, y)``; ``threads``: fastmlp's thread count fixed for the fit (None: as it chooses)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(), limit_threads(threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(X, y)
        return time.perf_counter() - t0


def gemm_floor_seconds(n_rows: int, sizes: list[int], batch: int, epochs: int) -> float:
    """The step's matrix products alone: forward (one per layer), dW (one per layer), dX (all but the first)."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((o, i)).astype(np.float32) for i, o in zip(sizes[:-1], sizes[1:])]
    x = rng.random((batch, sizes[0]), dtype=np.float32)
    zs = [np.empty((batch, o), np.float32) for o in sizes[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty((batch, i), np.float32) for i in sizes[:-1]]
    t0 = time.perf_counter()
    for _ in range(epochs * -(-n_rows // batch)):
        inp = x
        for W, z in zip(Ws, zs):
            np.dot(inp, W.T, z)
            inp = z
        for layer in range(len(Ws) - 1, -1, -1):
            np.dot(zs[layer].T, x if layer == 0 else zs[layer - 1], dWs[layer])
            if layer:
                np.dot(zs[layer], Ws[layer], dxs[layer])
    return time.perf_counter() - t0


def timed_workload(name, X, y, Xt, yt, rounds: int, threads: int, regression: bool = False) -> dict:
    """Alternating fits of both, medians of the fit times, mean accuracy (R^2 for regression) over the
    rounds (seeds 0, 1, ...)."""
    times = {"fastmlp": [], "sklearn": []}
    accs = {"fastmlp": [], "sklearn": []}
    fit_seconds(estimators(regression, hidden_layer_sizes=HIDDEN, batch_size=BATCH, max_iter=1)[0][1], X[:2000],
                y[:2000], threads)
    for r in range(rounds):
        pairs = estimators(regression, hidden_layer_sizes=HIDDEN, batch_size=BATCH, max_iter=EPOCHS)
        for label, clf in (pairs if r % 2 == 0 else pairs[::-1]):
            clf.set_params(random_state=r)
            times[label].append(fit_seconds(clf, X, y, threads if label == "fastmlp" else None))
            accs[label].append(clf.score(Xt, yt))
            print(f"  {name} round {r + 1}: {label} {times[label][-1]:.2f} s, test accuracy {accs[label][-1]:.4f}",
                  file=sys.stderr)
    outputs = 1 if regression else len(np.unique(y))
    floor = gemm_floor_seconds(len(X), [X.shape[1], *HIDDEN, outputs], BATCH, EPOCHS)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"workload": name, "rows": len(X), "fastmlp_s": med["fastmlp"], "sklearn_s": med["sklearn"],
            "floor_s": floor, "fastmlp_acc": statistics.mean(accs["fastmlp"]),
            "sklearn_acc": statistics.mean(accs["sklearn"]), "seeds": rounds, "regression": regression,
            "fastmlp_fits_s": times["fastmlp"], "sklearn_fits_s": times["sklearn"]}


def mnist_workload(data_dir: str):
    from fastmlp.data.datasets import load_dataset

    ds = load_dataset("mnist", data_dir)
    scale = np.float32(1 / 255)
    X = ds.train_images.reshape(len(ds.train_images), -1).astype(np.float32) * scale
    Xt = ds.test_images.reshape(len(ds.test_images), -1).astype(np.float32) * scale
    return X, ds.train_labels.astype(np.int64), Xt, ds.test_labels.astype(np.int64)


def synthetic_workload():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200_000, n_features=100, n_informative=60, n_classes=10, random_state=0)
    X = X.astype(np.float32)
    return X[:180_000], y[:180_000], X[180_000:], y[180_000:]


def regression_workload():
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=200_000, n_features=100, n_informative=60, noise=10.0, random_state=0)
    X, y = X.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32)
    return X[:180_000], y[:180_000], X[180_000:], y[180_000:]


def first_contact(threads: int, seeds=range(5)) -> list[dict]:
    """Warm fit times of both on the small datasets as given (raw features, all rows), scikit-learn's
    defaults and ``max_iter=20``: medians over alternating seeds, with the epochs each ran."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    rows = []
    for name, load in (("digits", load_digits), ("breast cancer", load_breast_cancer), ("wine", load_wine)):
        X, y = load(return_X_y=True)
        X = X.astype(np.float32)
        for params in ({}, {"max_iter": 20}):
            fit_seconds(estimators(n_iter_no_change=10, max_iter=1)[0][1], X, y, threads)  # compiled, warm
            times, epochs = {"fastmlp": [], "sklearn": []}, {"fastmlp": [], "sklearn": []}
            for seed in seeds:
                pairs = estimators(n_iter_no_change=10, **params)
                for label, clf in (pairs if seed % 2 == 0 else pairs[::-1]):
                    clf.set_params(random_state=seed)
                    times[label].append(fit_seconds(clf, X, y, threads if label == "fastmlp" else None))
                    epochs[label].append(clf.n_iter_)
            rows.append({"workload": name, "rows": len(X), "params": "max_iter=20" if params else "defaults",
                         **{f"{k}_s": statistics.median(v) for k, v in times.items()},
                         **{f"{k}_epochs": statistics.median(v) for k, v in epochs.items()}})
            r = rows[-1]
            print(f"  {name} {r['params']}: fastmlp {r['fastmlp_s']:.3f} s ({r['fastmlp_epochs']:.0f} epochs), "
                  f"sklearn {r['sklearn_s']:.3f} s ({r['sklearn_epochs']:.0f} epochs)", file=sys.stderr)
    return rows


def small_workloads(threads: int, seeds=range(5), epochs: int = 200) -> list[dict]:
    """Test accuracy of both after the same epochs on digits, breast cancer and wine (mean over seeds)."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    rows = []
    for name, load in (("digits", load_digits), ("breast cancer", load_breast_cancer), ("wine", load_wine)):
        X, y = load(return_X_y=True)
        acc = {"fastmlp": [], "sklearn": []}
        for seed in seeds:
            Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
            scaler = StandardScaler().fit(Xa)
            Xa, Xb = scaler.transform(Xa).astype(np.float32), scaler.transform(Xb).astype(np.float32)
            for label, clf in estimators(max_iter=epochs):
                clf.set_params(random_state=seed)
                fit_seconds(clf, Xa, ya, threads if label == "fastmlp" else None)
                acc[label].append(clf.score(Xb, yb))
        rows.append({"workload": name, "rows": len(X), "epochs": epochs,
                     "fastmlp_acc": float(np.mean(acc["fastmlp"])), "sklearn_acc": float(np.mean(acc["sklearn"]))})
        print(f"  {name}: fastmlp {rows[-1]['fastmlp_acc']:.4f}, sklearn {rows[-1]['sklearn_acc']:.4f}",
              file=sys.stderr)
    return rows


def markdown(timed: list[dict], small: list[dict], rounds: int, threads: int, contact: list[dict] = ()) -> str:
    import sklearn

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"`compare_sklearn.py`, {stamp}, scikit-learn {sklearn.__version__}, {threads} threads each, "
           f"{rounds} alternating round(s), medians:", ""]
    if timed:
        out += ["| workload (hidden (256, 128), batch 128, 3 epochs) | fastmlp fit | scikit-learn fit | speed-up "
                "| GEMM floor | fastmlp / floor | sklearn / floor | fastmlp accuracy or R^2 (mean of seeds) "
                "| scikit-learn's |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in timed:
            score = (lambda v: f"{v:.4f}") if r["regression"] else (lambda v: f"{100 * v:.2f}%")
            out.append(f"| {r['workload']} ({r['rows']:,} rows) | {r['fastmlp_s']:.2f} s | {r['sklearn_s']:.2f} s "
                       f"| **{r['sklearn_s'] / r['fastmlp_s']:.2f}x** | {r['floor_s']:.2f} s "
                       f"| {r['fastmlp_s'] / r['floor_s']:.2f}x | {r['sklearn_s'] / r['floor_s']:.2f}x "
                       f"| {score(r['fastmlp_acc'])} | {score(r['sklearn_acc'])} |")
        out.append("")
    if contact:
        out += ["| first contact: dataset as given, MLPClassifier(...) | fastmlp fit (epochs) "
                "| scikit-learn fit (epochs) | speed-up |", "|---|---:|---:|---:|"]
        for r in contact:
            out.append(f"| {r['workload']} ({r['rows']} rows), {r['params']} | {r['fastmlp_s']:.3f} s "
                       f"({r['fastmlp_epochs']:.0f}) | {r['sklearn_s']:.3f} s ({r['sklearn_epochs']:.0f}) "
                       f"| **{r['sklearn_s'] / r['fastmlp_s']:.2f}x** |")
        out.append("")
    if small:
        out += ["| dataset (StandardScaler, (100,), batch 'auto') | epochs | test accuracy fastmlp "
                "| test accuracy scikit-learn |", "|---|---:|---:|---:|"]
        for r in small:
            out.append(f"| {r['workload']} ({r['rows']} rows) | {r['epochs']} | {100 * r['fastmlp_acc']:.2f}% "
                       f"| {100 * r['sklearn_acc']:.2f}% |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default="mnist,synthetic,regression,small,first-contact",
                   help="comma-separated: mnist, synthetic, regression, small, first-contact")
    p.add_argument("--rounds", type=int, default=3, help="alternating fits of each implementation (default 3)")
    p.add_argument("--data-dir", default=os.environ.get("FASTMLP_DATA_DIR", "data"), help="where mnist/ is")
    p.add_argument("--threads", type=int, default=2, help="threads for each implementation (default 2)")
    p.add_argument("--out", help="also write the Markdown tables to this file")
    p.add_argument("--json", help="write the measurements and the run's metadata to this JSON file")
    args = p.parse_args(argv)
    want = set(args.workloads.split(","))
    unknown = want - {"mnist", "synthetic", "regression", "small", "first-contact"}
    if unknown or args.rounds < 1:
        p.error(f"unknown workloads {sorted(unknown)}" if unknown else "--rounds must be >= 1")
    timed, small, contact = [], [], []
    meta = common.run_metadata() if args.json else None
    with threadpool_limits(args.threads):
        if "mnist" in want:
            timed.append(timed_workload("MNIST floats", *mnist_workload(args.data_dir), args.rounds, args.threads))
        if "synthetic" in want:
            timed.append(timed_workload("make_classification", *synthetic_workload(), args.rounds, args.threads))
        if "regression" in want:
            timed.append(timed_workload("make_regression", *regression_workload(), args.rounds, args.threads,
                                        regression=True))
        if "small" in want:
            small = small_workloads(args.threads)
        if "first-contact" in want:
            contact = first_contact(args.threads)
    text = markdown(timed, small, args.rounds, args.threads, contact)
    print(text)
    if args.out:
        from fastmlp.atomic import write_text
        write_text(args.out, text)
    if args.json:
        settings = {"workloads": sorted(want), "rounds": args.rounds, "threads": args.threads,
                    "hidden": list(HIDDEN), "batch_size": BATCH, "epochs": EPOCHS}
        common.write_json(args.json, "compare_sklearn", meta, settings,
                          {"timed": timed, "first_contact": contact, "small": small})
    return 0


if __name__ == "__main__":
    sys.exit(main())
