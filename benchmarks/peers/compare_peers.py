#!/usr/bin/env python
"""fastmlp beside other implementations of the same training: throughput, memory, start-up,
time to accuracy.

Throughput (always): the same MLP (784 -> hidden -> 10, ReLU), batch size, float32, Adam (lr 1e-3,
betas 0.9/0.999, eps 1e-8) and thread count, trained for the same number of samples by

* fastmlp: its ``Trainer``, as ``fastmlp train`` drives the engine (its own choice of threads, and
  ``--threads 1`` and ``--threads N`` fixed);
* JAX with optax (when importable): a ``jit`` of the whole epoch, ``lax.scan`` over the batches;
* PyTorch (when importable): ``nn.Sequential`` + ``F.cross_entropy`` + ``torch.optim.Adam``, eager
  and with fused Adam;
* scikit-learn (when importable): ``MLPClassifier(solver="adam")``, one ``fit`` pass;
* the NumPy reference (``fastmlp.reference``), on a quarter of the samples (only its rate counts);
* the step's GEMMs alone (the BLAS floor): forward ``x @ W.T`` and ``dz.T @ x`` for every
  layer, ``dz @ W`` for every layer but the first, into preallocated buffers, in NumPy and
  through Numba's ``np.dot`` (the BLAS build fastmlp's kernels call).

Each round measures every implementation once, one after the other, and the rounds repeat
(the machine may be shared: interleaving spreads any disturbance over everyone); the tables
show medians over rounds. Ratios are medians of the per-round ratios.

Threads: ``--threads N`` (default: the cores this process may use) for every implementation:
fastmlp by ``limit_threads``, PyTorch by ``torch.set_num_threads`` (and its inter-op threads),
scikit-learn, NumPy and the GEMM floor by threadpoolctl. Below the cores, the process and
everything it starts keep to N cores (its affinity mask): XLA sizes its thread pool by the mask and
ignores its thread flags, so the mask is what limits JAX, and it holds every other peer to N cores
too. Above the cores the run is oversubscribed (JAX then stays at one thread a core), and its
figures are only a smoke test.

Optional extras: ``--rss`` peak resident memory of ``fastmlp train --epochs 1`` and of an
equivalent PyTorch script; ``--startup`` time from launch to the first train step (warm JIT
cache) and ``import torch``; ``--tta`` wall time from launch until the default configuration
first reaches 98% test accuracy, for fastmlp and PyTorch; ``--inference`` prediction throughput
beside PyTorch and JAX; ``--profile`` the time of each piece of a fastmlp step. ``--all`` turns
them all on. --rss, --startup and --tta need MNIST.

    python benchmarks/peers/compare_peers.py --quick            # smoke run
    python benchmarks/peers/compare_peers.py --all --out FILE   # everything, the report also in FILE

``--json FILE`` writes what the report shows as data: every implementation's rate in each round,
the medians and per-round ratios, the targets, the settings, and the run's date, command line,
commit, machine and BLAS kernel family.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the shared helpers

from fastmlp.training.threads import available_cores, limit_threads, single_threaded_blas  # noqa: E402

single_threaded_blas()  # as the fastmlp command does, before NumPy loads (the peers' limits raise it again)

import common  # noqa: E402
import numpy as np  # noqa: E402
import workloads  # noqa: E402
from common import log  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastmlp.engine.blas import blas_threads  # noqa: E402

REFERENCE_FRACTION = 4           # the reference trains on 1/4 of the samples
TARGET_ACCURACY = 98.0           # --tta (default of --tta-target)
# Targets: fastmlp / PyTorch samples/s at least; fastmlp step time / GEMMs alone at most.
SPEED_TARGETS = {((100,), 32): 2.0, ((256, 128), 128): 1.5, ((1024, 1024), 128): 1.1}
FLOOR_TARGETS = {((256, 128), 128): 1.5, ((1024, 1024), 128): 1.25}
RSS_TARGET_MIB, STARTUP_TARGET_S = 250, 2.0

EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\b.*?\btest\s+([0-9.]+)%")


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


# The cores this process may use before --threads narrows its affinity mask.
CORES = available_cores()


def threads_text(n: int) -> str:
    return f"{n} thread{'s' if n > 1 else ''}"


def jax_threads(args) -> str:
    """For JAX's label: its threads, one for each core of the process's affinity mask."""
    return f", {threads_text(min(args.threads, CORES))}"


# ============================================================================= throughput

class Peer:
    """One implementation in the interleaved rounds: ``run(r)`` trains round r's samples."""

    def __init__(self, key: str, label: str, samples: int, run):
        self.key, self.label, self.samples, self.run = key, label, samples, run
        self.rates: list[float] = []
        self.cpu: list[float] = []

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


