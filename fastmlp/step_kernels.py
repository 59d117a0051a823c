"""The training step on Numba's threads, in one of two fixed splits of the work; every phase runs in parallel.

**Row shards** (small layers). A batch of m rows is cut into ``n = min(S, m)`` shards, S =
``shard_grads.shape[0]`` (the Trainer uses :data:`fastmlp.layout.SHARDS`): shard s holds rows
``s m // n .. (s + 1) m // n - 1``. Each shard gathers, runs forward, loss and backward on its rows
alone, with single-threaded BLAS, into its own gradient buffer ``shard_grads[s]`` (float32 (S, P),
the layout of ``params``); the update then reads ``g = shard_grads[0] + shard_grads[1] + ...``
(summed in that order) while it runs Adam. One parallel region computes the whole gradient.

**Column split** (wide layers, :func:`fastmlp.layout.column_split`). Every GEMM is cut between
the S parts by units, on multiples of :data:`fastmlp.layout.COLUMN_TILE`, each with all the
batch's rows: a hidden layer's forward pass by its outputs, ``z[:, J] = x @ W[J].T + b[J]``, then
ReLU; the backward pass by the units below a layer, ``dx[:, I] = dz @ W[:, I]``, then the layer
below's ReLU mask and bias gradient on those columns and its weight gradient's rows,
``dW'[I] = dz'[:, I].T @ x'``. No part's result needs another's, so there is one gradient
buffer (``shard_grads[0]``) and nothing to sum; gather and the last layer with its loss run as
row shards. It costs a parallel region per phase (2 L for L layers) and runs every GEMM on all
rows, which is where single-threaded BLAS is fastest: measured faster than row shards for wide
layers, slower for narrow ones.

Nothing either split computes depends on which thread runs a part, nor on how many threads there
are: the history of a run is the same on one thread as on two, bit for bit. The split is a
property of the shape (it decides the rounding), never of the machine.

Why not multi-threaded BLAS: at the shapes of MLP training (a batch of 32 to 128 rows) OpenBLAS's
threads spend much of each call waking up and waiting for each other, and the kernels between the
GEMMs (bias, ReLU, loss, Adam) run on one core.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .augment import STREAM_DROPOUT, bits24, example_key
from .blas import gemm
from .kernels import (R_ALPHA, R_DROP_HIDDEN, R_DROP_IN, R_EMA, R_FLOOR, R_MAX_NORM, R_SCHEDULE, R_SMOOTHING,
                      R_TOTAL, R_WARMUP, R_WEIGHT_DECAY, _drop_threshold, backward_rows, bias_grad,
                      cross_entropy_rows, forward_rows, gather_batch, gather_train, layer_rows)
from .layout import (B_OFF, COLUMN_TILE, N_IN, N_OUT, SHARDS, W_OFF, block_view,  # noqa: F401  (the Trainer's)
                     column_split, rows_view, shard_bounds, split_bounds)
from .update_kernels import adam_update_shards, adamw_update, l2_penalty_grad, lr_at_step, sum_shards


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

@njit(cache=True, error_model="numpy")
def layer_columns(params, layout, l, x, z, h, d, act_off, m, j0, j1, idx, seed, epoch, p):
    """Hidden layer l's forward pass for its units j0..j1-1 and all m rows: ``z[:, J] = inp @ W[J].T + b[J]``
    and ``h[:, J] = max(z[:, J], 0)``, with dropout p as :func:`fastmlp.kernels.linear_relu_dropout_forward`
    (the same random numbers: stream ``STREAM_DROPOUT + l + 1``, keyed by ``idx`` and the unit).

    The product is taken transposed, ``W[J] @ inp.T`` (|J|, m), into the layer's ``d`` block (free
    until the backward pass), then added to the bias into z: measured faster with OpenBLAS than
    writing ``z[:, J]`` directly (up to 12% at 1024 inputs)."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    inp, inp_off = (x, 0) if l == 0 else (h, act_off[l - 1])
    zo = act_off[l]
    gemm(False, True, j1 - j0, m, n_in, params, layout[l, W_OFF] + j0 * n_in, n_in, inp, inp_off, n_in, d,
         zo + j0 * m, m, 0.0)
    b = params[layout[l, B_OFF]:layout[l, B_OFF] + n_out]
    if p > 0:
        thr, keep = _drop_threshold(p), np.float32(1.0 / (1.0 - p))
        for i in range(m):
            key = example_key(seed, epoch, idx[i], STREAM_DROPOUT + l + 1)
            zr, hr = z[zo + i * n_out:zo + (i + 1) * n_out], h[zo + i * n_out:zo + (i + 1) * n_out]
            for j in range(j0, j1):
                v = d[zo + j * m + i] + b[j]
                if bits24(key, j) < thr:
                    zr[j] = -np.inf
                    hr[j] = 0.0
                else:
                    zr[j] = v
                    hr[j] = v * keep if v > 0 else np.float32(0.0)
        return
    # in tiles of COLUMN_TILE units: 16 rows of the product are read together, each in order
    for t0 in range(j0, j1, COLUMN_TILE):
        t1 = min(t0 + COLUMN_TILE, j1)
        for i in range(m):
            zr, hr = z[zo + i * n_out + t0:zo + i * n_out + t1], h[zo + i * n_out + t0:zo + i * n_out + t1]
            for j in range(t1 - t0):
                v = d[zo + (t0 + j) * m + i] + b[t0 + j]
                zr[j] = v
                hr[j] = v if v > 0 else np.float32(0.0)


