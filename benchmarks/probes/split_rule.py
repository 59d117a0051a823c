#!/usr/bin/env python
"""The two splits of a training step side by side, for the rule that picks one (``layout.column_split``).

For each shape, one trainer (random uint8 images, Adam as ``fastmlp train``) runs its steps in the
column split and as row shards, alternating, on two threads; the table gives the medians and the
column split's speed over the row shards' (above 1: columns faster), beside the rule's choice.

    python benchmarks/split_rule.py                                  # the default shapes, 784 inputs
    python benchmarks/split_rule.py --inputs 64 100/200 256,128/32   # hidden sizes / batch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from fastmlp.threads import limit_threads, single_threaded_blas

single_threaded_blas()  # as the fastmlp command does, before NumPy loads

import numpy as np  # noqa: E402

from fastmlp.config import TrainConfig  # noqa: E402
from fastmlp.layout import SHARDS, aligned_zeros  # noqa: E402
from fastmlp.train import Trainer  # noqa: E402

from bench_workloads import parse_shape, step_flops  # noqa: E402

SHAPES = ["100/32", "100/64", "100/128", "100/200", "100/512", "32/32", "32/128", "32/256", "16/32",
          "256,128/128", "256,128/256", "1024/512", "1024,1024/512"]


def measure(hidden, batch, images, labels, rounds: int, seconds: float) -> tuple[bool, float, float]:
    """(the rule's choice, column-split seconds per step, row-shard seconds per step): medians."""
    with limit_threads(2):
        trainer = Trainer(TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0), images, labels,
                          num_classes=10)
        rule = trainer.columns
        trainer.shard_grads = aligned_zeros((SHARDS, trainer.model.num_parameters))  # rows need one each
        flops = step_flops(trainer.model.sizes, batch)
        n = max(4, int(seconds * 60e9 / flops))  # about ``seconds`` per call at 60 GFLOP/s
        order = np.resize(np.arange(len(images), dtype=np.int64), n * batch)
        times = {True: [], False: []}
        for columns in (True, False):
            trainer.columns = columns
            trainer.steps(order, 0, 2, 1e-4)
        for _ in range(rounds):
            for columns in (True, False):
                trainer.columns = columns
                t0 = time.perf_counter()
                trainer.steps(order, 0, n, 1e-4)
                times[columns].append((time.perf_counter() - t0) / n)
    return rule, statistics.median(times[True]), statistics.median(times[False])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="*", default=SHAPES, help="hidden sizes/batch, e.g. 256,128/128")
    ap.add_argument("--inputs", type=int, default=784, help="features per example (default 784)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds per shape (default 7)")
    ap.add_argument("--seconds", type=float, default=0.15, help="about this long per timed call (default 0.15)")
    args = ap.parse_args(argv)
    shapes = [parse_shape(s, "split_rule") for s in args.shapes]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8192, args.inputs), dtype=np.uint8)
    labels = rng.integers(0, 10, 8192).astype(np.uint8)
    print(f"{args.inputs} inputs, 2 threads, {args.rounds} alternating rounds; medians", flush=True)
    print("| hidden/batch | rule | column split (us/step) | row shards (us/step) | columns / rows speed |")
    print("|---|---|---:|---:|---:|")
    for hidden, batch in shapes:
        rule, cols, rows = measure(hidden, batch, images, labels, args.rounds, args.seconds)
        name = f"{','.join(map(str, hidden))}/{batch}"
        print(f"| {name} | {'columns' if rule else 'rows'} | {cols * 1e6:,.1f} | {rows * 1e6:,.1f} | "
              f"{rows / cols:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
