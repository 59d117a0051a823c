"""The homework's network in plain NumPy: the readable ground truth for the Numba engine.

Shapes follow the homework: a batch ``x`` is (m, n_in), a weight ``W`` is (n_out, n_in), a
bias ``b`` is (n_out,), and a linear layer computes ``z = x @ W.T + b``. Every function works in
float32 or float64 (gradient checks use float64).

Backward passes, for an upstream gradient ``dz`` of shape (m, n_out)::

    dx = dz @ W        (m, n_in)
    dW = dz.T @ x      (n_out, n_in)
    db = dz.sum(0)     (n_out,)

The loss is the mean cross-entropy of softmax(h) for logits ``h`` (m, k)::

    ln p = h - logsumexp(h)            (row max subtracted first: stable for any h)
    l    = -(1/m) sum_i sum_j y_ij ln p_ij
    dl/dh = (p - y) / m
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- layers

def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """``z = x @ W.T + b``; returns ``(z, backward)`` where ``backward(dz) -> (dx, dW, db)``."""
    z = x @ W.T + b

    def backward(dz):
        return linear_backward(dz, x, W, b)

    return z, backward


def linear_backward(dz: np.ndarray, x: np.ndarray, W: np.ndarray, b: np.ndarray):
    """Gradients of ``z = x @ W.T + b``: ``(dx, dW, db) = (dz @ W, dz.T @ x, dz.sum(0))``."""
    return dz @ W, dz.T @ x, dz.sum(axis=0)


def block_gemm(trans_a: bool, trans_b: bool, m: int, n: int, k: int, a: np.ndarray, a_off: int, lda: int,
               b: np.ndarray, b_off: int, ldb: int, c: np.ndarray, c_off: int, ldc: int, beta: float) -> np.ndarray:
    """The twin of :func:`fastmlp.engine.blas.gemm`: ``C = op(A) @ op(B) + beta C`` on blocks of flat buffers.

    Block X of r rows and s columns at offset ``off`` with row stride ``ld`` is
    ``buf[off + i * ld + j]``; op(A) is (m, k), op(B) (k, n), C (m, n). Returns ``c``, written in place.
    """
    def block(buf, off, rows, cols, ld):
        return np.array([buf[off + i * ld:off + i * ld + cols] for i in range(rows)], np.float64).reshape(rows, cols)

    A = block(a, a_off, k, m, lda).T if trans_a else block(a, a_off, m, k, lda)
    B = block(b, b_off, n, k, ldb).T if trans_b else block(b, b_off, k, n, ldb)
    C = A @ B + (beta * block(c, c_off, m, n, ldc) if beta else 0.0)
    for i in range(m):
        c[c_off + i * ldc:c_off + i * ldc + n] = C[i]
    return c


def relu(z: np.ndarray):
    """``h = max(0, z)``; returns ``(h, backward)`` with ``backward(dh) = dh * (z >= 0)``.

    At exactly ``z = 0`` the homework passes the gradient through (``z >= 0``); the engine
    follows the same rule.
    """
    h = np.maximum(z, 0)

    def backward(dh):
        return dh * (z >= 0)

    return h, backward


def init_weight(rng: np.random.Generator, n_in: int, n_out: int, dtype=np.float64) -> np.ndarray:
    """``W ~ N(0, 1/sqrt(n_in))`` (standard deviation ``1/sqrt(n_in)``), shape (n_out, n_in).

    Drawn in float64 and cast, so a float32 and a float64 network from one seed agree.
    """
    return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)


class DenseLayer:
    """A linear layer ``z = x @ W.T + b`` with ``W ~ N(0, 1/sqrt(n_in))`` and ``b = 0``."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator | None = None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng()
        self.W = init_weight(rng, n_in, n_out, dtype)
        self.b = np.zeros(n_out, dtype=dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._backward: Callable | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        z, self._backward = linear_forward(x, self.W, self.b)
        return z

    def backward(self, dz: np.ndarray) -> np.ndarray:
        """Store ``dW``, ``db``; return ``dx``."""
        if self._backward is None:
            raise RuntimeError("backward() called before forward()")
        dx, self.dW, self.db = self._backward(dz)
        return dx


def _masked(relu_back: Callable, mask: np.ndarray) -> Callable:
    """The backward of ``relu(z) * mask``."""
    return lambda dh: relu_back(dh * mask)


class NN:
    """ReLU DenseLayers, then a linear output layer (logits; softmax lives in the loss).

    ``sizes = [n_in, h_1, ..., h_L, n_out]``. Parameters and gradients are listed layer by
    layer as ``[W1, b1, W2, b2, ...]``.
    """

    def __init__(self, sizes: Sequence[int], rng: np.random.Generator | None = None, dtype=np.float64):
        if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"sizes must be at least [n_in, n_out], all positive; got {list(sizes)}")
        rng = rng if rng is not None else np.random.default_rng()
        self.sizes = [int(s) for s in sizes]
        self.layers = [DenseLayer(a, b, rng, dtype) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        self._relu_backward: list[Callable] = []

    def forward(self, x: np.ndarray, masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Logits (m, n_out) for a batch x (m, n_in).

        ``masks``: one (m, h_l) array per hidden layer multiplying its ReLU output (dropout:
        0 or ``1 / (1 - p)``, see :func:`dropout_mask`).
        """
        self._relu_backward = []
        h = x
        for l, layer in enumerate(self.layers[:-1]):
            h, back = relu(layer.forward(h))
            if masks is not None:
                h = h * masks[l]
                back = _masked(back, masks[l])
            self._relu_backward.append(back)
        return self.layers[-1].forward(h)

    def backward(self, dlogits: np.ndarray) -> np.ndarray:
        """Backpropagate ``dl/dlogits``; stores every layer's gradients; returns ``dl/dx``."""
        dh = self.layers[-1].backward(dlogits)
        for layer, relu_back in zip(reversed(self.layers[:-1]), reversed(self._relu_backward)):
            dh = layer.backward(relu_back(dh))
        return dh

    def parameters(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def gradients(self) -> list[np.ndarray]:
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x).argmax(axis=1)


# ----------------------------------------------------------------------------- loss

def log_softmax(h: np.ndarray) -> np.ndarray:
    """``ln softmax(h)`` row by row, stable: ``h - max - ln sum exp(h - max)``."""
    shifted = h - h.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(h: np.ndarray) -> np.ndarray:
    """``softmax(h)`` row by row: ``exp(ln softmax(h))``, each row of (m, k) summing to 1."""
    return np.exp(log_softmax(h))


def l2_penalty(weights: Sequence[np.ndarray], alpha: float, m: int):
    """scikit-learn's L2 penalty on a batch of ``m`` rows, and its gradient.

    ``penalty = alpha / (2 m) * sum_l ||W_l||^2`` (weights only, never biases), added to the
    batch's mean loss; its gradient ``alpha / m * W_l`` is added to each ``dW_l``.
    Returns ``(penalty, [dpenalty/dW_l])``.
    """
    penalty = 0.5 * alpha * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in weights) / m
    return penalty, [(alpha / m) * W for W in weights]


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float64) -> np.ndarray:
    y = np.zeros((len(labels), num_classes), dtype=dtype)
    y[np.arange(len(labels)), labels] = 1
    return y


