"""Numba kernels: the fast path. Every function is ``@njit(cache=True, error_model="numpy")`` in nopython mode.

Shapes follow the homework (see :mod:`fastmlp.reference`): a batch ``x`` is (m, n_in), a weight
``W`` is (n_out, n_in), ``z = x @ W.T + b``. GEMMs go to BLAS through ``np.dot`` with an output
buffer; everything between two GEMMs is one fused pass.

The network lives in flat float32 buffers (see :mod:`fastmlp.model`)::

    params = [W1 | b1 | W2 | b2 | ... ]      grads, adam_m, adam_v: the same layout

described by ``layout``, an int64 array with one row per layer: ``(n_in, n_out, w_off, b_off)``.
Activations live in a workspace preallocated for a batch size B: ``x`` (B * n_0 floats), ``y``
(B labels) and, per layer,
blocks of B * n_out floats in ``z`` (pre-activations), ``h`` (ReLU outputs) and ``d`` (gradients
with respect to the layer's output), at offsets ``act_off[l]``. A batch of m <= B rows uses the
first m rows of each block, so a short last batch needs no new buffer.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

# Column indices of the ``layout`` array.
N_IN, N_OUT, W_OFF, B_OFF = 0, 1, 2, 3


# ----------------------------------------------------------------------------- views

@njit(cache=True, error_model="numpy")
def weight_view(buf, layout, l):
    """Layer ``l``'s weight inside a flat buffer, (n_out, n_in), no copy."""
    n_in, n_out, off = layout[l, N_IN], layout[l, N_OUT], layout[l, W_OFF]
    return buf[off:off + n_out * n_in].reshape((n_out, n_in))


@njit(cache=True, error_model="numpy")
def bias_view(buf, layout, l):
    """Layer ``l``'s bias inside a flat buffer, (n_out,), no copy."""
    off = layout[l, B_OFF]
    return buf[off:off + layout[l, N_OUT]]


@njit(cache=True, error_model="numpy")
def block_view(buf, off, m, n):
    """Rows 0..m-1 of an (B, n) activation block starting at ``off``: (m, n), no copy."""
    return buf[off:off + m * n].reshape((m, n))


# ----------------------------------------------------------------------------- batch

def input_scale(images):
    """The factor a gathered row is multiplied by: 1/255 for uint8 images, 1 for float inputs."""
    return np.float32(1.0 / 255.0) if images.dtype == np.uint8 else np.float32(1.0)


@overload(input_scale, jit_options={"cache": True})
def _input_scale_nb(images):
    # Chosen from the array's type when a kernel compiles: one signature per input dtype.
    if images.dtype == types.uint8:
        return lambda images: np.float32(1.0 / 255.0)
    return lambda images: np.float32(1.0)


@njit(cache=True, error_model="numpy")
def gather_batch(images, labels, idx, x, y):
    """``x[i] = images[idx[i]] * s`` as float32 and ``y[i] = labels[idx[i]]``, for i < len(idx).

    images (N, n_in), uint8 (``s = 1/255``: pixels to [0, 1]) or float32 (``s = 1``: features
    as given); labels (N,), idx (m,), x (m, n_in) float32, y (m,) int32.
    """
    scale = input_scale(images)
    n = images.shape[1]
    for i in range(idx.shape[0]):
        row = images[idx[i]]
        y[i] = labels[idx[i]]
        for j in range(n):
            x[i, j] = np.float32(row[j]) * scale


@njit(cache=True, error_model="numpy")
def gather_range(images, start, x):
    """``x[i] = images[start + i] * s`` as float32, for i < x.shape[0] (``s`` as in :func:`gather_batch`)."""
    scale = input_scale(images)
    n = images.shape[1]
    for i in range(x.shape[0]):
        row = images[start + i]
        for j in range(n):
            x[i, j] = np.float32(row[j]) * scale


# ----------------------------------------------------------------------------- forward

@njit(cache=True, error_model="numpy")
def linear_relu_forward(x, W, b, z, h):
    """``z = x @ W.T + b`` (BLAS, then the bias), ``h = max(z, 0)`` in the same pass.

    x (m, n_in), W (n_out, n_in), b (n_out,), z and h (m, n_out).
    """
    np.dot(x, W.T, z)
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            v = z[i, j] + b[j]
            z[i, j] = v
            h[i, j] = v if v > 0 else np.float32(0.0)


@njit(cache=True, error_model="numpy")
def linear_forward(x, W, b, z):
    """``z = x @ W.T + b``: x (m, n_in), W (n_out, n_in), b (n_out,), z (m, n_out)."""
    np.dot(x, W.T, z)
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] += b[j]


