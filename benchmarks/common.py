"""What the benchmark scripts share: the workloads' settings and data, fastmlp's trainer, its NumPy
reference and the GEMM floor, the pieces of a column-split step, timing, threads and child processes.

The training step is the same MLP everywhere (784 -> hidden... -> 10, ReLU, softmax cross-entropy,
Adam lr 1e-3, betas 0.9/0.999, eps 1e-8, float32), implemented by:

* :class:`FastmlpTrainer`: ``fastmlp.training.train.Trainer``, as ``fastmlp train`` drives the engine;
* :class:`ReferenceTrainer`: the plain NumPy reference (``fastmlp.reference``) in float32;
* :class:`GemmFloor` / :class:`GemmFloorNumba`: the step's GEMMs alone, nothing else (the BLAS
  floor): per layer the forward ``x @ W.T``, the weight gradient ``dz.T @ x`` and, for every layer
  but the first, the input gradient ``dz @ W``, into preallocated buffers.

The other implementations (PyTorch, JAX, scikit-learn) are in ``peers/workloads.py``.

Provenance: :func:`run_metadata` is what a script's ``--json`` records about its run (dates,
command line, commit, machine, the BLAS kernel family, versions), :func:`write_json` writes that
file atomically; ``results.py`` composes ``results.md`` from those files alone.

A script in ``benchmarks/suites``, ``peers`` or ``probes`` puts ``benchmarks/`` on ``sys.path``
and imports this module; no script imports another script.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
from numba import njit

from fastmlp import reference
from fastmlp.config import TrainConfig
from fastmlp.engine.blas import blas_threads, small_gemm_limit
from fastmlp.engine.layout import rows_view, weight_view
from fastmlp.engine.records import Data, allocate_work, make_call
from fastmlp.engine.step import run_call
from fastmlp.training.model import MLP
from fastmlp.training.train import Trainer

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
PROBES = BENCHMARKS / "probes"

N_FEATURES = 784
N_CLASSES = 10
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8

# (hidden sizes, batch size): the configurations every comparison uses.
CONFIGS = [((100,), 32), ((256, 128), 128), ((1024, 1024), 128)]
# Steps per round of compare_peers for each configuration (its --quick divides them by 8).
STEPS = {((100,), 32): 1024, ((256, 128), 128): 256, ((1024, 1024), 128): 48}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def config_name(hidden, batch_size: int) -> str:
    return f"[{','.join(str(h) for h in hidden)}]/{batch_size}"


def parse_shape(text: str, prog: str) -> tuple[tuple[int, ...], int]:
    """``'256,128/128'`` as ``((256, 128), 128)``; anything else exits with one line naming ``prog``."""
    try:
        hidden, batch = text.split("/")
        return tuple(int(v) for v in hidden.split(",")), int(batch)
    except ValueError:
        raise SystemExit(f"{prog}: {text!r} is not 'hidden sizes/batch', e.g. 256,128/128") from None


def step_flops(sizes, batch_size: int) -> int:
    """Floating-point operations of one step's products (forward, weight and input gradients: three
    per layer, 2 m n k each) for layer ``sizes`` at ``batch_size`` rows."""
    return 6 * batch_size * sum(a * b for a, b in zip(sizes, sizes[1:]))


def select_configs(spec: str | None) -> list:
    """The configurations named in ``spec`` ('100/32 1024,1024/128'; None: all of CONFIGS), in
    CONFIGS' order; ValueError when it names none of them."""
    if not spec:
        return list(CONFIGS)
    names = spec.split()

    def label(c):
        return f"{','.join(map(str, c[0]))}/{c[1]}"
    chosen = [c for c in CONFIGS if label(c) in names]
    if not chosen:
        raise ValueError(f"--configs: none of {names} is one of {[label(c) for c in CONFIGS]}")
    return chosen


def layer_sizes(hidden) -> list[int]:
    return [N_FEATURES, *hidden, N_CLASSES]


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------- data