def softmax_cross_entropy(h: np.ndarray, y: np.ndarray, smoothing: float = 0.0, weights=None):
    """Mean cross-entropy of softmax(h) against ``y``, and its gradient ``(p - y)/m``.

    ``h``: logits (m, k). ``y``: integer labels (m,) or one-hot rows (m, k). With ``smoothing``
    e the targets are ``(1 - e) y + e / k`` (label smoothing, Szegedy et al. 2016). With
    ``weights`` w (m,), scikit-learn's weighted mean: ``loss = sum_i w_i l_i / sum w`` and
    ``dh_i = w_i (p_i - y_i) / sum w`` (a weight of 0 drops row i; integer weights repeat it).
    Returns ``(loss, dh)``, ``dh`` of h's shape and dtype.
    """
    m, k = h.shape
    if y.ndim == 1:
        y = one_hot(y, k, h.dtype)
    if smoothing:
        y = (1 - smoothing) * y + smoothing / k
    w = np.ones((m, 1)) if weights is None else np.asarray(weights, np.float64).reshape(m, 1)
    norm = w.sum()
    logp = log_softmax(h)
    loss = -(w * y * logp).sum() / norm
    dh = w * (np.exp(logp) - y) / norm
    return loss, dh.astype(h.dtype, copy=False)


