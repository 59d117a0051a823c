"""Inference: a row's logits computed from that row alone, the same bits wherever it sits among the rows.

BLAS computes a product's rows with kernels chosen by the product's shape (small-matrix paths,
edge tiles, unroll factors that differ from one CPU family to the next), so with BLAS a row's
logits can differ in the last bit between a batch and the same row alone or elsewhere. Here
every output is computed the same way whatever the batch: for each unit j and row i,

    z[j, i] = (...((W[j,0] x[0,i] + 0) + W[j,1] x[1,i]) + ... + W[j,K-1] x[K-1,i]) + b[j]

in this order, each step one fused multiply-add (``llvm.fma``: exactly rounded, the same in a
vector lane as in scalar code). Activations are feature-major ((n, R) for a chunk of R rows), so
the rows of a chunk are the vector lanes: the loop over them vectorizes without reordering any
sum. A chunk of INFER_ROWS rows runs through the whole network on one thread; the threads claim
chunks (:mod:`fastmlp.engine.sync`); nothing depends on the chunk a row falls in, nor on the
thread count.

Softmax, argmax and the loss are taken from the logits in NumPy (:mod:`fastmlp.model`), row by row.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel
from .layers import input_scale
from .layout import B_OFF, N_IN, N_OUT, W_OFF
from .parts import INFER_ROWS
from .sync import SYNC_SLOTS, claim

InferWork = namedtuple("InferWork", ["x", "a", "b", "counters", "sync"])


def allocate_infer_work(sizes, threads: int) -> InferWork:
    """Each thread's chunk buffers for a network of layer ``sizes``: its inputs (n_0, R) and two
    buffers for the layers' outputs, used in turn (R = INFER_ROWS)."""
    widest = max(sizes[1:])
    threads = max(1, int(threads))
    return InferWork(x=np.zeros((threads, sizes[0] * INFER_ROWS), np.float32),
                     a=np.zeros((threads, widest * INFER_ROWS), np.float32),
                     b=np.zeros((threads, widest * INFER_ROWS), np.float32),
                     counters=np.zeros(1, np.int64), sync=np.zeros(SYNC_SLOTS, np.int64))


@intrinsic
def fma32(typingctx, a, b, c):
    """``a b + c`` rounded once (float32): LLVM's ``llvm.fma``, one instruction on CPUs with FMA."""
    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32")
        return builder.call(fn, [context.cast(builder, v, t, types.float32) for v, t in zip(args, signature.args)])

    return types.float32(a, b, c), codegen


@kernel
def dense_feature_major(W, bias, x, z, relu):
    """``z = W x + bias`` for a chunk: W (n_out, K), x (K, R), z (n_out, R), each output summed over
    k in order with fused multiply-adds (see the module), then ReLU when ``relu``.

    Four units at a time, four inputs at a time: each pass over the chunk's rows does 16
    multiply-adds per row for 4 loads of x and 4 loads and stores of z.
    """
    n_out, K = W.shape
    R = x.shape[1]
    K4 = K - K % 4
    zero = np.float32(0.0)
    for j in range(0, n_out - n_out % 4, 4):
        z0, z1, z2, z3 = z[j], z[j + 1], z[j + 2], z[j + 3]
        for i in range(R):
            z0[i] = zero
            z1[i] = zero
            z2[i] = zero
            z3[i] = zero
        for k in range(0, K4, 4):
            a0, a1, a2, a3 = W[j, k], W[j, k + 1], W[j, k + 2], W[j, k + 3]
            b0, b1, b2, b3 = W[j + 1, k], W[j + 1, k + 1], W[j + 1, k + 2], W[j + 1, k + 3]
            c0, c1, c2, c3 = W[j + 2, k], W[j + 2, k + 1], W[j + 2, k + 2], W[j + 2, k + 3]
            d0, d1, d2, d3 = W[j + 3, k], W[j + 3, k + 1], W[j + 3, k + 2], W[j + 3, k + 3]
            x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
            for i in range(R):
                p, q, r, s = x0[i], x1[i], x2[i], x3[i]
                z0[i] = fma32(a3, s, fma32(a2, r, fma32(a1, q, fma32(a0, p, z0[i]))))
                z1[i] = fma32(b3, s, fma32(b2, r, fma32(b1, q, fma32(b0, p, z1[i]))))
                z2[i] = fma32(c3, s, fma32(c2, r, fma32(c1, q, fma32(c0, p, z2[i]))))
                z3[i] = fma32(d3, s, fma32(d2, r, fma32(d1, q, fma32(d0, p, z3[i]))))
        for k in range(K4, K):
            a0, b0, c0, d0 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
            xk = x[k]
            for i in range(R):
                p = xk[i]
                z0[i] = fma32(a0, p, z0[i])
                z1[i] = fma32(b0, p, z1[i])
                z2[i] = fma32(c0, p, z2[i])
                z3[i] = fma32(d0, p, z3[i])
    for j in range(n_out - n_out % 4, n_out):
        zj = z[j]
        for i in range(R):
            zj[i] = zero
        for k in range(K):
            w, xk = W[j, k], x[k]
            for i in range(R):
                zj[i] = fma32(w, xk[i], zj[i])
    for j in range(n_out):
        zj, bj = z[j], bias[j]
        for i in range(R):
            v = zj[i] + bj
            zj[i] = (v if v > 0 else zero) if relu else v


@kernel(nogil=True)
def logits_worker(t, threads, params, layout, images, rows, work, out):
    """Thread t of ``threads``: the logits of ``images[rows]`` into ``out`` (len(rows), k), chunk by
    chunk of INFER_ROWS rows (claimed; ``work.counters`` 0 at the start). A chunk of R rows is
    gathered feature-major into the thread's ``x`` (n_0, R), scaled as training's gather scales
    (1/255 for uint8 pixels, 1 for float32 features), then runs through every layer
    (:func:`dense_feature_major`), the outputs in its ``a`` and ``b`` buffers in turn."""
    n = rows.shape[0]
    L = layout.shape[0]
    k = layout[L - 1, N_OUT]
    n_in = layout[0, N_IN]
    scale = input_scale(images)
    chunks = -(-n // INFER_ROWS)
    while True:
        c = claim(work.counters, 0, t % 2, chunks)
        if c < 0:
            return 0
        lo = c * INFER_ROWS
        R = min(INFER_ROWS, n - lo)
        inp = work.x[t, :n_in * R].reshape((n_in, R))
        for i in range(R):
            row = images[rows[lo + i]]
            for j in range(n_in):
                inp[j, i] = np.float32(row[j]) * scale
        for l in range(L):
            n_in_l, n_out = layout[l, N_IN], layout[l, N_OUT]
            W = params[layout[l, W_OFF]:layout[l, W_OFF] + n_out * n_in_l].reshape((n_out, n_in_l))
            dst = (work.a if l % 2 == 0 else work.b)[t, :n_out * R].reshape((n_out, R))
            dense_feature_major(W, params[layout[l, B_OFF]:layout[l, B_OFF] + n_out], inp, dst, l < L - 1)
            inp = dst
        for i in range(R):
            for j in range(k):
                out[lo + i, j] = inp[j, i]
