#!/usr/bin/env python
"""A step's time on T cores, modelled from the engine's own part rules: where the design stops scaling.

For a shape (hidden sizes / batch, 784 inputs, 10 classes) the model lists every phase of a step as
the engine cuts it (``fastmlp.engine.parts``: row shards, unit parts, update parts), with its work
(multiply-adds of its products; bytes of the gather and of the update), and prices a phase on T
threads as ``ceil(parts / T)`` rounds of one part's time (a memory-bound phase also no faster than
the socket's bandwidth allows), plus a barrier whose cost grows with T. One core's GEMM rate and
bandwidth are parameters; ``--calibrate`` fits the GEMM rate to a measured one-thread step.

    .venv/bin/python benchmarks/probes/scaling_model.py 100/32 256,128/128 1024,1024/128
    .venv/bin/python benchmarks/probes/scaling_model.py 1024,1024/128 --gflops 100 --socket-gbs 80
"""

from __future__ import annotations

import argparse
import math
import sys

from fastmlp.engine.layout import make_layout
from fastmlp.engine.parts import row_parts, split_bounds, unit_parts
from fastmlp.engine.records import update_parts
from fastmlp.engine.step import GATHER_ROWS


def phases(sizes: list[int], m: int, augmenting: bool = False) -> list[tuple[str, list[float], float]]:
    """``(name, flops of each part, bytes of the whole phase)`` for every phase of a column-split step."""
    out = []
    n0 = sizes[0]
    shards = row_parts(m)
    blocks = -(-m // GATHER_ROWS) if augmenting else shards
    out.append(("gather", [0.0] * blocks, m * n0 * 5.0))
    L = len(sizes) - 1
    for l in range(L - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        p = unit_parts(n_out)
        out.append((f"forward {l + 1}", [2.0 * m * n_in * (b - a) for a, b in (split_bounds(n_out, p, q)
                                                                            for q in range(p))], 0.0))
    k = sizes[-1]
    out.append(("logits and loss", [2.0 * (m / shards) * sizes[-2] * k] * shards, 0.0))
    for l in range(L - 1, 0, -1):
        n_in, n_out = sizes[l], sizes[l + 1]
        below = sizes[l - 1]
        p = unit_parts(n_in)
        work = []
        for a, b in (split_bounds(n_in, p, q) for q in range(p)):
            units = b - a
            w = 2.0 * m * n_out * units + 2.0 * m * below * units
            if l == L - 1:
                w += 2.0 * m * k * units
            work.append(w)
        out.append((f"backward {l + 1}", work, 0.0))
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    q = len(update_parts(make_layout(sizes), True))
    out.append(("update (Adam)", [0.0] * q, params * 28.0))  # read p, g, m, v; write p, m, v
    return out


def step_seconds(ph, threads: int, gflops: float, core_gbs: float, socket_gbs: float, barrier_us: float) -> float:
    total = 0.0
    for _, work, nbytes in ph:
        parts = len(work)
        rounds = math.ceil(parts / threads)
        busiest = rounds * max(work) / (gflops * 1e9) if any(work) else 0.0
        if nbytes:
            per_part = nbytes / parts / (core_gbs * 1e9)
            busiest = max(busiest, rounds * per_part, nbytes / (socket_gbs * 1e9))
        total += busiest + barrier_us * 1e-6 * (1 + 0.15 * threads)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="*", default=["100/32", "256,128/128", "1024,1024/128"])
    ap.add_argument("--gflops", type=float, default=115.0, help="one core's GEMM rate, GFLOP/s (default 115)")
    ap.add_argument("--core-gbs", type=float, default=25.0, help="one core's memory bandwidth, GB/s (default 25)")
    ap.add_argument("--socket-gbs", type=float, default=80.0, help="the socket's memory bandwidth, GB/s (default 80)")
    ap.add_argument("--barrier-us", type=float, default=0.8, help="a barrier's cost on two threads, us (default 0.8)")
    ap.add_argument("--threads", default="1,2,4,8,16", help="thread counts to model (default 1,2,4,8,16)")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    print(f"one core {args.gflops:g} GFLOP/s, {args.core_gbs:g} GB/s; socket {args.socket_gbs:g} GB/s; "
          f"barrier {args.barrier_us:g} us at two threads\n")
    for shape in args.shapes:
        hidden, batch = shape.split("/")
        sizes = [784, *[int(h) for h in hidden.split(",")], 10]
        m = int(batch)
        ph = phases(sizes, m)
        print(f"### {shape}: {'-'.join(map(str, sizes))}, batch {m}")
        print("| phase | parts | MFLOP | MB |")
        print("|---|---:|---:|---:|")
        for name, work, nbytes in ph:
            print(f"| {name} | {len(work)} | {sum(work) / 1e6:.1f} | {nbytes / 1e6:.1f} |")
        one = step_seconds(ph, 1, args.gflops, args.core_gbs, args.socket_gbs, args.barrier_us)
        print("\n| threads | us per step | samples/s | speed-up over one |")
        print("|---:|---:|---:|---:|")
        for t in counts:
            s = step_seconds(ph, t, args.gflops, args.core_gbs, args.socket_gbs, args.barrier_us)
            print(f"| {t} | {s * 1e6:,.0f} | {m / s:,.0f} | {one / s:.2f}x |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