def squared_error(out: np.ndarray, targets: np.ndarray, weights=None):
    """scikit-learn's ``MLPRegressor`` loss on an identity output: ``(loss, dout)`` with
    ``loss = 1/2 sum_i w_i ||out_i - t_i||^2 / (k sum w)`` (a mean over the k outputs) and
    ``dout_i = w_i (out_i - t_i) / sum w`` (scikit-learn steps along this, k times the loss's own
    gradient). ``weights`` None: every row weighs 1."""
    m, k = out.shape
    w = np.ones((m, 1)) if weights is None else np.asarray(weights, np.float64).reshape(m, 1)
    norm = w.sum()
    r = out - targets
    return 0.5 * (w * r * r).sum() / (k * norm), (w * r / norm).astype(out.dtype, copy=False)


# ----------------------------------------------------------------------------- checks

def try_nn(sizes: Sequence[int] = (784, 100, 10), m: int = 8, seed: int = 0) -> float:
    """Build a net, run forward, loss and backward on random data; print shapes and the loss."""
    rng = np.random.default_rng(seed)
    net = NN(sizes, rng)
    x = rng.random((m, sizes[0]))
    y = rng.integers(0, sizes[-1], m)
    logits = net.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    dx = net.backward(dlogits)
    print(f"x {x.shape} -> logits {logits.shape}; loss {loss:.6f}; dx {dx.shape}")
    for i, (p, g) in enumerate(zip(net.parameters(), net.gradients())):
        print(f"  param {i}: {p.shape}  grad {g.shape}")
    return float(loss)


@dataclass
class GradCheck:
    """One finite-difference check: which array, whether it passed, and its worst error."""

    name: str
    passed: bool
    max_rel_error: float


def _numeric_gradient(f: Callable[[], float], array: np.ndarray, step: float) -> np.ndarray:
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + step
        up = f()
        flat[i] = old - step
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * step)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max(|a| + |b|, 1e-12)``, elementwise."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


def test_cases(sizes: Sequence[int] = (6, 5, 4, 3), m: int = 5, seed: int = 0,
               step: float = 1e-4, tol: float = 1e-6, verbose: bool = False) -> list[GradCheck]:
    """Central finite differences in float64 for every parameter gradient and the input gradient.

    ``step`` 1e-4 keeps round-off (about 1e-16 / step) well below ``tol`` while the truncation
    error (about step^2) stays smaller still.

    Returns one :class:`GradCheck` per array (``W1``, ``b1``, ..., ``x``).
    """
    rng = np.random.default_rng(seed)
    net = NN(sizes, rng, dtype=np.float64)
    for layer in net.layers:  # non-zero biases so their gradients are exercised
        layer.b[:] = rng.normal(0, 0.1, layer.b.shape)
    x = rng.normal(size=(m, sizes[0]))
    y = rng.integers(0, sizes[-1], m)

    def loss() -> float:
        return softmax_cross_entropy(net.forward(x), y)[0]

    _, dlogits = softmax_cross_entropy(net.forward(x), y)
    dx = net.backward(dlogits)
    names = [f"{kind}{i + 1}" for i in range(len(net.layers)) for kind in ("W", "b")]
    arrays = list(zip(names, net.parameters(), [g.copy() for g in net.gradients()])) + [("x", x, dx)]
    results = []
    for name, array, analytic in arrays:
        numeric = _numeric_gradient(loss, array, step)
        err = relative_error(analytic, numeric)
        results.append(GradCheck(name, err < tol, err))
        if verbose:
            print(f"  {name:>4} {str(array.shape):>10}  max rel error {err:.2e}  "
                  f"{'ok' if err < tol else 'FAIL'}")
    return results


