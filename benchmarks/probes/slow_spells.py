#!/usr/bin/env python
"""What a shared machine's slow spells slow down: short windows in turn, in one process.

Each round runs, one after the other for about ``--window`` seconds each: fastmlp's training step
on two threads; a single-threaded float32 GEMM on each of two Python threads at once (operands
in cache: the cores' arithmetic); and a copy of a large array on each of two threads at once
(memory bandwidth). A round in which the step ran below 85% of its median is counted as slow, and
the table compares every probe's median in slow and in other rounds. A probe that falls with the
step shares its cause; one that holds up does not.

    python benchmarks/probes/slow_spells.py --seconds 300 --shape 1024,1024/128
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

from fastmlp.training.threads import limit_threads, single_threaded_blas

single_threaded_blas()  # GEMMs below run one per thread, as in fastmlp's own kernels

import common  # noqa: E402
import numpy as np  # noqa: E402

from fastmlp.config import TrainConfig  # noqa: E402
from fastmlp.training.train import Trainer  # noqa: E402


def on_two_threads(works, seconds: float) -> float:
    """Run ``works[0](seconds)`` and ``works[1](seconds)`` (each returning a rate) on two Python threads
    at once; the sum of the rates."""
    rates = [0.0, 0.0]

    def run(i):
        rates[i] = works[i](seconds)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rates)


def gemm_rate(m: int, n: int, k: int):
    """GFLOP/s of ``C = A @ B`` ((m, k) by (k, n), float32) repeated for the given seconds; the operands
    are allocated and touched once, here, not in the timed windows."""
    rng = np.random.default_rng()
    a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
    c = np.zeros((m, n), np.float32)

    def work(seconds):
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            np.matmul(a, b, out=c)
            calls += 1
        return calls * 2.0 * m * n * k / (time.perf_counter() - t0) / 1e9
    return work


def copy_rate(mib: int):
    """GB/s moved (read and written) copying a ``mib`` MiB float32 array, repeated for the given
    seconds; both arrays are allocated and touched once, here, not in the timed windows."""
    src = np.ones(mib << 18, np.float32)
    dst = np.zeros_like(src)

    def work(seconds):
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            np.copyto(dst, src)
            calls += 1
        return calls * 2.0 * src.nbytes / (time.perf_counter() - t0) / 1e9
    return work


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="1024,1024/128", help="hidden sizes/batch of the step (default 1024,1024/128)")
    ap.add_argument("--seconds", type=float, default=120.0, help="how long to run (default 120)")
    ap.add_argument("--window", type=float, default=0.1, help="seconds per probe per round (default 0.1)")
    ap.add_argument("--copy-mib", type=int, default=64, help="size of each thread's copied array (default 64 MiB)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.window <= 0 or args.copy_mib <= 0:
        raise SystemExit("slow_spells: --seconds, --window and --copy-mib must be positive")
    hidden, batch = common.parse_shape(args.shape, "slow_spells")
    images, labels = common.synthetic_data(8192)
    with limit_threads(2):
        trainer = Trainer(TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0), images, labels,
                          num_classes=10)
        order = np.resize(np.arange(len(images), dtype=np.int64), 64 * batch)
        trainer.steps(order, 0, 2, 1e-4)
        t0 = time.perf_counter()
        trainer.steps(order, 0, 4, 1e-4)
        n_steps = int(min(64, max(2, 4 * args.window / (time.perf_counter() - t0))))

        def step_rate():  # n_steps of about --window seconds
            t = time.perf_counter()
            trainer.steps(order, 0, n_steps, 1e-4)
            return n_steps * batch / (time.perf_counter() - t)

        gemms = [gemm_rate(512, 128, 1024) for _ in range(2)]
        copies = [copy_rate(args.copy_mib) for _ in range(2)]
        probes = {
            f"fastmlp step {args.shape}, 2 threads (samples/s)": step_rate,
            "GEMM 512x1024 by 1024x128, one per thread, 2 threads (GFLOP/s)":
                lambda: on_two_threads(gemms, args.window),
            f"copy of {args.copy_mib} MiB, one per thread, 2 threads (GB/s)":
                lambda: on_two_threads(copies, args.window),
        }
        rows, end = [], time.time() + args.seconds
        while time.time() < end:
            rows.append([probe() for probe in probes.values()])
            if len(rows) % 20 == 0:
                print(f"  round {len(rows)}: " + ", ".join(f"{v:,.1f}" for v in rows[-1]), file=sys.stderr, flush=True)
    a = np.array(rows)
    slow = a[:, 0] < 0.85 * np.median(a[:, 0])
    print(f"{len(a)} rounds of {args.window} s per probe; {int(slow.sum())} with the step below 85% of its median\n")
    print("| probe | median, all rounds | median, slow rounds | median, other rounds |")
    print("|---|---:|---:|---:|")
    for j, name in enumerate(probes):
        in_slow = f"{np.median(a[slow, j]):,.1f}" if slow.any() else "n/a"
        other = f"{np.median(a[~slow, j]):,.1f}" if (~slow).any() else "n/a"
        print(f"| {name} | {np.median(a[:, j]):,.1f} | {in_slow} | {other} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
