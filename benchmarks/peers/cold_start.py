#!/usr/bin/env python
"""The first minute: each entry point of fastmlp run in a fresh process, first with an empty Numba cache
(in sequence, sharing one cache that starts empty: what each entry point adds the first time it
runs), then again warm. Prints each one's wall time, its compile seconds and functions (Numba's
compile events, ``numba.core.event``), the slowest functions, and the peers where there are any
(scikit-learn's MLPClassifier on the same data; JAX's compile of a whole epoch, when installed).

    python benchmarks/peers/cold_start.py                      # every entry point
    python benchmarks/peers/cold_start.py --only train,estimator
    python benchmarks/peers/cold_start.py --list               # the entry points and their commands
    python benchmarks/peers/cold_start.py --out FILE.md --json FILE.json   # the table also in files

``--json`` writes the measurements (each entry point's cold and warm wall time, compile time,
functions compiled and slowest functions; scikit-learn's fit) with the run's date, command line,
commit, machine and BLAS kernel family.

Needs the real MNIST files (``$FASTMLP_DATA_DIR``) and, for some entry points, the extras
(scikit-learn, ONNX, Pillow, Optuna).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]

#: The entry points: name, what a user types, and a description. ``{d}`` is the run's folder.
ENTRY_POINTS = [
    ("train", ["fastmlp", "train", "--epochs", "1", "--out", "{d}/default"],
     "`fastmlp train --epochs 1` (the default model: 784-1024-10, batch 64, column split)"),
    ("train-rows", ["fastmlp", "train", "--epochs", "1", "--hidden", "100", "--batch-size", "256",
                    "--out", "{d}/rows"],
     "`fastmlp train --epochs 1 --hidden 100 --batch-size 256` (row shards)"),
    ("train-columns", ["fastmlp", "train", "--epochs", "1", "--hidden", "256,128", "--batch-size", "128",
                       "--out", "{d}/columns"],
     "`fastmlp train --epochs 1 --hidden 256,128 --batch-size 128` (column split, two hidden layers)"),
    ("best", ["fastmlp", "train", "--preset", "best", "--epochs", "1", "--out", "{d}/best"],
     "`fastmlp train --preset best --epochs 1` (elastic warp, AdamW, average, one-cycle; 784-1024-1024-10)"),
    ("evaluate", ["fastmlp", "evaluate", "{d}/default/model.npz"], "`fastmlp evaluate model.npz`"),
    ("predict", ["fastmlp", "predict", "{d}/default/model.npz", "{d}/digits"], "`fastmlp predict model.npz digits/`"),
    ("export", ["fastmlp", "export", "{d}/default/model.npz", "--onnx", "{d}/model.onnx"],
     "`fastmlp export model.npz --onnx model.onnx`"),
    ("estimator", ["python", "estimator"],
     "`MLPClassifier(max_iter=20).fit(X, y)` and `predict` on scikit-learn's digits (1,797 x 64)"),
    ("search", ["fastmlp", "search", "--storage", "sqlite:///{d}/search.db", "--trials", "1", "--epochs", "1",
                "--subset", "5000", "--batch-size", "64", "--layers", "1", "--width", "256"],
     "`fastmlp search --trials 1 --epochs 1 --subset 5000` (one trial)"),
]

ESTIMATOR_SNIPPET = """
from sklearn.datasets import load_digits
from fastmlp import MLPClassifier
X, y = load_digits(return_X_y=True)
clf = MLPClassifier(max_iter=20, random_state=0).fit(X, y)
clf.predict(X)
"""


# ----------------------------------------------------------------------------- the child process

def child(out_path: str, argv: list[str]) -> None:
    """Run one entry point with Numba's compile events recorded; write them to ``out_path`` at exit."""
    t0 = time.perf_counter()
    from numba.core import event
    recorder = event.install_recorder("numba:compile")
    buffer = recorder.__enter__().buffer

    def report() -> None:
        stack, totals, exclusive, top_level = [], {}, {}, 0.0
        for ts, ev in buffer:
            name = ev.data["dispatcher"].py_func.__qualname__
            if ev.is_start:
                stack.append([name, ts, 0.0])
            else:
                name, start, children = stack.pop()
                seconds = ts - start
                exclusive[name] = exclusive.get(name, 0.0) + seconds - children
                totals[name] = totals.get(name, 0) + 1
                if stack:
                    stack[-1][2] += seconds
                else:
                    top_level += seconds
        slowest = sorted(exclusive.items(), key=lambda kv: -kv[1])[:5]
        Path(out_path).write_text(json.dumps({
            "wall": time.perf_counter() - t0, "compile": top_level, "functions": sum(totals.values()),
            "slowest": slowest}))

    atexit.register(report)
    if argv[0] == "python":
        exec(compile(ESTIMATOR_SNIPPET, "<estimator>", "exec"), {})
    else:
        from fastmlp.cli import main
        code = main(argv[1:])
        if code:
            raise SystemExit(code)


# ----------------------------------------------------------------------------- the parent

