"""The column split's pieces: every product of a step cut by units, each part with all the batch's rows.

A hidden layer's forward pass runs by its outputs, ``z^T[J] = W[J] @ x^T + b[J]``, then ReLU;
the backward pass by the units below a layer, ``dx^T[I] = W[:, I]^T @ dz^T``, then the layer
below's ReLU mask and bias gradient on those units and its weight gradient's rows,
``dW'[I] = dz'^T[I] @ x'``. Hidden layers' activations are stored feature-major (unit j's m
values contiguous at ``off + j m``: the (m, n) block's transpose, same size), so every part reads
and writes whole rows; ``x`` and the last layer's blocks stay row-major. No part's result needs
another's, so there is one gradient buffer and nothing to sum. :mod:`fastmlp.engine.step` runs
the parts on its threads; the cut is :mod:`fastmlp.engine.parts`'.

Where the BLAS has small-matrix kernels, a part's products go in blocks of units sized for them
(``small``, :func:`fastmlp.engine.blas.small_gemm_limit`; 0 for none).
"""

from __future__ import annotations

import numpy as np

from .blas import gemm, gemm_blocks
from .jit import kernel
from .layout import B_OFF, N_IN, N_OUT, W_OFF
from .rng import STREAM_DROPOUT, bits24, drop_threshold, example_key


@kernel
def layer_columns(params, layout, l, x, z, h, act_off, m, j0, j1, idx, seed, epoch, p, small):
    """Hidden layer l's forward pass for its units j0..j1-1 and all m rows, feature-major:
    ``z^T[J] = W[J] @ inp^T + b[J]`` (|J|, m) and ``h^T[J] = max(z^T[J], 0)``, with dropout p as
    :func:`fastmlp.engine.layers.linear_relu_dropout_forward` (the same random numbers: stream
    ``STREAM_DROPOUT + l + 1``, keyed by ``idx`` and the unit; None: none, and no dropout code
    compiled). inp is ``x`` (row-major) for the
    first layer, ``h^T`` of the layer below after.

    The product lands in the units' own rows, so bias and ReLU run along contiguous rows (writing
    row-major ``z[:, J]`` instead needs a transposing pass, or a product measured up to 12% slower).
    ``small`` cuts the product into blocks of units for BLAS's small-matrix kernels
    (:func:`fastmlp.engine.blas.gemm_blocks`); likewise below."""
    n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
    zo = act_off[l]
    w = layout[l, W_OFF] + j0 * n_in
    if l == 0:
        gemm_blocks(small, False, True, j1 - j0, m, n_in, params, w, n_in, x, 0, n_in, z, zo + j0 * m, m, 0.0)
    else:
        gemm_blocks(small, False, False, j1 - j0, m, n_in, params, w, n_in, h, act_off[l - 1], m, z, zo + j0 * m, m,
                    0.0)
    b = params[layout[l, B_OFF]:layout[l, B_OFF] + n_out]
    if p is not None and p > 0:
        thr, keep = drop_threshold(p), np.float32(1.0 / (1.0 - p))
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


@kernel(inline=True)
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


@kernel(inline=True)
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


@kernel
def relu_mask_units(grads, layout, l, z, d, act_off, m, i0, i1, p):
    """Hidden layer l's ReLU mask (after dropout p) on its feature-major ``d`` rows i0..i1-1 (dl/dh^T in,
    dl/dz^T out: zero where z < 0, scaled by 1 / (1 - p) elsewhere) and its bias gradient on those
    units, each the sum of its row in eight interleaved partial sums (so that the loop vectorises)."""
    o = act_off[l]
    db = grads[layout[l, B_OFF]:layout[l, B_OFF] + layout[l, N_OUT]]
    keep = np.float32(1.0)
    if p is not None and p > 0:
        keep = np.float32(1.0 / (1.0 - p))
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


@kernel(inline=True)
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


@kernel(inline=True)
def output_weight_grad_columns(grads, layout, h, d, act_off, m, i0, i1):
    """Columns i0..i1-1 of the last layer's weight gradient, ``dW[:, I] = dz^T @ inp[:, I]``, from its
    row-major ``d`` block and its input, the feature-major ``h^T`` of the layer below."""
    L = layout.shape[0]
    n_in, k = layout[L - 1, N_IN], layout[L - 1, N_OUT]
    gemm(True, True, k, i1 - i0, m, d, act_off[L - 1], k, h, act_off[L - 2] + i0 * m, m, grads,
         layout[L - 1, W_OFF] + i0, n_in, 0.0)
