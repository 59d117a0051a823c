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
first m rows of each block, so a short last batch needs no new buffer (the column split of
:mod:`fastmlp.step_kernels` keeps hidden layers' blocks feature-major: (n_out, m)).

The training recipe's options (augmentation, dropout, label smoothing, weight decay, max-norm,
weight averaging, per-step schedules) ride in :func:`fastmlp.step_kernels.train_steps`'s ``recipe``
array (indices ``R_*``) and are checked once per batch or per layer, never per element: with every
option off a step runs the plain kernels, bit for bit. The pieces of a step take a row range
(``r0, r1``) so that :mod:`fastmlp.step_kernels` can run a batch as parallel row shards. The parameter updates (Adam, AdamW, schedules, the
L2 penalty) are in :mod:`fastmlp.update_kernels`, the buffer views in :mod:`fastmlp.layout`;
both are re-exported here. Random numbers come from
:mod:`fastmlp.augment`'s counter-based generator keyed by (seed, epoch, example index).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .augment import STREAM_AUGMENT, STREAM_DROPOUT, bits24, example_key, warp_image
from .layout import (B_OFF, N_IN, N_OUT, ROW_TILE, SHARDS, W_OFF, bias_view, block_view,  # noqa: F401
                     infer_shard_bounds, infer_shard_tiles, padded_rows, rows_view, shard_bounds, weight_view)
from .update_kernels import (SCHED_CONSTANT, SCHED_COSINE, SCHED_ONECYCLE, adam_update, adamw_update,  # noqa: F401
                             l2_penalty_grad, lr_at_step)

# Indices of the ``recipe`` array (float64) of ``step_kernels.train_steps``; all zero is the plain recipe.
(R_SCHEDULE, R_WARMUP, R_TOTAL, R_FLOOR, R_WEIGHT_DECAY, R_MAX_NORM, R_EMA, R_SMOOTHING, R_DROP_IN,
 R_DROP_HIDDEN, R_ALPHA) = range(11)
R_LEN = 11
# Values of recipe[R_SCHEDULE] (eta as given to the call, cosine, one-cycle): see update_kernels.


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


@njit(cache=True, error_model="numpy", inline="always")
def _drop_threshold(p):
    """Units whose 24 random bits fall below this are dropped (probability p, to 2^-24)."""
    return np.uint64(int(p * 16777216.0 + 0.5))


@njit(cache=True, error_model="numpy")
def gather_train(images, labels, idx, x, y, seed, epoch, aug, taps, scratch, p_in):
    """:func:`gather_batch`, each image warped (unless ``aug`` is empty) and its pixels dropped.

    Image ``idx[i]`` is warped by :func:`fastmlp.augment.warp_image` with its own key, then each
    pixel is zeroed with probability ``p_in`` and the rest multiplied by ``1 / (1 - p_in)``
    (inverted dropout): random numbers keyed by (seed, epoch, idx[i]).
    """
    scale = input_scale(images)
    n = images.shape[1]
    thr, keep = _drop_threshold(p_in), np.float32(1.0 / (1.0 - p_in))
    for i in range(idx.shape[0]):
        ex = idx[i]
        y[i] = labels[ex]
        xi = x[i]
        if aug.shape[0] > 0:
            warp_image(images[ex], scale, xi, example_key(seed, epoch, ex, STREAM_AUGMENT), aug, taps, scratch)
        else:
            row = images[ex]
            for j in range(n):
                xi[j] = np.float32(row[j]) * scale
        if p_in > 0:
            key = example_key(seed, epoch, ex, STREAM_DROPOUT)
            for j in range(n):
                xi[j] = np.float32(0.0) if bits24(key, j) < thr else xi[j] * keep


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
def linear_relu_dropout_forward(x, W, b, z, h, idx, seed, epoch, stream, p):
    """:func:`linear_relu_forward`, then inverted dropout on ``h`` in the same pass.

    Unit j of row i is dropped with probability p (random numbers keyed by (seed, epoch,
    idx[i]) on ``stream``): ``h = 0`` and ``z = -inf``, which the backward's ``z >= 0`` test
    reads as the mask, so no mask buffer is needed. Kept units: ``h = max(z, 0) / (1 - p)``.
    """
    np.dot(x, W.T, z)
    m, n = z.shape
    thr, keep = _drop_threshold(p), np.float32(1.0 / (1.0 - p))
    for i in range(m):
        key = example_key(seed, epoch, idx[i], stream)
        for j in range(n):
            v = z[i, j] + b[j]
            if bits24(key, j) < thr:
                z[i, j] = -np.inf
                h[i, j] = 0.0
            else:
                z[i, j] = v
                h[i, j] = v * keep if v > 0 else np.float32(0.0)


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
    return smoothed_cross_entropy(logits, labels, dlogits, 0.0)


