"""The layers' kernels on rows of a batch: gather, dense forward and backward, the loss (Numba, nopython).

Shapes follow the homework (see :mod:`fastmlp.reference`, each kernel's twin): a batch ``x`` is
(m, n_in), a weight ``W`` is (n_out, n_in), ``z = x @ W.T + b``; gradients ``dx = dz @ W``,
``dW = dz.T @ x``, ``db = dz.sum(0)``, and the loss gradient ``(p - y) / m``. GEMMs go to BLAS
through ``np.dot`` with an output buffer; everything between two GEMMs is one fused pass.

Activations live in a workspace preallocated for a batch size B (:class:`fastmlp.model.Workspace`):
``x`` (B * n_0 floats), ``y`` (B labels) and, per layer, blocks of B * n_out floats in ``z``
(pre-activations), ``h`` (ReLU outputs) and ``d`` (gradients with respect to the layer's output),
at offsets ``act_off[l]``. A batch of m <= B rows uses the first m rows of each block, so a short
last batch needs no new buffer. The pieces of a step take a row range (``r0, r1``) so that
:mod:`fastmlp.engine.step` can run a batch as row shards.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .augment import AUG_CROP, AUG_ERASE, AUG_FLIP, AUG_WARP, transform_image, warp_image
from .jit import kernel
from .layout import N_IN, N_OUT, bias_view, rows_view, weight_view
from .rng import STREAM_AUGMENT, STREAM_DROPOUT, STREAM_TRANSFORM, bits24, drop_threshold, example_key

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


@kernel
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


@kernel
def gather_train(images, labels, idx, x, y, seed, epoch, aug, scratch, p_in):
    """:func:`gather_batch`, each image warped and transformed (when ``aug``, a
    :class:`fastmlp.engine.records.Aug`, is not None and asks for them) and its inputs dropped.

    Image ``idx[i]`` is warped by :func:`fastmlp.engine.augment.warp_image` with its own key, then
    flipped, cropped and erased by :func:`fastmlp.engine.augment.transform_image` with another,
    then each input is zeroed with probability ``p_in`` and the rest multiplied by ``1 / (1 - p_in)``
    (inverted dropout): random numbers keyed by (seed, epoch, idx[i]). ``p_in`` None: no dropout
    (and no dropout code compiled).
    """
    scale = input_scale(images)
    n = images.shape[1]
    for i in range(idx.shape[0]):
        ex = idx[i]
        y[i] = labels[ex]
        xi = x[i]
        if aug is not None and aug.params[AUG_WARP] > 0:
            warp_image(images[ex], scale, xi, example_key(seed, epoch, ex, STREAM_AUGMENT), aug.params, aug.taps,
                       scratch)
        else:
            row = images[ex]
            for j in range(n):
                xi[j] = np.float32(row[j]) * scale
        if aug is not None and (aug.params[AUG_FLIP] > 0 or aug.params[AUG_CROP] > 0 or aug.params[AUG_ERASE] > 0):
            transform_image(xi, int(np.sqrt(n) + 0.5), example_key(seed, epoch, ex, STREAM_TRANSFORM), aug.params,
                            scratch)
        if p_in is not None and p_in > 0:
            key = example_key(seed, epoch, ex, STREAM_DROPOUT)
            thr, keep = drop_threshold(p_in), np.float32(1.0 / (1.0 - p_in))
            for j in range(n):
                xi[j] = np.float32(0.0) if bits24(key, j) < thr else xi[j] * keep


# ----------------------------------------------------------------------------- forward

@kernel
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


@kernel
def linear_relu_dropout_forward(x, W, b, z, h, idx, seed, epoch, stream, p):
    """:func:`linear_relu_forward`, then inverted dropout on ``h`` in the same pass.

    Unit j of row i is dropped with probability p (random numbers keyed by (seed, epoch,
    idx[i]) on ``stream``): ``h = 0`` and ``z = -inf``, which the backward's ``z >= 0`` test
    reads as the mask, so no mask buffer is needed. Kept units: ``h = max(z, 0) / (1 - p)``.
    """
    np.dot(x, W.T, z)
    m, n = z.shape
    thr, keep = drop_threshold(p), np.float32(1.0 / (1.0 - p))
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


@kernel
def linear_forward(x, W, b, z):
    """``z = x @ W.T + b``: x (m, n_in), W (n_out, n_in), b (n_out,), z (m, n_out)."""
    np.dot(x, W.T, z)
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] += b[j]


@kernel(inline=True)
def row_max_argmax(logits, i):
    """``(max, first index of the max)`` of row i of a (m, k) array."""
    mx = logits[i, 0]
    arg = 0
    for j in range(1, logits.shape[1]):
        if logits[i, j] > mx:
            mx = logits[i, j]
            arg = j
    return mx, arg


@kernel
def softmax_cross_entropy(logits, labels, dlogits):
    """Mean cross-entropy of softmax(logits) and its gradient, in one pass over each row.

    logits (m, k) float32, labels (m,) integers. Writes ``dlogits = (p - y) / m`` (m, k) and
    returns ``(loss, correct)``: ``loss = -(1/m) sum_i ln p[i, labels[i]]`` with
    ``ln p = z - max - ln sum exp(z - max)``, accumulated in float64, and the number of rows
    whose argmax (first maximum) is the label.
    """
    return smoothed_cross_entropy(logits, labels, dlogits, 0.0)


@kernel
def smoothed_cross_entropy(logits, labels, dlogits, smoothing):
    """:func:`softmax_cross_entropy` against label-smoothed targets ``q = (1 - e) y + e / k``.

    ``loss = -(1/m) sum_i sum_j q_ij ln p_ij``, ``dlogits = (p - q) / m`` (Szegedy et al. 2016);
    ``smoothing = 0`` computes exactly what the plain loss computes.
    """
    m = logits.shape[0]
    total, correct = cross_entropy_rows(logits, labels, dlogits, smoothing, np.float64(m), None, labels)
    return total / m, correct


@kernel
def cross_entropy_rows(logits, labels, dlogits, smoothing, norm, weights, ids):
    """These rows' part of a batch's mean cross-entropy: ``(sum_i w_i l_i, correct)`` and
    ``dlogits_i = w_i (p_i - q_i) / norm``, with ``l_i`` row i's loss against label-smoothed targets
    (:func:`smoothed_cross_entropy`), ``w_i = weights[ids[i]]`` (1 when ``weights`` is None: then
    no weight is read, nor compiled) and ``norm`` the batch's total weight (its row count without
    weights): scikit-learn's weighted mean loss, whose gradient is divided by the weights' sum."""
    m, k = logits.shape
    e_k = np.float32(smoothing / k)
    hit = np.float32(1.0 - smoothing)
    inv_m = np.float32(1.0 / norm)
    total = 0.0
    correct = 0
    for i in range(m):
        w = np.float32(1.0)
        if weights is not None:
            w = weights[ids[i]]
            inv_m = np.float32(w / norm)
        mx, arg = row_max_argmax(logits, i)
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
            loss = hit * (logits[i, y] - mx - lse) + e_k * sum_logp
            dlogits[i, y] -= hit * inv_m
        else:
            loss = logits[i, y] - mx - lse
            for j in range(k):
                dlogits[i, j] = dlogits[i, j] * inv_s * inv_m
            dlogits[i, y] -= inv_m
        total -= loss if weights is None else w * loss
        if arg == y:
            correct += 1
    return total, correct


@kernel
def squared_error_rows(out, targets, dout, norm, weights, ids):
    """These rows' part of a batch's weighted squared error, for regression (identity output):
    ``(sum_i w_i l_i, 0)`` with ``l_i = 1/2 sum_j (out_ij - t_ij)^2`` and ``dout_i = w_i (out_i -
    t_i) / norm`` (``w_i``, ``norm`` as in :func:`cross_entropy_rows`). scikit-learn's
    ``MLPRegressor`` reports this sum over ``norm k`` (the mean over outputs) but steps along its
    gradient over ``norm``, and so does the engine."""
    m, k = out.shape
    inv_m = np.float32(1.0 / norm)
    total = 0.0
    for i in range(m):
        w = np.float32(1.0)
        if weights is not None:
            w = weights[ids[i]]
            inv_m = np.float32(w / norm)
        loss = 0.0
        for j in range(k):
            r = out[i, j] - targets[i, j]
            loss += np.float64(r) * r
            dout[i, j] = r * inv_m
        total += 0.5 * (loss if weights is None else w * loss)
    return total, 0


def loss_rows(out, y, dout, smoothing, norm, weights, ids):
    """:func:`cross_entropy_rows` for class labels (1-D ``y``), :func:`squared_error_rows` for
    regression targets (2-D ``y``): chosen when the calling kernel compiles."""
    if y.ndim == 1:
        return cross_entropy_rows(out, y, dout, smoothing, norm, weights, ids)
    return squared_error_rows(out, y, dout, norm, weights, ids)


@overload(loss_rows, jit_options={"cache": True})
def _loss_rows(out, y, dout, smoothing, norm, weights, ids):
    if y.ndim == 1:
        return lambda out, y, dout, smoothing, norm, weights, ids: cross_entropy_rows(out, y, dout, smoothing, norm,
                                                                                     weights, ids)
    return lambda out, y, dout, smoothing, norm, weights, ids: squared_error_rows(out, y, dout, norm, weights, ids)


# ----------------------------------------------------------------------------- backward

@kernel
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


@kernel
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


@kernel
def bias_grad(dz, db):
    """``db = dz.sum(0)``: dz (m, n), db (n,)."""
    m, n = dz.shape
    for j in range(n):
        db[j] = 0.0
    for i in range(m):
        for j in range(n):
            db[j] += dz[i, j]


@kernel
def linear_backward_weights(dz, x, dW):
    """``dW = dz.T @ x`` through BLAS: dz (m, n_out), x (m, n_in), dW (n_out, n_in)."""
    np.dot(dz.T, x, dW)


@kernel
def linear_backward_input(dz, W, dx):
    """``dx = dz @ W`` through BLAS: dz (m, n_out), W (n_out, n_in), dx (m, n_in)."""
    np.dot(dz, W, dx)


# ----------------------------------------------------------------------------- whole steps

_NO_ROWS = np.zeros(0, np.int64)  # no row list / forward_rows' dropout keys when there is no dropout


@kernel
def forward(params, layout, x, z, h, act_off, m):
    """Forward pass of the whole network for the first m rows of ``x``; returns the logits view."""
    return forward_rows(params, layout, x, z, h, act_off, 0, m, _NO_ROWS, 0, 0, None)


@kernel
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
    elif p is not None and p > 0:
        linear_relu_dropout_forward(inp, W, b, zl, rows_view(h, act_off[l], n_out, r0, r1), idx, seed, epoch,
                                    STREAM_DROPOUT + l + 1, p)
    else:
        linear_relu_forward(inp, W, b, zl, rows_view(h, act_off[l], n_out, r0, r1))


@kernel
def forward_rows(params, layout, x, z, h, act_off, r0, r1, idx, seed, epoch, p):
    """:func:`forward` of rows r0..r1-1 of the workspace's blocks only (a shard of the batch), with
    dropout p on every hidden layer (:func:`layer_rows`; p 0 or None: none); returns those rows' logits."""
    L = layout.shape[0]
    for l in range(L):
        layer_rows(params, layout, l, x, z, h, act_off, r0, r1, idx, seed, epoch, p)
    return rows_view(z, act_off[L - 1], layout[L - 1, N_OUT], r0, r1)


