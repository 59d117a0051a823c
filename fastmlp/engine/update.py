"""Numba kernels that update the parameters: Adam, AdamW with max-norm and weight averaging, eta schedules,
and scikit-learn's L2 penalty, over blocks of the flat float32 buffers (see :mod:`fastmlp.engine.layout`).

Every operation is per element (Adam, decay, the average) or per hidden unit's weight row
(max-norm), so cutting the buffers into blocks, and running the blocks on any threads, changes
no bit. :mod:`fastmlp.engine.step` calls :func:`update_rows_block` (the row split: the gradient
is the sum of the shards' buffers) and :func:`update_columns_part` (the column split); the whole-
buffer :func:`adam_update` and :func:`adamw_update` are :class:`fastmlp.optim.Adam`'s single step.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel
from .layout import B_OFF, N_IN, N_OUT, W_OFF

# Values of the recipe's schedule: eta as given to the call (per-epoch decay), cosine, one-cycle.
SCHED_CONSTANT, SCHED_COSINE, SCHED_ONECYCLE = 0, 1, 2


# ----------------------------------------------------------------------------- Adam

@kernel
def adam_factors(lr, beta1, beta2, eps, t):
    """The float32 constants of Adam step t: ``(step, scale, b1, b2, eps)`` with
    ``step = lr / (1 - b1^t)`` and ``scale = 1 / sqrt(1 - b2^t)`` (see :func:`adam_update`)."""
    return (np.float32(lr / (1.0 - beta1 ** t)), np.float32(1.0 / np.sqrt(1.0 - beta2 ** t)), np.float32(beta1),
            np.float32(beta2), np.float32(eps))


@kernel
def adamw_factors(lr, weight_decay, ema_decay, t):
    """AdamW's weight factor ``1 - lr weight_decay`` and the average's weight
    ``a = min(ema_decay, (1 + t) / (10 + t))`` of step t, in float32 (see :func:`adamw_update`);
    ``a`` is 0 when ``ema_decay`` is (no average)."""
    return np.float32(1.0 - lr * weight_decay), np.float32(min(ema_decay, (1.0 + t) / (10.0 + t)))


@kernel(inline=True)
def _adam_block(params, grads, m, v, factors, decay):
    # p <- decay p - step m / (sqrt(v) scale + eps), element by element; decay 1 (exact in
    # float32) is plain Adam. Loops index from 0: with a start of unknown sign Numba keeps
    # negative-index wraparound, which stops LLVM from vectorizing.
    step, scale, beta1, beta2, eps = factors
    step, scale, beta1, beta2, eps = (np.float32(step), np.float32(scale), np.float32(beta1), np.float32(beta2),
                                      np.float32(eps))  # float32 also when called from Python (float64 there)
    one = np.float32(1.0)
    for i in range(params.shape[0]):
        g = grads[i]
        mi = beta1 * m[i] + (one - beta1) * g
        vi = beta2 * v[i] + (one - beta2) * (g * g)
        params[i] = decay * params[i] - step * mi / (np.sqrt(vi) * scale + eps)
        m[i] = mi
        v[i] = vi


@kernel
def adam_rows(params, grads, m, v, off, rows, cols, ld, factors, decay):
    """Adam (constants ``factors`` of :func:`adam_factors`; AdamW's weight factor ``decay``, 1 for
    plain Adam) on a block of the flat buffers: ``rows`` rows of ``cols`` elements from ``off``,
    ``ld`` apart (a weight matrix's rows, or a column range of them)."""
    for r in range(rows):
        lo = off + r * ld
        _adam_block(params[lo:lo + cols], grads[lo:lo + cols], m[lo:lo + cols], v[lo:lo + cols], factors,
                    np.float32(decay))


@kernel(inline=True)
def _ema_block(avg, params, a):
    b = np.float32(1.0) - a
    for i in range(params.shape[0]):
        avg[i] = a * avg[i] + b * params[i]


@kernel
def ema_rows(ema, params, off, rows, cols, ld, a):
    """The weight average on a block laid out as in :func:`adam_rows`: ``ema = a ema + (1 - a) params``."""
    for r in range(rows):
        lo = off + r * ld
        _ema_block(ema[lo:lo + cols], params[lo:lo + cols], np.float32(a))


@kernel
def max_norm_rows(W, c):
    """Scale every row of W (one unit's incoming weights) whose L2 norm exceeds c down to c."""
    for r in range(W.shape[0]):
        ss = 0.0
        for i in range(W.shape[1]):
            ss += np.float64(W[r, i]) * W[r, i]
        if ss > c * c:
            f = np.float32(c / np.sqrt(ss))
            for i in range(W.shape[1]):
                W[r, i] *= f


@kernel
def adam_update(params, grads, m, v, lr, beta1, beta2, eps, t):
    """One Adam step (Kingma & Ba, bias-corrected) over flat float32 buffers, in place.

    For every i: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, computed as
    ``p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. ``t`` counts from 1.
    """
    _adam_block(params, grads, m, v, adam_factors(lr, beta1, beta2, eps, t), np.float32(1.0))


@kernel
def adamw_update(params, grads, m, v, ema, layout, lr, beta1, beta2, eps, t, weight_decay, max_norm, ema_decay):
    """:func:`adam_update` with decoupled weight decay, max-norm and weight averaging, layer by layer.

    AdamW (Loshchilov & Hutter 2019, as PyTorch's ``AdamW``): weights, not biases, are first
    multiplied by ``1 - lr weight_decay``. With ``max_norm > 0`` each hidden unit's incoming
    weight row is then scaled back to norm ``max_norm`` when longer (Srivastava et al. 2014).
    With ``ema_decay > 0``, ``ema = a ema + (1 - a) params`` after the update, with
    ``a = min(ema_decay, (1 + t) / (10 + t))`` (TensorFlow's ``num_updates`` warm-up).
    """
    factors = adam_factors(lr, beta1, beta2, eps, t)
    decay, a = adamw_factors(lr, weight_decay, ema_decay, t)
    last = layout.shape[0] - 1
    for l in range(layout.shape[0]):
        update_layer_rows(params, grads, m, v, ema, layout, l, 0, layout[l, N_OUT], factors, decay,
                          max_norm if l < last else 0.0, a)


@kernel
def update_layer_rows(params, grads, m, v, ema, layout, l, r0, r1, factors, decay, max_norm, ema_a):
    """Layer l's weight rows r0..r1-1 and biases r0..r1-1: Adam (weights times ``decay`` first),
    the rows scaled back to norm ``max_norm`` when it is positive, then the average with weight
    ``ema_a`` when it is positive (either None: off, and not compiled)."""
    n_in = layout[l, N_IN]
    w = layout[l, W_OFF] + r0 * n_in
    b = layout[l, B_OFF] + r0
    adam_rows(params, grads, m, v, w, r1 - r0, n_in, n_in, factors, decay)
    if max_norm is not None and max_norm > 0:
        max_norm_rows(params[w:w + (r1 - r0) * n_in].reshape((r1 - r0, n_in)), max_norm)
    adam_rows(params, grads, m, v, b, 1, r1 - r0, 0, factors, 1.0)
    if ema_a is not None and ema_a > 0:
        ema_rows(ema, params, w, 1, (r1 - r0) * n_in, 0, ema_a)
        ema_rows(ema, params, b, 1, r1 - r0, 0, ema_a)


# ----------------------------------------------------------------------------- by parts of a step

@kernel(fastmath=True)
def _add_scaled_sumsq(p, g, coef):
    # fastmath lets LLVM split the sum of squares into vector lanes (the sum is only reported);
    # g += coef p is per element, rounded as without it.
    sq = 0.0
    for i in range(p.shape[0]):
        w = p[i]
        g[i] += coef * w
        sq += np.float64(w) * np.float64(w)
    return sq


@kernel
def l2_penalty_rows(params, grads, layout, l, r0, r1, coef):
    """Add ``coef * W`` to layer l's weight gradient rows r0..r1-1 (biases untouched); return the
    rows' ``sum W^2``. With ``coef = alpha / m`` this is the gradient of scikit-learn's penalty
    ``alpha / (2 m) * sum_l ||W_l||^2`` on a batch of m rows."""
    n_in = layout[l, N_IN]
    lo = layout[l, W_OFF] + r0 * n_in
    hi = layout[l, W_OFF] + r1 * n_in
    return _add_scaled_sumsq(params[lo:hi], grads[lo:hi], np.float32(coef))


@kernel
def sum_shard_rows(grads, shards, layout, l, r0, r1):
    """``grads[0] += grads[1] + ... + grads[shards - 1]`` (added in this order) on layer l's weight
    rows r0..r1-1 and biases r0..r1-1: the batch's gradient from its row shards' sums."""
    n_in = layout[l, N_IN]
    for lo, hi in ((layout[l, W_OFF] + r0 * n_in, layout[l, W_OFF] + r1 * n_in),
                   (layout[l, B_OFF] + r0, layout[l, B_OFF] + r1)):
        acc = grads[0, lo:hi]
        for s in range(1, shards):
            g = grads[s, lo:hi]
            for i in range(hi - lo):
                acc[i] += g[i]


@kernel
def update_rows_block(params, grads, shards, m, v, ema, layout, l, r0, r1, factors, decay, max_norm, ema_a, coef):
    """The row split's update of one block, layer l's weight rows r0..r1-1 and biases r0..r1-1: the
    L2 gradient ``coef * W`` added to shard 0's sums (when ``coef`` > 0), the ``shards`` buffers
    summed in order, then :func:`update_layer_rows`. Returns the rows' ``sum W^2`` (0 without
    the penalty)."""
    sq = l2_penalty_rows(params, grads[0], layout, l, r0, r1, coef) if coef > 0 else 0.0
    sum_shard_rows(grads, shards, layout, l, r0, r1)
    update_layer_rows(params, grads[0], m, v, ema, layout, l, r0, r1, factors, decay, max_norm, ema_a)
    return sq


@kernel
def update_columns_part(params, grads, m, v, ema, layout, l, i0, i1, j0, j1, factors, decay, ema_a, coef):
    """The last layer's weight columns i0..i1-1 (all its rows) and biases j0..j1-1: the L2 gradient
    (when ``coef`` > 0), Adam (weights times ``decay``), then the average (no max-norm: the output
    layer has none; ``ema_a`` None: no average). Returns the columns' ``sum W^2``."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    w = layout[l, W_OFF] + i0
    sq = 0.0
    if coef > 0:
        for r in range(n_out):
            lo = w + r * n_in
            sq += _add_scaled_sumsq(params[lo:lo + i1 - i0], grads[lo:lo + i1 - i0], np.float32(coef))
    adam_rows(params, grads, m, v, w, n_out, i1 - i0, n_in, factors, decay)
    b = layout[l, B_OFF] + j0
    adam_rows(params, grads, m, v, b, 1, j1 - j0, 0, factors, 1.0)
    if ema_a is not None and ema_a > 0:
        ema_rows(ema, params, w, n_out, i1 - i0, n_in, ema_a)
        ema_rows(ema, params, b, 1, j1 - j0, 0, ema_a)
    return sq


# ----------------------------------------------------------------------------- eta

@kernel
def lr_at_step(schedule, lr, k, warmup, total, floor):
    """Eta at step k (from 0) of ``total``: ``lr`` itself (SCHED_CONSTANT), or

    * SCHED_COSINE: linear warm-up ``lr min(1, (k + 1) / warmup)`` for k < warmup, then a half cosine
      from lr down to ``lr floor`` at the last step, ``total - 1`` (Loshchilov & Hutter 2017, no restarts);
    * SCHED_ONECYCLE: a half cosine up from ``lr / 25`` to lr over the warm-up, then down to
      ``lr floor`` (Smith & Topin 2019, PyTorch's ``OneCycleLR`` with ``anneal_strategy="cos"``,
      momentum not cycled).
    """
    if schedule == SCHED_CONSTANT:
        return lr
    low = lr * floor
    if k < warmup:
        if schedule == SCHED_COSINE:
            return lr * min(1.0, (k + 1) / warmup)
        start = lr / 25.0
        return start + (lr - start) * 0.5 * (1.0 - np.cos(np.pi * k / warmup))
    progress = min(1.0, (k - warmup) / max(1.0, total - 1 - warmup))
    return low + (lr - low) * 0.5 * (1.0 + np.cos(np.pi * progress))
