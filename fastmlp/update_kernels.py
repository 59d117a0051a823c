"""Numba kernels that update the parameters: Adam, AdamW with max-norm and weight averaging, eta schedules,
and scikit-learn's L2 penalty. Each is one pass over the flat float32 buffers (see :mod:`fastmlp.layout`),
called from :func:`fastmlp.step_kernels.train_steps` (and :class:`fastmlp.optim.Adam` for one step).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .layout import B_OFF, N_IN, N_OUT, W_OFF, weight_view

# Values of recipe[R_SCHEDULE]: eta as given to the call (per-epoch decay), cosine, one-cycle.
SCHED_CONSTANT, SCHED_COSINE, SCHED_ONECYCLE = 0, 1, 2


# ----------------------------------------------------------------------------- Adam

@njit(cache=True, error_model="numpy", inline="always")
def _adam_element(p, g, m, v, beta1, beta2, step, scale, eps, decay):
    # One element's Adam step: (p, m, v) after the gradient g; decay 1 (exact in float32) is plain Adam.
    mi = beta1 * m + (np.float32(1.0) - beta1) * g
    vi = beta2 * v + (np.float32(1.0) - beta2) * (g * g)
    return decay * p - step * mi / (np.sqrt(vi) * scale + eps), mi, vi


@njit(cache=True, error_model="numpy")
def _adam_block(params, grads, m, v, beta1, beta2, step, scale, eps, decay):
    # p <- decay p - step m / (sqrt(v) scale + eps), element by element (_adam_element).
    # Loops index from 0: with a start of unknown sign Numba keeps negative-index wraparound,
    # which stops LLVM from vectorizing (10x slower here).
    for i in range(params.shape[0]):
        params[i], m[i], v[i] = _adam_element(params[i], grads[i], m[i], v[i], beta1, beta2, step, scale, eps,
                                              decay)


@njit(cache=True, error_model="numpy")
def adam_factors(lr, beta1, beta2, eps, t):
    """The float32 constants of Adam step t: ``(step, scale, b1, b2, eps)`` with
    ``step = lr / (1 - b1^t)`` and ``scale = 1 / sqrt(1 - b2^t)`` (see :func:`adam_update`)."""
    return (np.float32(lr / (1.0 - beta1 ** t)), np.float32(1.0 / np.sqrt(1.0 - beta2 ** t)), np.float32(beta1),
            np.float32(beta2), np.float32(eps))


@njit(cache=True, error_model="numpy")
def adam_update(params, grads, m, v, lr, beta1, beta2, eps, t):
    """One Adam step (Kingma & Ba, bias-corrected) over flat float32 buffers, in place.

    For every i: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, computed as
    ``p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. ``t`` counts from 1.

    One serial, vectorized pass: on two cores a ``prange`` split measured slower, because
    Numba's worker threads and OpenBLAS's threads then compete for the same cores.
    """
    step, scale, b1, b2, e = adam_factors(lr, beta1, beta2, eps, t)
    _adam_block(params, grads, m, v, b1, b2, step, scale, e, np.float32(1.0))


@njit(cache=True, error_model="numpy")
def _adam_block2(params, g0, g1, m, v, beta1, beta2, step, scale, eps):
    # _adam_block of the gradient g0 + g1 (two shards' sums, added in this order), decay 1.
    for i in range(params.shape[0]):
        params[i], m[i], v[i] = _adam_element(params[i], g0[i] + g1[i], m[i], v[i], beta1, beta2, step, scale, eps,
                                              np.float32(1.0))


@njit(cache=True, error_model="numpy")
def _sum_block(acc, g):
    for i in range(acc.shape[0]):
        acc[i] += g[i]


# The flat buffers are cut into this many blocks for the parallel passes: a fixed number, so the
# blocks (and the results: the passes are element-wise) never depend on the thread count.
UPDATE_BLOCKS = 8


@njit(cache=True, error_model="numpy")
def adam_rows(params, grads, m, v, off, rows, cols, ld, factors, decay=1.0):
    """Adam (:func:`adam_update`, constants ``factors`` of :func:`adam_factors`; AdamW's weight factor
    ``decay``, 1 for plain Adam: :func:`adamw_factors`) on a block of the flat buffers: ``rows``
    rows of ``cols`` elements from ``off``, ``ld`` apart (a weight matrix's rows or a column range
    of them)."""
    step, scale, b1, b2, e = factors
    step, scale, b1, b2, e = np.float32(step), np.float32(scale), np.float32(b1), np.float32(b2), np.float32(e)
    for r in range(rows):
        lo = off + r * ld
        _adam_block(params[lo:lo + cols], grads[lo:lo + cols], m[lo:lo + cols], v[lo:lo + cols], b1, b2, step,
                    scale, e, np.float32(decay))


@njit(cache=True, error_model="numpy")
def ema_rows(ema, params, off, rows, cols, ld, a):
    """The weight average (:func:`adamw_update`) on a block laid out as in :func:`adam_rows`:
    ``ema = a ema + (1 - a) params``."""
    for r in range(rows):
        lo = off + r * ld
        _ema_block(ema[lo:lo + cols], params[lo:lo + cols], np.float32(a))


@njit(cache=True, error_model="numpy", parallel=True)
def adam_update_shards(params, shard_grads, n_shards, m, v, lr, beta1, beta2, eps, t):
    """:func:`adam_update` with the gradient ``sum_s shard_grads[s]`` over the first ``n_shards``
    rows of shard_grads (n_shards in {1, 2}; summed in order), on Numba's threads.

    The buffers are cut into UPDATE_BLOCKS blocks run in parallel; every element is computed
    as in :func:`adam_update`, so the thread count changes nothing.
    """
    step, scale, b1, b2, e = adam_factors(lr, beta1, beta2, eps, t)
    n = params.shape[0]
    for c in prange(UPDATE_BLOCKS):
        lo, hi = c * n // UPDATE_BLOCKS, (c + 1) * n // UPDATE_BLOCKS
        if n_shards == 1:
            _adam_block(params[lo:hi], shard_grads[0, lo:hi], m[lo:hi], v[lo:hi], b1, b2, step, scale, e,
                        np.float32(1.0))
        else:
            _adam_block2(params[lo:hi], shard_grads[0, lo:hi], shard_grads[1, lo:hi], m[lo:hi], v[lo:hi],
                         b1, b2, step, scale, e)


@njit(cache=True, error_model="numpy", parallel=True)
def sum_shards(shard_grads, n_shards):
    """``shard_grads[0] += shard_grads[1] + ...`` (in order) over the first ``n_shards`` rows, on
    Numba's threads in UPDATE_BLOCKS fixed blocks."""
    n = shard_grads.shape[1]
    for c in prange(UPDATE_BLOCKS):
        lo, hi = c * n // UPDATE_BLOCKS, (c + 1) * n // UPDATE_BLOCKS
        for s in range(1, n_shards):
            _sum_block(shard_grads[0, lo:hi], shard_grads[s, lo:hi])


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
def _ema_block(avg, params, a):
    b = np.float32(1.0) - a
    for i in range(params.shape[0]):
        avg[i] = a * avg[i] + b * params[i]


