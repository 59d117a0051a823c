#!/usr/bin/env python
"""Two or more versions of fastmlp side by side in one process: training steps, alternating calls.

Each argument is a checkout of the project (for an earlier commit: ``git worktree add DIR COMMIT``).
Its ``fastmlp`` package is copied under a name of its own and imported, so every version trains its
own trainer in the same process, on the same random uint8 images, and the calls take turns (the
order rotating every round). A machine's slow episodes then fall on all versions alike, and the
table compares the medians, each version's median ratio to the first version's call of the same
round, and the slowest calls' percentiles. The copies stay in ``COPIES`` (under the temporary
folder), one per checkout and place, so that the next run finds their kernels in Numba's cache.

Versions differ inside, so only what every version has is used: ``Trainer(config, images, labels,
num_classes=10)``, ``Trainer.steps(order, 0, n, lr)``, ``Trainer.model.sizes`` and each version's
own ``threads.limit_threads`` (which fixes its trainer's thread count, and Numba's where a version
runs on Numba's threads).

    git worktree add /tmp/before 021480b
    python benchmarks/probes/compare_versions.py /tmp/before . --shape 1024,1024/128 --rounds 200
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

from fastmlp.training.threads import single_threaded_blas

single_threaded_blas()  # as the fastmlp command does, before NumPy loads

import common  # noqa: E402
import numpy as np  # noqa: E402

COPIES = Path(tempfile.gettempdir()) / "fastmlp-compare-versions"


def copy_package(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` (modification times kept), its old files removed but not its
    ``__pycache__`` folders, where Numba's cache of the unchanged files stays valid."""
    if target.exists():
        for path in sorted(target.rglob("*"), reverse=True):
            if "__pycache__" in path.relative_to(target).parts:
                continue
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink()
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)


def source_hash(package: Path) -> str:
    """A hash of every source file of ``package``: Numba's cache knows when a kernel's own file
    changed, not when a kernel it calls did, so a changed package gets a fresh cache."""
    digest = hashlib.sha1()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_versions(checkouts: list[str]) -> list[str]:
    """Copy checkout i's package to ``COPIES/<its sources' hash>-i/fastmlp_vi``; the package names."""
    names = []
    for i, checkout in enumerate(checkouts):
        source = Path(checkout).resolve() / "fastmlp"
        if not (source / "train.py").is_file():
            raise SystemExit(f"compare_versions: {checkout} has no fastmlp package")
        folder = COPIES / f"{source_hash(source)}-{i}"
        name = f"fastmlp_v{i}"
        copy_package(source, folder / name)
        sys.path.insert(0, str(folder))
        names.append(name)
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="+", help="project folders; the first is the baseline")
    ap.add_argument("--shape", default="1024,1024/128", help="hidden sizes/batch (default 1024,1024/128)")
    ap.add_argument("--rounds", type=int, default=100, help="alternating rounds (default 100)")
    ap.add_argument("--seconds", type=float, default=0.1, help="about this long per call (default 0.1)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every version (default 2)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a TrainConfig field for every version, e.g. weight_decay=1e-4 (repeatable)")
    args = ap.parse_args(argv)
    hidden, batch = common.parse_shape(args.shape, "compare_versions")
    fields = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"compare_versions: --set {item!r}: expected FIELD=VALUE")
        try:
            fields[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fields[key] = value  # a string, e.g. schedule=cosine
    images, labels = common.synthetic_data(8192)
    names = load_versions(args.checkouts)
    with contextlib.ExitStack() as limits:
        trainers = []
        for name in names:
            limits.enter_context(importlib.import_module(f"{name}.threads").limit_threads(args.threads))
            train, config = importlib.import_module(f"{name}.train"), importlib.import_module(f"{name}.config")
            try:
                cfg = config.TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0, **fields)
            except (TypeError, ValueError) as e:
                raise SystemExit(f"compare_versions: {name}: {e}") from None
            trainers.append(train.Trainer(cfg, images, labels, num_classes=10))
        # about ``seconds`` per call at 100 GFLOP/s
        n = max(4, int(args.seconds * 100e9 / common.step_flops(trainers[0].model.sizes, batch)))
        order = np.resize(np.arange(len(images), dtype=np.int64), n * batch)
        for tr in trainers:  # a whole call each: a version's first call of many steps may start threads
            tr.steps(order, 0, n, 1e-4)
        rates: list[list[float]] = [[] for _ in trainers]
        for r in range(args.rounds):
            for i in [(r + j) % len(trainers) for j in range(len(trainers))]:
                t0 = time.perf_counter()
                trainers[i].steps(order, 0, n, 1e-4)
                rates[i].append(n * batch / (time.perf_counter() - t0))
    settings = "".join(f", {k}={v}" for k, v in fields.items())
    print(f"{args.shape}{settings}, {args.threads} threads, {args.rounds} rounds of {n} steps per call; samples/s")
    print("| version | median | ratio to the first (median per round) | overall (all samples / all time) | 2% | 5% "
          "| 10% | min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for checkout, r in zip(args.checkouts, rates):
        ratio = statistics.median(b / a for a, b in zip(rates[0], r))
        overall = len(r) / sum(1 / v for v in r)
        p2, p5, p10 = np.percentile(r, [2, 5, 10])
        print(f"| {checkout} | {statistics.median(r):,.0f} | {ratio:.3f}x | {overall:,.0f} | {p2:,.0f} | {p5:,.0f} "
              f"| {p10:,.0f} | {min(r):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