@njit(cache=True, error_model="numpy", inline="always")
def _row_max_argmax(logits, i):
    """``(max, first index of the max)`` of row i of a (m, k) array."""
    mx = logits[i, 0]
    arg = 0
    for j in range(1, logits.shape[1]):
        if logits[i, j] > mx:
            mx = logits[i, j]
            arg = j
    return mx, arg


@njit(cache=True, error_model="numpy")
def softmax_cross_entropy(logits, labels, dlogits):
    """Mean cross-entropy of softmax(logits) and its gradient, in one pass over each row.

    logits (m, k) float32, labels (m,) integers. Writes ``dlogits = (p - y) / m`` (m, k) and
    returns ``(loss, correct)``: ``loss = -(1/m) sum_i ln p[i, labels[i]]`` with
    ``ln p = z - max - ln sum exp(z - max)``, accumulated in float64, and the number of rows
    whose argmax (first maximum) is the label.
    """
    m, k = logits.shape
    inv_m = np.float32(1.0 / m)
    total = 0.0
    correct = 0
    for i in range(m):
        mx, arg = _row_max_argmax(logits, i)
        s = np.float32(0.0)
        for j in range(k):
            e = np.exp(logits[i, j] - mx)
            dlogits[i, j] = e
            s += e
        lse = np.log(s)
        y = labels[i]
        total -= logits[i, y] - mx - lse
        inv_s = np.float32(1.0) / s
        for j in range(k):
            dlogits[i, j] = dlogits[i, j] * inv_s * inv_m
        dlogits[i, y] -= inv_m
        if arg == y:
            correct += 1
    return total / m, correct


@njit(cache=True, error_model="numpy")
def cross_entropy_eval(logits, labels):
    """``(sum of -ln p[i, labels[i]], correct)`` over the rows, no gradient (evaluation)."""
    m, k = logits.shape
    total = 0.0
    correct = 0
    for i in range(m):
        mx, arg = _row_max_argmax(logits, i)
        s = 0.0
        for j in range(k):
            s += np.exp(np.float64(logits[i, j] - mx))
        total -= logits[i, labels[i]] - mx - np.log(s)
        if arg == labels[i]:
            correct += 1
    return total, correct


# ----------------------------------------------------------------------------- backward

@njit(cache=True, error_model="numpy")
def relu_backward_bias_grad(d, z, db):
    """In place ``d *= (z >= 0)`` (the homework's mask), and ``db = d.sum(0)``, in one pass.

    d and z (m, n), db (n,). On entry d is dl/dh; on exit it is dl/dz.
    """
    m, n = d.shape
    for j in range(n):
        db[j] = 0.0
    for i in range(m):
        for j in range(n):
            v = d[i, j] if z[i, j] >= 0 else np.float32(0.0)
            d[i, j] = v
            db[j] += v


@njit(cache=True, error_model="numpy")
def bias_grad(dz, db):
    """``db = dz.sum(0)``: dz (m, n), db (n,)."""
    m, n = dz.shape
    for j in range(n):
        db[j] = 0.0
    for i in range(m):
        for j in range(n):
            db[j] += dz[i, j]


@njit(cache=True, error_model="numpy")
def linear_backward_weights(dz, x, dW):
    """``dW = dz.T @ x`` through BLAS: dz (m, n_out), x (m, n_in), dW (n_out, n_in)."""
    np.dot(dz.T, x, dW)


@njit(cache=True, error_model="numpy")
def linear_backward_input(dz, W, dx):
    """``dx = dz @ W`` through BLAS: dz (m, n_out), W (n_out, n_in), dx (m, n_in)."""
    np.dot(dz, W, dx)


# ----------------------------------------------------------------------------- Adam

@njit(cache=True, error_model="numpy")
def _adam_block(params, grads, m, v, beta1, beta2, step, scale, eps):
    # Loops index from 0: with a start of unknown sign Numba keeps negative-index wraparound,
    # which stops LLVM from vectorizing (10x slower here).
    b1c = np.float32(1.0) - beta1
    b2c = np.float32(1.0) - beta2
    for i in range(params.shape[0]):
        g = grads[i]
        mi = beta1 * m[i] + b1c * g
        vi = beta2 * v[i] + b2c * (g * g)
        m[i] = mi
        v[i] = vi
        params[i] -= step * mi / (np.sqrt(vi) * scale + eps)


