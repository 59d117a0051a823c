"""Each Numba kernel of a row shard's step (``fastmlp.engine.layers``) and Adam (``fastmlp.engine.update``)
beside its NumPy reference, at the shapes training uses.

One ``benchmark.group`` per (operation, shape), so pytest-benchmark prints each pair side by
side. Inputs are synthetic (random uint8 images, random float32 activations). Every pair is
checked to agree before it is timed, and every kernel is compiled before it is timed.
"""

from __future__ import annotations

import numpy as np
import pytest
from common import layer_sizes, numba_dot

from fastmlp import reference
from fastmlp.engine import layers, update
from fastmlp.training.model import MLP

# Kernels take microseconds: half a second of rounds per benchmark is plenty and keeps `make bench` short.
pytestmark = pytest.mark.benchmark(max_time=0.5)

RNG = np.random.default_rng(1234)
F32 = np.float32


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def shape_name(m, n_in, n_out):
    return f"{m}x{n_in}->{n_out}"


# ----------------------------------------------------------------------------- gather

@pytest.mark.parametrize("impl", ["fastmlp", "reference"])
@pytest.mark.parametrize("m", [32, 128])
def test_gather_batch(benchmark, synthetic, m, impl):
    images, labels = synthetic
    idx = np.random.default_rng(m).choice(len(images), m, replace=False).astype(np.int64)
    x = np.empty((m, images.shape[1]), F32)
    y = np.empty(m, np.int32)
    layers.gather_batch(images, labels, idx, x, y)
    np.testing.assert_allclose(x, reference.gather_batch(images, idx), rtol=1e-6)
    benchmark.group = f"gather_batch {m}x784 uint8 -> float32"
    benchmark.extra_info["shape"] = [m, images.shape[1]]
    if impl == "fastmlp":
        benchmark(layers.gather_batch, images, labels, idx, x, y)
    else:
        benchmark(lambda: (reference.gather_batch(images, idx), labels[idx]))


# ----------------------------------------------------------------------------- forward

FORWARD_SHAPES = [(32, 784, 100), (128, 784, 1024), (128, 1024, 1024), (128, 784, 256)]


@pytest.mark.parametrize("impl", ["fastmlp", "reference", "gemm only (np.dot out=)", "gemm only (numba np.dot)"])
@pytest.mark.parametrize("m,n_in,n_out", FORWARD_SHAPES)
def test_linear_relu_forward(benchmark, m, n_in, n_out, impl):
    x = RNG.random((m, n_in), dtype=F32)
    W, b = rand(n_out, n_in, scale=n_in ** -0.5), rand(n_out, scale=0.1)
    z, h = np.empty((m, n_out), F32), np.empty((m, n_out), F32)
    layers.linear_relu_forward(x, W, b, z, h)
    z_ref, _ = reference.linear_forward(x, W, b)
    h_ref, _ = reference.relu(z_ref)
    np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-5)
    benchmark.group = f"linear_relu_forward {shape_name(m, n_in, n_out)}"
    benchmark.extra_info["gflop"] = 2 * m * n_in * n_out / 1e9
    if impl == "fastmlp":
        benchmark(layers.linear_relu_forward, x, W, b, z, h)
    elif impl == "reference":
        benchmark(lambda: reference.relu(reference.linear_forward(x, W, b)[0])[0])
    elif impl == "gemm only (numba np.dot)":
        numba_dot(x, W.T, z)
        benchmark(numba_dot, x, W.T, z)
    else:
        benchmark(np.dot, x, W.T, z)


# ----------------------------------------------------------------------------- backward

# A hidden layer (it has an input gradient): the ReLU mask, the bias, weight and input gradients.
BACKWARD_SHAPES = [(128, 1024, 1024), (128, 256, 128), (128, 784, 256)]


def _backward_inputs(m, n_in, n_out):
    x = RNG.random((m, n_in), dtype=F32)
    W = rand(n_out, n_in, scale=n_in ** -0.5)
    z = rand(m, n_out)
    dh = rand(m, n_out, scale=1e-2)
    return x, W, z, dh


