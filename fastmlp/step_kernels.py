"""The training step on Numba's threads, in one of two splits of the work fixed by the shape; every phase
runs in parallel.

**Row shards** (small layers). A batch of m rows is cut into ``n = min(S, m)`` shards, S =
``shard_grads.shape[0]`` (the Trainer uses :data:`fastmlp.layout.SHARDS`): shard s holds rows
``s m // n .. (s + 1) m // n - 1``. Each shard gathers, runs forward, loss and backward on its rows
alone, with single-threaded BLAS, into its own gradient buffer ``shard_grads[s]`` (float32 (S, P),
the layout of ``params``); the update then reads ``g = shard_grads[0] + shard_grads[1] + ...``
(summed in that order) while it runs Adam. One parallel region computes the whole gradient.

**Column split** (wide layers, :func:`fastmlp.layout.column_split`). Every GEMM is cut between
the S parts by units, on multiples of :data:`fastmlp.layout.COLUMN_TILE`, each with all the
batch's rows: a hidden layer's forward pass by its outputs, ``z^T[J] = W[J] @ x^T + b[J]``, then
ReLU; the backward pass by the units below a layer, ``dx^T[I] = W[:, I]^T @ dz^T``, then the layer
below's ReLU mask and bias gradient on those units and its weight gradient's rows,
``dW'[I] = dz'^T[I] @ x'``. Hidden layers' activations are stored feature-major (a unit's m
values contiguous), so every part reads and writes whole rows. No part's result needs another's,
so there is one gradient buffer (``shard_grads[0]``) and nothing to sum; the last layer with its
loss runs as row shards. The S = 2 threads claim a phase's parts from opposite ends
(:mod:`fastmlp.claims`): each takes its own part unless the other finished first and took it,
so a thread that starts a phase late holds the other up less. (Smaller blocks, a large one at
each end and two small between, measured 1-3% slower at 784-1024-1024-10 / 128, each block
packing its product's shared operand again, with the slowest calls faster in two runs of four.)
Adam then runs by the same parts, each thread on the parameters whose gradient it computed
(:func:`column_update`). It costs a parallel region per phase (2 L for L layers, and one for the
update) and runs every GEMM on all rows, which is where single-threaded BLAS is fastest:
measured faster than row shards for wide layers, slower for narrow ones. Where the BLAS has
small-matrix kernels, a part's products go in blocks of units sized for them (``small``;
:func:`fastmlp.blas.gemm_blocks`).

Nothing either split computes depends on which thread runs a shard or a part, nor on how many
threads there are: the history of a run is the same on one thread as on two, bit for bit. The
split is a property of the shape (it decides the rounding), never of the machine.

Why not multi-threaded BLAS: at the shapes of MLP training (a batch of 32 to 128 rows) OpenBLAS's
threads spend much of each call waking up and waiting for each other, and the kernels between the
GEMMs (bias, ReLU, loss, Adam) run on one core.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .augment import STREAM_DROPOUT, bits24, example_key
from .blas import gemm, gemm_blocks
from .claims import claim, reset
from .kernels import (R_ALPHA, R_DROP_HIDDEN, R_DROP_IN, R_EMA, R_FLOOR, R_MAX_NORM, R_SCHEDULE, R_SMOOTHING,
                      R_TOTAL, R_WARMUP, R_WEIGHT_DECAY, _drop_threshold, backward_rows, bias_grad,
                      cross_entropy_rows, forward_rows, gather_batch, gather_train, layer_rows)
from .layout import (B_OFF, N_IN, N_OUT, SHARDS, W_OFF,  # noqa: F401  (the Trainer's)
                     block_view, column_split, rows_view, shard_bounds, split_bounds, weight_view)
from .update_kernels import (adam_factors, adam_rows, adam_update_shards, adamw_factors, adamw_update, ema_rows,
                             l2_penalty_grad, lr_at_step, max_norm_rows, sum_shards)


@njit(cache=True, error_model="numpy")
def gather_shard(images, labels, idx, r0, r1, x, y, n_in, aug, taps, scratch, seed, epoch, p_in):
    """Rows r0..r1-1 of the batch ``idx`` into the workspace's ``x`` and ``y`` (augmented and with
    input dropout when asked: :func:`fastmlp.kernels.gather_train`)."""
    ids = idx[r0:r1]
    xs = rows_view(x, 0, n_in, r0, r1)
    if aug.shape[0] == 0 and p_in == 0:
        gather_batch(images, labels, ids, xs, y[r0:r1])
    else:
        gather_train(images, labels, ids, xs, y[r0:r1], seed, epoch, aug, taps, scratch, p_in)


@njit(cache=True, error_model="numpy")
def shard_step(params, g, layout, images, labels, idx, m, r0, r1, x, y, z, h, d, act_off, aug, taps, scratch,
               seed, epoch, p_in, p_hid, smoothing):
    """Rows r0..r1-1 of a batch of m (``idx`` the batch's example indices): gather, forward, loss
    and, when the loss is finite, backward into ``g`` (this shard's gradient of the batch's mean
    loss). Returns ``(sum of the rows' losses, correct)``."""
    gather_shard(images, labels, idx, r0, r1, x, y, layout[0, N_IN], aug, taps, scratch, seed, epoch, p_in)
    logits = forward_rows(params, layout, x, z, h, act_off, r0, r1, idx[r0:r1], seed, epoch, p_hid)
    L = layout.shape[0]
    k = layout[L - 1, N_OUT]
    total, correct = cross_entropy_rows(logits, y[r0:r1], rows_view(d, act_off[L - 1], k, r0, r1), smoothing, m)
    if np.isfinite(total):
        backward_rows(params, g, layout, x, z, h, d, act_off, r0, r1, p_hid)
    return total, correct


@njit(cache=True, error_model="numpy", parallel=True)
def shard_steps(params, shard_grads, n_shards, layout, images, labels, idx, x, y, z, h, d, act_off, aug, taps,
                scratch, seed, epoch, p_in, p_hid, smoothing, out):
    """:func:`shard_step` for shards 0..n_shards-1 of the batch ``idx``, on Numba's threads;
    ``out[0, s]`` and ``out[1, s]`` receive shard s's loss sum and correct count."""
    m = idx.shape[0]
    for s in prange(n_shards):
        r0, r1 = shard_bounds(m, n_shards, s)
        total, correct = shard_step(params, shard_grads[s], layout, images, labels, idx, m, r0, r1, x, y, z, h, d,
                                    act_off, aug, taps, scratch[s], seed, epoch, p_in, p_hid, smoothing)
        out[0, s] = total
        out[1, s] = correct


# ----------------------------------------------------------------------------- column split
# A hidden layer's blocks (z, h, d) are feature-major here: unit j's m values at ``off + j m``
# (the (m, n) block's transpose, same size). ``x`` and the last layer's blocks stay row-major.

@njit(cache=True, error_model="numpy")
def layer_columns(params, layout, l, x, z, h, act_off, m, j0, j1, idx, seed, epoch, p, small):
    """Hidden layer l's forward pass for its units j0..j1-1 and all m rows, feature-major:
    ``z^T[J] = W[J] @ inp^T + b[J]`` (|J|, m) and ``h^T[J] = max(z^T[J], 0)``, with dropout p as
    :func:`fastmlp.kernels.linear_relu_dropout_forward` (the same random numbers: stream
    ``STREAM_DROPOUT + l + 1``, keyed by ``idx`` and the unit). inp is ``x`` (row-major) for the
    first layer, ``h^T`` of the layer below after.

    The product lands in the units' own rows, so bias and ReLU run along contiguous rows (writing
    row-major ``z[:, J]`` instead needs a transposing pass, or a product measured up to 12% slower).
    ``small`` (:func:`fastmlp.blas.small_gemm_limit`, 0 for none) cuts the product into blocks of units
    that BLAS's small-matrix kernels take (:func:`fastmlp.blas.gemm_blocks`); likewise below."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    zo = act_off[l]
    w = layout[l, W_OFF] + j0 * n_in
    if l == 0:
        gemm_blocks(small, False, True, j1 - j0, m, n_in, params, w, n_in, x, 0, n_in, z, zo + j0 * m, m, 0.0)
    else:
        gemm_blocks(small, False, False, j1 - j0, m, n_in, params, w, n_in, h, act_off[l - 1], m, z, zo + j0 * m, m,
                    0.0)
    b = params[layout[l, B_OFF]:layout[l, B_OFF] + n_out]
    if p > 0:
        thr, keep = _drop_threshold(p), np.float32(1.0 / (1.0 - p))
        for i in range(m):
            key = example_key(seed, epoch, idx[i], STREAM_DROPOUT + l + 1)
            for j in range(j0, j1):
                v = z[zo + j * m + i] + b[j]
                if bits24(key, j) < thr:
                    z[zo + j * m + i] = -np.inf
                    h[zo + j * m + i] = 0.0
                else:
                    z[zo + j * m + i] = v
                    h[zo + j * m + i] = v * keep if v > 0 else np.float32(0.0)
        return
    for j in range(j0, j1):
        zr, hr, bj = z[zo + j * m:zo + (j + 1) * m], h[zo + j * m:zo + (j + 1) * m], b[j]
        for i in range(m):
            v = zr[i] + bj
            zr[i] = v
            hr[i] = v if v > 0 else np.float32(0.0)


@njit(cache=True, error_model="numpy")
def output_rows(params, layout, h, z, act_off, m, r0, r1):
    """Rows r0..r1-1 of the last layer's logits (row-major, k wide) from the feature-major ``h^T``
    of the layer below: ``z[r] = h[r] @ W.T + b``."""
    L = layout.shape[0]
    n_in, k = layout[L - 1, N_IN], layout[L - 1, N_OUT]
    zo = act_off[L - 1]
    gemm(True, True, r1 - r0, k, n_in, h, act_off[L - 2] + r0, m, params, layout[L - 1, W_OFF], n_in, z,
         zo + r0 * k, k, 0.0)
    b = params[layout[L - 1, B_OFF]:layout[L - 1, B_OFF] + k]
    for i in range(r0, r1):
        zr = z[zo + i * k:zo + (i + 1) * k]
        for j in range(k):
            zr[j] += b[j]


@njit(cache=True, error_model="numpy")
def weight_grad_rows(grads, layout, l, x, h, d, act_off, m, j0, j1, small):
    """Rows j0..j1-1 of hidden layer l's weight gradient, given its feature-major ``d`` rows j0..j1-1
    (dl/dz^T): ``dW[J] = dz^T[J] @ inp`` (inp ``x``, or the feature-major ``h^T`` of the layer below).
    Each part writes whole rows of dW (measured faster than cutting dW by columns)."""
    n_in = layout[l, N_IN]
    dz, out = act_off[l] + j0 * m, layout[l, W_OFF] + j0 * n_in
    if l == 0:
        gemm_blocks(small, False, False, j1 - j0, n_in, m, d, dz, m, x, 0, n_in, grads, out, n_in, 0.0)
    else:  # in one product: OpenBLAS's small kernels for this orientation ran at 35-69 GFLOP/s (8-32 rows)
        gemm(False, True, j1 - j0, n_in, m, d, dz, m, h, act_off[l - 1], m, grads, out, n_in, 0.0)


@njit(cache=True, error_model="numpy")
def relu_mask_units(grads, layout, l, z, d, act_off, m, i0, i1, p):
    """Hidden layer l's ReLU mask (after dropout p) on its feature-major ``d`` rows i0..i1-1 (dl/dh^T in,
    dl/dz^T out: zero where z < 0, scaled by 1 / (1 - p) elsewhere) and its bias gradient on those
    units, each the sum of its row in eight interleaved partial sums (so that the loop vectorises)."""
    o = act_off[l]
    db = grads[layout[l, B_OFF]:layout[l, B_OFF] + layout[l, N_OUT]]
    keep = np.float32(1.0 / (1.0 - p)) if p > 0 else np.float32(1.0)
    m8 = m - m % 8
    for j in range(i0, i1):
        dr, zr = d[o + j * m:o + (j + 1) * m], z[o + j * m:o + (j + 1) * m]
        for i in range(m):
            dr[i] = dr[i] * keep if zr[i] >= 0 else np.float32(0.0)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
        for i in range(0, m8, 8):
            s0 += dr[i]
            s1 += dr[i + 1]
            s2 += dr[i + 2]
            s3 += dr[i + 3]
            s4 += dr[i + 4]
            s5 += dr[i + 5]
            s6 += dr[i + 6]
            s7 += dr[i + 7]
        total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        for i in range(m8, m):
            total += dr[i]
        db[j] = total


@njit(cache=True, error_model="numpy")
def input_grad_columns(params, grads, layout, l, z, d, act_off, m, i0, i1, p, small):
    """Units i0..i1-1 of the gradient below layer l (l >= 1), given layer l's complete ``d`` block:
    ``dh^T[I] = W[:, I]^T @ dz^T``, then layer l - 1's mask and bias gradient on those units
    (:func:`relu_mask_units`). Layer l's dz is the last layer's row-major block when l is the
    last layer, a feature-major block otherwise; layer l - 1's ``d`` rows I hold dl/dz^T after."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    w, below = layout[l, W_OFF] + i0, act_off[l - 1] + i0 * m
    if l == layout.shape[0] - 1:
        gemm_blocks(small, True, True, i1 - i0, m, n_out, params, w, n_in, d, act_off[l], n_out, d, below, m, 0.0)
    else:
        gemm_blocks(small, True, False, i1 - i0, m, n_out, params, w, n_in, d, act_off[l], m, d, below, m, 0.0)
    relu_mask_units(grads, layout, l - 1, z, d, act_off, m, i0, i1, p)


@njit(cache=True, error_model="numpy")
def output_weight_grad_columns(grads, layout, x, h, d, act_off, m, i0, i1):
    """Columns i0..i1-1 of the last layer's weight gradient, ``dW[:, I] = dz^T @ inp[:, I]``, from its
    row-major ``d`` block and its input (``h^T`` of the layer below, feature-major; ``x`` when it is the
    only layer)."""
    L = layout.shape[0]
    n_in, k = layout[L - 1, N_IN], layout[L - 1, N_OUT]
    out = layout[L - 1, W_OFF] + i0
    if L == 1:
        gemm(True, False, k, i1 - i0, m, d, act_off[0], k, x, i0, n_in, grads, out, n_in, 0.0)
    else:
        gemm(True, True, k, i1 - i0, m, d, act_off[L - 1], k, h, act_off[L - 2] + i0 * m, m, grads, out, n_in,
             0.0)


@njit(cache=True, error_model="numpy")
def update_columns(params, grads, adam_m, adam_v, layout, l, i0, i1, s, parts, factors):
    """Adam on layer l's weight columns i0..i1-1 (all its rows) and on part s of its biases."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    adam_rows(params, grads, adam_m, adam_v, layout[l, W_OFF] + i0, n_out, i1 - i0, n_in, factors)
    j0, j1 = split_bounds(n_out, parts, s)
    adam_rows(params, grads, adam_m, adam_v, layout[l, B_OFF] + j0, 1, j1 - j0, 0, factors)


@njit(cache=True, error_model="numpy")
def update_rows(params, grads, adam_m, adam_v, layout, l, j0, j1, factors):
    """Adam on layer l's weight rows j0..j1-1 and biases j0..j1-1."""
    n_in = layout[l, N_IN]
    adam_rows(params, grads, adam_m, adam_v, layout[l, W_OFF] + j0 * n_in, j1 - j0, n_in, n_in, factors)
    adam_rows(params, grads, adam_m, adam_v, layout[l, B_OFF] + j0, 1, j1 - j0, 0, factors)


@njit(cache=True, error_model="numpy", parallel=True)
def column_step(params, grads, layout, images, labels, idx, x, y, z, h, d, act_off, aug, taps, scratch, seed,
                epoch, p_in, p_hid, smoothing, out, adam_m, adam_v, factors, fuse, small, counters):
    """The gradient of the batch ``idx``'s mean loss into ``grads``, in the column split (see the module).

    ``out`` (2, S) float64 receives each row shard's loss sum and correct count (zeros for shards
    beyond the batch's rows); the backward pass is skipped when the loss is not finite. With
    ``fuse``, plain Adam (moments ``adam_m``, ``adam_v``; constants ``factors`` of
    :func:`~fastmlp.update_kernels.adam_factors`) updates each part of the weights in the backward
    pass, as soon as nothing later in the step reads it: layer l's weight columns I right after
    the part reads them for the gradient below (its gradient is complete by then), the first
    layer's rows I right after the part computes their gradient. Element by element it is the
    same update as after the step. ``small`` is the products' block limit (:func:`layer_columns`).

    Each phase's S parts (S = ``out.shape[1]``: the gather's rows as the row shards,
    :func:`fastmlp.layout.shard_bounds`; units by :func:`fastmlp.layout.split_bounds`) are
    claimed, thread t from end ``t % 2`` (:mod:`fastmlp.claims`), with ``counters`` (int64, at
    least 2 L slots for L layers: slot 0 the gather, 1 + l layer l's forward pass, L + l the
    gradient below layer l); ``scratch`` has a row per part.
    """
    m = idx.shape[0]
    parts = out.shape[1]
    n_rows = min(parts, m)
    L = layout.shape[0]
    n_in = layout[0, N_IN]
    if counters.shape[0] < 2 * L:
        raise ValueError("column_step: counters needs 2 slots per layer")
    reset(counters)
    for t in prange(parts):
        while True:
            b = claim(counters, 0, t % 2, n_rows)
            if b < 0:
                break
            r0, r1 = shard_bounds(m, n_rows, b)
            gather_shard(images, labels, idx, r0, r1, x, y, n_in, aug, taps, scratch[t], seed, epoch, p_in)
    for l in range(L - 1):
        for t in prange(parts):
            while True:
                b = claim(counters, 1 + l, t % 2, parts)
                if b < 0:
                    break
                j0, j1 = split_bounds(layout[l, N_OUT], parts, b)
                layer_columns(params, layout, l, x, z, h, act_off, m, j0, j1, idx, seed, epoch, p_hid, small)
    k = layout[L - 1, N_OUT]
    for s in prange(parts):
        out[0, s] = 0.0
        out[1, s] = 0.0
        if s < n_rows:
            r0, r1 = shard_bounds(m, n_rows, s)
            if L == 1:
                layer_rows(params, layout, 0, x, z, h, act_off, r0, r1, idx[r0:r1], seed, epoch, 0.0)
            else:
                output_rows(params, layout, h, z, act_off, m, r0, r1)
            total, correct = cross_entropy_rows(rows_view(z, act_off[L - 1], k, r0, r1), y[r0:r1],
                                                rows_view(d, act_off[L - 1], k, r0, r1), smoothing, m)
            out[0, s] = total
            out[1, s] = correct
    total = 0.0
    for s in range(n_rows):
        total += out[0, s]
    if not np.isfinite(total):
        return
    bias_grad(block_view(d, act_off[L - 1], m, k), grads[layout[L - 1, B_OFF]:layout[L - 1, B_OFF] + k])
    # Region l: the gradient below layer l by units (the last layer's weight gradient by the same
    # columns); the part that completes units I of layer l - 1 goes on to that layer's weight-gradient
    # rows I, with no other part's help.
    lowest = 1 if L > 1 else 0
    for l in range(L - 1, lowest - 1, -1):
        r = L + l
        for t in prange(parts):
            while True:
                b = claim(counters, r, t % 2, parts)
                if b < 0:
                    break
                i0, i1 = split_bounds(layout[l, N_IN], parts, b)
                if l == L - 1:
                    output_weight_grad_columns(grads, layout, x, h, d, act_off, m, i0, i1)
                if l > 0:
                    input_grad_columns(params, grads, layout, l, z, d, act_off, m, i0, i1, p_hid, small)
                if fuse:
                    update_columns(params, grads, adam_m, adam_v, layout, l, i0, i1, b, parts, factors)
                if l > 0:
                    weight_grad_rows(grads, layout, l - 1, x, h, d, act_off, m, i0, i1, small)
                    if fuse and l == 1:
                        update_rows(params, grads, adam_m, adam_v, layout, 0, i0, i1, factors)


@njit(cache=True, error_model="numpy", parallel=True)
def column_update(params, grads, adam_m, adam_v, ema, layout, parts, factors, decay, max_norm, ema_a):
    """Adam after a column-split step, each part of the parameters on the thread of the part of the
    step that computed its gradient (for hidden layers, also the part that reads it in the forward
    pass), so that it is updated in that core's cache.

    Part t (t < ``parts``, on prange's iteration t) holds hidden layer l's weight rows and biases
    J = ``split_bounds(n_out, parts, t)`` and the last layer's weight columns I =
    ``split_bounds(n_in, parts, t)`` with its biases ``split_bounds(k, parts, t)``. Each element
    gets :func:`fastmlp.update_kernels.adamw_update`'s update: Adam (constants ``factors`` of
    :func:`~fastmlp.update_kernels.adam_factors`), weights multiplied by ``decay`` (1 for plain
    Adam; :func:`~fastmlp.update_kernels.adamw_factors`), hidden units' rows scaled back to norm
    ``max_norm`` when it is positive, then the average ``ema`` with weight ``ema_a`` when it is
    positive. Every operation is per element or per hidden unit's row, so the bits are those of
    the whole-buffer pass.
    """
    L = layout.shape[0]
    for t in prange(parts):
        for l in range(L):
            n_in, n_out, w, b = layout[l, N_IN], layout[l, N_OUT], layout[l, W_OFF], layout[l, B_OFF]
            if l < L - 1:
                j0, j1 = split_bounds(n_out, parts, t)
                off, rows, cols = w + j0 * n_in, j1 - j0, n_in
            else:
                i0, i1 = split_bounds(n_in, parts, t)
                j0, j1 = split_bounds(n_out, parts, t)
                off, rows, cols = w + i0, n_out, i1 - i0
            adam_rows(params, grads, adam_m, adam_v, off, rows, cols, n_in, factors, decay)
            if max_norm > 0 and l < L - 1:
                max_norm_rows(weight_view(params, layout, l)[j0:j1], max_norm)
            adam_rows(params, grads, adam_m, adam_v, b + j0, 1, j1 - j0, 0, factors)
            if ema_a > 0:
                ema_rows(ema, params, off, rows, cols, n_in, ema_a)
                ema_rows(ema, params, b + j0, 1, j1 - j0, 0, ema_a)


@njit(cache=True, error_model="numpy")
def train_steps(params, shard_grads, adam_m, adam_v, ema, layout, images, labels, order, first, n_steps,
                batch_size, x, y, z, h, d, act_off, lr, beta1, beta2, eps, t0, losses, recipe, aug, taps, scratch,
                shard_out, seed, epoch, columns, small, counters):
    """Run ``n_steps`` train steps over mini-batches of ``order`` (a permutation of example indices).

    Step s uses ``order[(first + s) * batch_size : ... + batch_size]`` (the last batch may be
    shorter): gather, forward, loss, backward (as row shards, or in the column split when
    ``columns``: see the module), Adam with step count ``t = t0 + s + 1`` (plain Adam for one hidden
    layer in the column split runs inside its backward pass: :func:`column_step`; otherwise the column
    split updates in :func:`column_update`). ``losses[s]``
    receives the step's mean loss. Returns the number of correctly classified examples over all
    the steps. Stops early, leaving ``losses`` NaN from there, when a loss is not finite (with no
    update from that step).

    ``shard_grads`` (S, P) and ``scratch`` (S, augmentation scratch) hold one row per shard
    (``shard_grads`` may have a single row for the column split, which uses ``shard_grads[0]``
    alone), ``shard_out`` (2, S) float64 the shards' loss sums and counts. ``recipe`` (float64, indices
    ``R_*``) holds the options, all 0 for the plain recipe: eta at step t is
    ``lr_at_step(recipe[R_SCHEDULE], lr, t - 1, warmup, total, floor)``; dropout on the input and
    hidden layers; label smoothing; scikit-learn's L2 penalty ``recipe[R_ALPHA]``: a batch of m
    rows adds ``alpha / (2 m) * sum ||W||^2`` to its loss and ``alpha / m * W`` to each weight
    gradient (:func:`~fastmlp.update_kernels.l2_penalty_grad`); weight decay, max-norm and the
    average ``ema`` (:func:`~fastmlp.update_kernels.adamw_update`; ``ema`` may be empty when
    ``recipe[R_EMA]`` is 0). ``aug`` (empty: no augmentation) and ``taps`` are
    :func:`fastmlp.augment.warp_image`'s; ``seed`` and ``epoch`` key the random numbers. ``small``
    cuts the column split's products into blocks for BLAS's small-matrix kernels
    (:func:`fastmlp.blas.small_gemm_limit`; 0 for none): a property of the process, like the split.
    ``counters`` (int64, 2 L slots) are the column split's claim counters (:func:`column_step`).
    """
    schedule, p_in, p_hid = int(recipe[R_SCHEDULE]), recipe[R_DROP_IN], recipe[R_DROP_HIDDEN]
    wd, max_norm, ema_decay = recipe[R_WEIGHT_DECAY], recipe[R_MAX_NORM], recipe[R_EMA]
    alpha, smoothing = recipe[R_ALPHA], recipe[R_SMOOTHING]
    plain_adam = wd == 0 and max_norm == 0 and ema_decay == 0
    # Plain Adam inside the column split's backward pass: measured 4-11% faster for one hidden
    # layer ([100] and [256] at 32 rows, [100] at 64) than a pass over the flat buffers; for two
    # ([1024, 1024] at 128) 4% slower than column_update on a quiet machine and 17% slower in its
    # slow spells (updating the middle layer by columns, as the backward pass reads it, is a strided
    # walk: 330 us against 180 us by rows). The same bits.
    fused = columns and plain_adam and alpha == 0 and layout.shape[0] == 2
    correct = 0
    for s in range(n_steps):
        lo = (first + s) * batch_size
        hi = min(lo + batch_size, order.shape[0])
        m = hi - lo
        n_shards = min(shard_out.shape[1], m)  # row shards of the gather and the loss, in either split
        t = t0 + s + 1
        lr_t = lr_at_step(schedule, lr, t - 1, recipe[R_WARMUP], recipe[R_TOTAL], recipe[R_FLOOR])
        if columns:
            column_step(params, shard_grads[0], layout, images, labels, order[lo:hi], x, y, z, h, d, act_off, aug,
                        taps, scratch, seed, epoch, p_in, p_hid, smoothing, shard_out, adam_m, adam_v,
                        adam_factors(lr_t, beta1, beta2, eps, t), fused, small, counters)
        else:
            shard_steps(params, shard_grads, n_shards, layout, images, labels, order[lo:hi], x, y, z, h, d,
                        act_off, aug, taps, scratch, seed, epoch, p_in, p_hid, smoothing, shard_out)
        grad_parts = 1 if columns else n_shards
        total, c = 0.0, 0
        for q in range(n_shards):
            total += shard_out[0, q]
            c += int(shard_out[1, q])
        loss = total / m
        losses[s] = loss
        if not np.isfinite(loss):
            for r in range(s + 1, n_steps):
                losses[r] = np.nan
            return correct
        correct += c
        if alpha > 0.0:
            losses[s] += 0.5 * alpha * l2_penalty_grad(params, shard_grads[0], layout, np.float32(alpha / m)) / m
        if fused:
            pass  # done in the backward pass
        elif columns:
            decay, ema_a = adamw_factors(lr_t, wd, ema_decay, t)
            column_update(params, shard_grads[0], adam_m, adam_v, ema, layout, shard_out.shape[1],
                          adam_factors(lr_t, beta1, beta2, eps, t), decay, max_norm, ema_a)  # ema_a 0: no average
        elif plain_adam:
            adam_update_shards(params, shard_grads, grad_parts, adam_m, adam_v, lr_t, beta1, beta2, eps, t)
        else:
            sum_shards(shard_grads, grad_parts)
            adamw_update(params, shard_grads[0], adam_m, adam_v, ema, layout, lr_t, beta1, beta2, eps, t, wd,
                         max_norm, ema_decay)
    return correct


@njit(cache=True, error_model="numpy")
def _gemm(a, b, c):
    np.dot(a, b, c)


_BLAS_STARTED: list[bool] = []


def start_blas_threads(threads: int) -> None:
    """Once per process, one multi-threaded GEMM through the BLAS that Numba calls.

    Measured with SciPy's OpenBLAS: when its first call ran with one thread, later
    single-threaded calls from two Numba threads at once ran one after the other (no speed-up
    at all); after one call with its thread pool started they run side by side.
    """
    if _BLAS_STARTED or threads < 2:
        return
    from .threads import blas_threads
    a = np.ones((256, 256), np.float32)
    with blas_threads(threads):
        _gemm(a, a, np.empty_like(a))
    _BLAS_STARTED.append(True)
