"""The engine's single kernels compute what their twins in the NumPy reference compute: the gather,
dense forward and backward, the loss, Adam and the recipe's pieces, the L2 penalty."""

import numpy as np
import pytest
from helpers import activations, engine_and_reference, random_images

from fastmlp import reference as ref
from fastmlp.engine import layers, update
from fastmlp.training.model import MLP
from fastmlp.training.optim import Adam

RTOL = 1e-5
ATOL = 1e-5


# ----------------------------------------------------------------------------- single kernels

@pytest.mark.parametrize("m", [1, 7, 32])
def test_gather_batch_scales_uint8_rows_to_unit_float32_and_picks_labels(m):
    rng = np.random.default_rng(m)
    images, labels = random_images(rng, 50, 13)
    idx = rng.choice(50, m, replace=False).astype(np.int64)
    x = np.full((m, 13), -1, np.float32)
    y = np.full(m, -1, np.int32)
    layers.gather_batch(images, labels, idx, x, y)
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
    layers.linear_relu_forward(x, W, b, z, h)
    z_ref, _ = ref.linear_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    h_ref, _ = ref.relu(z_ref)
    np.testing.assert_allclose(z, z_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_in))
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_in))
    z2 = np.empty_like(z)
    layers.linear_forward(x, W, b, z2)
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
    layers.linear_backward_weights(dz, x, dW)
    layers.linear_backward_input(dz, W, dx)
    layers.bias_grad(dz, db)
    np.testing.assert_allclose(dW, dW_ref, rtol=RTOL, atol=ATOL * np.sqrt(m))
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL * np.sqrt(n_out))
    np.testing.assert_allclose(db, db_ref, rtol=RTOL, atol=ATOL * np.sqrt(m))