def synthetic_data(n: int = 10000, n_features: int = N_FEATURES, seed: int = 0):
    """Random uint8 images (n, n_features) and uint8 labels in 0..9: same shapes and types as MNIST."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, n_features), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES, n).astype(np.uint8)
    return images, labels


def sample_order(rows: np.ndarray | int, n_samples: int, seed: int = 0) -> np.ndarray:
    """``n_samples`` example indices (int64): shuffled passes over ``rows``, concatenated."""
    rows = np.arange(rows, dtype=np.int64) if np.isscalar(rows) else np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    passes = [rows[rng.permutation(len(rows))] for _ in range(-(-n_samples // len(rows)))]
    return np.concatenate(passes)[:n_samples]


def load_images(synthetic: bool):
    """(images, labels, training rows, description): MNIST's training rows when found, else random."""
    if not synthetic:
        from fastmlp.data.datasets import load_dataset, validation_split
        from fastmlp.errors import DataError
        try:
            ds = load_dataset("mnist", download=False)
            fit, _ = validation_split(len(ds.train_images), 5000)
            return ds.train_images, ds.train_labels, fit.astype(np.int64), f"MNIST ({ds.source}, {len(fit):,} rows)"
        except DataError:
            pass
    images, labels = synthetic_data(60000)
    return images, labels, np.arange(len(images), dtype=np.int64), "synthetic uint8 images (60,000 rows)"


# ----------------------------------------------------------------------------- threads and processes

def limit_cores(threads: int) -> str:
    """Fewer threads than cores: every thread of this process (and every thread and child it starts
    later) keeps to the first ``threads`` cores of its affinity mask, the one limit that holds for
    every library (XLA sizes its pool by the mask, and ignores its thread flags). More: nothing
    changes. Returns a line for the report, the oversubscription warning when there are more."""
    cores = sorted(os.sched_getaffinity(0))
    if threads > len(cores):
        return (f"--threads {threads} on {len(cores)} cores: the run is oversubscribed, its figures are only a "
                f"smoke test")
    if threads < len(cores):
        keep = set(cores[:threads])
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), keep)
            except OSError:  # the thread has just ended
                pass
    return f"{threads} of {len(cores)} cores (affinity mask: cores {','.join(map(str, cores[:threads]))})"


def fastmlp_command() -> list[str]:
    exe = Path(sys.executable).with_name("fastmlp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fastmlp"]


# ----------------------------------------------------------------------------- provenance