@njit(cache=True, error_model="numpy")
def weight_grad_rows(grads, layout, l, x, h, d, act_off, m, j0, j1):
    """Rows j0..j1-1 of layer l's weight gradient, given its ``d`` block's columns j0..j1-1 (dl/dz, m rows):
    ``dW[J] = dz[:, J].T @ inp`` (measured faster than cutting dW by columns: each part writes whole rows)."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    inp, inp_off = (x, 0) if l == 0 else (h, act_off[l - 1])
    gemm(True, False, j1 - j0, n_in, m, d, act_off[l] + j0, n_out, inp, inp_off, n_in, grads,
         layout[l, W_OFF] + j0 * n_in, n_in, 0.0)


@njit(cache=True, error_model="numpy")
def input_grad_columns(params, grads, layout, l, z, d, act_off, m, i0, i1, p):
    """Columns i0..i1-1 of the gradient below layer l (l >= 1), given its complete ``d`` block:
    ``dh[:, I] = dz @ W[:, I]``, then layer l - 1's mask (after dropout p) and bias gradient on
    those columns, as :func:`fastmlp.kernels.relu_dropout_backward_bias_grad` (rows summed in order);
    layer l - 1's ``d`` block holds dl/dz on those columns after."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    below = act_off[l - 1]
    gemm(False, False, m, i1 - i0, n_out, d, act_off[l], n_out, params, layout[l, W_OFF] + i0, n_in, d,
         below + i0, n_in, 0.0)
    db = grads[layout[l - 1, B_OFF] + i0:layout[l - 1, B_OFF] + i1]
    db[:] = 0.0
    keep = np.float32(1.0 / (1.0 - p))
    for i in range(m):  # row views, so that the loop vectorises
        dr, zr = d[below + i * n_in + i0:below + i * n_in + i1], z[below + i * n_in + i0:below + i * n_in + i1]
        if p > 0:
            for j in range(i1 - i0):
                v = dr[j] * keep if zr[j] >= 0 else np.float32(0.0)
                dr[j] = v
                db[j] += v
        else:
            for j in range(i1 - i0):
                v = dr[j] if zr[j] >= 0 else np.float32(0.0)
                dr[j] = v
                db[j] += v


