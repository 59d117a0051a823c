#!/usr/bin/env python
"""fastmlp's thread policy, measured: idle and beside a busy neighbour, and back-to-back runs.

Busy neighbour: for each configuration, rounds alternate between an idle machine and one on
which another process keeps one core busy (``python -c "while True: pass"``, started before the
measurement and killed after it). Each phase trains with the default thread choice and with
``--threads 1`` and ``--threads 2`` fixed; every phase starts fresh trainers, as a user starting
a run would (the default's first calls try each count). The table gives medians over rounds and
the fraction of its idle throughput each choice keeps when the neighbour runs.

Back-to-back (``--repeat N``): N separate ``fastmlp train`` processes, one after the other, each
one epoch of the given configuration; samples/s as each run's history reports it.

    python benchmarks/probes/thread_policy.py                    # busy-neighbour table, all configurations
    python benchmarks/probes/thread_policy.py --repeat 5 --configs 1024,1024/128 --no-neighbour
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

from fastmlp.training.threads import available_cores, limit_threads, single_threaded_blas

single_threaded_blas()  # as the fastmlp command does, before NumPy loads

import common  # noqa: E402

CHOICES = {"default": None, "--threads 1": 1, "--threads 2": 2}
KEEP_TARGET = 0.40  # the default keeps at least this fraction of its idle throughput beside a busy neighbour


class Neighbour:
    """A CPU-bound process (one core busy) for the duration of a ``with`` block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)  # let it get going
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure_phase(cfg, images, labels, rows, n_steps: int, rounds: int) -> dict[str, float]:
    """Median samples/s of each choice over ``rounds`` rounds, fresh trainers, interleaved."""
    hidden, batch = cfg
    n = n_steps * batch
    orders = [common.sample_order(rows, n, seed=r) for r in range(rounds + 1)]
    trainers = {}
    for name, threads in CHOICES.items():
        with limit_threads(threads):
            t = common.FastmlpTrainer(hidden, batch, images, labels)
            t.steps(orders[0], 0, min(4, n_steps))
        trainers[name] = (t, threads)
    rates: dict[str, list[float]] = {name: [] for name in CHOICES}
    for r in range(1, rounds + 1):
        for name, (t, threads) in trainers.items():
            time.sleep(0.1)
            with limit_threads(threads):
                t0 = time.perf_counter()
                t.train(orders[r])
                rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


ROUND_LENGTH = 4  # rounds of 4x compare_peers' samples: one to two seconds each, as a run's epochs are long


def neighbour_section(cfg, images, labels, rows, rounds: int, quick: bool) -> list[str]:
    n_steps = max(2, common.STEPS[cfg] * ROUND_LENGTH // (16 if quick else 1))
    name = common.config_name(*cfg)
    common.log(f"{name}: idle")
    idle = measure_phase(cfg, images, labels, rows, n_steps, rounds)
    common.log(f"{name}: beside a busy neighbour")
    with Neighbour():
        busy = measure_phase(cfg, images, labels, rows, n_steps, rounds)
    common.log(f"{name}: idle again")
    idle2 = measure_phase(cfg, images, labels, rows, n_steps, rounds)
    lines = [f"### {name}", "",
             "| threads | idle (samples/s) | idle again | one core busy | kept | best idle choice within |",
             "|---|---:|---:|---:|---:|---:|"]
    best_idle = max(statistics.mean([idle[c], idle2[c]]) for c in ("--threads 1", "--threads 2"))
    for choice in CHOICES:
        base = statistics.mean([idle[choice], idle2[choice]])
        kept = busy[choice] / base
        mark = f" (target >= {KEEP_TARGET:.0%})" if choice == "default" else ""
        within = f"{base / best_idle - 1:+.1%}" if choice == "default" else ""
        lines.append(f"| {choice} | {idle[choice]:,.0f} | {idle2[choice]:,.0f} | {busy[choice]:,.0f} | "
                     f"{kept:.0%}{mark} | {within} |")
    return lines + [""]


def repeat_section(cfg, repeat: int, data_dir: str | None) -> list[str]:
    hidden, batch = cfg
    cmd = common.fastmlp_command()
    rates = []
    with tempfile.TemporaryDirectory(prefix="fastmlp-repeat-") as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"run{i}"
            args = [*cmd, "train", "--hidden", ",".join(map(str, hidden)), "--batch-size", str(batch), "--epochs", "1",
                    "--out", str(out)]
            if data_dir:
                args += ["--data-dir", data_dir]
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"fastmlp train failed: {proc.stderr.strip()[-500:]}")
            rate = json.loads((out / "history.json").read_text())["epochs"][0]["samples_per_s"]
            rates.append(rate)
            common.log(f"  run {i + 1}: {rate:,.0f} samples/s")
    med = statistics.median(rates)
    worst = max(abs(r / med - 1) for r in rates)
    return [f"### {repeat} back-to-back `fastmlp train` runs, {common.config_name(*cfg)}, one epoch each", "",
            "| run | samples/s |", "|---|---:|", *[f"| {i + 1} | {r:,.0f} |" for i, r in enumerate(rates)],
            f"| median | {med:,.0f} |", "",
            f"Largest distance from the median: {worst:.1%} (target: within 10%).", ""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=None, help="e.g. '100/32 1024,1024/128' (default: all)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per phase (default 3)")
    p.add_argument("--quick", action="store_true", help="1/8 of the samples per round")
    p.add_argument("--repeat", type=int, default=0, help="back-to-back fastmlp train runs per configuration")
    p.add_argument("--no-neighbour", action="store_true", help="skip the busy-neighbour table")
    p.add_argument("--data-dir", default=None, help="for --repeat (default: $FASTMLP_DATA_DIR)")
    p.add_argument("--out", default=None, help="also write the markdown here")
    args = p.parse_args(argv)
    try:
        configs = common.select_configs(args.configs)
    except ValueError as err:
        p.error(str(err))
    lines = ["# fastmlp's thread policy", "",
             f"- {available_cores()} cores; load average {os.getloadavg()[0]:.2f} at start; "
             f"{time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    if not args.no_neighbour:
        images, labels, rows, desc = common.load_images(False)
        lines += ["## Beside a busy neighbour", "", f"Data: {desc}. {args.rounds} rounds per phase, medians.", ""]
        for cfg in configs:
            lines += neighbour_section(cfg, images, labels, rows, args.rounds, args.quick)
    if args.repeat:
        lines += ["## Back-to-back runs", ""]
        for cfg in configs:
            lines += repeat_section(cfg, args.repeat, args.data_dir)
    text = "\n".join(lines)
    print(text)
    if args.out:
        from fastmlp.atomic import write_text
        write_text(Path(args.out), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