@njit(cache=True, error_model="numpy")
def smoothed_cross_entropy(logits, labels, dlogits, smoothing):
    """:func:`softmax_cross_entropy` against label-smoothed targets ``q = (1 - e) y + e / k``.

    ``loss = -(1/m) sum_i sum_j q_ij ln p_ij``, ``dlogits = (p - q) / m`` (Szegedy et al. 2016);
    ``smoothing = 0`` computes exactly what the plain loss computes.
    """
    m = logits.shape[0]
    total, correct = cross_entropy_rows(logits, labels, dlogits, smoothing, m)
    return total / m, correct


@njit(cache=True, error_model="numpy")
def cross_entropy_rows(logits, labels, dlogits, smoothing, batch_rows):
    """The rows' part of :func:`smoothed_cross_entropy` for a batch of ``batch_rows`` rows (these
    rows a shard of it): ``(sum of the rows' losses, correct)``, ``dlogits = (p - q) / batch_rows``."""
    m, k = logits.shape
    e_k = np.float32(smoothing / k)
    hit = np.float32(1.0 - smoothing)
    inv_m = np.float32(1.0 / batch_rows)
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
        inv_s = np.float32(1.0) / s
        if smoothing > 0:
            sum_logp = 0.0
            for j in range(k):
                sum_logp += logits[i, j] - mx - lse
                dlogits[i, j] = dlogits[i, j] * inv_s * inv_m - e_k * inv_m
            total -= hit * (logits[i, y] - mx - lse) + e_k * sum_logp
            dlogits[i, y] -= hit * inv_m
        else:
            total -= logits[i, y] - mx - lse
            for j in range(k):
                dlogits[i, j] = dlogits[i, j] * inv_s * inv_m
            dlogits[i, y] -= inv_m
        if arg == y:
            correct += 1
    return total, correct


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
def relu_dropout_backward_bias_grad(d, z, db, keep):
    """:func:`relu_backward_bias_grad` after dropout: ``d = d * keep`` where ``z >= 0``, else 0.

    Dropped units carry ``z = -inf`` (see :func:`linear_relu_dropout_forward`); ``keep`` is
    ``1 / (1 - p)``.
    """
    m, n = d.shape
    for j in range(n):
        db[j] = 0.0
    for i in range(m):
        for j in range(n):
            v = d[i, j] * keep if z[i, j] >= 0 else np.float32(0.0)
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


# ----------------------------------------------------------------------------- whole steps

_NO_ROWS = np.zeros(0, np.int64)  # no row list / forward_rows' dropout keys when there is no dropout


@njit(cache=True, error_model="numpy")
def forward(params, layout, x, z, h, act_off, m):
    """Forward pass of the whole network for the first m rows of ``x``; returns the logits view."""
    return forward_rows(params, layout, x, z, h, act_off, 0, m, _NO_ROWS, 0, 0, 0.0)