#: Bumped when the layout of a script's ``--json`` file changes.
JSON_SCHEMA = 1
# What results.py writes: they change while a run is in progress and change nothing that is
# measured, so they do not make the tree count as having local changes.
GENERATED_PATHS = ("benchmarks/results", "benchmarks/results.md", "README.md")
VERSIONED = (("python", None), ("numpy", "numpy"), ("numba", "numba"), ("scipy", "scipy"),
             ("scikit-learn", "scikit-learn"), ("torch", "torch"), ("jax", "jax"), ("optax", "optax"))


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def git_commit() -> tuple[str | None, bool | None]:
    """(``git rev-parse --short HEAD``, whether tracked files differ from it, ignoring
    GENERATED_PATHS); (None, None) outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                    *(f":(exclude){p}" for p in GENERATED_PATHS))
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(dirty)


def blas_libraries() -> list[dict]:
    """The BLAS libraries NumPy and SciPy (whose BLAS Numba's ``np.dot`` calls) have loaded, as
    threadpoolctl reports them; ``architecture`` is OpenBLAS's kernel family."""
    import numpy  # noqa: F401
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_info

    libs = [{"library": "/".join(Path(i["filepath"]).parts[-2:]), "internal_api": i.get("internal_api"),
             "version": i.get("version"), "architecture": i.get("architecture")}
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return sorted(libs, key=lambda lib: lib["library"])


def kernel_family(libs: list[dict]) -> str:
    """'OpenBLAS SkylakeX', or each library's when they differ."""
    def name(lib):
        api = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(lib["internal_api"], lib["internal_api"])
        return f"{api} {lib['architecture'] or '(no kernel family reported)'}"
    names = sorted({name(lib) for lib in libs})
    if len(names) <= 1:
        return names[0] if names else "no BLAS library found"
    return ", ".join(f"{name(lib)} ({lib['library']})" for lib in libs)


def versions() -> dict:
    out = {}
    for key, dist in VERSIONED:
        if dist is None:
            out[key] = platform.python_version()
            continue
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as typed from the repository root: the interpreter and the script
    relative to it when they are inside it."""
    argv = list(sys.argv if argv is None else argv)

    def shown(path):
        p = Path(path)
        full = p if p.is_absolute() else Path.cwd() / p
        try:
            return full.relative_to(ROOT).as_posix()  # not resolved: .venv/bin/python is a symlink
        except ValueError:
            return str(path)
    return shlex.join([shown(sys.executable), shown(argv[0]), *argv[1:]])


def run_metadata(cores: int | None = None) -> dict:
    """What a run's ``--json`` says about it, taken as it starts: date, command line, commit, machine
    (``cores``: the cores usable, when the caller counted them before narrowing its affinity
    mask), BLAS kernel family, versions. :func:`write_json` adds the end."""
    commit, dirty = git_commit()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    libs = blas_libraries()
    return {"started": utc_now(), "finished": None, "command": command_line(), "commit": commit, "dirty": dirty,
            "machine": {"cpu": cpu_model(), "cores_usable": cores or usable, "cores_total": os.cpu_count(),
                        "memory_bytes": memory_bytes()},
            "blas": libs, "kernel_family": kernel_family(libs), "versions": versions(),
            "load_average": [round(os.getloadavg()[0], 2), None]}


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path, script: str, meta: dict, settings: dict, results: dict) -> None:
    """``{"schema", "script", "meta", "settings", "results"}`` to ``path``, atomically; ``meta``
    from :func:`run_metadata`, completed here with the end of the run."""
    from fastmlp.atomic import write_text

    meta = {**meta, "finished": utc_now(), "load_average": [meta["load_average"][0], round(os.getloadavg()[0], 2)]}
    payload = {"schema": JSON_SCHEMA, "script": script, "meta": meta, "settings": settings, "results": results}
    write_text(path, json.dumps(_finite(payload), indent=1, allow_nan=False) + "\n")
    log(f"wrote {path}")


# ----------------------------------------------------------------------------- timing

# A piece that drifts when repeated runs in batches of at most this many calls, each from its start.
RESET_CALLS = 64


def per_call(fn, budget: float, reset=None) -> float:
    """Median seconds per call of ``fn`` over five timed batches of calls, about ``budget`` s each.
    ``reset``: called (untimed) before every batch, which then holds at most RESET_CALLS calls."""
    most = 1e5 if reset is None else RESET_CALLS

    def batch(reps):
        if reset is not None:
            reset()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return time.perf_counter() - t0

    batch(1)
    reps = 1
    while batch(reps) <= budget and reps < most:
        reps *= 2
    return statistics.median(batch(reps) / reps for _ in range(5))


# ----------------------------------------------------------------------------- fastmlp

class FastmlpTrainer:
    """The fast path as ``fastmlp train`` drives it: a :class:`fastmlp.training.train.Trainer` on these arrays."""

    label = "fastmlp"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        config = TrainConfig(hidden_sizes=tuple(hidden), batch_size=batch_size, lr=LR, beta1=BETA1, beta2=BETA2,
                             eps=EPS, lr_decay=1.0, seed=seed, val_size=0)
        self.trainer = Trainer(config, images, labels, num_classes=N_CLASSES)
        self.model = self.trainer.model

    def steps(self, order: np.ndarray, first: int, n_steps: int) -> int:
        """Steps ``first .. first + n_steps - 1`` of ``order`` in one kernel call."""
        return self.trainer.steps(order, first, n_steps, LR)

    def train(self, order: np.ndarray) -> None:
        """Train on every batch of ``order`` in about 20 kernel calls (as ``fastmlp train``)."""
        self.trainer.train_order(order, LR)

    def predict(self, images: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Predicted classes of uint8 images (scaled by 1/255 inside the kernels), as ``fastmlp predict``,
        on ``threads`` threads (default: the usable cores)."""
        return self.model.predict(images, threads)


def timed_call(trainer: Trainer, columns: bool, threads: int, work, order: np.ndarray, n_steps: int) -> float:
    """Seconds of one :func:`fastmlp.engine.step.run_call` of ``n_steps`` steps of ``trainer``'s network
    and Adam state in the given split, on ``threads`` threads and the buffers ``work``, as
    :meth:`Trainer.steps` calls it (single-threaded BLAS, the small-matrix blocks in the column split)."""
    c, adam = trainer.config, trainer.adam
    call = make_call(0, n_steps, c.batch_size, adam.t, c.seed, 0, c.lr, adam.beta1, adam.beta2, adam.eps, c.alpha,
                     small_gemm_limit() if columns else 0)
    losses = np.empty(n_steps)
    with blas_threads(1):
        t0 = time.perf_counter()
        run_call(columns, threads, trainer.net, Data(trainer.images, trainer.labels, order, trainer.weights), work,
                 trainer.optim, trainer.aug, trainer.recipe, call, losses)
        seconds = time.perf_counter() - t0
    adam.advance(n_steps)
    return seconds


# A piece of a step: its name, the MFLOP of its products, one call per part (in part order), and
# what restores its state before a batch of calls (None: repeating it changes nothing it reads).
Piece = namedtuple("Piece", ["name", "mflop", "calls", "reset"], defaults=[None])


def column_pieces(tr: Trainer, idx: np.ndarray) -> list[Piece]:
    """Every piece of a column-split step of ``tr`` (plain recipe) on the batch ``idx``, on the
    trainer's own buffers, called part by part as :func:`fastmlp.engine.step.column_worker` calls
    them: the gather by row shards, each hidden layer's forward product with bias and ReLU by its
    units, the logits and loss by row shards, each backward region by the units below a layer, and
    Adam by the update's parts (on copies of the parameters and moments, which its ``reset`` restores:
    repeated on one gradient, Adam drives the moments of the weights it leaves at 0 into subnormal
    numbers, which a step never sees).
    The products are cut as the trainer cuts them (``Trainer.small_gemm``)."""
    from fastmlp.engine import columns, layers, update
    from fastmlp.engine.layout import B_OFF
    from fastmlp.engine.parts import row_parts, shard_bounds, split_bounds, unit_parts
    from fastmlp.engine.step import bias_grad_columns

    if not tr.columns or tr.recipe is not None or tr.aug is not None:
        raise ValueError("column_pieces: the trainer must train in the column split with the plain recipe")
    w, p, lay, sizes = tr.work, tr.model.params, tr.model.layout, tr.model.sizes
    g, x, y, z, h, d, off = w.grads[0], w.x, w.y, w.z, w.h, w.d, w.act_off
    m, small, L, k, n0 = len(idx), tr.small_gemm, len(sizes) - 1, sizes[-1], sizes[0]
    shards = [shard_bounds(m, row_parts(m), s) for s in range(row_parts(m))]
    norm = float(m if tr.weights is None else np.sum(tr.weights[idx], dtype=np.float64))  # the batch's weight

    def units(n):  # the bounds of n units' parts (computed here, not in the timed calls)
        parts = unit_parts(n)
        return [split_bounds(n, parts, q) for q in range(parts)]

    def rows(buf, o, n, r0, r1):  # rows_view in NumPy: no kernel dispatch inside the timed calls
        return buf[o + r0 * n:o + r1 * n].reshape(r1 - r0, n)

    def piece(name, mflop, fn, bounds):
        return Piece(name, mflop, [lambda b=b: fn(*b) for b in bounds])

    def gather(r0, r1):
        layers.gather_batch(tr.images, tr.labels, idx[r0:r1], rows(x, 0, n0, r0, r1), y[r0:r1])
    out = [piece("gather (row shards)", 0.0, gather, shards)]
    for l in range(L - 1):
        def forward(j0, j1, l=l):
            columns.layer_columns(p, lay, l, x, z, h, off, m, j0, j1, idx, 0, 0, None, small)
        out.append(piece(f"layer {l + 1} forward, bias, ReLU (units)", 2e-6 * m * sizes[l] * sizes[l + 1], forward,
                         units(sizes[l + 1])))

    def logits(r0, r1):
        columns.output_rows(p, lay, h, z, off, m, r0, r1)
        layers.loss_rows(rows(z, off[L - 1], k, r0, r1), y[r0:r1], rows(d, off[L - 1], k, r0, r1), 0.0, norm,
                         tr.weights, idx[r0:r1])
    out.append(piece(f"layer {L} logits + loss (row shards)", 2e-6 * m * sizes[-2] * k, logits, shards))
    for l in range(L - 1, 0, -1):
        parts = unit_parts(sizes[l])
        outputs = [split_bounds(k, parts, q) for q in range(parts)]  # the last layer's biases, cut alike

        def backward(i0, i1, q, l=l, outputs=outputs):
            if l == L - 1:
                bias_grad_columns(rows(d, off[l], k, 0, m), g[lay[l, B_OFF]:lay[l, B_OFF] + k], *outputs[q])
                columns.output_weight_grad_columns(g, lay, h, d, off, m, i0, i1)
            columns.input_grad_columns(p, g, lay, l, z, d, off, m, i0, i1, None, small)
            columns.weight_grad_rows(g, lay, l - 1, x, h, d, off, m, i0, i1, small)
        mflop = 2e-6 * m * (sizes[l] * sizes[l + 1] * (2 if l == L - 1 else 1) + sizes[l - 1] * sizes[l])
        out.append(piece(f"backward below layer {l + 1} (units)", mflop, backward,
                         [(*b, q) for q, b in enumerate(units(sizes[l]))]))
    params, m1, v1, ema = p.copy(), tr.adam.m.copy(), tr.adam.v.copy(), tr.adam.ema

    def restore():
        params[:], m1[:], v1[:] = p, tr.adam.m, tr.adam.v
    factors = tuple(np.float32(f) for f in update.adam_factors(LR, BETA1, BETA2, EPS, 10))
    one = np.float32(1.0)

    def hidden_rows(l, j0, j1):
        update.update_layer_rows(params, g, m1, v1, ema, lay, l, j0, j1, factors, one, None, None)

    def last_columns(i0, i1, j0, j1):
        update.update_columns_part(params, g, m1, v1, ema, lay, L - 1, i0, i1, j0, j1, factors, one, None, 0.0)

    if L == 2 and tr.config.alpha == 0:  # the worker runs plain Adam inside the backward pass's parts
        parts = unit_parts(sizes[1])
        bounds = [(*split_bounds(sizes[1], parts, q), *split_bounds(k, parts, q)) for q in range(parts)]

        def fused(i0, i1, j0, j1):
            last_columns(i0, i1, j0, j1)
            hidden_rows(0, i0, i1)
        return out + [piece("Adam (in the backward pass's parts)", 0.0, fused, bounds)._replace(reset=restore)]
    calls = []
    for l, part, parts in (tuple(int(v) for v in row) for row in w.blocks):
        if l < L - 1:
            b = split_bounds(sizes[l + 1], parts, part)
            calls.append(lambda l=l, b=b: hidden_rows(l, *b))
        else:
            b = (*split_bounds(sizes[l], parts, part), *split_bounds(k, parts, part))
            calls.append(lambda b=b: last_columns(*b))
    return out + [Piece("Adam (update parts)", 0.0, calls, restore)]

# ----------------------------------------------------------------------------- NumPy reference

class ReferenceTrainer:
    """``fastmlp.reference``: NN + Adam in float32, one Python-level step per batch."""

    label = "NumPy reference"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.net = reference.NN(layer_sizes(hidden), rng, dtype=np.float32)
        self.opt = reference.Adam(self.net.parameters(), LR, BETA1, BETA2, EPS)
        self.batch_size = batch_size
        self.images, self.labels = images, labels

    def step(self, idx: np.ndarray) -> float:
        x = reference.gather_batch(self.images, idx, np.float32)
        loss, dlogits = reference.softmax_cross_entropy(self.net.forward(x), self.labels[idx])
        self.net.backward(dlogits)
        self.opt.step(self.net.gradients())
        return float(loss)

    def train(self, order: np.ndarray) -> None:
        for lo in range(0, len(order), self.batch_size):
            self.step(order[lo:lo + self.batch_size])


# ----------------------------------------------------------------------------- GEMM floor

class GemmFloor:
    """The GEMMs of one training step alone, in NumPy (``np.dot(..., out=...)``), on random data."""

    label = "GEMMs alone (NumPy)"

    def __init__(self, hidden, batch_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        sizes = layer_sizes(hidden)
        B, f32 = batch_size, np.float32
        self.W = [(rng.standard_normal((b, a)) / np.sqrt(a)).astype(f32) for a, b in zip(sizes[:-1], sizes[1:])]
        self.inp = [rng.random((B, a), dtype=f32) for a in sizes[:-1]]     # x, then h_1 .. h_{L-1}
        self.z = [np.empty((B, b), f32) for b in sizes[1:]]
        self.dz = [rng.standard_normal((B, b), dtype=f32) for b in sizes[1:]]
        self.dW = [np.empty_like(W) for W in self.W]
        self.dx = [np.empty((B, a), f32) for a in sizes[:-1]]
        self.batch_size = batch_size

    def gemms(self) -> list[tuple[str, int, int, int]]:
        """(name, m, n, k) of every GEMM of a step, in order."""
        out = []
        for l, W in enumerate(self.W):
            out.append((f"forward layer {l + 1}", self.batch_size, W.shape[0], W.shape[1]))
        for l in reversed(range(len(self.W))):
            W = self.W[l]
            out.append((f"dW layer {l + 1}", W.shape[0], W.shape[1], self.batch_size))
            if l > 0:
                out.append((f"dx layer {l + 1}", self.batch_size, W.shape[1], W.shape[0]))
        return out

    def flops_per_step(self) -> float:
        return float(sum(2 * m * n * k for _, m, n, k in self.gemms()))

    def steps(self, n_steps: int) -> None:
        dot, W, inp, z, dz, dW, dx = np.dot, self.W, self.inp, self.z, self.dz, self.dW, self.dx
        L = len(W)
        for _ in range(n_steps):
            for l in range(L):
                dot(inp[l], W[l].T, out=z[l])
            for l in range(L - 1, -1, -1):
                dot(dz[l].T, inp[l], out=dW[l])
                if l > 0:
                    dot(dz[l], W[l], out=dx[l])


@njit(cache=True, error_model="numpy")
def numba_dot(a, b, out):
    """``np.dot(a, b, out)`` compiled by Numba: the BLAS call fastmlp's kernels make, alone."""
    np.dot(a, b, out)


@njit(cache=True, error_model="numpy")
def _gemm_steps(params, grads, layout, x, h, z, d, act_off, m, n_steps):
    L = layout.shape[0]
    for _ in range(n_steps):
        for l in range(L):
            n_in, n_out = layout[l, 0], layout[l, 1]
            inp = rows_view(x, 0, n_in, 0, m) if l == 0 else rows_view(h, act_off[l - 1], n_in, 0, m)
            np.dot(inp, weight_view(params, layout, l).T, rows_view(z, act_off[l], n_out, 0, m))
        for l in range(L - 1, -1, -1):
            n_in, n_out = layout[l, 0], layout[l, 1]
            inp = rows_view(x, 0, n_in, 0, m) if l == 0 else rows_view(h, act_off[l - 1], n_in, 0, m)
            dl = rows_view(d, act_off[l], n_out, 0, m)
            np.dot(dl.T, inp, weight_view(grads, layout, l))
            if l > 0:
                np.dot(dl, weight_view(params, layout, l), rows_view(d, act_off[l - 1], n_in, 0, m))


class GemmFloorNumba:
    """The same GEMMs through Numba's ``np.dot`` on fastmlp's flat buffers (a row-shard workspace of
    the whole batch): the BLAS that fastmlp's kernels call."""

    label = "GEMMs alone (Numba np.dot)"

    def __init__(self, hidden, batch_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.model = MLP.initialized(layer_sizes(hidden), rng)
        self.grads = np.zeros_like(self.model.params)
        self.work = allocate_work(self.model.sizes, batch_size, 1, columns=False)
        self.work.x[:] = rng.random(self.work.x.shape, dtype=np.float32)
        self.work.h[:] = rng.random(self.work.h.shape, dtype=np.float32)
        self.work.d[:] = rng.standard_normal(self.work.d.shape, dtype=np.float32) * np.float32(1e-2)
        self.batch_size = batch_size

    def steps(self, n_steps: int) -> None:
        w = self.work
        _gemm_steps(self.model.params, self.grads, self.model.layout, w.x, w.h, w.z, w.d, w.act_off,
                    self.batch_size, n_steps)
