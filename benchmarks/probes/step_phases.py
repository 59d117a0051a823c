#!/usr/bin/env python
"""Where a column-split step spends its time: each part of each phase timed alone, beside the whole step.

For each shape, one trainer (random uint8 images, Adam as ``fastmlp train``; the shape must train
in the column split) runs a few steps, then every piece of ``step_kernels.column_step`` is timed on
one thread, part by part, on the trainer's own buffers: the gather, each hidden layer's forward
product with bias and ReLU, the logits with the loss, each backward region (the gradient below a
layer with the mask, the weight-gradient rows) and Adam. The products are cut as the trainer cuts
them (``Trainer.small_gemm``: blocks for the BLAS's small-matrix kernels, or whole). The pieces run
with their operands in cache, so their sum is a floor; the last rows give a whole step on two
threads. GFLOP/s counts the pieces' products.

    python benchmarks/step_phases.py                     # 100/32 256,128/128 1024,1024/128
    python benchmarks/step_phases.py 100/64 --rounds 9   # hidden sizes / batch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from fastmlp.threads import limit_threads, single_threaded_blas

single_threaded_blas()  # as the fastmlp command does, before NumPy loads

import numpy as np  # noqa: E402

from fastmlp import step_kernels as sk  # noqa: E402
from fastmlp.config import TrainConfig  # noqa: E402
from fastmlp.layout import N_IN, N_OUT, rows_view, shard_bounds, split_bounds  # noqa: E402
from fastmlp.train import Trainer  # noqa: E402
from fastmlp.update_kernels import adam_update_shards  # noqa: E402

from bench_workloads import parse_shape  # noqa: E402

SHAPES = ["100/32", "256,128/128", "1024,1024/128"]
PARTS = 2


def pieces(tr: Trainer, idx: np.ndarray) -> list[tuple[str, float, list]]:
    """``(name, MFLOP of its products, [call of part 0, call of part 1])`` for every piece of a step."""
    p, g, lay, ws, m = tr.model.params, tr.grads, tr.model.layout, tr.workspace, len(idx)
    x, y, z, h, d, off, small = ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, tr.small_gemm
    L, k, sizes = lay.shape[0], int(lay[-1, N_OUT]), tr.model.sizes
    out = []

    def parts(fn):
        return [lambda s=s: fn(s) for s in range(PARTS)]

    def gather(s):
        r0, r1 = shard_bounds(m, PARTS, s)
        sk.gather_shard(tr.images, tr.labels, idx, r0, r1, x, y, sizes[0], tr.aug, tr.taps, tr.scratch[s], 0, 0, 0.0)
    out.append(("gather (rows)", 0.0, parts(gather)))
    for l in range(L - 1):
        def forward(s, l=l):
            j0, j1 = split_bounds(int(lay[l, N_OUT]), PARTS, s)
            sk.layer_columns(p, lay, l, x, z, h, off, m, j0, j1, idx, 0, 0, 0.0, small)
        out.append((f"layer {l + 1} forward (units)", 2e-6 * m * sizes[l] * sizes[l + 1], parts(forward)))

    def logits(s):
        r0, r1 = shard_bounds(m, PARTS, s)
        sk.output_rows(p, lay, h, z, off, m, r0, r1)
        sk.cross_entropy_rows(rows_view(z, off[L - 1], k, r0, r1), y[r0:r1], rows_view(d, off[L - 1], k, r0, r1),
                              0.0, m)
    out.append((f"layer {L} logits + loss (rows)", 2e-6 * m * sizes[-2] * k, parts(logits)))
    for l in range(L - 1, 0, -1):
        def backward(s, l=l):
            i0, i1 = split_bounds(int(lay[l, N_IN]), PARTS, s)
            if l == L - 1:
                sk.output_weight_grad_columns(g, lay, x, h, d, off, m, i0, i1)
            sk.input_grad_columns(p, g, lay, l, z, d, off, m, i0, i1, 0.0, small)
            sk.weight_grad_rows(g, lay, l - 1, x, h, d, off, m, i0, i1, small)
        flop = 2e-6 * m * (sizes[l] * sizes[l + 1] + sizes[l - 1] * sizes[l] + (sizes[-2] * k if l == L - 1 else 0))
        out.append((f"backward below layer {l + 1} (units)", flop, parts(backward)))
    moments = (tr.adam.m.copy(), tr.adam.v.copy(), p.copy())  # Adam on copies: the pieces stay repeatable

    def adam(s):  # half of the flat buffers each (the update fused into the backward pass does the same work)
        lo, hi = shard_bounds(len(p), PARTS, s)
        adam_update_shards(moments[2][lo:hi], g[None, lo:hi], 1, moments[0][lo:hi], moments[1][lo:hi], 1e-3, 0.9,
                           0.999, 1e-8, 10)
    out.append(("Adam (half of the parameters each)", 0.0, parts(adam)))
    return out


def per_call(fn, budget: float) -> float:
    """Median seconds per call of ``fn`` over five timed batches of calls, about ``budget`` s each."""
    fn()
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 > budget or reps > 1e5:
            break
        reps *= 2
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def profile(hidden, batch, images, labels, rounds: int, budget: float) -> list[str]:
    config = TrainConfig(hidden_sizes=hidden, batch_size=batch, val_size=0)
    name = f"{','.join(map(str, hidden))}/{batch}"
    with limit_threads(2):
        tr = Trainer(config, images, labels, num_classes=10)
        if not tr.columns:
            return [f"{name}: trains as row shards, not in the column split; skipped", ""]
        order = np.resize(np.arange(len(images), dtype=np.int64), 64 * batch)
        tr.steps(order, 0, 8, 1e-4)
    idx = order[:batch]
    lines = [f"### {name} (small-matrix block limit {tr.small_gemm:,})", "",
             "| piece | part 0 (us) | part 1 (us) | slower part, GFLOP/s per core |", "|---|---:|---:|---:|"]
    with limit_threads(1):
        total = 0.0
        for name, mflop, calls in pieces(tr, idx):
            t = [per_call(c, budget) for c in calls]
            total += max(t)
            rate = f"{mflop / 2 / max(t) / 1e3:.0f}" if mflop else ""
            lines.append(f"| {name} | {t[0] * 1e6:,.1f} | {t[1] * 1e6:,.1f} | {rate} |")
    lines.append(f"| sum of the slower parts | {total * 1e6:,.1f} | | |")
    with limit_threads(2):
        n = min(64, max(8, int(0.2 / max(total, 1e-6))))  # steps per timed call: about 0.2 s, at most order's 64
        steps = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            tr.steps(order, 0, n, 1e-4)
            steps.append((time.perf_counter() - t0) / n)
    whole = statistics.median(steps) * 1e6
    lines += [f"| whole step on two threads (`Trainer.steps`, median of {rounds}) | {whole:,.1f} | | |", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="*", default=SHAPES, help="hidden sizes/batch, e.g. 256,128/128")
    ap.add_argument("--rounds", type=int, default=7, help="timed calls of whole steps (default 7)")
    ap.add_argument("--seconds", type=float, default=0.02, help="about this long per timed batch of calls")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        ap.error("--rounds must be >= 1 and --seconds > 0")
    shapes = [parse_shape(s, "step_phases") for s in args.shapes]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8192, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 8192).astype(np.uint8)
    print("784 inputs; pieces on one thread each, operands in cache; medians", flush=True)
    for hidden, batch in shapes:
        print("\n".join(profile(hidden, batch, images, labels, args.rounds, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
