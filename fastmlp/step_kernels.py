"""The training step on Numba's threads: every mini-batch is cut into row shards that run in parallel.

A batch of m rows is cut into ``n = min(S, m)`` shards, S = ``shard_grads.shape[0]`` (the
Trainer uses :data:`fastmlp.layout.SHARDS`): shard s holds rows ``s m // n .. (s + 1) m // n - 1``.
Each shard gathers, runs forward, loss and backward on its rows alone, with single-threaded BLAS, into its
own gradient buffer ``shard_grads[s]`` (float32 (S, P), the layout of ``params``); the update
then reads ``g = shard_grads[0] + shard_grads[1] + ...`` (summed in that order) while it runs
Adam. Nothing any shard computes depends on which thread runs it, nor on how many threads
there are: the history of a run is the same on one thread as on two, bit for bit.

Why shards rather than multi-threaded BLAS: at the shapes of MLP training (a batch of 32 to
128 rows) OpenBLAS's threads spend much of each call waking up and waiting for each other, and
the kernels between the GEMMs (bias, ReLU, loss, Adam) run on one core. Shards put both cores
to work on everything, with one synchronisation per phase instead of one per GEMM.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import (R_ALPHA, R_DROP_HIDDEN, R_DROP_IN, R_EMA, R_FLOOR, R_MAX_NORM, R_SCHEDULE, R_SMOOTHING,
                      R_TOTAL, R_WARMUP, R_WEIGHT_DECAY, backward_rows, cross_entropy_rows, forward_rows,
                      gather_batch, gather_train)
from .layout import N_IN, N_OUT, SHARDS, rows_view, shard_bounds  # noqa: F401  (SHARDS: the Trainer's)
from .update_kernels import adam_update_shards, adamw_update, l2_penalty_grad, lr_at_step, sum_shards

@njit(cache=True, error_model="numpy")
def shard_step(params, g, layout, images, labels, idx, m, r0, r1, x, y, z, h, d, act_off, aug, taps, scratch,
               seed, epoch, p_in, p_hid, smoothing):
    """Rows r0..r1-1 of a batch of m (``idx`` the batch's example indices): gather, forward, loss
    and, when the loss is finite, backward into ``g`` (this shard's gradient of the batch's mean
    loss). Returns ``(sum of the rows' losses, correct)``."""
    ids = idx[r0:r1]
    xs = rows_view(x, 0, layout[0, N_IN], r0, r1)
    if aug.shape[0] == 0 and p_in == 0:
        gather_batch(images, labels, ids, xs, y[r0:r1])
    else:
        gather_train(images, labels, ids, xs, y[r0:r1], seed, epoch, aug, taps, scratch, p_in)
    logits = forward_rows(params, layout, x, z, h, act_off, r0, r1, ids, seed, epoch, p_hid)
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


@njit(cache=True, error_model="numpy")
def train_steps(params, shard_grads, adam_m, adam_v, ema, layout, images, labels, order, first, n_steps,
                batch_size, x, y, z, h, d, act_off, lr, beta1, beta2, eps, t0, losses, recipe, aug, taps, scratch,
                shard_out, seed, epoch):
    """Run ``n_steps`` train steps over mini-batches of ``order`` (a permutation of example indices).

    Step s uses ``order[(first + s) * batch_size : ... + batch_size]`` (the last batch may be
    shorter): gather, forward, loss, backward (in shards, see the module), Adam with step count
    ``t = t0 + s + 1``. ``losses[s]`` receives the step's mean loss. Returns the number of
    correctly classified examples over all the steps. Stops early, leaving ``losses`` NaN from
    there, when a loss is not finite (with no update from that step).

    ``shard_grads`` (S, P) and ``scratch`` (S, augmentation scratch) hold one row per shard,
    ``shard_out`` (2, S) float64 the shards' loss sums and counts. ``recipe`` (float64, indices
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
        n_shards = min(shard_grads.shape[0], m)
        shard_steps(params, shard_grads, n_shards, layout, images, labels, order[lo:hi], x, y, z, h, d, act_off,
                    aug, taps, scratch, seed, epoch, p_in, p_hid, smoothing, shard_out)
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
            adam_update_shards(params, shard_grads, n_shards, adam_m, adam_v, lr_t, beta1, beta2, eps, t)
        else:
            sum_shards(shard_grads, n_shards)
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