def test_relu_backward_passes_the_gradient_where_z_is_exactly_zero():
    """The homework's rule is ``dh * (z >= 0)``: at z == 0 the gradient flows."""
    z = np.array([[-1.0, 0.0, 2.0], [0.0, -0.5, -3.0]], np.float32)
    dh = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    d = dh.copy()
    db = np.empty(3, np.float32)
    layers.relu_backward_bias_grad(d, z, db)
    _, relu_back = ref.relu(z)
    np.testing.assert_array_equal(d, relu_back(dh))
    np.testing.assert_array_equal(d, [[0, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(db, [4, 2, 3])


def test_forward_relu_output_is_zero_at_zero_and_negative_preactivations():
    x = np.ones((1, 2), np.float32)
    W = np.array([[1, -1], [-1, -1], [1, 1]], np.float32)
    b = np.zeros(3, np.float32)
    z, h = np.empty((1, 3), np.float32), np.empty((1, 3), np.float32)
    layers.linear_relu_forward(x, W, b, z, h)
    np.testing.assert_array_equal(z, [[0, -2, 2]])
    np.testing.assert_array_equal(h, [[0, 0, 2]])


@pytest.mark.parametrize("m,k", [(1, 10), (5, 3), (64, 10)])
def test_softmax_cross_entropy_matches_reference(m, k):
    rng = np.random.default_rng(m)
    logits = (3 * rng.normal(size=(m, k))).astype(np.float32)
    labels = rng.integers(0, k, m).astype(np.int32)
    dlogits = np.empty_like(logits)
    loss, correct = layers.softmax_cross_entropy(logits, labels, dlogits)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(dlogits, d_ref, rtol=1e-5, atol=1e-7)
    assert correct == int((logits.argmax(1) == labels).sum())


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    labels = np.array([1, 2], np.int32)
    dlogits = np.empty_like(logits)
    loss, _ = layers.softmax_cross_entropy(logits, labels, dlogits)
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
        update.adam_update(p, g, m, v, lr, b1, b2, eps, t)
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


# ----------------------------------------------------------------------------- the recipe's kernels

def test_dropout_forward_and_backward_match_the_reference_with_the_same_masks():
    rng = np.random.default_rng(12)
    m, n_in, n_out, p = 9, 13, 40, 0.3
    x = rng.normal(size=(m, n_in)).astype(np.float32)
    W = rng.normal(size=(n_out, n_in)).astype(np.float32)
    b = rng.normal(size=n_out).astype(np.float32)
    idx = rng.choice(1000, m, replace=False).astype(np.int64)
    z, h = np.empty((m, n_out), np.float32), np.empty((m, n_out), np.float32)
    layers.linear_relu_dropout_forward(x, W, b, z, h, idx, 5, 3, 2, p)
    mask = ref.dropout_mask(5, 3, idx, 2, n_out, p)
    z_ref, _ = ref.linear_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    h_ref, relu_back = ref.relu(z_ref)
    np.testing.assert_allclose(h, h_ref * mask, rtol=RTOL, atol=ATOL * 4)
    assert 0.2 < (mask == 0).mean() < 0.4
    dh = rng.normal(size=(m, n_out)).astype(np.float32)
    d, db = dh.copy(), np.empty(n_out, np.float32)
    layers.relu_dropout_backward_bias_grad(d, z, db, np.float32(1 / (1 - p)))
    np.testing.assert_allclose(d, relu_back(dh * mask), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(db, relu_back(dh * mask).sum(0), rtol=RTOL, atol=ATOL * 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.3])
def test_label_smoothing_matches_the_reference(smoothing):
    rng = np.random.default_rng(13)
    logits = (3 * rng.normal(size=(17, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 17).astype(np.int32)
    dlogits = np.empty_like(logits)
    loss, correct = layers.smoothed_cross_entropy(logits, labels, dlogits, smoothing)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels, smoothing)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(dlogits, d_ref, rtol=1e-5, atol=1e-7)
    assert correct == int((logits.argmax(1) == labels).sum())
    if smoothing == 0:  # exactly the plain loss
        d_plain = np.empty_like(logits)
        assert layers.softmax_cross_entropy(logits, labels, d_plain)[0] == loss
        np.testing.assert_array_equal(d_plain, dlogits)


def test_adamw_with_max_norm_and_average_matches_the_reference():
    rng = np.random.default_rng(14)
    model = MLP.initialized([7, 6, 5, 3], rng)
    params_ref = [a.astype(np.float64) for pair in model.layers() for a in pair]
    avg_ref = [p.copy() for p in params_ref]
    opt_ref = ref.Adam(params_ref, 3e-2, weight_decay=0.5, max_norm=1.2)
    adam = Adam(model.num_parameters, 3e-2, weight_decay=0.5, max_norm=1.2, ema_decay=0.95)
    adam.start_average(model.params)
    for t in range(1, 6):
        lr = 3e-2 * t / 5
        grads = rng.normal(size=model.num_parameters).astype(np.float32)
        adam.step(model.params, grads, model.layout, lr)
        opt_ref.step([g.astype(np.float64) for pair in model.views(grads) for g in pair], lr)
        ref.ema_update(avg_ref, params_ref, 0.95, t)
    flat = [a for pair in model.layers() for a in pair]
    for got, want in zip(flat, params_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip([a for pair in model.views(adam.ema) for a in pair], avg_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    norms = [np.linalg.norm(W, axis=1).max() for W, _ in model.layers()]
    assert norms[0] <= 1.2 + 1e-5 and norms[1] <= 1.2 + 1e-5  # hidden units capped; the output layer not


@pytest.mark.parametrize("kind", ["constant", "cosine", "onecycle"])
def test_lr_schedules_match_the_reference(kind):
    code = {"constant": update.SCHED_CONSTANT, "cosine": update.SCHED_COSINE, "onecycle": update.SCHED_ONECYCLE}
    got = [update.lr_at_step(code[kind], 2e-3, k, 7.5, 50.0, 0.05) for k in range(60)]
    want = [ref.lr_schedule(kind, 2e-3, k, 7.5, 50, 0.05) for k in range(60)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if kind != "constant":
        assert max(got) == pytest.approx(2e-3, rel=0.02) and got[-1] == pytest.approx(1e-4)


# ----------------------------------------------------------------------------- whole steps

@pytest.mark.parametrize("hidden", [[17], [31, 9], [20, 20, 20], [8, 7, 6, 5]])
@pytest.mark.parametrize("m", [1, 13])
def test_forward_and_backward_match_reference_for_one_to_four_hidden_layers(hidden, m):
    rng = np.random.default_rng(len(hidden) + m)
    sizes = [29, *hidden, 10]
    model, net = engine_and_reference(sizes, seed=1)
    images, labels = random_images(rng, 40, 29)
    idx = rng.choice(40, m, replace=False).astype(np.int64)
    x_buf, y_buf, z, h, d, act_off = activations(sizes, 16)
    grads = np.zeros_like(model.params)
    x = x_buf[:m * 29].reshape(m, 29)
    layers.gather_batch(images, labels, idx, x, y_buf[:m])
    logits = layers.forward(model.params, model.layout, x_buf, z, h, act_off, m)
    dlogits = d[act_off[-1]:act_off[-1] + m * 10].reshape(m, 10)
    loss, _ = layers.softmax_cross_entropy(logits, y_buf[:m], dlogits)
    layers.backward(model.params, grads, model.layout, x_buf, z, h, d, act_off, m)

    x64 = ref.gather_batch(images, idx, np.float64)
    logits_ref = net.forward(x64)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits_ref, labels[idx])
    net.backward(d_ref)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    for got, want in zip([g for pair in model.views(grads) for g in pair], net.gradients()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- L2 penalty

@pytest.mark.parametrize("sizes,m,alpha", [([7, 5, 3], 4, 0.1), ([784, 33, 17, 10], 32, 1e-4)])
def test_the_l2_penalty_adds_alpha_over_m_times_w_to_weight_gradients_and_sums_their_squares(sizes, m, alpha):
    """Row by row, the kernel adds alpha/m * W to each weight gradient, leaves bias gradients alone, and
    returns sum W^2, so that alpha/(2m) times its sum over a layer's rows is the reference's penalty."""
    rng = np.random.default_rng(12)
    model = MLP.initialized(sizes, rng)
    grads = rng.normal(size=model.num_parameters).astype(np.float32)
    before = model.views(grads.copy())
    sq = 0.0
    for l in range(len(sizes) - 1):
        half = sizes[l + 1] // 2
        for r0, r1 in ((0, half), (half, sizes[l + 1])):
            sq += update.l2_penalty_rows(model.params, grads, model.layout, l, r0, r1, alpha / m)
    weights = [W for W, _ in model.layers()]
    penalty, dpen = ref.l2_penalty([W.astype(np.float64) for W in weights], alpha, m)
    assert 0.5 * alpha * sq / m == pytest.approx(penalty, rel=1e-6)
    for (dW, db), (dW0, db0), g in zip(model.views(grads), before, dpen):
        np.testing.assert_allclose(dW, dW0 + g, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(db, db0)