@kernel
def backward(params, grads, layout, x, z, h, d, act_off, m):
    """Backward pass, given ``dl/dlogits`` in the last layer's ``d`` block; fills ``grads``.

    No input gradient is computed for the first layer.
    """
    backward_rows(params, grads, layout, x, z, h, d, act_off, 0, m, None)


@kernel
def backward_rows(params, grads, layout, x, z, h, d, act_off, r0, r1, p):
    """:func:`backward` of rows r0..r1-1 only, after :func:`forward_rows` with dropout p (0 or None:
    none): ``grads`` receives that shard's gradient sums."""
    L = layout.shape[0]
    for l in range(L - 1, -1, -1):
        n_out = layout[l, N_OUT]
        dl = rows_view(d, act_off[l], n_out, r0, r1)
        if l == L - 1:
            bias_grad(dl, bias_view(grads, layout, l))
        elif p is not None and p > 0:
            relu_dropout_backward_bias_grad(dl, rows_view(z, act_off[l], n_out, r0, r1), bias_view(grads, layout, l),
                                            np.float32(1.0 / (1.0 - p)))
        else:
            relu_backward_bias_grad(dl, rows_view(z, act_off[l], n_out, r0, r1), bias_view(grads, layout, l))
        n_in = layout[l, N_IN]
        inp = rows_view(x, 0, n_in, r0, r1) if l == 0 else rows_view(h, act_off[l - 1], n_in, r0, r1)
        linear_backward_weights(dl, inp, weight_view(grads, layout, l))
        if l > 0:
            linear_backward_input(dl, weight_view(params, layout, l), rows_view(d, act_off[l - 1], n_in, r0, r1))