@njit(cache=True, error_model="numpy")
def adam_update(params, grads, m, v, lr, beta1, beta2, eps, t):
    """One Adam step (Kingma & Ba, bias-corrected) over flat float32 buffers, in place.

    For every i: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, computed as
    ``p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. ``t`` counts from 1.

    One serial, vectorized pass: on two cores a ``prange`` split measured slower, because
    Numba's worker threads and OpenBLAS's threads then compete for the same cores.
    """
    step = np.float32(lr / (1.0 - beta1 ** t))
    scale = np.float32(1.0 / np.sqrt(1.0 - beta2 ** t))
    _adam_block(params, grads, m, v, np.float32(beta1), np.float32(beta2), step, scale, np.float32(eps))


# ----------------------------------------------------------------------------- L2 penalty

@njit(cache=True, error_model="numpy", fastmath=True)
def _add_scaled_sumsq(p, g, coef):
    # fastmath lets LLVM split the sum of squares into vector lanes (a strict left-to-right
    # float sum cannot be vectorized and would cost as much as Adam's pass).
    sq = 0.0
    for i in range(p.shape[0]):
        w = p[i]
        g[i] += coef * w
        sq += np.float64(w) * np.float64(w)
    return sq


@njit(cache=True, error_model="numpy")
def l2_penalty_grad(params, grads, layout, coef):
    """Add ``coef * W`` to every weight gradient (biases untouched); return ``sum ||W||^2``.

    params, grads: flat float32 buffers (see ``layout``). With ``coef = alpha / m`` this is the
    gradient of scikit-learn's penalty ``alpha / (2 m) * sum_l ||W_l||^2`` on a batch of m
    rows; the returned squares (float64 sum) give the penalty itself. One pass over the weights.
    """
    sq = 0.0
    for l in range(layout.shape[0]):
        lo = layout[l, W_OFF]
        hi = lo + layout[l, N_IN] * layout[l, N_OUT]
        sq += _add_scaled_sumsq(params[lo:hi], grads[lo:hi], coef)
    return sq


# ----------------------------------------------------------------------------- whole steps

@njit(cache=True, error_model="numpy")
def forward(params, layout, x, z, h, act_off, m):
    """Forward pass of the whole network for the first m rows of ``x``; returns the logits view."""
    L = layout.shape[0]
    inp = block_view(x, 0, m, layout[0, N_IN])
    for l in range(L):
        n_out = layout[l, N_OUT]
        zl = block_view(z, act_off[l], m, n_out)
        if l < L - 1:
            hl = block_view(h, act_off[l], m, n_out)
            linear_relu_forward(inp, weight_view(params, layout, l), bias_view(params, layout, l), zl, hl)
            inp = hl
        else:
            linear_forward(inp, weight_view(params, layout, l), bias_view(params, layout, l), zl)
    return block_view(z, act_off[L - 1], m, layout[L - 1, N_OUT])


@njit(cache=True, error_model="numpy")
def backward(params, grads, layout, x, z, h, d, act_off, m):
    """Backward pass, given ``dl/dlogits`` in the last layer's ``d`` block; fills ``grads``.

    No input gradient is computed for the first layer.
    """
    L = layout.shape[0]
    for l in range(L - 1, -1, -1):
        n_out = layout[l, N_OUT]
        dl = block_view(d, act_off[l], m, n_out)
        if l == L - 1:
            bias_grad(dl, bias_view(grads, layout, l))
        else:
            relu_backward_bias_grad(dl, block_view(z, act_off[l], m, n_out), bias_view(grads, layout, l))
        inp = block_view(x, 0, m, layout[0, N_IN]) if l == 0 else block_view(h, act_off[l - 1], m, layout[l, N_IN])
        linear_backward_weights(dl, inp, weight_view(grads, layout, l))
        if l > 0:
            linear_backward_input(dl, weight_view(params, layout, l),
                                  block_view(d, act_off[l - 1], m, layout[l, N_IN]))