def digits_folder(folder: Path, count: int = 5) -> None:
    """A few MNIST test digits as PNG files, as a person would hand them to ``fastmlp predict``."""
    from PIL import Image

    from fastmlp.data.datasets import load_dataset
    folder.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("mnist", verify=False)
    for i in range(count):
        Image.fromarray(ds.test_images[i].reshape(28, 28)).save(folder / f"digit{i}.png")


def run(name: str, argv: list[str], cache: Path, scratch: Path) -> dict:
    """One entry point in a fresh interpreter (NUMBA_CACHE_DIR=cache); wall time from outside."""
    out = scratch / f"{name}.json"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(out), "--", *argv], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"cold_start: {name} failed ({proc.returncode}): {tail}")
    stats = json.loads(out.read_text())
    stats["wall"] = wall
    return stats


def sklearn_digits_fit() -> float | None:
    """scikit-learn's own MLPClassifier(max_iter=20) fit + predict on digits, median of 3 (None without it)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    import warnings
    X, y = load_digits(return_X_y=True)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier(max_iter=20, random_state=0).fit(X, y).predict(X)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def markdown(chosen, results: dict, peer: float | None) -> str:
    lines = ["| entry point | cold: wall | of which compiling | functions compiled | warm: wall | slowest to compile |",
             "|---|---:|---:|---:|---:|---|"]
    total_cold = total_warm = 0.0
    for name, _, what in chosen:
        cold, warm = results[(name, "cold")], results[(name, "warm")]
        total_cold += cold["wall"]
        total_warm += warm["wall"]
        slow = ", ".join(f"{f} {s:.1f}" for f, s in cold["slowest"][:3])
        lines.append(f"| {what} | {cold['wall']:.1f} s | {cold['compile']:.1f} s | {cold['functions']} "
                     f"| {warm['wall']:.1f} s | {slow} |")
    lines.append(f"| every entry point above, one after the other | {total_cold:.1f} s | | | {total_warm:.1f} s | |")
    if peer is not None and "estimator" in [e[0] for e in chosen]:
        lines += ["", f"scikit-learn's own MLPClassifier(max_iter=20) fit + predict on digits: {peer:.2f} s (median of 3)."]
    return "\n".join(lines) + "\n"


def json_results(chosen, results: dict, peer: float | None) -> dict:
    entries = [{"name": name, "command": cmd, "description": what,
                **{phase: {**results[(name, phase)], "slowest": [list(fs) for fs in results[(name, phase)]["slowest"]]}
                   for phase in ("cold", "warm")}}
               for name, cmd, what in chosen]
    return {"entries": entries,
            "total": {phase: sum(e[phase]["wall"] for e in entries) for phase in ("cold", "warm")},
            # In this process, scikit-learn already imported: the fit and predict alone.
            "sklearn_digits_fit_predict_s": peer}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated entry points (default: all)")
    ap.add_argument("--list", action="store_true", help="list the entry points and exit")
    ap.add_argument("--out", default=None, help="also write the markdown table to this file (atomically)")
    ap.add_argument("--json", default=None, help="write the measurements and the run's metadata to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.child:
        child(args.child, rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.list:
        for name, _cmd, what in ENTRY_POINTS:
            print(f"{name:14s} {what}")
        return 0
    known = [e[0] for e in ENTRY_POINTS]
    unknown = [] if args.only is None else [n for n in args.only.split(",") if n not in known]
    if unknown:
        raise SystemExit(f"cold_start: unknown entry point {', '.join(unknown)} (--list shows them)")
    chosen = ENTRY_POINTS if args.only is None else [e for e in ENTRY_POINTS if e[0] in args.only.split(",")]
    needs = {"evaluate": "train", "predict": "train", "export": "train"}
    names = [e[0] for e in chosen]
    for name in list(names):
        if name in needs and needs[name] not in names:
            raise SystemExit(f"cold_start: {name} needs the model that 'train' writes: add train to --only")
    meta = None
    if args.json:
        # Imported here, not at the top: the children run this file too, and must start bare.
        sys.path.insert(0, str(BENCHMARKS))
        import common
        meta = common.run_metadata()
    with tempfile.TemporaryDirectory(prefix="fastmlp-cold-") as tmp:
        root = Path(tmp)
        cache, scratch = root / "numba-cache", root / "stats"
        cache.mkdir()
        scratch.mkdir()
        if "predict" in names:
            digits_folder(root / "digits")
        results = {}
        for phase in ("cold", "warm"):
            for name, cmd, _ in chosen:
                argv = [a.replace("{d}", str(root)) for a in cmd]
                results[(name, phase)] = run(f"{name}-{phase}", argv, cache, scratch)
                r = results[(name, phase)]
                print(f"{phase:4s} {name:14s} {r['wall']:6.1f} s wall, {r['compile']:5.1f} s compiling "
                      f"{r['functions']} functions", file=sys.stderr, flush=True)
    peer = sklearn_digits_fit()
    text = markdown(chosen, results, peer)
    print(text, end="")
    if args.out:
        from fastmlp.atomic import write_text
        write_text(args.out, text)
    if args.json:
        common.write_json(args.json, "cold_start", meta, {"only": names, "numba_cache": "empty, shared by the entries"},
                          json_results(chosen, results, peer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