@njit(cache=True, error_model="numpy")
def layer_rows(params, layout, l, x, z, h, act_off, r0, r1, idx, seed, epoch, p):
    """Layer l's forward pass on rows r0..r1-1 of the workspace's blocks: ReLU (and dropout p,
    stream ``STREAM_DROPOUT + l + 1``, keyed by the rows' example indices ``idx``) unless it is the
    last layer. Its input is ``x`` for the first layer, the previous layer's ``h`` block after."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    inp = rows_view(x, 0, n_in, r0, r1) if l == 0 else rows_view(h, act_off[l - 1], n_in, r0, r1)
    zl = rows_view(z, act_off[l], n_out, r0, r1)
    W, b = weight_view(params, layout, l), bias_view(params, layout, l)
    if l == layout.shape[0] - 1:
        linear_forward(inp, W, b, zl)
    elif p > 0:
        linear_relu_dropout_forward(inp, W, b, zl, rows_view(h, act_off[l], n_out, r0, r1), idx, seed, epoch,
                                    STREAM_DROPOUT + l + 1, p)
    else:
        linear_relu_forward(inp, W, b, zl, rows_view(h, act_off[l], n_out, r0, r1))


@njit(cache=True, error_model="numpy")
def forward_rows(params, layout, x, z, h, act_off, r0, r1, idx, seed, epoch, p):
    """:func:`forward` of rows r0..r1-1 of the workspace's blocks only (a shard of the batch), with
    dropout p on every hidden layer (:func:`layer_rows`; p = 0: none); returns those rows' logits."""
    L = layout.shape[0]
    for l in range(L):
        layer_rows(params, layout, l, x, z, h, act_off, r0, r1, idx, seed, epoch, p)
    return rows_view(z, act_off[L - 1], layout[L - 1, N_OUT], r0, r1)


@njit(cache=True, error_model="numpy")
def backward(params, grads, layout, x, z, h, d, act_off, m):
    """Backward pass, given ``dl/dlogits`` in the last layer's ``d`` block; fills ``grads``.

    No input gradient is computed for the first layer.
    """
    backward_rows(params, grads, layout, x, z, h, d, act_off, 0, m, 0.0)


@njit(cache=True, error_model="numpy")
def backward_rows(params, grads, layout, x, z, h, d, act_off, r0, r1, p):
    """:func:`backward` of rows r0..r1-1 only, after :func:`forward_rows` with dropout p (0: none):
    ``grads`` receives that shard's gradient sums."""
    keep = np.float32(1.0 / (1.0 - p))
    L = layout.shape[0]
    for l in range(L - 1, -1, -1):
        n_out = layout[l, N_OUT]
        dl = rows_view(d, act_off[l], n_out, r0, r1)
        if l == L - 1:
            bias_grad(dl, bias_view(grads, layout, l))
        elif p > 0:
            relu_dropout_backward_bias_grad(dl, rows_view(z, act_off[l], n_out, r0, r1), bias_view(grads, layout, l),
                                            keep)
        else:
            relu_backward_bias_grad(dl, rows_view(z, act_off[l], n_out, r0, r1), bias_view(grads, layout, l))
        n_in = layout[l, N_IN]
        inp = rows_view(x, 0, n_in, r0, r1) if l == 0 else rows_view(h, act_off[l - 1], n_in, r0, r1)
        linear_backward_weights(dl, inp, weight_view(grads, layout, l))
        if l > 0:
            linear_backward_input(dl, weight_view(params, layout, l), rows_view(d, act_off[l - 1], n_in, r0, r1))


@njit(cache=True, error_model="numpy", inline="always")
def chunk_rows(capacity):
    """The rows of each inference chunk for a workspace of ``capacity`` rows: whole ROW_TILEs."""
    return capacity if capacity < ROW_TILE else capacity // ROW_TILE * ROW_TILE


@njit(cache=True, error_model="numpy")
def _gather_padded(images, labels, rows, lo, r0, r1, x, y):
    # Workspace rows r0..r1-1 get images[rows[lo + i]] and their labels (or images[lo + i] when rows
    # is empty) while i < the chunk's real rows, zeros after (the padding of the last tile).
    real = rows.shape[0] if rows.shape[0] > 0 else images.shape[0]
    hi = max(r0, min(r1, real - lo))
    if rows.shape[0] > 0:
        gather_batch(images, labels, rows[lo + r0:lo + hi], x[r0:hi], y[r0:hi])
    else:
        gather_range(images, lo + r0, x[r0:hi])
    x[hi:r1] = 0.0