test_cases.__test__ = False  # a homework name, not a pytest test


# ----------------------------------------------------------------------------- training

class Adam:
    """Adam (Kingma & Ba, 2015, Algorithm 1), bias-corrected, updating arrays in place.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Defaults are the paper's: lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8.

    With ``weight_decay`` wd (AdamW, Loshchilov & Hutter 2019) each weight matrix, (the 2-D
    arrays), not the biases, is first multiplied by ``1 - lr wd``; with ``max_norm`` c > 0 the
    rows of every weight matrix but the last (a hidden unit's incoming weights) are then scaled
    down to norm c when longer.
    """

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0, max_norm: float = 0.0):
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay, self.max_norm = weight_decay, max_norm
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray], lr: float | None = None) -> None:
        """One update; ``lr`` overrides ``self.lr`` for this step (a schedule)."""
        lr = self.lr if lr is None else lr
        self.t += 1
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        last_w = max((i for i, p in enumerate(self.params) if p.ndim == 2), default=-1)
        for i, (p, g, m, v) in enumerate(zip(self.params, grads, self.m, self.v)):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            if p.ndim == 2:
                p *= 1 - lr * self.weight_decay
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
            if self.max_norm > 0 and p.ndim == 2 and i != last_w:
                norms = np.sqrt((p.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
                p *= np.where(norms > self.max_norm, self.max_norm / np.maximum(norms, 1e-300), 1.0).astype(p.dtype)


def ema_update(avg: list[np.ndarray], params: list[np.ndarray], decay: float, t: int) -> None:
    """``avg = a avg + (1 - a) params`` with ``a = min(decay, (1 + t) / (10 + t))`` after update t."""
    a = min(decay, (1 + t) / (10 + t))
    for e, p in zip(avg, params):
        e *= a
        e += (1 - a) * p


def lr_schedule(kind: str, lr: float, k: int, warmup: float, total: float, floor: float = 0.0) -> float:
    """Eta at step k (from 0): ``"constant"``; ``"cosine"`` (linear warm-up, then a half cosine
    from lr to ``lr floor`` at the last step, ``total - 1``); ``"onecycle"`` (a half cosine up from lr / 25 over
    the warm-up, then down to ``lr floor``)."""
    if kind == "constant":
        return lr
    if k < warmup:
        if kind == "cosine":
            return lr * min(1.0, (k + 1) / warmup)
        return lr / 25 + (lr - lr / 25) * (1 - np.cos(np.pi * k / warmup)) / 2
    progress = min(1.0, (k - warmup) / max(1.0, total - 1 - warmup))
    return lr * floor + (lr - lr * floor) * (1 + np.cos(np.pi * progress)) / 2


# ----------------------------------------------------------------------------- random numbers

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014) on uint64 arrays, wrapping mod 2^64."""
    z = np.asarray(z, np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, epoch: int, index: int, stream: int) -> np.ndarray:
    """The key of one example's random stream: SplitMix64 chained over the four numbers."""
    with np.errstate(over="ignore"):
        k = splitmix64(np.array([seed], np.uint64) + _GOLDEN)
        for part in (epoch, index, stream):
            k = splitmix64(k + np.uint64(part) * _GOLDEN)
    return k


def random_bits24(key: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """24 random bits per counter of a stream (uint64 in [0, 2^24))."""
    with np.errstate(over="ignore"):
        return splitmix64(key + np.asarray(counters, np.uint64) * _GOLDEN) >> np.uint64(40)


def random_uniform(key: np.ndarray, counters: np.ndarray) -> np.ndarray:
    return random_bits24(key, counters).astype(np.float64) / 2.0 ** 24


def dropout_mask(seed: int, epoch: int, idx: np.ndarray, stream: int, n: int, p: float) -> np.ndarray:
    """(len(idx), n) inverted-dropout multipliers: 0 with probability p, else ``1 / (1 - p)``."""
    threshold = int(p * 2 ** 24 + 0.5)
    rows = [random_bits24(stream_key(seed, epoch, int(i), stream), np.arange(n)) >= threshold for i in idx]
    return np.array(rows, np.float64).reshape(len(idx), n) / (1 - p)


# ----------------------------------------------------------------------------- augmentation

def affine_params(seed: int, epoch: int, index: int, rotate: float, scale: float, shear: float, shift: float):
    """``(A, t)``: the forward map in (x, y) = (column, row) and the shift, from the augment stream.

    ``A = s R(angle) [[1, shear], [0, 1]]``; angle uniform in +-rotate degrees, s in 1 +- scale,
    shear in +-shear, each shift in +-shift pixels.
    """
    u = 2 * random_uniform(stream_key(seed, epoch, index, 0), np.arange(5)) - 1
    angle, s, sh = np.deg2rad(rotate * u[0]), 1 + scale * u[1], shear * u[2]
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return s * R @ np.array([[1.0, sh], [0.0, 1.0]]), np.array([shift * u[3], shift * u[4]])


def elastic_displacement(seed: int, epoch: int, index: int, alpha: float, sigma: float, side: int = 28):
    """``(dx, dy)`` (side, side): noise in [-1, 1] on a K x K grid (K = 1 + round((side-1)/sigma)),
    smoothed by scipy's Gaussian (sigma in grid units, truncate 3, zero outside), times
    alpha / spacing, upsampled bilinearly corner to corner."""
    from scipy import ndimage
    K = int(min(side, max(2, 1 + round((side - 1) / sigma))))
    spacing = (side - 1) / (K - 1)
    noise = 2 * random_uniform(stream_key(seed, epoch, index, 0), 8 + np.arange(2 * K * K)) - 1
    grid = np.arange(side) / spacing
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    out = []
    for f in noise.reshape(2, K, K):
        smooth = ndimage.gaussian_filter(f, sigma / spacing, mode="constant", truncate=3.0) * (alpha / spacing)
        out.append(ndimage.map_coordinates(smooth, [rows, cols], order=1, mode="nearest"))
    return out[0], out[1]


def augment_image(image: np.ndarray, seed: int, epoch: int, index: int, rotate=0.0, scale=0.0, shear=0.0,
                  shift=0.0, alpha=0.0, sigma=4.0) -> np.ndarray:
    """One (side, side) image warped as the training gather warps it, in [0, 1] (float64).

    Output pixel p = (x, y) reads the image at ``A^-1 (p + d(p) - c - t) + c`` (c the centre, d the
    elastic displacement, zero without alpha), bilinearly, zero outside: ``scipy.ndimage``'s
    ``affine_transform`` (affine only) or ``map_coordinates``, ``order=1, mode="grid-constant"``.
    """
    from scipy import ndimage
    side = image.shape[0]
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    A, t = affine_params(seed, epoch, index, rotate, scale, shear, shift)
    Ainv = np.linalg.inv(A)
    c = (side - 1) / 2
    if alpha == 0:  # (row, col) order for scipy: swap the axes of A^-1
        M = Ainv[::-1, ::-1]
        offset = np.array([c, c]) - M @ (np.array([c, c]) + t[::-1])
        return ndimage.affine_transform(img, M, offset, order=1, mode="grid-constant")
    dx, dy = elastic_displacement(seed, epoch, index, alpha, sigma, side)
    ys, xs = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64), indexing="ij")
    px, py = xs + dx - c - t[0], ys + dy - c - t[1]
    sx, sy = Ainv[0, 0] * px + Ainv[0, 1] * py + c, Ainv[1, 0] * px + Ainv[1, 1] * py + c
    return ndimage.map_coordinates(img, [sy, sx], order=1, mode="grid-constant")


