"""The other implementations of the benchmarks' training step, for the scripts in ``peers/``.

The same MLP, batch size, float32 and Adam settings as :mod:`common`'s trainers, implemented by:

* :class:`TorchTrainer`: ``nn.Sequential`` + ``torch.optim.Adam``, eager, default or fused Adam;
* :class:`JaxTrainer`: a whole epoch in one ``jax.jit`` (``lax.scan`` over batches, optax Adam);
* :class:`SklearnTrainer`: ``MLPClassifier(solver="adam")``.

Every trainer gathers its mini-batch from uint8 images by index and scales it to [0, 1] float32 per
batch (scikit-learn excepted: its ``fit`` takes the float matrix, scaled beforehand). Torch, JAX
and scikit-learn are imported only inside their trainers (PyTorch's network from
``torch_model.py``), so this module imports without them.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

import numpy as np
from common import BETA1, BETA2, EPS, LR, layer_sizes

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
        from torch_model import build_model, torch_threads

        self.torch = torch
        self.F = torch.nn.functional
        if threads is not None:
            torch_threads(threads)
        torch.manual_seed(seed)
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
    XLA's thread pool has a thread for every core of the process's affinity mask when JAX first
    runs, whatever its thread flags say: the mask is the one way to give it fewer.
    """

    label = "JAX"

    def __init__(self, hidden, batch_size: int, images: np.ndarray, labels: np.ndarray, seed: int = 0):
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
