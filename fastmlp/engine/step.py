"""Training steps on any number of threads: one parallel region per kernel call, phases met at barriers.

A call runs ``call.n_steps`` steps over mini-batches of ``data.order`` (step s takes
``order[(first + s) B : ... + B]``, the last batch possibly shorter). Every thread runs the same
worker (:mod:`fastmlp.engine.pool`); each phase of a step is a list of parts fixed by the shape
(:mod:`fastmlp.engine.parts`) that the threads claim, and the threads meet at a barrier before
the next phase (:mod:`fastmlp.engine.sync`). Nothing a part computes depends on which thread
runs it, nor on how many threads there are, so a run's history is the same bits on 1 thread as
on 8. The split is a property of the shape (it decides the rounding), never of the machine.

**Row shards** (:func:`row_worker`, small layers). A batch of m rows is cut into
``P = row_parts(m)`` shards of consecutive rows. A shard gathers, runs forward, loss and
backward on its rows alone, with single-threaded BLAS, into its own gradient buffer
``work.grads[p]``. After a barrier the update runs over blocks of weight rows: each block sums
the shards' gradients in order (shard 0 first) and runs Adam. Two phases a step.

**Column split** (:func:`column_worker`, wide layers; :mod:`fastmlp.engine.columns`). Every
product is cut by units, each part with all the batch's rows: the gather by row shards, each
hidden layer's forward pass by its units, the logits and loss by row shards, the backward pass
layer by layer by the units below it, then the update by the same parts as the gradient (each
part's parameters are in the cache of the core that computed their gradient, when the threads
claim the same parts from step to step). One gradient buffer and nothing to sum; 2 L + 1
phases a step for L layers (plain Adam with one hidden layer updates inside the backward pass,
as soon as nothing later in the step reads a part: 2 L).

Why not multi-threaded BLAS: at the shapes of MLP training (a batch of 32 to 128 rows) BLAS's
own threads spend much of each call waking up and waiting for each other, and the kernels
between the products (bias, ReLU, loss, Adam) would run on one core.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from . import pool
from .columns import input_grad_columns, layer_columns, output_rows, output_weight_grad_columns, weight_grad_rows
from .fpenv import flush_subnormals, restore_fp_mode
from .jit import kernel
from .layers import backward_rows, forward_rows, gather_batch, gather_train, loss_rows
from .layout import B_OFF, N_IN, N_OUT, rows_view
from .parts import row_parts, shard_bounds, split_bounds, unit_parts
from .records import batch_norm, hidden_dropout, input_dropout, loss_scale, max_norm_of, smoothing_of
from .sync import barrier, claim
from .update import (
    adam_factors,
    adamw_factors,
    l2_penalty_rows,
    lr_at_step,
    update_columns_part,
    update_layer_rows,
    update_rows_block,
)

# The gather of augmented or dropped-out batches runs in blocks of this many rows (a warp costs
# tens of microseconds an image, so small blocks spread it over many threads).
GATHER_ROWS = 8


@kernel
def gather_rows(data, idx, r0, r1, work, aug, scratch, seed, epoch, p_in):
    """Rows r0..r1-1 of the batch ``idx`` into the workspace's ``x`` and ``y``: the examples scaled
    (:func:`~fastmlp.engine.layers.gather_batch`), warped when ``aug`` is not None and their
    inputs dropped with probability ``p_in`` (None: none; :func:`~fastmlp.engine.layers.gather_train`)."""
    n_in = data.images.shape[1]
    xs, ys, ids = rows_view(work.x, 0, n_in, r0, r1), work.y[r0:r1], idx[r0:r1]
    if aug is None and (p_in is None or p_in == 0):
        gather_batch(data.images, data.labels, ids, xs, ys)
    else:
        gather_train(data.images, data.labels, ids, xs, ys, seed, epoch, aug, scratch, p_in)


@kernel
def gather_phase(t, data, idx, m, work, aug, p_in, call):
    """This thread's share of the gather (:func:`gather_rows`): row shards of the batch, or blocks of
    GATHER_ROWS rows when the batch is augmented or dropped out (every row is gathered alone, so the
    cut changes no bit)."""
    blocks = row_parts(m)
    if aug is not None or (p_in is not None and p_in > 0):
        blocks = -(-m // GATHER_ROWS)
    while True:
        b = claim(work.counters, 0, t % 2, blocks)
        if b < 0:
            return
        r0, r1 = shard_bounds(m, blocks, b)
        gather_rows(data, idx, r0, r1, work, aug, work.scratch[t], call.seed, call.epoch, p_in)


@kernel(inline=True)
def shard_totals(out, shards):
    """The batch's loss sum and correct count from its ``shards`` row shards' (added in order)."""
    total, correct = 0.0, 0
    for p in range(shards):
        total += out[0, p]
        correct += int(out[1, p])
    return total, correct


@kernel(inline=True)
def stop_at(losses, s, total):
    """Record a non-finite loss at step s and mark the steps after it NaN (they are not run)."""
    losses[s] = total
    for r in range(s + 1, losses.shape[0]):
        losses[r] = np.nan


def step_factors(recipe, call, s, norm):
    """Step s of the call: Adam's constants, AdamW's weight factor, the average's weight (None for
    the plain recipe) and the L2 gradient's factor ``alpha / norm`` (``norm`` the batch's total
    weight); eta is the call's own for the plain recipe, the schedule's at step ``t0 + s``
    otherwise (:func:`fastmlp.engine.update.lr_at_step`)."""
    t = call.t0 + s + 1
    if recipe is None:
        return adam_factors(call.lr, call.beta1, call.beta2, call.eps, t), np.float32(1.0), None, call.alpha / norm
    lr = lr_at_step(recipe.schedule, call.lr, t - 1, recipe.warmup, recipe.total, recipe.floor)
    decay, ema_a = adamw_factors(lr, recipe.weight_decay, recipe.ema, t)
    return adam_factors(lr, call.beta1, call.beta2, call.eps, t), decay, ema_a, call.alpha / norm


@overload(step_factors, jit_options={"cache": True})
def _step_factors(recipe, call, s, norm):
    # chosen when the caller compiles: the plain recipe's version has no schedule and no average
    if isinstance(recipe, types.NoneType):
        def plain(recipe, call, s, norm):
            t = call.t0 + s + 1
            return (adam_factors(call.lr, call.beta1, call.beta2, call.eps, t), np.float32(1.0), None,
                    call.alpha / norm)
        return plain

    def scheduled(recipe, call, s, norm):
        t = call.t0 + s + 1
        lr = lr_at_step(recipe.schedule, call.lr, t - 1, recipe.warmup, recipe.total, recipe.floor)
        decay, ema_a = adamw_factors(lr, recipe.weight_decay, recipe.ema, t)
        return adam_factors(lr, call.beta1, call.beta2, call.eps, t), decay, ema_a, call.alpha / norm
    return scheduled


@kernel(inline=True)
def penalty_sum(work, parts):
    """The update parts' ``sum W^2`` (added in part order)."""
    sq = 0.0
    for q in range(parts):
        sq += work.penalty[q]
    return sq