def transform_image(image: np.ndarray, seed: int, epoch: int, index: int, flip: float = 0.0, crop: int = 0,
                    erase: float = 0.0, stream: int = 1 << 20) -> np.ndarray:
    """One (side, side) image (float, already in [0, 1]) flipped, cropped and erased as the training
    gather does it (``fastmlp.engine.augment.transform_image``): a horizontal flip with chance
    ``flip``, a shift by whole pixels of at most ``crop`` with zeros shifted in, and with chance
    ``erase`` a zeroed rectangle of 2% to 40% of the image with aspect 0.3 to 1/0.3 (Zhong et al.
    2017; one try, skipped when it does not fit), from the example's own random numbers."""
    side = image.shape[0]
    u = random_uniform(stream_key(seed, epoch, index, stream), np.arange(8))
    out = np.array(image, dtype=np.float64)
    if flip > 0 and u[0] < flip:
        out = out[:, ::-1].copy()
    if crop > 0:
        dx, dy = int(np.floor(u[1] * (2 * crop + 1))) - crop, int(np.floor(u[2] * (2 * crop + 1))) - crop
        padded = np.pad(out, crop)
        out = padded[crop - dy:crop - dy + side, crop - dx:crop - dx + side].copy()
    if erase > 0 and u[3] < erase:
        area = (0.02 + 0.38 * u[4]) * side * side
        aspect = np.exp(np.log(0.3) + (np.log(1 / 0.3) - np.log(0.3)) * u[5])
        h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if h < side and w < side:
            top, left = int(np.floor(u[6] * (side - h + 1))), int(np.floor(u[7] * (side - w + 1)))
            out[top:top + h, left:left + w] = 0.0
    return out


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's mini-batches: a fresh permutation of ``range(n)`` cut into ``batch_size`` pieces.

    Every example appears exactly once per epoch. When ``batch_size`` does not divide ``n``
    the last batch is the smaller remainder (it is kept, not dropped, and its loss is its own
    mean).
    """
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def gather_batch(images: np.ndarray, idx: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Rows ``idx`` of the uint8 image matrix, scaled to [0, 1]: (len(idx), n_features)."""
    return images[idx].astype(dtype) / dtype(255)