@njit(cache=True, error_model="numpy", parallel=True)
def column_step(params, grads, layout, images, labels, idx, x, y, z, h, d, act_off, aug, taps, scratch, seed,
                epoch, p_in, p_hid, smoothing, out):
    """The gradient of the batch ``idx``'s mean loss into ``grads``, in the column split (see the module).

    ``out`` (2, S) float64 receives each row shard's loss sum and correct count (zeros for shards
    beyond the batch's rows); the backward pass is skipped when the loss is not finite.
    """
    m = idx.shape[0]
    parts = out.shape[1]
    n_rows = min(parts, m)
    L = layout.shape[0]
    n_in = layout[0, N_IN]
    for s in prange(n_rows):
        r0, r1 = shard_bounds(m, n_rows, s)
        gather_shard(images, labels, idx, r0, r1, x, y, n_in, aug, taps, scratch[s], seed, epoch, p_in)
    for l in range(L - 1):
        for s in prange(parts):
            j0, j1 = split_bounds(layout[l, N_OUT], parts, s)
            layer_columns(params, layout, l, x, z, h, d, act_off, m, j0, j1, idx, seed, epoch, p_hid)
    k = layout[L - 1, N_OUT]
    for s in prange(parts):
        out[0, s] = 0.0
        out[1, s] = 0.0
        if s < n_rows:
            r0, r1 = shard_bounds(m, n_rows, s)
            layer_rows(params, layout, L - 1, x, z, h, act_off, r0, r1, idx[r0:r1], seed, epoch, 0.0)
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
    if L == 1:
        for s in prange(parts):
            j0, j1 = split_bounds(k, parts, s)
            weight_grad_rows(grads, layout, 0, x, h, d, act_off, m, j0, j1)
    # Region l: the gradient below layer l by columns; the part that completes columns I of layer
    # l - 1's d block goes on to that layer's weight-gradient rows I, with no other part's help.
    for l in range(L - 1, 0, -1):
        for s in prange(parts):
            if l == L - 1:
                j0, j1 = split_bounds(k, parts, s)
                weight_grad_rows(grads, layout, l, x, h, d, act_off, m, j0, j1)
            i0, i1 = split_bounds(layout[l, N_IN], parts, s)
            input_grad_columns(params, grads, layout, l, z, d, act_off, m, i0, i1, p_hid)
            weight_grad_rows(grads, layout, l - 1, x, h, d, act_off, m, i0, i1)

@njit(cache=True, error_model="numpy")
def train_steps(params, shard_grads, adam_m, adam_v, ema, layout, images, labels, order, first, n_steps,
                batch_size, x, y, z, h, d, act_off, lr, beta1, beta2, eps, t0, losses, recipe, aug, taps, scratch,
                shard_out, seed, epoch, columns):
    """Run ``n_steps`` train steps over mini-batches of ``order`` (a permutation of example indices).

    Step s uses ``order[(first + s) * batch_size : ... + batch_size]`` (the last batch may be
    shorter): gather, forward, loss, backward (as row shards, or in the column split when
    ``columns``: see the module), Adam with step count ``t = t0 + s + 1``. ``losses[s]`` receives the step's mean loss. Returns the number of
    correctly classified examples over all the steps. Stops early, leaving ``losses`` NaN from
    there, when a loss is not finite (with no update from that step).

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
    :func:`fastmlp.augment.warp_image`'s; ``seed`` and ``epoch`` key the random numbers.
    """
    schedule, p_in, p_hid = int(recipe[R_SCHEDULE]), recipe[R_DROP_IN], recipe[R_DROP_HIDDEN]
    wd, max_norm, ema_decay = recipe[R_WEIGHT_DECAY], recipe[R_MAX_NORM], recipe[R_EMA]
    alpha, smoothing = recipe[R_ALPHA], recipe[R_SMOOTHING]
    plain_adam = wd == 0 and max_norm == 0 and ema_decay == 0
    correct = 0
    for s in range(n_steps):
        lo = (first + s) * batch_size
        hi = min(lo + batch_size, order.shape[0])
        m = hi - lo
        n_shards = min(shard_out.shape[1], m)  # row shards of the gather and the loss, in either split
        if columns:
            column_step(params, shard_grads[0], layout, images, labels, order[lo:hi], x, y, z, h, d, act_off, aug,
                        taps, scratch, seed, epoch, p_in, p_hid, smoothing, shard_out)
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
        t = t0 + s + 1
        lr_t = lr_at_step(schedule, lr, t - 1, recipe[R_WARMUP], recipe[R_TOTAL], recipe[R_FLOOR])
        if plain_adam:
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
