"""Workloads shared by the pytest-benchmark suites and ``compare_peers.py``.

One training step of the same MLP (784 -> hidden... -> 10, ReLU, softmax cross-entropy, Adam
lr 1e-3, betas 0.9/0.999, eps 1e-8, float32), implemented by:

* :class:`FastmlpTrainer`: ``fastmlp.train.Trainer``, as ``fastmlp train`` drives the kernels;
* :class:`ReferenceTrainer`: the plain NumPy reference (``fastmlp.reference``) in float32;
* :class:`TorchTrainer`: ``nn.Sequential`` + ``torch.optim.Adam``, eager, default or fused Adam
  (only built when torch imports);
* :class:`JaxTrainer`: a whole epoch in one ``jax.jit`` (``lax.scan`` over batches, optax Adam);
* :class:`SklearnTrainer`: ``MLPClassifier(solver="adam")`` (only when scikit-learn imports);
* :class:`GemmFloor` / :class:`GemmFloorNumba`: the step's GEMMs alone, nothing else (the BLAS
  floor): per layer the forward ``x @ W.T``, the weight gradient ``dz.T @ x`` and, for every layer
  but the first, the input gradient ``dz @ W``, into preallocated buffers.

Every trainer gathers its mini-batch from uint8 images by index and scales it to [0, 1] float32
per batch (scikit-learn excepted: its ``fit`` takes the float matrix, scaled beforehand).
Torch and scikit-learn are imported only inside their trainers.
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np
from numba import njit

from fastmlp import reference
from fastmlp.kernels import block_view, weight_view
from fastmlp.config import TrainConfig
from fastmlp.model import MLP
from fastmlp.train import Trainer

N_FEATURES = 784
N_CLASSES = 10
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8

# (hidden sizes, batch size): the configurations every comparison uses.
CONFIGS = [((100,), 32), ((256, 128), 128), ((1024, 1024), 128)]


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


# ----------------------------------------------------------------------------- fastmlp

class FastmlpTrainer:
    """The fast path as ``fastmlp train`` drives it: a :class:`fastmlp.train.Trainer` on these arrays."""

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

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted classes of uint8 images (scaled by 1/255 inside the kernels), as ``fastmlp predict``."""
        return self.model.predict(images)


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


# ----------------------------------------------------------------------------- PyTorch

class TorchTrainer:
    """``nn.Sequential`` of Linear/ReLU, ``F.cross_entropy``, ``torch.optim.Adam``.

    ``fused=False``: Adam's default (foreach) implementation, as most PyTorch code runs it;
    ``fused=True``: ``Adam(fused=True)``, one fused kernel over all parameters.
    The images stay a uint8 tensor; each batch is gathered by index and scaled (``float() / 255``).
    Weights start like fastmlp's (``N(0, 1/sqrt(n_in))``, zero biases).
    """

    label = "PyTorch"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0,
                 threads: int | None = None, fused: bool = False):
        import torch

        self.torch = torch
        self.F = torch.nn.functional
        if threads is not None:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        from torch_recipe import build_model
        self.model = build_model(layer_sizes(hidden))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS,
                                    **({"fused": True} if fused else {}))
        self.batch_size = batch_size
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8))       # a writable copy
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.version = torch.__version__

    def train(self, order: np.ndarray) -> None:
        order_t = self.torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64))
        model, opt, F, B = self.model, self.opt, self.F, self.batch_size
        for lo in range(0, len(order_t), B):
            idx = order_t[lo:lo + B]
            x = self.images[idx].float().div_(255.0)
            loss = F.cross_entropy(model(x), self.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

    def predict(self, images) -> np.ndarray:
        """Predicted classes of a uint8 image tensor: one batched forward pass (``no_grad``)."""
        with self.torch.no_grad():
            return self.model(images.float().div_(255.0)).argmax(1).numpy()


# ----------------------------------------------------------------------------- JAX

class JaxTrainer:
    """The fastest way a JAX user writes this training: one ``jit`` of a whole pass over the data.

    ``lax.scan`` over the mini-batches of an epoch; inside XLA, each step gathers its batch from
    the uint8 images by index and scales it, runs the forward pass, the mean cross-entropy of
    ``log_softmax``, ``value_and_grad`` and ``optax.adam``. One compiled program per number of
    steps (compiled on the first call, outside the timed rounds). Weights start like fastmlp's.
    XLA's own thread pool uses every core; ``threads=1`` sets ``XLA_FLAGS`` before JAX is imported.
    """

    label = "JAX"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0,
                 threads: int | None = None):
        import os
        import sys
        if threads == 1 and "jax" not in sys.modules:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1").strip()
        import jax
        import jax.numpy as jnp
        import optax

        rng = np.random.default_rng(seed)
        sizes = layer_sizes(hidden)
        self.params = [(jnp.asarray(rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_out, n_in)).astype(np.float32)),
                        jnp.zeros(n_out, jnp.float32)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        opt = optax.adam(LR, b1=BETA1, b2=BETA2, eps=EPS)
        self.state = opt.init(self.params)
        self.images = jnp.asarray(images)
        self.labels = jnp.asarray(np.asarray(labels, dtype=np.int32))
        self.batch_size = batch_size
        self.version = jax.__version__

        def loss_fn(params, x, y):
            h = x
            for W, b in params[:-1]:
                h = jax.nn.relu(h @ W.T + b)
            W, b = params[-1]
            logp = jax.nn.log_softmax(h @ W.T + b)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        def epoch(params, state, images, labels, batches):
            def step(carry, idx):
                params, state = carry
                x = images[idx].astype(jnp.float32) * jnp.float32(1.0 / 255.0)
                loss, grads = jax.value_and_grad(loss_fn)(params, x, labels[idx])
                updates, state = opt.update(grads, state, params)
                return (optax.apply_updates(params, updates), state), loss
            (params, state), losses = jax.lax.scan(step, (params, state), batches)
            return params, state, losses

        self._epoch = jax.jit(epoch)

        def predict(params, images):
            h = images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
            for W, b in params[:-1]:
                h = jax.nn.relu(h @ W.T + b)
            W, b = params[-1]
            return jnp.argmax(h @ W.T + b, axis=1)

        self._predict = jax.jit(predict)

    def predict(self, images) -> np.ndarray:
        """Predicted classes of uint8 images (a JAX array): one jitted, batched forward pass."""
        return np.asarray(self._predict(self.params, images))

    def train(self, order: np.ndarray) -> None:
        """Train on the batches of ``order`` (its length a multiple of the batch size) in one compiled call."""
        batches = np.ascontiguousarray(order, dtype=np.int32).reshape(-1, self.batch_size)
        self.params, self.state, losses = self._epoch(self.params, self.state, self.images, self.labels, batches)
        losses.block_until_ready()