@njit(cache=True, error_model="numpy")
def train_steps(params, grads, adam_m, adam_v, layout, images, labels, order, first, n_steps, batch_size,
                x, y, z, h, d, act_off, lr, beta1, beta2, eps, t0, losses, alpha=0.0):
    """Run ``n_steps`` train steps over mini-batches of ``order`` (a permutation of example indices).

    Step s uses ``order[(first + s) * batch_size : ... + batch_size]`` (the last batch may be
    shorter): gather, forward, loss, backward, Adam with step count ``t0 + s + 1``.
    ``losses[s]`` receives the step's mean loss. With ``alpha > 0`` the batch of m rows also
    carries scikit-learn's L2 penalty: ``alpha / (2 m) * sum ||W||^2`` is added to its loss
    and ``alpha / m * W`` to each weight gradient (:func:`l2_penalty_grad`). Returns the number of correctly classified
    examples over all the steps. Stops early, leaving ``losses`` NaN from there, when a loss is
    not finite.
    """
    L = layout.shape[0]
    n_classes = layout[L - 1, N_OUT]
    correct = 0
    for s in range(n_steps):
        lo = (first + s) * batch_size
        hi = min(lo + batch_size, order.shape[0])
        m = hi - lo
        gather_batch(images, labels, order[lo:hi], block_view(x, 0, m, layout[0, N_IN]), y[:m])
        logits = forward(params, layout, x, z, h, act_off, m)
        dlogits = block_view(d, act_off[L - 1], m, n_classes)
        loss, c = softmax_cross_entropy(logits, y[:m], dlogits)
        losses[s] = loss
        if not np.isfinite(loss):
            for r in range(s + 1, n_steps):
                losses[r] = np.nan
            return correct
        correct += c
        backward(params, grads, layout, x, z, h, d, act_off, m)
        if alpha > 0.0:
            losses[s] += 0.5 * alpha * l2_penalty_grad(params, grads, layout, np.float32(alpha / m)) / m
        adam_update(params, grads, adam_m, adam_v, lr, beta1, beta2, eps, t0 + s + 1)
    return correct


@njit(cache=True, error_model="numpy")
def evaluate_rows(params, layout, images, labels, rows, x, y, z, h, act_off):
    """``(sum of losses, correct)`` over ``images[rows]``, in chunks of the workspace's batch size."""
    B = y.shape[0]
    total = 0.0
    correct = 0
    for lo in range(0, rows.shape[0], B):
        hi = min(lo + B, rows.shape[0])
        m = hi - lo
        gather_batch(images, labels, rows[lo:hi], block_view(x, 0, m, layout[0, N_IN]), y[:m])
        logits = forward(params, layout, x, z, h, act_off, m)
        s, c = cross_entropy_eval(logits, y[:m])
        total += s
        correct += c
    return total, correct


@njit(cache=True, error_model="numpy")
def predict_rows(params, layout, images, x, z, h, act_off, out):
    """``out[i] = argmax logits(images[i])`` for every row of ``images`` (uint8 or float32 (N, n_in))."""
    B = x.shape[0] // layout[0, N_IN]
    for lo in range(0, images.shape[0], B):
        logits = forward_range(params, layout, images, lo, B, x, z, h, act_off)
        for i in range(logits.shape[0]):
            out[lo + i] = _row_max_argmax(logits, i)[1]


@njit(cache=True, error_model="numpy")
def forward_range(params, layout, images, lo, B, x, z, h, act_off):
    """Logits of rows ``lo .. min(lo + B, N) - 1`` of ``images`` (N, n_in): gather, then :func:`forward`."""
    hi = min(lo + B, images.shape[0])
    gather_range(images, lo, block_view(x, 0, hi - lo, layout[0, N_IN]))
    return forward(params, layout, x, z, h, act_off, hi - lo)


@njit(cache=True, error_model="numpy")
def proba_rows(params, layout, images, x, z, h, act_off, out, log):
    """Class probabilities of every row of ``images``: ``out[i] = softmax(logits(images[i]))``.

    images (N, n_in) uint8 or float32, out (N, k) float64. With ``log`` true, ``out`` gets
    ``ln softmax = l - max - ln sum exp(l - max)`` instead (finite for any finite logits).
    The softmax is taken in float64 from the float32 logits, so each row sums to 1 within
    float64 rounding. Rows go through the network in chunks of the workspace's batch size.
    """
    B = x.shape[0] // layout[0, N_IN]
    k = out.shape[1]
    for lo in range(0, images.shape[0], B):
        logits = forward_range(params, layout, images, lo, B, x, z, h, act_off)
        for i in range(logits.shape[0]):
            mx = np.float64(_row_max_argmax(logits, i)[0])
            s = 0.0
            for j in range(k):
                e = np.exp(np.float64(logits[i, j]) - mx)
                out[lo + i, j] = e
                s += e
            if log:
                lse = np.log(s)
                for j in range(k):
                    out[lo + i, j] = np.float64(logits[i, j]) - mx - lse
            else:
                inv = 1.0 / s
                for j in range(k):
                    out[lo + i, j] *= inv


@njit(cache=True, error_model="numpy")
def logits_rows(params, layout, images, x, z, h, act_off, out):
    """``out[i] = logits(images[i])`` for every row of ``images`` (N, n_in) uint8 or float32; out (N, n_L).

    In chunks of the workspace's batch size B = len(x) / n_in.
    """
    B = x.shape[0] // layout[0, N_IN]
    for lo in range(0, images.shape[0], B):
        logits = forward_range(params, layout, images, lo, B, x, z, h, act_off)
        out[lo:lo + logits.shape[0]] = logits
