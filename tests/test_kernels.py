"""The Numba kernels compute what the NumPy reference computes, allocate nothing per step,
and compile once per argument type."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastmlp import kernels
from fastmlp import reference as ref
from fastmlp.model import MLP
from fastmlp.optim import Adam

RTOL = 1e-5
ATOL = 1e-5


def random_images(rng, n, n_in=784):
    return rng.integers(0, 256, (n, n_in), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


# ----------------------------------------------------------------------------- single kernels

@pytest.mark.parametrize("m", [1, 7, 32])
def test_gather_batch_scales_uint8_rows_to_unit_float32_and_picks_labels(m):
    rng = np.random.default_rng(m)
    images, labels = random_images(rng, 50, 13)
    idx = rng.choice(50, m, replace=False).astype(np.int64)
    x = np.full((m, 13), -1, np.float32)
    y = np.full(m, -1, np.int32)
    kernels.gather_batch(images, labels, idx, x, y)
    np.testing.assert_allclose(x, ref.gather_batch(images, idx), rtol=1e-7)
    np.testing.assert_array_equal(y, labels[idx])
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("m,n_in,n_out", [(1, 5, 3), (7, 13, 11), (32, 784, 100)])
def test_linear_relu_forward_matches_reference(m, n_in, n_out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(m, n_in)).astype(np.float32)
    W = rng.normal(size=(n_out, n_in)).astype(np.float32)
    b = rng.normal(size=n_out).astype(np.float32)
    z, h = np.empty((m, n_out), np.float32), np.empty((m, n_out), np.float32)
    kernels.linear_relu_forward(x, W, b, z, h)
    z_ref, _ = ref.linear_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    h_ref, _ = ref.relu(z_ref)
    np.testing.assert_allclose(z, z_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_in))
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_in))
    z2 = np.empty_like(z)
    kernels.linear_forward(x, W, b, z2)
    np.testing.assert_array_equal(z2, z)


@pytest.mark.parametrize("m,n_in,n_out", [(1, 5, 3), (9, 13, 11), (128, 256, 64)])
def test_backward_kernels_match_reference_linear_backward(m, n_in, n_out):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(m, n_in)).astype(np.float32)
    W = rng.normal(size=(n_out, n_in)).astype(np.float32)
    dz = rng.normal(size=(m, n_out)).astype(np.float32)
    dx_ref, dW_ref, db_ref = ref.linear_backward(dz.astype(np.float64), x.astype(np.float64),
                                                 W.astype(np.float64), None)
    dW, dx, db = np.empty_like(W), np.empty_like(x), np.full(n_out, 7, np.float32)
    kernels.linear_backward_weights(dz, x, dW)
    kernels.linear_backward_input(dz, W, dx)
    kernels.bias_grad(dz, db)
    np.testing.assert_allclose(dW, dW_ref, rtol=RTOL, atol=ATOL * np.sqrt(m))
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_out))
    np.testing.assert_allclose(db, db_ref, rtol=RTOL, atol=ATOL * np.sqrt(m))


def test_relu_backward_passes_the_gradient_where_z_is_exactly_zero():
    """The homework's rule is ``dh * (z >= 0)``: at z == 0 the gradient flows."""
    z = np.array([[-1.0, 0.0, 2.0], [0.0, -0.5, -3.0]], np.float32)
    dh = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    d = dh.copy()
    db = np.empty(3, np.float32)
    kernels.relu_backward_bias_grad(d, z, db)
    _, relu_back = ref.relu(z)
    np.testing.assert_array_equal(d, relu_back(dh))
    np.testing.assert_array_equal(d, [[0, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(db, [4, 2, 3])


def test_forward_relu_output_is_zero_at_zero_and_negative_preactivations():
    x = np.ones((1, 2), np.float32)
    W = np.array([[1, -1], [-1, -1], [1, 1]], np.float32)
    b = np.zeros(3, np.float32)
    z, h = np.empty((1, 3), np.float32), np.empty((1, 3), np.float32)
    kernels.linear_relu_forward(x, W, b, z, h)
    np.testing.assert_array_equal(z, [[0, -2, 2]])
    np.testing.assert_array_equal(h, [[0, 0, 2]])


@pytest.mark.parametrize("m,k", [(1, 10), (5, 3), (64, 10)])
def test_softmax_cross_entropy_matches_reference(m, k):
    rng = np.random.default_rng(m)
    logits = (3 * rng.normal(size=(m, k))).astype(np.float32)
    labels = rng.integers(0, k, m).astype(np.int32)
    dlogits = np.empty_like(logits)
    loss, correct = kernels.softmax_cross_entropy(logits, labels, dlogits)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(dlogits, d_ref, rtol=1e-5, atol=1e-7)
    assert correct == int((logits.argmax(1) == labels).sum())
    total, correct_eval = kernels.cross_entropy_eval(logits, labels)
    assert total / m == pytest.approx(loss_ref, rel=1e-5)
    assert correct_eval == correct


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    labels = np.array([1, 2], np.int32)
    dlogits = np.empty_like(logits)
    loss, _ = kernels.softmax_cross_entropy(logits, labels, dlogits)
    assert np.isfinite(loss) and loss == pytest.approx(2e4 / 2, rel=1e-6)
    assert np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-7)


def test_adam_update_follows_the_formula_for_three_steps():
    rng = np.random.default_rng(3)
    p = rng.normal(size=1000).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p64, m64, v64 = p.astype(np.float64), np.zeros(1000), np.zeros(1000)
    lr, b1, b2, eps = 1e-2, 0.8, 0.99, 1e-6
    for t in (1, 2, 3):
        g = rng.normal(size=1000).astype(np.float32)
        kernels.adam_update(p, g, m, v, lr, b1, b2, eps, t)
        m64 = b1 * m64 + (1 - b1) * g
        v64 = b2 * v64 + (1 - b2) * g.astype(np.float64) ** 2
        p64 -= lr * (m64 / (1 - b1 ** t)) / (np.sqrt(v64 / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(m, m64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, v64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p, p64, rtol=1e-5, atol=1e-6)


def test_adam_update_agrees_with_reference_adam_on_layer_views():
    rng = np.random.default_rng(4)
    model = MLP.initialized([7, 5, 3], rng)
    net_params = [a.astype(np.float64) for pair in model.layers() for a in pair]
    opt_ref = ref.Adam(net_params)
    adam = Adam(model.num_parameters)
    for _ in range(4):
        grads = rng.normal(size=model.num_parameters).astype(np.float32)
        adam.step(model.params, grads)
        opt_ref.step([g.astype(np.float64) for pair in model.views(grads) for g in pair])
    for got, want in zip([a for pair in model.layers() for a in pair], net_params):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert adam.t == 4


# ----------------------------------------------------------------------------- whole steps

def engine_and_reference(sizes, seed=1):
    net = ref.NN(sizes, np.random.default_rng(seed), np.float64)
    model = MLP(sizes)
    model.set_from([p.astype(np.float32) for p in net.parameters()])
    return model, net


@pytest.mark.parametrize("hidden", [[17], [31, 9], [20, 20, 20], [8, 7, 6, 5]])
@pytest.mark.parametrize("m", [1, 13])
def test_forward_and_backward_match_reference_for_one_to_four_hidden_layers(hidden, m):
    rng = np.random.default_rng(len(hidden) + m)
    sizes = [29, *hidden, 10]
    model, net = engine_and_reference(sizes)
    images, labels = random_images(rng, 40, 29)
    idx = rng.choice(40, m, replace=False).astype(np.int64)
    ws = model.workspace(16)
    grads = np.zeros_like(model.params)
    x = kernels.block_view(ws.x, 0, m, 29)
    kernels.gather_batch(images, labels, idx, x, ws.y[:m])
    logits = kernels.forward(model.params, model.layout, ws.x, ws.z, ws.h, ws.act_off, m)
    dlogits = kernels.block_view(ws.d, ws.act_off[-1], m, 10)
    loss, _ = kernels.softmax_cross_entropy(logits, ws.y[:m], dlogits)
    kernels.backward(model.params, grads, model.layout, ws.x, ws.z, ws.h, ws.d, ws.act_off, m)

    x64 = ref.gather_batch(images, idx, np.float64)
    logits_ref = net.forward(x64)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits_ref, labels[idx])
    net.backward(d_ref)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    for got, want in zip([g for pair in model.views(grads) for g in pair], net.gradients()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sizes,batch", [([784, 100, 10], 32), ([784, 37, 23, 10], 7), ([784, 5, 5, 5, 5, 10], 1)])
def test_k_train_steps_agree_with_the_float64_reference(sizes, batch):
    """From the same parameters and batches, 12 engine steps (float32) land where 12
    reference steps (float64) land, within float32 tolerance; the last batch is short."""
    rng = np.random.default_rng(7)
    n = 12 * batch - (batch // 2)  # the twelfth batch is short (unless batch is 1)
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes)
    adam, opt_ref = Adam(model.num_parameters), ref.Adam(net.parameters())
    ws = model.workspace(batch)
    grads = np.zeros_like(model.params)
    order = np.random.default_rng(8).permutation(n).astype(np.int64)
    steps = -(-n // batch)
    losses = np.zeros(steps)
    kernels.train_steps(model.params, grads, adam.m, adam.v, model.layout, images, labels, order, 0, steps, batch,
                        ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, 1e-3, 0.9, 0.999, 1e-8, 0, losses)
    ref_losses = []
    for idx in (order[i:i + batch] for i in range(0, n, batch)):
        loss, d = ref.softmax_cross_entropy(net.forward(ref.gather_batch(images, idx, np.float64)), labels[idx])
        net.backward(d)
        opt_ref.step(net.gradients())
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


def test_train_steps_stop_at_a_non_finite_loss_and_mark_the_rest_nan():
    rng = np.random.default_rng(9)
    images, labels = random_images(rng, 64)
    model = MLP.initialized([784, 16, 10], rng)
    model.params[:] = np.float32(1e30)  # logits overflow to inf
    adam, ws, grads = Adam(model.num_parameters), model.workspace(8), np.zeros_like(model.params)
    losses = np.zeros(8)
    before = model.params.copy()
    kernels.train_steps(model.params, grads, adam.m, adam.v, model.layout, images, labels,
                        np.arange(64, dtype=np.int64), 0, 8, 8, ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off,
                        1e-3, 0.9, 0.999, 1e-8, 0, losses)
    assert not np.isfinite(losses[0])
    assert np.all(np.isnan(losses[1:]))
    np.testing.assert_array_equal(model.params, before)  # no update from a non-finite step


def test_evaluate_and_predict_agree_with_reference_forward():
    rng = np.random.default_rng(10)
    images, labels = random_images(rng, 2500)  # more rows than one evaluation chunk
    model, net = engine_and_reference([784, 30, 10])
    logits_ref = net.forward(ref.gather_batch(images, np.arange(2500), np.float64))
    loss_ref, _ = ref.softmax_cross_entropy(logits_ref, labels)
    loss, acc = model.evaluate(images, labels)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert acc == pytest.approx((logits_ref.argmax(1) == labels).mean())
    np.testing.assert_array_equal(model.predict(images), logits_ref.argmax(1))


# ----------------------------------------------------------------------------- no allocation, no recompile

def test_a_train_step_allocates_nothing_inside_the_kernel():
    """Numba's allocator counts every allocation (its statistics switched on). A call of 1 step and a
    call of 9 steps allocate exactly the same: only the wrappers of the array arguments, one
    each, made when the call starts; the steps themselves allocate nothing."""
    code = textwrap.dedent("""
        import numpy as np
        from numba.core.runtime import _nrt_python, rtsys
        _nrt_python.memsys_enable_stats()
        from fastmlp import kernels
        from fastmlp.model import MLP
        from fastmlp.optim import Adam
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (300, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, 300).astype(np.uint8)
        model = MLP.initialized([784, 33, 17, 10], rng)
        adam, ws, g = Adam(model.num_parameters), model.workspace(32), np.zeros_like(model.params)
        order, losses = rng.permutation(300).astype(np.int64), np.zeros(9)
        buffers = [model.params, g, adam.m, adam.v, ws.x, ws.y, ws.z, ws.h, ws.d]
        ids = [b.ctypes.data for b in buffers]
        def call(k):
            before = rtsys.get_allocation_stats().alloc
            kernels.train_steps(model.params, g, adam.m, adam.v, model.layout, images, labels, order, 0, k, 32,
                                ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, 1e-3, 0.9, 0.999, 1e-8, 0, losses)
            return rtsys.get_allocation_stats().alloc - before
        call(1)  # compile / load from cache
        one, nine = call(1), call(9)
        assert [b.ctypes.data for b in buffers] == ids
        print(one, nine)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    one, nine = map(int, out.stdout.split())
    n_array_args = 15
    assert one == nine == n_array_args


def test_kernels_compile_once_per_argument_type():
    """Repeated training and evaluation calls reuse one compiled signature per kernel (other tests
    in the session may have compiled others, for float32 inputs or an L2 penalty: only the
    signatures these calls add are counted)."""
    watched = (kernels.train_steps, kernels.evaluate_rows, kernels.forward, kernels.backward,
               kernels.adam_update, kernels.gather_batch, kernels.softmax_cross_entropy)
    before = {kernel: set(kernel.signatures) for kernel in watched}
    rng = np.random.default_rng(11)
    images, labels = random_images(rng, 100)
    for hidden in ([12], [12, 8], [5, 5, 5]):
        for batch in (1, 10, 32):
            model = MLP.initialized([784, *hidden, 10], rng)
            adam, ws, g = Adam(model.num_parameters), model.workspace(batch), np.zeros_like(model.params)
            losses = np.zeros(3)
            kernels.train_steps(model.params, g, adam.m, adam.v, model.layout, images, labels,
                                np.arange(100, dtype=np.int64), 0, 3, batch, ws.x, ws.y, ws.z, ws.h, ws.d,
                                ws.act_off, 1e-3, 0.9, 0.999, 1e-8, 0, losses)
            model.evaluate(images, labels)
    for kernel in watched:
        used = set(kernel.signatures) - before[kernel]
        assert len(used) <= 1, (kernel, kernel.signatures)
    # Kernels called only from inside others have a dispatcher signature only once called from Python.
    for kernel in (kernels.train_steps, kernels.evaluate_rows):
        assert len(kernel.signatures) >= 1


# ----------------------------------------------------------------------------- L2 penalty, probabilities

@pytest.mark.parametrize("sizes,m,alpha", [([7, 5, 3], 4, 0.1), ([784, 33, 17, 10], 32, 1e-4)])
def test_l2_penalty_grad_matches_the_reference_penalty(sizes, m, alpha):
    """The kernel adds alpha/m * W to each weight gradient, leaves bias gradients alone, and returns
    sum ||W||^2, so that alpha/(2m) times it is the reference's penalty."""
    rng = np.random.default_rng(12)
    model = MLP.initialized(sizes, rng)
    grads = rng.normal(size=model.num_parameters).astype(np.float32)
    before = model.views(grads.copy())
    sq = kernels.l2_penalty_grad(model.params, grads, model.layout, np.float32(alpha / m))
    weights = [W for W, _ in model.layers()]
    penalty, dpen = ref.l2_penalty([W.astype(np.float64) for W in weights], alpha, m)
    assert 0.5 * alpha * sq / m == pytest.approx(penalty, rel=1e-6)
    for (dW, db), (dW0, db0), g in zip(model.views(grads), before, dpen):
        np.testing.assert_allclose(dW, dW0 + g, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(db, db0)


def test_train_steps_with_alpha_agree_with_the_reference_steps_with_the_penalty():
    rng = np.random.default_rng(13)
    sizes, batch, alpha = [784, 37, 10], 16, 0.5
    n = 5 * batch - 3
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes)
    adam, opt_ref = Adam(model.num_parameters), ref.Adam(net.parameters())
    ws, grads = model.workspace(batch), np.zeros_like(model.params)
    order = np.arange(n, dtype=np.int64)
    losses = np.zeros(5)
    kernels.train_steps(model.params, grads, adam.m, adam.v, model.layout, images, labels, order, 0, 5, batch,
                        ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, 1e-3, 0.9, 0.999, 1e-8, 0, losses, alpha)
    ref_losses = []
    for idx in (order[i:i + batch] for i in range(0, n, batch)):
        loss, d = ref.softmax_cross_entropy(net.forward(ref.gather_batch(images, idx, np.float64)), labels[idx])
        net.backward(d)
        penalty, dpen = ref.l2_penalty([layer.W for layer in net.layers], alpha, len(idx))
        for layer, g in zip(net.layers, dpen):
            layer.dW = layer.dW + g
        opt_ref.step(net.gradients())
        ref_losses.append(loss + penalty)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_proba_rows_is_the_reference_softmax_and_log_softmax_of_the_logits(dtype):
    rng = np.random.default_rng(14)
    images, _ = random_images(rng, 700, 20)  # more rows than one chunk of 256
    if dtype == np.float32:
        images = rng.normal(size=(700, 20)).astype(np.float32)
    model, net = engine_and_reference([20, 9, 4])
    x = ref.gather_batch(images, np.arange(700), np.float64) if dtype == np.uint8 else images.astype(np.float64)
    logits = net.forward(x)
    ws = model.workspace(256)
    for log, want in ((False, ref.softmax(logits)), (True, ref.log_softmax(logits))):
        out = np.full((700, 4), np.nan)
        kernels.proba_rows(model.params, model.layout, images, ws.x, ws.z, ws.h, ws.act_off, out, log)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    out = np.empty((700, 4))
    kernels.proba_rows(model.params, model.layout, images, ws.x, ws.z, ws.h, ws.act_off, out, False)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