def build_peers(hidden, batch_size, n_steps, rounds, images, labels, rows, args) -> tuple[list[Peer], list[str]]:
    """Set up (and warm up) every implementation for one configuration; notes on the skipped."""
    n = n_steps * batch_size
    orders = [common.sample_order(rows, n, seed=r) for r in range(rounds)]
    peers, notes = [], []
    want = set(args.peers)

    if "fastmlp" in want:
        fast = common.FastmlpTrainer(hidden, batch_size, images, labels)
        fast.steps(orders[0], 0, min(4, n_steps))          # compile or load the JIT cache
        peers.append(Peer("fastmlp", f"fastmlp (its choice of up to {threads_text(min(args.threads, CORES))})", n,
                          lambda r: fast.train(orders[r])))
    if "fastmlp_threads" in want:  # the same with --threads 1 and --threads N fixed
        for k in sorted({1, args.threads}):
            with limit_threads(k):
                fixed = common.FastmlpTrainer(hidden, batch_size, images, labels)
                fixed.steps(orders[0], 0, min(4, n_steps))

            def run_fixed(r, fixed=fixed, k=k):
                with limit_threads(k):
                    fixed.train(orders[r])
            peers.append(Peer(f"fastmlp_t{k}", f"fastmlp --threads {k}", n, run_fixed))

    if "jax" in want:
        if common.available("jax") and common.available("optax"):
            jt = workloads.JaxTrainer(hidden, batch_size, images, labels)
            jt.train(orders[0])                                  # compiles the epoch for this many steps
            peers.append(Peer("jax", f"JAX {jt.version} (jit of the epoch{jax_threads(args)})", n,
                              lambda r: jt.train(orders[r])))
        else:
            notes.append("JAX: jax or optax not installed (pip install 'fastmlp[bench]'), skipped.")

    if "torch" in want or "torch_fused" in want:
        if common.available("torch"):
            for key, fused in (("torch", False), ("torch_fused", True)):
                if key not in want:
                    continue
                tt = workloads.TorchTrainer(hidden, batch_size, images, labels, threads=args.threads, fused=fused)
                tt.train(orders[0][:4 * batch_size])
                label = f"PyTorch {tt.version}" + (", Adam fused" if fused else " eager")
                peers.append(Peer(key, label, n, lambda r, tt=tt: tt.train(orders[r])))
        else:
            notes.append("PyTorch: not installed (pip install 'fastmlp[bench]'), skipped.")

    if "sklearn" in want:
        if common.available("sklearn"):
            sk = workloads.SklearnTrainer(hidden, batch_size, images, labels)
            x_sk, y_sk = sk.prepare(orders[0])
            # The first fit sets the classes: warm up on a few batches plus one example of each class.
            first_of_class = np.unique(y_sk, return_index=True)[1]
            warm = np.concatenate([first_of_class, np.arange(min(n, 4 * batch_size))])
            sk.fit(x_sk[warm], y_sk[warm])
            peers.append(Peer("sklearn", f"scikit-learn {sk.version} MLPClassifier ({sk.dtype})", n,
                              lambda r: sk.fit(x_sk, y_sk)))
        else:
            notes.append("scikit-learn: not installed, skipped.")

    if "reference" in want:
        ref = common.ReferenceTrainer(hidden, batch_size, images, labels)
        n_ref = max(1, n_steps // REFERENCE_FRACTION) * batch_size
        ref.train(orders[0][:2 * batch_size])
        peers.append(Peer("reference", "NumPy reference (float32)", n_ref, lambda r: ref.train(orders[r][:n_ref])))

    if "gemm" in want:
        g_np = common.GemmFloor(hidden, batch_size)
        g_np.steps(2)
        peers.append(Peer("gemm", "GEMMs alone, NumPy (BLAS floor)", n, lambda r: g_np.steps(n_steps)))
        g_nb = common.GemmFloorNumba(hidden, batch_size)
        g_nb.steps(1)
        peers.append(Peer("gemm_numba", "GEMMs alone, Numba np.dot (fastmlp's BLAS)", n,
                          lambda r: g_nb.steps(n_steps)))
    return peers, notes


def peer_record(p: Peer, torch_p: Peer | None, jax_p: Peer | None) -> dict:
    """One implementation's measurements, for --json."""
    return {"key": p.key, "label": p.label, "samples": p.samples, "median": p.median, "min": min(p.rates),
            "max": max(p.rates), "rounds": list(p.rates), "cpu_wall": statistics.median(p.cpu),
            "vs_torch": per_round_ratio(p, torch_p), "vs_jax": per_round_ratio(p, jax_p)}


def run_rounds(peers: list[Peer], rounds: int, gap: float) -> None:
    for r in range(rounds):
        for p in peers:
            gc.collect()
            time.sleep(gap)             # let the previous implementation's BLAS/OpenMP threads go idle
            c0, t0 = time.process_time(), time.perf_counter()
            p.run(r)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            p.rates.append(p.samples / dt)
            p.cpu.append(dc / dt)
        log(f"  round {r + 1}: " + ", ".join(f"{p.key} {p.rates[-1]:,.0f}/s" for p in peers))


INFERENCE_ROWS = 10_000


def inference_section(cfg, args, images, labels, rows, store: list) -> list[str]:
    """Predicted classes of 10,000 uint8 images per round (a batched forward pass, the same weights'
    shapes): fastmlp's ``MLP.predict``, PyTorch's ``no_grad`` forward, JAX's jitted forward."""
    hidden, batch_size = cfg
    x = np.ascontiguousarray(images[rows[:INFERENCE_ROWS]])
    n = len(x)
    peers, notes = [], []
    fast = common.FastmlpTrainer(hidden, batch_size, images, labels)
    fast.predict(x[:64], args.threads)
    peers.append(Peer("fastmlp", f"fastmlp (MLP.predict, uint8 in, {threads_text(args.threads)})", n,
                      lambda r: fast.predict(x, args.threads)))
    if "jax" in args.peers and common.available("jax") and common.available("optax"):
        import jax.numpy as jnp
        jt = workloads.JaxTrainer(hidden, batch_size, images, labels)
        xj = jnp.asarray(x)
        jt.predict(xj)
        peers.append(Peer("jax", f"JAX {jt.version} (jit of the forward{jax_threads(args)})", n,
                          lambda r: jt.predict(xj)))
    if ("torch" in args.peers or "torch_fused" in args.peers) and common.available("torch"):
        tt = workloads.TorchTrainer(hidden, batch_size, images, labels, threads=args.threads)
        xt = tt.torch.from_numpy(x)
        tt.predict(xt)
        peers.append(Peer("torch", f"PyTorch {tt.version} (no_grad forward)", n, lambda r: tt.predict(xt)))
    run_rounds(peers, args.rounds, args.gap)
    by = {p.key: p for p in peers}
    lines = [f"### {common.config_name(*cfg)} weights, {n:,} images per round", "",
             "| implementation | images/s (median) | min – max | vs PyTorch | vs JAX | CPU / wall |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in peers:
        lines.append(f"| {p.label} | {fmt_rate(p.median)} | {fmt_rate(min(p.rates))} – {fmt_rate(max(p.rates))} | "
                     f"{fmt_ratio(per_round_ratio(p, by.get('torch')))} | {fmt_ratio(per_round_ratio(p, by.get('jax')))} "
                     f"| {statistics.median(p.cpu):.2f} |")
    store.append({"config": common.config_name(*cfg), "hidden": list(hidden), "batch_size": batch_size, "images": n,
                  "peers": [peer_record(p, by.get("torch"), by.get("jax")) for p in peers], "notes": notes})
    return lines + [""] + notes


def per_round_ratio(a: Peer | None, b: Peer | None) -> float | None:
    """Median over rounds of a's rate / b's rate (each round measured both close in time)."""
    if a is None or b is None or not a.rates or not b.rates:
        return None
    return statistics.median(x / y for x, y in zip(a.rates, b.rates))


def throughput_section(cfg, args, images, labels, rows, results: dict) -> list[str]:
    hidden, batch_size = cfg
    n_steps = max(2, common.STEPS[cfg] // (8 if args.quick else 1))
    name = common.config_name(hidden, batch_size)
    log(f"{name}: setting up")
    peers, notes = build_peers(hidden, batch_size, n_steps, args.rounds, images, labels, rows, args)
    run_rounds(peers, args.rounds, args.gap)
    by = {p.key: p for p in peers}
    torch_p, fast, jax_p = by.get("torch"), by.get("fastmlp"), by.get("jax")

    sizes = "-".join(str(s) for s in common.layer_sizes(hidden))
    lines = [f"### {name}: {sizes}, batch {batch_size}, {n_steps * batch_size:,} samples per round", "",
             "| implementation | samples/s (median) | min – max | us per step | vs PyTorch eager | vs JAX | CPU / wall |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in peers:
        vs, vs_jax = per_round_ratio(p, torch_p), per_round_ratio(p, jax_p)
        note = "" if p.samples == n_steps * batch_size else f" ({p.samples:,} samples)"
        lines.append(f"| {p.label}{note} | {fmt_rate(p.median)} | {fmt_rate(min(p.rates))} – "
                     f"{fmt_rate(max(p.rates))} | {1e6 * batch_size / p.median:,.0f} | {fmt_ratio(vs)} | "
                     f"{fmt_ratio(vs_jax)} | {statistics.median(p.cpu):.2f} |")
    floors = {}
    for key in ("gemm", "gemm_numba"):
        # step time / GEMM time = GEMM rate / fastmlp rate
        floors[key] = per_round_ratio(by.get(key), fast)
    target = FLOOR_TARGETS.get(cfg)
    tgt = f" (target <= {target:.2f}x)" if target else ""
    if floors["gemm"] is not None:
        lines.append(f"| **fastmlp step / GEMMs alone (NumPy)**{tgt} | **{fmt_ratio(floors['gemm'])}** | | | | | |")
    if floors["gemm_numba"] is not None:
        lines.append(f"| fastmlp step / GEMMs alone (Numba np.dot) | {fmt_ratio(floors['gemm_numba'])} | | | | | |")
    if "gemm" in by:
        g = common.GemmFloor(hidden, batch_size)
        flops = g.flops_per_step()
        t_step = batch_size / by["gemm"].median
        lines += ["", f"GEMMs per step: {len(g.gemms())}, {flops / 1e6:.1f} MFLOP; "
                      f"GEMMs alone run at {flops / t_step / 1e9:.1f} GFLOP/s (NumPy)."]
    lines += [""] + notes + ([""] if notes else [])
    results[cfg] = {"config": name, "hidden": list(hidden), "batch_size": batch_size,
                    "sizes": common.layer_sizes(hidden), "steps": n_steps, "samples_per_round": n_steps * batch_size,
                    "speedup": per_round_ratio(fast, torch_p), "vs_jax": per_round_ratio(fast, jax_p),
                    "vs_torch_fused": per_round_ratio(fast, by.get("torch_fused")), "floor": floors["gemm"],
                    "floor_numba": floors["gemm_numba"], "floor_target": target,
                    "rates": {p.key: p.median for p in peers},
                    "peers": [peer_record(p, torch_p, jax_p) for p in peers], "notes": notes}
    return lines


# ============================================================================= child processes

def run_child(cmd: list[str], *, stop=None, timeout: float = 900.0, rss: bool = False) -> dict:
    """Run ``cmd`` (stderr merged into stdout), timestamping each output line from launch.

    ``stop(line)`` returning True terminates the child (SIGTERM, this child only). Returns the
    lines as ``(seconds since launch, text)``, the wall time and the exit status; with ``rss``,
    also the command's peak RSS in MiB (the command then runs under ``probes/rss_launcher.py``, which
    adds the launcher's start-up, a few tens of milliseconds, to the times).
    """
    rss_file = None
    if rss:
        fd, rss_file = tempfile.mkstemp(prefix="fastmlp-rss-", suffix=".txt")
        os.close(fd)
        cmd = [sys.executable, "-S", str(common.PROBES / "rss_launcher.py"), rss_file, *cmd]
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    timer = threading.Timer(timeout, p.terminate)
    timer.start()
    lines, stopped = [], False
    try:
        for line in p.stdout:
            lines.append((time.time() - t0, line.rstrip("\n")))
            if not stopped and stop is not None and stop(line):
                stopped = True
                p.terminate()
    finally:
        timer.cancel()
        p.stdout.close()
    p.wait()
    wall = time.time() - t0
    rss_mib = None
    if rss_file is not None:
        try:
            text = Path(rss_file).read_text().strip()
            rss_mib = int(text) / 1024.0 if text else None
        finally:
            os.unlink(rss_file)
    return {"lines": lines, "wall": wall, "rss_mib": rss_mib, "returncode": p.returncode,
            "stopped": stopped, "launch": t0}


def tail(res: dict, n: int = 5) -> str:
    return " | ".join(text for _, text in res["lines"][-n:])


class Extras:
    """The subprocess measurements: peak RSS, start-up, time to accuracy."""

    def __init__(self, args, tmp: Path):
        from fastmlp.config import TrainConfig
        from fastmlp.data.datasets import find_dataset_dir, get_spec

        self.args, self.tmp = args, tmp
        self.data_dir = find_dataset_dir(get_spec("mnist"))
        self.config = TrainConfig()
        self.torch = common.available("torch")
        self.runs = 0
        self.warm = False
        self.rss_epoch: dict | None = None
        self.data: dict = {}  # what each measurement found, for --json

    def mnist_ok(self) -> bool:
        return self.data_dir is not None and any(
            (self.data_dir / f"train-images-idx3-ubyte{s}").exists() for s in ("", ".gz"))

    def out_dir(self) -> str:
        self.runs += 1
        return str(self.tmp / f"run{self.runs}")

    def train_args(self, epochs: int) -> list[str]:
        return ["--epochs", str(epochs), "--threads", str(self.args.threads)]

    def torch_cmd(self, epochs: int, *extra: str) -> list[str]:
        c = self.config
        return [sys.executable, str(HERE / "torch_train.py"), "--data", str(self.data_dir),
                "--epochs", str(epochs), "--threads", str(self.args.threads),
                "--hidden", ",".join(map(str, c.hidden_sizes)), "--batch-size", str(c.batch_size),
                "--lr", repr(c.lr), "--lr-decay", repr(c.lr_decay),
                "--beta1", repr(c.beta1), "--beta2", repr(c.beta2), "--eps", repr(c.eps),
                "--val-size", str(c.val_size), "--seed", str(c.seed), *extra]

    def warm_up(self) -> None:
        """One short ``fastmlp train`` (100 training images) so every kernel is in the JIT cache."""
        if self.warm:
            return
        log("warming the JIT cache: fastmlp train on 100 images")
        res = run_child([*common.fastmlp_command(), "train", "--out", self.out_dir(), "--val-size", "59900",
                         *self.train_args(1)])
        if res["returncode"] != 0:
            raise RuntimeError(f"fastmlp train failed: {tail(res)}")
        self.warm = True

    # ------------------------------------------------------------------ (a) peak RSS
    def rss(self) -> list[str]:
        lines = ["### Peak resident memory (1 epoch of the default configuration, MNIST)", ""]
        if not self.mnist_ok():
            return lines + ["Skipped: MNIST IDX files not found (set FASTMLP_DATA_DIR).", ""]
        self.warm_up()
        out = self.out_dir()
        log("peak RSS: fastmlp train --epochs 1")
        res = run_child([*common.fastmlp_command(), "train", "--out", out, *self.train_args(1)], rss=True)
        if res["returncode"] != 0 or res["rss_mib"] is None:
            return lines + [f"fastmlp train failed: {tail(res)}", ""]
        self.rss_epoch = res
        self.rss_epoch["history"] = json.loads((Path(out) / "history.json").read_text())
        rows = [("`fastmlp train --epochs 1`", res)]
        # Where fastmlp's memory goes: the same process stopped at successive points.
        py = sys.executable
        probes = [("... `python -c pass` (the floor: launcher and interpreter)", [py, "-c", "pass"]),
                  ("... `python -c 'import numpy'`", [py, "-c", "import numpy"]),
                  ("... `python -c 'import numba'` (llvmlite's LLVM library included)", [py, "-c", "import numba"]),
                  ("... `import fastmlp.training.train`", [py, "-c", "import fastmlp.training.train"]),
                  ("... and MNIST loaded (`load_dataset`)",
                   [py, "-c", "import fastmlp.training.train; from fastmlp.data.datasets import load_dataset; "
                    "load_dataset('mnist')"]),
                  ("... `fastmlp train` stopped after its first step",
                   [py, str(common.PROBES / "fastmlp_first_step.py"), "train", "--out", self.out_dir(),
                    *self.train_args(1)])]
        for name, cmd in probes:
            log(f"peak RSS: {name}")
            rows.append((name, run_child(cmd, rss=True)))
        log("peak RSS: fastmlp train --epochs 1 stopped at its epoch line")
        rows.append(("... `fastmlp train --epochs 1` stopped at its epoch line (trained, evaluated, model saved; "
                     "before plotting the curves)",
                     run_child([*common.fastmlp_command(), "train", "--out", self.out_dir(), *self.train_args(1)],
                               rss=True, stop=lambda line: EPOCH_LINE.match(line) is not None)))
        if self.torch:
            log("peak RSS: PyTorch script, 1 epoch")
            tres = run_child(self.torch_cmd(1), rss=True)
            rows.append(("PyTorch script, 1 epoch" if tres["returncode"] == 0
                         else f"PyTorch script (failed: {tail(tres, 2)})", tres))
        else:
            lines.append("PyTorch: not installed, skipped.")
        lines += ["| run | peak RSS (MiB) | wall (s) |", "|---|---:|---:|"]
        lines += [f"| {name} | {'n/a' if r['rss_mib'] is None else format(r['rss_mib'], '.0f')} | {r['wall']:.1f} |"
                  for name, r in rows]
        self.data["rss"] = [{"run": name, "rss_mib": r["rss_mib"], "wall_s": r["wall"]} for name, r in rows]
        lines += ["", f"Target: fastmlp <= {RSS_TARGET_MIB} MB. Peak RSS (ru_maxrss from `wait4`) of the whole "
                      "process, interpreter and libraries included, forked by a small launcher. The rows "
                      "starting with ... stop the same start-up at successive points.", ""]
        self.rss_fastmlp = res["rss_mib"]
        return lines

    # ------------------------------------------------------------------ (b) start-up
    def startup(self) -> list[str]:
        lines = ["### Start-up (warm JIT cache)", ""]
        reps = 1 if self.args.quick else 3
        rows = []

        def median_wall(cmd):
            return statistics.median(run_child(cmd)["wall"] for _ in range(reps))

        log("start-up: bare interpreter, imports")
        rows.append(("`python -c pass` (interpreter alone)", median_wall([sys.executable, "-c", "pass"])))
        rows.append(("`python -c 'import fastmlp.training.train'` (NumPy, Numba, the engine's modules)",
                     median_wall([sys.executable, "-c", "import fastmlp.training.train"])))
        if self.torch:
            rows.append(("`python -c 'import torch'`", median_wall([sys.executable, "-c", "import torch"])))
        if self.mnist_ok():
            self.warm_up()
            log("start-up: fastmlp train until its first step")
            starts, dones = [], []
            for _ in range(reps):
                res = run_child([sys.executable, str(common.PROBES / "fastmlp_first_step.py"), "train",
                                 "--out", self.out_dir(), *self.train_args(1)])
                marks = {text.split()[0]: float(text.split()[1]) - res["launch"] for _, text in res["lines"]
                         if text.startswith(("first-step-at", "first-step-done-at"))}
                if "first-step-done-at" not in marks:
                    return lines + [f"fastmlp first-step probe failed: {tail(res)}", ""]
                starts.append(marks["first-step-at"])
                dones.append(marks["first-step-done-at"])
            self.first_step = statistics.median(starts)
            rows.append(("`fastmlp train`: launch -> first step starts", self.first_step))
            rows.append(("`fastmlp train`: launch -> first step done", statistics.median(dones)))
            if self.rss_epoch is not None:
                h = self.rss_epoch["history"]["epochs"][0]
                epoch_line = next(t for t, text in self.rss_epoch["lines"] if EPOCH_LINE.match(text))
                rows.append(("approximation from the --rss run: epoch line time - epoch train time "
                             "(over-estimates by the evaluation and saving)", epoch_line - h["train_seconds"]))
            if self.torch:
                log("start-up: PyTorch script until its first step")
                ts = []
                for _ in range(reps):
                    res = run_child(self.torch_cmd(1, "--exit-at-first-step"))
                    ts += [float(text.split()[1]) - res["launch"] for _, text in res["lines"]
                           if text.startswith("first-step-at")]
                if ts:
                    rows.append(("PyTorch script: launch -> first step starts", statistics.median(ts)))
        else:
            lines.append("fastmlp train / PyTorch script: skipped, MNIST not found.")
        lines += [f"| measurement | seconds (median of {reps}) |", "|---|---:|"]
        lines += [f"| {name} | {t:.2f} |" for name, t in rows]
        self.data["startup"] = {"repeats": reps, "rows": [{"measurement": name, "seconds": t} for name, t in rows]}
        lines += ["", f"Target: first step <= {STARTUP_TARGET_S:.0f} s after launch. Start-up includes reading "
                      "and verifying MNIST. The first-step probe runs `fastmlp.cli.main` with "
                      "`Trainer.steps` wrapped to print when its first call with steps begins "
                      "(after any zero-step call that only loads the compiled kernel).", ""]
        return lines

    # ------------------------------------------------------------------ (c) time to accuracy
    def tta(self) -> list[str]:
        c = self.config
        target = self.args.tta_target
        lines = [f"### Time to {target:.1f}% test accuracy (default configuration: hidden "
                 f"{list(c.hidden_sizes)}, batch {c.batch_size}, lr {c.lr:g}, up to {c.epochs} epochs)", ""]
        if not self.mnist_ok():
            return lines + ["Skipped: MNIST not found (set FASTMLP_DATA_DIR).", ""]
        self.warm_up()

        def reached(line):
            m = EPOCH_LINE.match(line)
            return m is not None and float(m.group(2)) >= target

        rows = []
        found = self.data["tta"] = {"target": target, "runs": []}
        runs = [("fastmlp train", [*common.fastmlp_command(), "train", "--out", self.out_dir(),
                                   *self.train_args(c.epochs)])]
        if self.torch:
            runs.append(("PyTorch script", self.torch_cmd(c.epochs)))
        else:
            lines.append("PyTorch: not installed, skipped.")
        for name, cmd in runs:
            log(f"time to accuracy: {name}")
            res = run_child(cmd, stop=reached, timeout=1800)
            epochs = [(t, EPOCH_LINE.match(text)) for t, text in res["lines"] if EPOCH_LINE.match(text)]
            hit = next(((t, m) for t, m in epochs if float(m.group(2)) >= target), None)
            best = max((float(m.group(2)) for _, m in epochs), default=float("nan"))
            found["runs"].append({"run": name, "seconds": hit[0] if hit else None,
                                  "epoch": int(hit[1].group(1)) if hit else None, "epochs": len(epochs),
                                  "test_acc": float(hit[1].group(2)) if hit else None, "best": best,
                                  "wall_s": res["wall"]})
            if hit:
                rows.append(f"| {name} | {hit[0]:.1f} | {hit[1].group(1)} | {float(hit[1].group(2)):.2f}% |")
            else:
                rows.append(f"| {name} | not reached ({res['wall']:.1f} s) | {len(epochs)} | best {best:.2f}% |")
            if name.startswith("fastmlp"):
                self.tta_fastmlp = hit[0] if hit else None
        lines += ["| run | seconds from launch | epoch | test accuracy |", "|---|---:|---:|---:|", *rows,
                  "", "One run each (expensive); both evaluate the 5,000 validation and 10,000 test images "
                      "after every epoch.", ""]
        return lines


# ============================================================================= --profile

def profile_section(cfg, images, labels, rows, threads: int, quick: bool, store: list) -> list[str]:
    """Each piece of one fastmlp step timed alone on one thread, all its parts in turn
    (``common.column_pieces``: the calls the column split's worker makes), beside whole steps."""
    hidden, B = cfg
    name = common.config_name(hidden, B)
    with limit_threads(threads):
        t = common.FastmlpTrainer(hidden, B, images, labels).trainer
    if not t.columns:
        store.append({"config": name, "skipped": "trains as row shards"})
        return [f"#### {name}", "", "Trains as row shards; the pieces timed here are the column split's: skipped.", ""]
    order = common.sample_order(rows, 64 * B)
    t.steps(order, 0, 64, common.LR)
    budget = 0.01 if quick else 0.04
    with blas_threads(1):
        times = [(p.name, p.mflop, sum(common.per_call(c, budget, p.reset) for c in p.calls))
                 for p in common.column_pieces(t, order[:B])]
    calls, n_many = itertools.count(), 32  # the whole steps go through the order's 64 batches

    def step_calls(n):
        return common.per_call(lambda: t.steps(order, next(calls) * n % 64, n, common.LR), budget) / n
    whole_1, whole_n = step_calls(1), step_calls(n_many)
    total = sum(tt for *_, tt in times)
    gemm = sum(tt for _, mflop, tt in times if mflop)
    store.append({"config": name, "threads": threads,
                  "pieces": [{"piece": piece, "mflop": mflop, "seconds": tt} for piece, mflop, tt in times],
                  "whole_step_s": whole_1, "whole_step_amortized_s": whole_n, "amortized_over": n_many})
    lines = [f"#### {name}", "", "| piece (all its parts, one thread) | us per step | share of the pieces |",
             "|---|---:|---:|"]
    lines += [f"| {piece} | {tt * 1e6:.1f} | {100 * tt / total:.1f}% |" for piece, _, tt in times]
    lines += [f"| sum of the pieces | {total * 1e6:.1f} | 100% |",
              f"| whole step on {threads} threads, `Trainer.steps(n_steps=1)` from Python | {whole_1 * 1e6:.1f} | |",
              f"| whole step on {threads} threads, amortized over `Trainer.steps(n_steps={n_many})` | "
              f"{whole_n * 1e6:.1f} | |", "",
              f"Pieces holding a GEMM: {100 * gemm / total:.0f}% of the sum. Each piece is timed alone, in a loop "
              "of Python calls (a few microseconds of dispatch each), with its operands hot in cache; "
              "`benchmarks/probes/step_phases.py` gives each part.", ""]
    return lines


# ============================================================================= main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1/8 of the samples, 2 rounds")
    p.add_argument("--out", help="also write the markdown report to this file (atomically)")
    p.add_argument("--json", help="write the measurements, the settings and the run's metadata to this JSON file")
    p.add_argument("--threads", type=int, default=CORES,
                   help="threads for every implementation: fastmlp, PyTorch, BLAS and OpenMP; below the cores, "
                        "the process keeps to that many cores, which is what limits JAX (default: all cores, "
                        "%(default)s)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    p.add_argument("--configs", default=None,
                   help="space-separated configurations to run, e.g. '100/32 1024,1024/128' (default: all)")
    p.add_argument("--peers", default="fastmlp,fastmlp_threads,jax,torch_fused,torch,sklearn,reference,gemm",
                   help="implementations to time (default: %(default)s)")
    p.add_argument("--gap", type=float, default=0.2, help="idle seconds before each measurement (default 0.2)")
    p.add_argument("--synthetic", action="store_true", help="random images even when MNIST is found")
    p.add_argument("--rss", action="store_true", help="peak RSS of fastmlp train and of a PyTorch script")
    p.add_argument("--startup", action="store_true", help="time from launch to the first train step")
    p.add_argument("--tta", action="store_true", help="time to --tta-target test accuracy")
    p.add_argument("--tta-target", type=float, default=TARGET_ACCURACY,
                   help="test accuracy (%%) for --tta (default %(default)s)")
    p.add_argument("--profile", action="store_true", help="time each piece of a fastmlp step")
    p.add_argument("--inference", action="store_true", help="prediction throughput beside PyTorch and JAX")
    p.add_argument("--all", action="store_true", help="--rss --startup --tta --profile --inference")
    p.add_argument("--no-throughput", action="store_true", help="skip the throughput tables")
    args = p.parse_args(argv)
    if args.all:
        args.rss = args.startup = args.tta = args.profile = args.inference = True
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.threads < 1 or args.rounds < 1:
        p.error("--threads and --rounds must be >= 1")
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = set(args.peers) - {"fastmlp", "fastmlp_threads", "jax", "torch", "torch_fused", "sklearn", "reference",
                                 "gemm"}
    if unknown:
        p.error(f"unknown --peers {sorted(unknown)}")
    try:
        args.config_list = common.select_configs(args.configs)
    except ValueError as err:
        p.error(str(err))
    return args


def header(args, data_desc: str, load0, cores_line: str) -> list[str]:
    import numba

    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}", f"Numba {numba.__version__}"]
    for mod, name in (("jax", "JAX"), ("torch", "PyTorch"), ("sklearn", "scikit-learn")):
        if common.available(mod):
            versions.append(f"{name} {__import__(mod).__version__}")
    load1 = os.getloadavg()
    # Before the run the load is other people's; at the end it includes this run's own threads.
    busy = load0[0] > 0.5 * CORES or load1[0] - args.threads > 0.5 * CORES
    warning = ([f"- **warning**: load average {load0[0]:.1f} / {load1[0]:.1f} on {CORES} cores: other processes "
                "may have competed for the CPU during this run (see the CPU / wall column and the min – max "
                "spread); the numbers may be noisy"]
               if busy else [])
    return ["# fastmlp beside other implementations", "",
            f"- machine: {common.cpu_model()}, {CORES} cores available; {args.threads} threads for every "
            f"implementation (`limit_threads`, `torch.set_num_threads`, threadpoolctl for BLAS/OpenMP); {cores_line}",
            f"- {', '.join(versions)}",
            f"- data: {data_desc}; float32; Adam lr {common.LR:g}, betas ({common.BETA1}, {common.BETA2}), eps {common.EPS:g}",
            f"- {args.rounds} interleaved rounds{' (--quick)' if args.quick else ''}; medians; load average "
            f"{load0[0]:.2f} at start, {load1[0]:.2f} at end",
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", *warning, ""]


def targets(results: dict, extras: Extras | None) -> list[dict]:
    """Each target with its measurement: the target's text, the value, how it is shown, whether it is met."""
    out = []

    def add(target, got, shown, met):
        out.append({"target": target, "measured": got, "shown": shown, "met": met})
    for cfg, want in SPEED_TARGETS.items():
        if cfg in results and results[cfg]["speedup"] is not None:
            got = results[cfg]["speedup"]
            add(f"fastmlp >= {want:.1f}x PyTorch at {common.config_name(*cfg)}", got, f"{got:.2f}x", got >= want)
    for cfg, want in FLOOR_TARGETS.items():
        if cfg in results and results[cfg]["floor"] is not None:
            got = results[cfg]["floor"]
            add(f"step <= {want:.2f}x its GEMMs alone (NumPy) at {common.config_name(*cfg)}", got, f"{got:.2f}x",
                got <= want)
    if extras is not None and getattr(extras, "rss_fastmlp", None) is not None:
        got = extras.rss_fastmlp
        add(f"peak RSS of `fastmlp train` <= {RSS_TARGET_MIB} MB", got, f"{got:.0f} MiB",
            got * 1.048576 <= RSS_TARGET_MIB)
    if extras is not None and getattr(extras, "first_step", None) is not None:
        got = extras.first_step
        add(f"first step <= {STARTUP_TARGET_S:.0f} s after launch (warm cache)", got, f"{got:.2f} s",
            got <= STARTUP_TARGET_S)
    return out


def targets_section(found: list[dict]) -> list[str]:
    rows = [f"| {t['target']} | {t['shown']} | {'yes' if t['met'] else 'no'} |" for t in found]
    if not rows:
        return []
    return ["## Targets", "", "| target | measured | met |", "|---|---:|:---:|", *rows, "",
            "Measured on a shared machine: repeat before drawing conclusions from a near miss.", ""]


def main(argv=None) -> int:
    args = parse_args(argv)
    load0 = os.getloadavg()
    cores_line = common.limit_cores(args.threads)  # first, so that every thread started later keeps to it
    if args.threads > CORES:
        log(cores_line)
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls: loaded before the limit, so it applies)
    meta = common.run_metadata(cores=CORES) if args.json else None  # CORES: counted before limit_cores narrowed them
    limiter = threadpool_limits(limits=args.threads)
    body: list[str] = []
    results: dict = {}
    inference: list = []
    profile: list = []
    extras = None
    try:
        images, labels, rows, data_desc = common.load_images(args.synthetic)
        if not args.no_throughput:
            body += ["## Training throughput", ""]
            for cfg in args.config_list:
                body += throughput_section(cfg, args, images, labels, rows, results)
        if args.inference:
            body += ["## Inference throughput", ""]
            for cfg in args.config_list:
                log(f"inference {common.config_name(*cfg)}")
                body += inference_section(cfg, args, images, labels, rows, inference)
        if args.profile:
            body += ["## Where a fastmlp step spends its time", ""]
            for cfg in args.config_list:
                log(f"profile {common.config_name(*cfg)}")
                body += profile_section(cfg, images, labels, rows, args.threads, args.quick, profile)
        if args.rss or args.startup or args.tta:
            with tempfile.TemporaryDirectory(prefix="fastmlp-bench-") as tmp:
                extras = Extras(args, Path(tmp))
                body += ["## Memory, start-up and time to accuracy", ""]
                if args.rss:
                    body += extras.rss()
                if args.startup:
                    body += extras.startup()
                if args.tta:
                    body += extras.tta()
    finally:
        limiter.restore_original_limits()
    found = targets(results, extras)
    report = "\n".join(header(args, data_desc, load0, cores_line) + targets_section(found) + body).rstrip() + "\n"
    print(report)
    if args.out:
        from fastmlp.atomic import write_text
        write_text(args.out, report)
        log(f"wrote {args.out}")
    if args.json:
        settings = {"threads": args.threads, "cores": CORES, "cores_line": cores_line, "rounds": args.rounds,
                    "quick": args.quick, "configs": [common.config_name(*c) for c in args.config_list],
                    "peers": args.peers, "gap_s": args.gap, "data": data_desc,
                    "sections": {"throughput": not args.no_throughput, "inference": args.inference,
                                 "profile": args.profile, "rss": args.rss, "startup": args.startup, "tta": args.tta},
                    "adam": {"lr": common.LR, "beta1": common.BETA1, "beta2": common.BETA2, "eps": common.EPS},
                    "reference_fraction": REFERENCE_FRACTION}
        common.write_json(args.json, "compare_peers", meta, settings,
                          {"throughput": [results[c] for c in args.config_list if c in results],
                           "inference": inference, "profile": profile, "targets": found,
                           **(extras.data if extras is not None else {})})
    return 0


if __name__ == "__main__":
    sys.exit(main())