@kernel(inline=True)
def batch_rows(data, call, s):
    """Step s's batch: its example indices (a view of the order) and its row count."""
    lo = (call.first + s) * call.batch_size
    hi = min(lo + call.batch_size, data.order.shape[0])
    return data.order[lo:hi], hi - lo


@kernel(inline=True)
def batch_totals(t, losses, s, work, shards):
    """The batch's loss sum and correct count from its row shards (:func:`shard_totals`), and
    whether the loss is finite; thread 0 records a non-finite one (:func:`stop_at`)."""
    total, correct = shard_totals(work.out, shards)
    finite = np.isfinite(total)
    if not finite and t == 0:
        stop_at(losses, s, total)
    return total, correct, finite


@kernel(inline=True)
def record_loss(losses, s, total, norm, scale, call, work, parts):
    """Step s's mean loss (``total / norm``, times ``scale``: :func:`~fastmlp.engine.records.loss_scale`),
    plus the L2 penalty ``alpha / (2 norm) sum W^2`` (the update parts' sums)."""
    losses[s] = total / norm * scale
    if call.alpha > 0:
        losses[s] += 0.5 * call.alpha * penalty_sum(work, parts) / norm


# ----------------------------------------------------------------------------- row shards

@kernel(inline=True)
def shard_step(net, g, work, data, idx, norm, r0, r1, recipe, call):
    """Rows r0..r1-1 of a batch (already gathered; ``norm`` its total weight): forward, loss and,
    when the loss is finite, backward into ``g`` (this shard's sums of the batch's mean-loss
    gradient). Returns ``(sum of the rows' weighted losses, correct)``."""
    layout = net.layout
    L = layout.shape[0]
    p = hidden_dropout(recipe)
    logits = forward_rows(net.params, layout, work.x, work.z, work.h, work.act_off, r0, r1, idx[r0:r1], call.seed,
                          call.epoch, p)
    total, correct = loss_rows(logits, work.y[r0:r1],
                               rows_view(work.d, work.act_off[L - 1], layout[L - 1, N_OUT], r0, r1),
                               smoothing_of(recipe), norm, data.weights, idx[r0:r1])
    if np.isfinite(total):
        backward_rows(net.params, g, layout, work.x, work.z, work.h, work.d, work.act_off, r0, r1, p)
    return total, correct