def accuracy(net: NN, images: np.ndarray, labels: np.ndarray, dtype=np.float32, chunk: int = 2000) -> float:
    """Fraction of ``images`` whose argmax logit equals the label, in batches of ``chunk``."""
    correct = 0
    for i in range(0, len(images), chunk):
        x = gather_batch(images, np.arange(i, min(i + chunk, len(images))), dtype)
        correct += int((net.predict(x) == labels[i:i + chunk]).sum())
    return correct / len(images)


def train_reference(train_images: np.ndarray, train_labels: np.ndarray, hidden_sizes: Sequence[int] = (100,),
                    *, batch_size: int = 32, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                    eps: float = 1e-8, epochs: int = 1, seed: int = 0, dtype=np.float32,
                    num_classes: int = 10, on_epoch: Callable[[int, NN, float], None] | None = None,
                    alpha: float = 0.0) -> NN:
    """The plain training loop: seeded init, a fresh permutation per epoch, Adam per batch.

    ``alpha > 0`` adds scikit-learn's L2 penalty to every batch (:func:`l2_penalty`).

    The random stream is used in the order the engine uses it: first the weights, layer by
    layer, then one permutation per epoch. ``on_epoch(epoch, net, mean_loss)`` is called after
    each epoch.
    """
    rng = np.random.default_rng(seed)
    net = NN([train_images.shape[1], *hidden_sizes, num_classes], rng, dtype)
    opt = Adam(net.parameters(), lr, beta1, beta2, eps)
    for epoch in range(1, epochs + 1):
        total = 0.0
        for idx in epoch_batches(len(train_images), batch_size, rng):
            loss, dlogits = softmax_cross_entropy(net.forward(gather_batch(train_images, idx, dtype)),
                                                  train_labels[idx])
            net.backward(dlogits)
            if alpha > 0:
                penalty, dpen = l2_penalty([layer.W for layer in net.layers], alpha, len(idx))
                loss += penalty
                for layer, g in zip(net.layers, dpen):
                    layer.dW = layer.dW + g
            opt.step(net.gradients())
            total += float(loss) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, net, total / len(train_images))
    return net
