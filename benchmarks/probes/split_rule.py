#!/usr/bin/env python
"""The two splits of a training step side by side, for the rule that picks one (``engine.parts.column_split``).

For each shape, one trainer (random uint8 images, Adam as ``fastmlp train``) gives the network and
its Adam state; each split gets its own buffers (``engine.records.allocate_work(..., columns=...)``)
and its calls go straight to ``engine.step.run_call``, the splits alternating, on ``--threads``
threads. The table gives the medians and the column split's speed over the row shards' (above 1:
columns faster), beside the rule's choice.

    python benchmarks/probes/split_rule.py                                  # the default shapes, 784 inputs
    python benchmarks/probes/split_rule.py --inputs 64 100/200 256,128/32   # hidden sizes / batch
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

from fastmlp.training.threads import limit_threads, single_threaded_blas

single_threaded_blas()  # as the fastmlp command does, before NumPy loads

import common  # noqa: E402
import numpy as np  # noqa: E402

from fastmlp.config import TrainConfig  # noqa: E402
from fastmlp.engine.records import allocate_work  # noqa: E402
from fastmlp.training.train import Trainer  # noqa: E402

SHAPES = ["100/32", "100/64", "100/128", "100/200", "100/512", "32/32", "32/128", "32/256", "16/32",
          "256,128/128", "256,128/256", "1024/512", "1024,1024/512"]


def measure(hidden, batch, images, labels, threads: int, rounds: int, seconds: float) -> tuple[bool, float, float]:
    """(the rule's choice, column-split seconds per step, row-shard seconds per step): medians."""
    with limit_threads(threads):
        trainer = Trainer(TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0), images, labels,
                          num_classes=10)
    works = {columns: allocate_work(trainer.model.sizes, batch, threads, columns=columns) for columns in (True, False)}
    n = max(4, int(seconds * 60e9 / common.step_flops(trainer.model.sizes, batch)))  # about `seconds` at 60 GFLOP/s
    order = np.resize(np.arange(len(images), dtype=np.int64), n * batch)
    for columns, work in works.items():
        common.timed_call(trainer, columns, threads, work, order, 2)
    times = {True: [], False: []}
    for _ in range(rounds):
        for columns, work in works.items():
            times[columns].append(common.timed_call(trainer, columns, threads, work, order, n) / n)
    return trainer.columns, statistics.median(times[True]), statistics.median(times[False])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="*", default=SHAPES, help="hidden sizes/batch, e.g. 256,128/128")
    ap.add_argument("--inputs", type=int, default=784, help="features per example (default 784)")
    ap.add_argument("--threads", type=int, default=2, help="threads of every call (default 2)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds per shape (default 7)")
    ap.add_argument("--seconds", type=float, default=0.15, help="about this long per timed call (default 0.15)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or args.seconds <= 0:
        ap.error("--rounds and --threads must be >= 1 and --seconds > 0")
    shapes = [common.parse_shape(s, "split_rule") for s in args.shapes]
    images, labels = common.synthetic_data(8192, args.inputs)
    print(f"{args.inputs} inputs, {args.threads} threads, {args.rounds} alternating rounds; medians", flush=True)
    print("| hidden/batch | rule | column split (us/step) | row shards (us/step) | columns / rows speed |")
    print("|---|---|---:|---:|---:|")
    for hidden, batch in shapes:
        rule, cols, rows = measure(hidden, batch, images, labels, args.threads, args.rounds, args.seconds)
        name = f"{','.join(map(str, hidden))}/{batch}"
        print(f"| {name} | {'columns' if rule else 'rows'} | {cols * 1e6:,.1f} | {rows * 1e6:,.1f} | "
              f"{rows / cols:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