@kernel(nogil=True)
def row_worker(t, threads, net, data, work, optim, aug, recipe, call, losses):
    """Thread t of ``threads``: ``call.n_steps`` steps as row shards (see the module), subnormals
    flushed to zero (:mod:`fastmlp.engine.fpenv`). Thread 0 writes ``losses[s]``, each step's mean
    loss (with the L2 penalty), and returns the number of examples classified correctly; at a
    non-finite loss the call stops, ``losses`` NaN from there on and that step not applied."""
    mode = flush_subnormals()
    correct = row_steps(t, threads, net, data, work, optim, aug, recipe, call, losses)
    restore_fp_mode(mode)
    return correct


@kernel(inline=True)
def row_steps(t, threads, net, data, work, optim, aug, recipe, call, losses):
    """:func:`row_worker`'s steps."""
    layout = net.layout
    last = layout.shape[0] - 1
    end = t % 2
    max_norm = max_norm_of(recipe)
    correct = 0
    scale = loss_scale(data.labels, layout[last, N_OUT])
    for s in range(call.n_steps):
        idx, m = batch_rows(data, call, s)
        norm = batch_norm(data, idx)
        shards = row_parts(m)
        while True:
            p = claim(work.counters, 0, end, shards)
            if p < 0:
                break
            r0, r1 = shard_bounds(m, shards, p)
            gather_rows(data, idx, r0, r1, work, aug, work.scratch[t], call.seed, call.epoch, input_dropout(recipe))
            total, c = shard_step(net, work.grads[p], work, data, idx, norm, r0, r1, recipe, call)
            work.out[0, p] = total
            work.out[1, p] = c
        if not barrier(work.sync, threads, work.counters):
            return correct
        total, c, finite = batch_totals(t, losses, s, work, shards)
        if not finite:
            return correct
        factors, decay, ema_a, coef = step_factors(recipe, call, s, norm)
        parts = work.blocks.shape[0]
        while True:
            q = claim(work.counters, 0, end, parts)
            if q < 0:
                break
            l, r0, r1 = work.blocks[q, 0], work.blocks[q, 1], work.blocks[q, 2]
            work.penalty[q] = update_rows_block(net.params, work.grads, shards, optim.m, optim.v, optim.ema, layout,
                                                l, r0, r1, factors, decay, max_norm if l < last else None, ema_a,
                                                coef)
        if not barrier(work.sync, threads, work.counters):
            return correct
        if t == 0:
            correct += c
            record_loss(losses, s, total, norm, scale, call, work, parts)
    return correct


# ----------------------------------------------------------------------------- column split

