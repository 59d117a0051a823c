#!/usr/bin/env python
"""Where a column-split step spends its time: each part of each phase timed alone, beside the whole step.

For each shape, one trainer (random uint8 images, Adam as ``fastmlp train``; the shape must train
in the column split) runs a few steps, then every piece of a step is timed on one thread, part by
part, on the trainer's own buffers, as ``engine.step.column_worker`` calls it: the gather
(``engine.layers``), each hidden layer's forward product with bias and ReLU, the logits with the
loss, each backward region (``engine.columns``: the gradient below a layer with the mask, the
weight-gradient rows) and Adam (``engine.update``). The parts are those the shape fixes
(``engine.parts``), the products cut as the trainer cuts them (``Trainer.small_gemm``: blocks for
the BLAS's small-matrix kernels, or whole). The pieces run with their operands in cache, and each
call from Python adds a few microseconds of dispatch. The last rows give the floor that the pieces
set for T threads (per piece, its slowest part or its parts' sum over T, whichever is longer) and
whole steps (``engine.step.run_call``) on one thread and on T. GFLOP/s counts the pieces' products.

    python benchmarks/probes/step_phases.py                     # 100/32 256,128/128 1024,1024/128
    python benchmarks/probes/step_phases.py 100/64 --rounds 9   # hidden sizes / batch
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
from fastmlp.engine.blas import blas_threads  # noqa: E402
from fastmlp.training.train import Trainer  # noqa: E402

SHAPES = ["100/32", "256,128/128", "1024,1024/128"]


def profile(hidden, batch, images, labels, threads: int, rounds: int, budget: float) -> list[str]:
    name = f"{','.join(map(str, hidden))}/{batch}"
    with limit_threads(threads):
        tr = Trainer(TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0), images, labels, num_classes=10)
    if not tr.columns:
        return [f"{name}: trains as row shards, not in the column split; skipped", ""]
    order = np.resize(np.arange(len(images), dtype=np.int64), 64 * batch)
    common.timed_call(tr, True, threads, tr.work, order, 8)
    lines = [f"### {name} (small-matrix block limit {tr.small_gemm:,})", "",
             "| piece | parts | all parts (us) | slowest part (us) | GFLOP/s per core |", "|---|---:|---:|---:|---:|"]
    total = floor = 0.0
    with blas_threads(1):
        for piece in common.column_pieces(tr, order[:batch]):
            t = [common.per_call(c, budget, piece.reset) for c in piece.calls]
            total += sum(t)
            floor += max(max(t), sum(t) / threads)
            rate = f"{piece.mflop / sum(t) / 1e3:.0f}" if piece.mflop else ""
            lines.append(f"| {piece.name} | {len(t)} | {sum(t) * 1e6:,.1f} | {max(t) * 1e6:,.1f} | {rate} |")
    n = min(64, max(8, int(0.2 / max(total, 1e-6))))  # steps per timed call: about 0.2 s, at most order's 64
    whole = {t: statistics.median(common.timed_call(tr, True, t, tr.work, order, n) / n for _ in range(rounds))
             for t in sorted({1, threads})}
    lines += [f"| sum of the pieces, one thread | | {total * 1e6:,.1f} | | |",
              f"| floor on {threads} threads (per piece: slowest part, or all parts / {threads}) | | {floor * 1e6:,.1f} "
              f"| | |"]
    lines += [f"| whole step on {t} thread{'s' if t > 1 else ''} (`run_call`, median of {rounds}) | | "
              f"{seconds * 1e6:,.1f} | | |" for t, seconds in whole.items()]
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="*", default=SHAPES, help="hidden sizes/batch, e.g. 256,128/128")
    ap.add_argument("--threads", type=int, default=2, help="threads of the whole step beside one (default 2)")
    ap.add_argument("--rounds", type=int, default=7, help="timed calls of whole steps (default 7)")
    ap.add_argument("--seconds", type=float, default=0.02, help="about this long per timed batch of calls")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.threads < 1:
        ap.error("--rounds and --threads must be >= 1 and --seconds > 0")
    shapes = [common.parse_shape(s, "step_phases") for s in args.shapes]
    images, labels = common.synthetic_data(8192)
    print("784 inputs; pieces on one thread each, operands in cache; medians", flush=True)
    for hidden, batch in shapes:
        print("\n".join(profile(hidden, batch, images, labels, args.threads, args.rounds, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