@pytest.mark.parametrize("impl", ["fastmlp", "reference"])
@pytest.mark.parametrize("m,n_in,n_out", BACKWARD_SHAPES)
def test_linear_backward(benchmark, m, n_in, n_out, impl):
    """relu_backward_bias_grad + linear_backward_weights + linear_backward_input vs the reference's
    ReLU backward + ``reference.linear_backward``."""
    x, W, z, dh = _backward_inputs(m, n_in, n_out)
    d = dh.copy()  # masked in place; masking again is a no-op, so repeated rounds do the same work
    db, dW, dx = np.empty(n_out, F32), np.empty((n_out, n_in), F32), np.empty((m, n_in), F32)
    _, relu_back = reference.relu(z)

    def fast():
        layers.relu_backward_bias_grad(d, z, db)
        layers.linear_backward_weights(d, x, dW)
        layers.linear_backward_input(d, W, dx)

    def ref():
        return reference.linear_backward(relu_back(dh), x, W, None)

    fast()
    dx_ref, dW_ref, db_ref = ref()
    for got, want in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    benchmark.group = f"linear backward (ReLU layer) {shape_name(m, n_in, n_out)}"
    benchmark.extra_info["gflop"] = 4 * m * n_in * n_out / 1e9
    benchmark(fast if impl == "fastmlp" else ref)


PIECES = ["mask+bias grad", "dW = dz.T @ x", "dx = dz @ W"]


@pytest.mark.parametrize("impl", ["fastmlp", "numpy"])
@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("m,n_in,n_out", [(128, 1024, 1024)])
def test_backward_pieces(benchmark, m, n_in, n_out, piece, impl):
    """Each backward kernel alone beside the same operation in NumPy (``out=`` buffers)."""
    x, W, z, dh = _backward_inputs(m, n_in, n_out)
    d = dh * (z >= 0)
    db, dW, dx = np.empty(n_out, F32), np.empty((n_out, n_in), F32), np.empty((m, n_in), F32)
    mask = np.empty_like(d)
    if piece == PIECES[0]:
        def numpy_fn():
            np.multiply(d, z >= 0, out=mask)
            mask.sum(axis=0, out=db)
        fast = (layers.relu_backward_bias_grad, d, z, db)
    elif piece == PIECES[1]:
        def numpy_fn():
            np.dot(d.T, x, out=dW)
        fast = (layers.linear_backward_weights, d, x, dW)
    else:
        def numpy_fn():
            np.dot(d, W, out=dx)
        fast = (layers.linear_backward_input, d, W, dx)
    fast[0](*fast[1:])
    benchmark.group = f"backward piece {shape_name(m, n_in, n_out)}: {piece}"
    if impl == "fastmlp":
        benchmark(*fast)
    else:
        benchmark(numpy_fn)


# ----------------------------------------------------------------------------- loss

@pytest.mark.parametrize("impl", ["fastmlp", "reference"])
@pytest.mark.parametrize("m", [32, 128])
def test_softmax_cross_entropy(benchmark, m, impl):
    logits = rand(m, 10, scale=3.0)
    labels = np.random.default_rng(m).integers(0, 10, m).astype(np.int32)
    dlogits = np.empty_like(logits)
    loss, _ = layers.softmax_cross_entropy(logits, labels, dlogits)
    loss_ref, d_ref = reference.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(dlogits, d_ref, rtol=1e-4, atol=1e-7)
    benchmark.group = f"softmax_cross_entropy {m}x10"
    if impl == "fastmlp":
        benchmark(layers.softmax_cross_entropy, logits, labels, dlogits)
    else:
        benchmark(reference.softmax_cross_entropy, logits, labels)


# ----------------------------------------------------------------------------- Adam

@pytest.mark.parametrize("impl", ["fastmlp", "reference"])
@pytest.mark.parametrize("hidden", [(256, 128), (1024, 1024)], ids=["256,128", "1024,1024"])
def test_adam_update(benchmark, hidden, impl):
    """One Adam step over every parameter of the network: the flat-buffer kernel vs
    ``reference.Adam.step`` over the per-layer arrays."""
    model = MLP(layer_sizes(hidden))
    n = model.num_parameters
    params, grads = rand(n, scale=0.05), rand(n, scale=1e-3)
    m, v = np.zeros(n, F32), np.zeros(n, F32)
    p_ref = params.copy()
    ref_arrays = [a for pair in model.views(p_ref) for a in pair]
    grad_arrays = [a for pair in model.views(grads) for a in pair]
    opt = reference.Adam(ref_arrays, 1e-3, 0.9, 0.999, 1e-8)
    update.adam_update(params, grads, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    opt.step(grad_arrays)
    np.testing.assert_allclose(params, p_ref, rtol=1e-5, atol=1e-7)
    benchmark.group = f"adam_update {n:,} parameters ({','.join(map(str, hidden))})"
    benchmark.extra_info["parameters"] = n
    if impl == "fastmlp":
        benchmark(update.adam_update, params, grads, m, v, 1e-3, 0.9, 0.999, 1e-8, 10)
    else:
        benchmark(opt.step, grad_arrays)