@kernel(inline=True)
def bias_grad_columns(d, db, j0, j1):
    """``db[j] = sum_i d[i, j]`` for j in j0..j1-1 of a row-major (m, k) block, summed in row order."""
    for j in range(j0, j1):
        db[j] = 0.0
    for i in range(d.shape[0]):
        for j in range(j0, j1):
            db[j] += d[i, j]


@kernel(inline=True)
def backward_part(net, work, optim, l, p, parts, m, recipe, call, fused, factors):
    """Part p of the backward phase below layer l (units I of layer l - 1): for the last layer, its
    weight gradient's columns I and its bias gradient's part p first; then the gradient below
    layer l on units I with layer l - 1's mask and bias gradient, and layer l - 1's weight
    gradient rows I. ``fused``: plain Adam on the parts that nothing later in the step reads."""
    params, layout, g, h, d, act_off = net.params, net.layout, work.grads[0], work.h, work.d, work.act_off
    L = layout.shape[0]
    i0, i1 = split_bounds(layout[l, N_IN], parts, p)
    if l == L - 1:
        k = layout[l, N_OUT]
        j0, j1 = split_bounds(k, parts, p)
        bias_grad_columns(rows_view(d, act_off[l], k, 0, m), g[layout[l, B_OFF]:layout[l, B_OFF] + k], j0, j1)
        output_weight_grad_columns(g, layout, h, d, act_off, m, i0, i1)
    input_grad_columns(params, g, layout, l, work.z, d, act_off, m, i0, i1, hidden_dropout(recipe), call.small)
    if fused:  # layer l's columns I: read for the gradient below just now, complete since the loss
        j0, j1 = split_bounds(layout[l, N_OUT], parts, p)
        update_columns_part(params, g, optim.m, optim.v, optim.ema, layout, l, i0, i1, j0, j1, factors, np.float32(1.0), None,
                            0.0)
    weight_grad_rows(g, layout, l - 1, work.x, h, d, act_off, m, i0, i1, call.small)
    if fused and l == 1:
        update_layer_rows(params, g, optim.m, optim.v, optim.ema, layout, 0, i0, i1, factors, np.float32(1.0), None,
                          None)


@kernel(inline=True)
def update_part(net, work, optim, q, max_norm, factors, decay, ema_a, coef):
    """Update part q of the column split (:func:`fastmlp.engine.records.update_parts`): a hidden
    layer's weight rows and biases of one unit part, or the last layer's weight columns of one part
    of the layer below with its biases' part. Returns the part's ``sum W^2`` (0 without alpha)."""
    layout = net.layout
    l, p, parts = work.blocks[q, 0], work.blocks[q, 1], work.blocks[q, 2]
    g = work.grads[0]
    if l < layout.shape[0] - 1:
        j0, j1 = split_bounds(layout[l, N_OUT], parts, p)
        sq = l2_penalty_rows(net.params, g, layout, l, j0, j1, coef) if coef > 0 else 0.0
        update_layer_rows(net.params, g, optim.m, optim.v, optim.ema, layout, l, j0, j1, factors, decay, max_norm,
                          ema_a)
        return sq
    i0, i1 = split_bounds(layout[l, N_IN], parts, p)
    j0, j1 = split_bounds(layout[l, N_OUT], parts, p)
    return update_columns_part(net.params, g, optim.m, optim.v, optim.ema, layout, l, i0, i1, j0, j1, factors,
                               decay, ema_a, coef)


@kernel(nogil=True)
def column_worker(t, threads, net, data, work, optim, aug, recipe, call, losses):
    """Thread t of ``threads``: ``call.n_steps`` steps in the column split (see the module), with
    :func:`row_worker`'s results and floating-point mode. The network has at least one hidden layer."""
    mode = flush_subnormals()
    correct = column_steps(t, threads, net, data, work, optim, aug, recipe, call, losses)
    restore_fp_mode(mode)
    return correct