# ----------------------------------------------------------------------------- scikit-learn

class SklearnTrainer:
    """``MLPClassifier(solver="adam", alpha=0)``, same sizes, batch size and Adam settings.

    ``fit`` with ``max_iter=1, warm_start=True`` trains one pass over the matrix it is given
    (shuffled, batches gathered by index inside scikit-learn). It takes float input, so the
    uint8 images are scaled to float32 once, outside the timed call (:meth:`prepare`).
    """

    label = "scikit-learn"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        import sklearn
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), activation="relu", solver="adam", alpha=0.0,
                                 batch_size=batch_size, learning_rate_init=LR, beta_1=BETA1, beta_2=BETA2,
                                 epsilon=EPS, max_iter=1, shuffle=True, random_state=seed, warm_start=True,
                                 early_stopping=False, tol=0.0, n_iter_no_change=10 ** 9)
        self.images, self.labels = images, labels
        self.version = sklearn.__version__

    def prepare(self, order: np.ndarray):
        x = self.images[order].astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        return x, self.labels[order].astype(np.int64)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf.fit(x, y)

    @property
    def dtype(self):
        return self.clf.coefs_[0].dtype if hasattr(self.clf, "coefs_") else None


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
def _gemm_steps(params, grads, layout, x, z, h, d, act_off, m, n_steps):
    L = layout.shape[0]
    for _ in range(n_steps):
        for l in range(L):
            n_in, n_out = layout[l, 0], layout[l, 1]
            inp = block_view(x, 0, m, n_in) if l == 0 else block_view(h, act_off[l - 1], m, n_in)
            np.dot(inp, weight_view(params, layout, l).T, block_view(z, act_off[l], m, n_out))
        for l in range(L - 1, -1, -1):
            n_in, n_out = layout[l, 0], layout[l, 1]
            inp = block_view(x, 0, m, n_in) if l == 0 else block_view(h, act_off[l - 1], m, n_in)
            dl = block_view(d, act_off[l], m, n_out)
            np.dot(dl.T, inp, weight_view(grads, layout, l))
            if l > 0:
                np.dot(dl, weight_view(params, layout, l), block_view(d, act_off[l - 1], m, n_in))


class GemmFloorNumba:
    """The same GEMMs through Numba's ``np.dot`` on fastmlp's flat buffers: the BLAS fastmlp calls."""

    label = "GEMMs alone (Numba np.dot)"

    def __init__(self, hidden, batch_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.model = MLP.initialized(layer_sizes(hidden), rng)
        self.grads = np.zeros_like(self.model.params)
        self.ws = self.model.workspace(batch_size)
        self.ws.x[:] = rng.random(self.ws.x.shape, dtype=np.float32)
        self.ws.h[:] = rng.random(self.ws.h.shape, dtype=np.float32)
        self.ws.d[:] = rng.standard_normal(self.ws.d.shape, dtype=np.float32) * np.float32(1e-2)
        self.batch_size = batch_size

    def steps(self, n_steps: int) -> None:
        ws = self.ws
        _gemm_steps(self.model.params, self.grads, self.model.layout, ws.x, ws.z, ws.h, ws.d, ws.act_off,
                    self.batch_size, n_steps)