@njit(cache=True, error_model="numpy", parallel=True)
def forward_chunk(params, layout, images, labels, rows, lo, B, x, y, z, h, act_off):
    """Logits (m, k) of the chunk of m = min(B, remaining) examples from position ``lo``: rows
    ``rows[lo:]`` of ``images`` (all rows from ``lo`` when ``rows`` is empty), their labels into
    ``y`` (when ``labels`` is not empty). Padded to whole ROW_TILEs; each layer runs as row shards
    of whole tiles on Numba's threads (see :data:`fastmlp.layout.ROW_TILE`), so that every row's
    logits are the same wherever it sits."""
    n_in = layout[0, N_IN]
    total = rows.shape[0] if rows.shape[0] > 0 else images.shape[0]
    m = min(B, total - lo)
    mp = padded_rows(m, x.shape[0] // n_in)
    x2 = block_view(x, 0, mp, n_in)
    L = layout.shape[0]
    for l in range(-1, L):  # -1: the gather
        tiles = infer_shard_tiles(mp, layout[max(l, 0), N_OUT])
        rows_per = ROW_TILE * tiles
        for s in prange(-(-mp // rows_per)):
            r0, r1 = infer_shard_bounds(mp, tiles, s)
            if l < 0:
                _gather_padded(images, labels, rows, lo, r0, r1, x2, y)
            else:
                layer_rows(params, layout, l, x, z, h, act_off, r0, r1, _NO_ROWS, 0, 0, 0.0)
    return block_view(z, act_off[L - 1], m, layout[L - 1, N_OUT])


@njit(cache=True, error_model="numpy")
def evaluate_rows(params, layout, images, labels, rows, x, y, z, h, act_off):
    """``(sum of losses, correct)`` over ``images[rows]``, in chunks of the workspace's batch size."""
    B = chunk_rows(y.shape[0])
    total = 0.0
    correct = 0
    for lo in range(0, rows.shape[0], B):
        logits = forward_chunk(params, layout, images, labels, rows, lo, B, x, y, z, h, act_off)
        s, c = cross_entropy_eval(logits, y[:logits.shape[0]])
        total += s
        correct += c
    return total, correct


@njit(cache=True, error_model="numpy")
def predict_rows(params, layout, images, x, z, h, act_off, out):
    """``out[i] = argmax logits(images[i])`` for every row of ``images`` (uint8 or float32 (N, n_in))."""
    B = chunk_rows(x.shape[0] // layout[0, N_IN])
    for lo in range(0, images.shape[0], B):
        logits = forward_range(params, layout, images, lo, B, x, z, h, act_off)
        for i in range(logits.shape[0]):
            out[lo + i] = _row_max_argmax(logits, i)[1]


@njit(cache=True, error_model="numpy")
def forward_range(params, layout, images, lo, B, x, z, h, act_off):
    """Logits of rows ``lo .. min(lo + B, N) - 1`` of ``images`` (N, n_in): :func:`forward_chunk`."""
    no_labels = np.empty(0, np.int32)  # (writable: a global array is read-only to Numba)
    return forward_chunk(params, layout, images, no_labels, _NO_ROWS, lo, B, x, no_labels, z, h, act_off)


@njit(cache=True, error_model="numpy")
def proba_rows(params, layout, images, x, z, h, act_off, out, log):
    """Class probabilities of every row of ``images``: ``out[i] = softmax(logits(images[i]))``.

    images (N, n_in) uint8 or float32, out (N, k) float64. With ``log`` true, ``out`` gets
    ``ln softmax = l - max - ln sum exp(l - max)`` instead (finite for any finite logits).
    The softmax is taken in float64 from the float32 logits, so each row sums to 1 within
    float64 rounding. Rows go through the network in chunks of the workspace's batch size.
    """
    B = chunk_rows(x.shape[0] // layout[0, N_IN])
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

    In chunks of the workspace's batch size B = len(x) / n_in (whole ROW_TILEs of it).
    """
    B = chunk_rows(x.shape[0] // layout[0, N_IN])
    for lo in range(0, images.shape[0], B):
        logits = forward_range(params, layout, images, lo, B, x, z, h, act_off)
        out[lo:lo + logits.shape[0]] = logits