@kernel(inline=True)
def column_steps(t, threads, net, data, work, optim, aug, recipe, call, losses):
    """:func:`column_worker`'s steps."""
    params, layout = net.params, net.layout
    L = layout.shape[0]
    end = t % 2
    fused = recipe is None and call.alpha == 0 and L == 2
    correct = 0
    scale = loss_scale(data.labels, layout[L - 1, N_OUT])
    for s in range(call.n_steps):
        idx, m = batch_rows(data, call, s)
        norm = batch_norm(data, idx)
        gather_phase(t, data, idx, m, work, aug, input_dropout(recipe), call)
        if not barrier(work.sync, threads, work.counters):
            return correct
        for l in range(L - 1):
            parts = unit_parts(layout[l, N_OUT])
            while True:
                p = claim(work.counters, 0, end, parts)
                if p < 0:
                    break
                j0, j1 = split_bounds(layout[l, N_OUT], parts, p)
                layer_columns(params, layout, l, work.x, work.z, work.h, work.act_off, m, j0, j1, idx, call.seed,
                              call.epoch, hidden_dropout(recipe), call.small)
            if not barrier(work.sync, threads, work.counters):
                return correct
        k = layout[L - 1, N_OUT]
        shards = row_parts(m)
        while True:
            p = claim(work.counters, 0, end, shards)
            if p < 0:
                break
            r0, r1 = shard_bounds(m, shards, p)
            output_rows(params, layout, work.h, work.z, work.act_off, m, r0, r1)
            total, c = loss_rows(rows_view(work.z, work.act_off[L - 1], k, r0, r1), work.y[r0:r1],
                                 rows_view(work.d, work.act_off[L - 1], k, r0, r1), smoothing_of(recipe), norm,
                                 data.weights, idx[r0:r1])
            work.out[0, p] = total
            work.out[1, p] = c
        if not barrier(work.sync, threads, work.counters):
            return correct
        total, c, finite = batch_totals(t, losses, s, work, shards)
        if not finite:
            return correct
        factors, decay, ema_a, coef = step_factors(recipe, call, s, norm)
        for l in range(L - 1, 0, -1):
            parts = unit_parts(layout[l, N_IN])
            while True:
                p = claim(work.counters, 0, end, parts)
                if p < 0:
                    break
                backward_part(net, work, optim, l, p, parts, m, recipe, call, fused, factors)
            if not barrier(work.sync, threads, work.counters):
                return correct
        n_parts = work.blocks.shape[0]
        if not fused:
            while True:
                q = claim(work.counters, 0, end, n_parts)
                if q < 0:
                    break
                work.penalty[q] = update_part(net, work, optim, q, max_norm_of(recipe), factors, decay, ema_a, coef)
            if not barrier(work.sync, threads, work.counters):
                return correct
        if t == 0:
            correct += c
            record_loss(losses, s, total, norm, scale, call, work, n_parts)
    return correct


# ----------------------------------------------------------------------------- the call

def useful_threads(work, fine_gather: bool) -> int:
    """The most parts any phase of a step has, given the work's buffers (more threads would idle);
    ``fine_gather``: the batches are augmented or dropped out (gathered in blocks of GATHER_ROWS)."""
    from .parts import MAX_PARTS
    gather = -(-work.y.shape[0] // GATHER_ROWS) if fine_gather else row_parts(work.y.shape[0])
    return max(2, min(MAX_PARTS, max(work.blocks.shape[0], work.grads.shape[0], gather)))


def run_call(columns: bool, threads: int, net, data, work, optim, aug, recipe, call, losses) -> int:
    """One training call of ``call.n_steps`` steps on ``threads`` threads: :func:`column_worker` or
    :func:`row_worker` on the pool (:func:`fastmlp.engine.pool.run`); returns the correct count."""
    if threads > work.scratch.shape[0]:
        raise ValueError(f"{threads} threads, but the work has scratch for {work.scratch.shape[0]}")
    if losses.shape[0] < call.n_steps:
        raise ValueError(f"{call.n_steps} steps, but room for {losses.shape[0]} losses")
    work.counters[:] = 0
    return pool.run(column_worker if columns else row_worker, threads, work.sync, net, data, work, optim, aug, recipe,
                    call, losses)