@njit(cache=True, error_model="numpy")
def adamw_factors(lr, weight_decay, ema_decay, t):
    """AdamW's weight factor ``1 - lr weight_decay`` and the average's weight
    ``a = min(ema_decay, (1 + t) / (10 + t))`` of step t, in float32 (see :func:`adamw_update`);
    ``a`` is 0 when ``ema_decay`` is (no average)."""
    return np.float32(1.0 - lr * weight_decay), np.float32(min(ema_decay, (1.0 + t) / (10.0 + t)))


@njit(cache=True, error_model="numpy")
def adamw_update(params, grads, m, v, ema, layout, lr, beta1, beta2, eps, t, weight_decay, max_norm, ema_decay):
    """:func:`adam_update` with decoupled weight decay, max-norm and weight averaging, layer by layer.

    AdamW (Loshchilov & Hutter 2019, as PyTorch's ``AdamW``): weights, not biases, are first
    multiplied by ``1 - lr weight_decay``. With ``max_norm > 0`` each hidden unit's incoming
    weight row is then scaled back to norm ``max_norm`` when longer (Srivastava et al. 2014).
    With ``ema_decay > 0``, ``ema = a ema + (1 - a) params`` after the update, with
    ``a = min(ema_decay, (1 + t) / (10 + t))`` (TensorFlow's ``num_updates`` warm-up).
    Each layer's weights and bias are visited once, while in cache.
    """
    step, scale, b1, b2, e = adam_factors(lr, beta1, beta2, eps, t)
    decay, a = adamw_factors(lr, weight_decay, ema_decay, t)
    L = layout.shape[0]
    for l in range(L):
        w0, b0, n_w, n_b = layout[l, W_OFF], layout[l, B_OFF], layout[l, N_IN] * layout[l, N_OUT], layout[l, N_OUT]
        _adam_block(params[w0:w0 + n_w], grads[w0:w0 + n_w], m[w0:w0 + n_w], v[w0:w0 + n_w],
                    b1, b2, step, scale, e, decay)
        if max_norm > 0 and l < L - 1:
            max_norm_rows(weight_view(params, layout, l), max_norm)
        _adam_block(params[b0:b0 + n_b], grads[b0:b0 + n_b], m[b0:b0 + n_b], v[b0:b0 + n_b],
                    b1, b2, step, scale, e, np.float32(1.0))
        if ema_decay > 0:
            _ema_block(ema[w0:b0 + n_b], params[w0:b0 + n_b], a)


@njit(cache=True, error_model="numpy")
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


