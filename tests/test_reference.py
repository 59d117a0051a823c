"""fastmlp.reference: the homework's network in plain NumPy, the ground truth for the engine.

Small cases are worked out by hand and written out as numbers. ``reference.test_cases`` is
reached through the module (``from fastmlp import reference``) so pytest does not collect it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastmlp import reference


def allclose(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- linear layer

# x (m=2, n_in=2), W (n_out=3, n_in=2), b (3,); z = x @ W.T + b
X = np.array([[1.0, 2.0],
              [3.0, -1.0]])
W = np.array([[1.0, 0.0],
              [2.0, -1.0],
              [0.5, 3.0]])
B = np.array([0.5, -1.0, 2.0])
Z = np.array([[1.5, -1.0, 8.5],    # [1*1+2*0, 1*2-2*1, 1*.5+2*3] + b
              [3.5, 6.0, 0.5]])    # [3*1-1*0, 3*2+1*1, 3*.5-1*3] + b
DZ = np.array([[1.0, 0.0, -1.0],
               [2.0, 1.0, 0.0]])
DX = np.array([[0.5, -3.0],        # 1*W[0] - 1*W[2]
               [4.0, -1.0]])       # 2*W[0] + 1*W[1]
DW = np.array([[7.0, 0.0],         # 1*x[0] + 2*x[1]
               [3.0, -1.0],        # 0*x[0] + 1*x[1]
               [-1.0, -2.0]])      # -1*x[0] + 0*x[1]
DB = np.array([3.0, 1.0, -1.0])    # dz summed over the batch


def test_linear_forward_computes_x_times_W_transposed_plus_b_by_hand():
    z, _ = reference.linear_forward(X, W, B)
    allclose(z, Z)


def test_linear_backward_gives_dx_dW_db_by_hand():
    dx, dW, db = reference.linear_backward(DZ, X, W, B)
    allclose(dx, DX)
    allclose(dW, DW)
    allclose(db, DB)
    assert dx.shape == X.shape and dW.shape == W.shape and db.shape == B.shape


def test_linear_forward_backward_closure_equals_linear_backward():
    rng = np.random.default_rng(0)
    x, w, b, dz = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(5, 3))
    _, backward = reference.linear_forward(x, w, b)
    for got, want in zip(backward(dz), reference.linear_backward(dz, x, w, b)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_layer_keeps_the_dtype(dtype):
    x, w, b = X.astype(dtype), W.astype(dtype), B.astype(dtype)
    z, backward = reference.linear_forward(x, w, b)
    assert z.dtype == dtype
    assert all(g.dtype == dtype for g in backward(DZ.astype(dtype)))


# ----------------------------------------------------------------------------- relu

def test_relu_forward_is_max_of_z_and_zero():
    z = np.array([[-2.0, 0.0, 3.0], [0.5, -1e-12, 1e-12]])
    h, _ = reference.relu(z)
    allclose(h, [[0.0, 0.0, 3.0], [0.5, 0.0, 1e-12]], atol=0)
    assert z[0, 0] == -2.0, "relu must not modify its input"


def test_relu_backward_passes_the_gradient_where_z_is_positive_or_exactly_zero():
    """The homework rule: ``dh * (z >= 0)``, so the gradient passes at z == 0."""
    z = np.array([[-2.0, 0.0, 3.0], [0.5, -1e-12, 1e-12]])
    dh = np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    _, backward = reference.relu(z)
    allclose(backward(dh), [[0.0, 20.0, 30.0], [40.0, 0.0, 60.0]], atol=0)


# ----------------------------------------------------------------------------- DenseLayer

def test_dense_layer_starts_with_zero_bias_and_W_of_shape_n_out_by_n_in():
    layer = reference.DenseLayer(7, 3, np.random.default_rng(0))
    assert layer.W.shape == (3, 7)
    assert layer.b.shape == (3,)
    assert np.all(layer.b == 0)


@pytest.mark.parametrize("n_in", [16, 400, 2500])
def test_dense_layer_weights_have_mean_0_and_std_1_over_sqrt_n_in(n_in):
    """With >= 100k draws the sample std is within 0.5% (2 sigma); 5% cannot flake."""
    n_out = max(1, 120_000 // n_in)
    W = reference.DenseLayer(n_in, n_out, np.random.default_rng(1)).W
    target = 1 / math.sqrt(n_in)
    assert W.std() == pytest.approx(target, rel=0.05)
    assert abs(W.mean()) < 0.05 * target


def test_dense_layer_init_is_seeded_and_deterministic():
    a = reference.DenseLayer(20, 10, np.random.default_rng(42))
    b = reference.DenseLayer(20, 10, np.random.default_rng(42))
    c = reference.DenseLayer(20, 10, np.random.default_rng(43))
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, c.W)


def test_float32_and_float64_layers_from_one_seed_agree():
    w32 = reference.DenseLayer(30, 20, np.random.default_rng(5), dtype=np.float32).W
    w64 = reference.DenseLayer(30, 20, np.random.default_rng(5), dtype=np.float64).W
    assert w32.dtype == np.float32 and w64.dtype == np.float64
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


def test_dense_layer_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError):
        reference.DenseLayer(3, 2, np.random.default_rng(0)).backward(np.ones((1, 2)))


def test_dense_layer_backward_stores_dW_db_and_returns_dx():
    layer = reference.DenseLayer(2, 3, np.random.default_rng(0))
    layer.W[:], layer.b[:] = W, B
    allclose(layer.forward(X), Z)
    allclose(layer.backward(DZ), DX)
    allclose(layer.dW, DW)
    allclose(layer.db, DB)


# ----------------------------------------------------------------------------- NN

@pytest.mark.parametrize("hidden", [(5,), (5, 4), (5, 4, 6), (5, 4, 6, 3)], ids=lambda h: f"{len(h)}-hidden")
def test_nn_forward_backward_shapes_and_aligned_parameters_and_gradients(hidden):
    sizes = [7, *hidden, 3]
    rng = np.random.default_rng(0)
    net = reference.NN(sizes, rng)
    x = rng.normal(size=(4, 7))
    logits = net.forward(x)
    assert logits.shape == (4, 3)
    dx = net.backward(np.ones_like(logits))
    assert dx.shape == x.shape
    params, grads = net.parameters(), net.gradients()
    assert len(params) == len(grads) == 2 * (len(hidden) + 1)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        assert params[2 * i].shape == grads[2 * i].shape == (n_out, n_in)
        assert params[2 * i + 1].shape == grads[2 * i + 1].shape == (n_out,)
    assert params[0] is net.layers[0].W and params[-1] is net.layers[-1].b


def test_nn_forward_is_relu_layers_then_a_linear_output():
    rng = np.random.default_rng(3)
    net = reference.NN([4, 5, 6, 2], rng)
    for layer in net.layers:
        layer.b[:] = rng.normal(size=layer.b.shape)
    x = rng.normal(size=(3, 4))
    (W1, b1), (W2, b2), (W3, b3) = [(layer.W, layer.b) for layer in net.layers]
    h1 = np.maximum(x @ W1.T + b1, 0)
    h2 = np.maximum(h1 @ W2.T + b2, 0)
    allclose(net.forward(x), h2 @ W3.T + b3)
    np.testing.assert_array_equal(net.predict(x), (h2 @ W3.T + b3).argmax(axis=1))


def test_nn_with_the_same_seed_is_the_same_network():
    a = reference.NN([6, 5, 3], np.random.default_rng(9))
    b = reference.NN([6, 5, 3], np.random.default_rng(9))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("sizes", [[784], [], [784, 0, 10], [784, -5, 10]])
def test_nn_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError):
        reference.NN(sizes)


# ----------------------------------------------------------------------------- loss

def test_softmax_cross_entropy_two_classes_by_hand():
    loss, dh = reference.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([0]))
    assert loss == pytest.approx(math.log(2), rel=1e-12)
    allclose(dh, [[-0.5, 0.5]])


def test_softmax_cross_entropy_batch_of_two_by_hand():
    """Row 0: p = (1/3, 1/3, 1/3), label 2. Row 1: p = (1/8, 2/8, 5/8), label 1.

    loss = (ln 3 + ln 4) / 2 = ln(12) / 2; dh = (p - y) / 2.
    """
    h = np.array([[0.0, 0.0, 0.0],
                  [0.0, math.log(2), math.log(5)]])
    loss, dh = reference.softmax_cross_entropy(h, np.array([2, 1]))
    assert loss == pytest.approx(math.log(12) / 2, rel=1e-12)
    allclose(dh, [[1 / 6, 1 / 6, -1 / 3],
                  [1 / 16, -3 / 8, 5 / 16]])


def test_integer_labels_equal_one_hot_rows():
    rng = np.random.default_rng(0)
    h, labels = rng.normal(size=(6, 4)), np.array([0, 3, 1, 1, 2, 3])
    one_hot = np.eye(4)[labels]
    loss_i, dh_i = reference.softmax_cross_entropy(h, labels)
    loss_o, dh_o = reference.softmax_cross_entropy(h, one_hot)
    assert loss_i == pytest.approx(loss_o, rel=1e-14)
    allclose(dh_i, dh_o, rtol=1e-14, atol=1e-17)
    np.testing.assert_array_equal(reference.one_hot(labels, 4), one_hot)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype):
    """Logits of +-1e4 give a finite loss and gradient, without overflow or invalid operations."""
    h = np.array([[1e4, -1e4, 0.0],
                  [-1e4, -1e4, 1e4],
                  [1e4, 1e4, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dh = reference.softmax_cross_entropy(h, np.array([1, 2, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dh))
    # row 0: -ln p = 2e4; row 1: 0; row 2: ln 3
    assert float(loss) == pytest.approx((2e4 + 0 + math.log(3)) / 3, rel=1e-6)
    assert dh.dtype == dtype


def test_softmax_gradient_is_p_minus_y_over_m_and_its_rows_sum_to_zero():
    rng = np.random.default_rng(1)
    h, labels = rng.normal(scale=3, size=(9, 5)), rng.integers(0, 5, 9)
    _, dh = reference.softmax_cross_entropy(h, labels)
    p = np.exp(h) / np.exp(h).sum(axis=1, keepdims=True)
    allclose(dh, (p - np.eye(5)[labels]) / 9, rtol=1e-12, atol=1e-15)
    allclose(dh.sum(axis=1), np.zeros(9), atol=1e-15)


def test_softmax_cross_entropy_keeps_float32():
    h = np.zeros((2, 3), np.float32)
    _, dh = reference.softmax_cross_entropy(h, np.array([0, 1]))
    assert dh.dtype == np.float32


# ----------------------------------------------------------------------------- gradient check

def test_finite_difference_check_passes_for_every_array_in_float64():
    results = reference.test_cases()
    assert [r.name for r in results] == ["W1", "b1", "W2", "b2", "W3", "b3", "x"]
    failed = [(r.name, r.max_rel_error) for r in results if not r.passed]
    assert failed == []
    assert all(r.max_rel_error < 1e-6 for r in results)


@pytest.mark.parametrize("hidden", [(5,), (5, 4), (5, 4, 4), (5, 4, 4, 5)], ids=lambda h: f"{len(h)}-hidden")
def test_reference_gradients_agree_with_finite_differences_at_any_depth_and_seed(hidden):
    """A step of 1e-4 keeps the finite-difference noise well below the tolerance."""
    sizes = (6, *hidden, 3)
    for seed in range(10):
        failed = [r.name for r in reference.test_cases(sizes, seed=seed, step=1e-4, tol=1e-5) if not r.passed]
        assert failed == [], f"seed {seed}"


def test_default_finite_difference_check_has_no_false_failures_across_depths_and_seeds():
    failures = []
    for hidden in [(5,), (5, 4), (5, 4, 4), (5, 4, 4, 5)]:
        for seed in range(10):
            results = reference.test_cases((6, *hidden, 3), seed=seed)
            failures += [(hidden, seed, r.name) for r in results if not r.passed]
    assert failures == []


def test_finite_difference_check_detects_a_wrong_bias_gradient(monkeypatch):
    """Doubling db in linear_backward must fail exactly the bias checks: the check can fail."""
    real = reference.linear_backward

    def doubled_db(dz, x, W, b):
        dx, dW, db = real(dz, x, W, b)
        return dx, dW, 2 * db

    monkeypatch.setattr(reference, "linear_backward", doubled_db)
    results = {r.name: r for r in reference.test_cases()}
    assert sorted(n for n, r in results.items() if not r.passed) == ["b1", "b2", "b3"]
    assert all(results[n].max_rel_error > 0.1 for n in ("b1", "b2", "b3"))


def test_finite_difference_check_detects_a_missing_relu_mask(monkeypatch):
    def relu_without_mask(z):
        return np.maximum(z, 0), lambda dh: dh

    monkeypatch.setattr(reference, "relu", relu_without_mask)
    failed = [r.name for r in reference.test_cases() if not r.passed]
    assert "W1" in failed and "x" in failed


def test_relative_error_is_zero_for_equal_arrays_and_one_for_opposite_ones():
    a = np.array([1.0, -2.0, 0.0])
    assert reference.relative_error(a, a) == 0.0
    assert reference.relative_error(a, -a) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- Adam

def test_adam_two_steps_by_hand():
    """lr 0.1, betas (0.9, 0.999), eps 1e-8; p = (1, -2).

    Step 1, g = (0.5, -1): m = (0.05, -0.1), v = (0.00025, 0.001); m^ = g, v^ = g^2,
    so p -= 0.1 * g / |g|: p = (0.9, -1.9).
    Step 2, g = (0.5, 1): m = (0.095, 0.01), v = (0.00049975, 0.001999); with c1 = 0.19 and
    c2 = 0.001999: m^ = (0.5, 1/19), sqrt(v^) = (0.5, 1), so p -= 0.1 * (1, 1/19):
    p = (0.8, -1.9 - 1/190).
    """
    p = np.array([1.0, -2.0])
    opt = reference.Adam([p], lr=0.1)
    opt.step([np.array([0.5, -1.0])])
    allclose(opt.m[0], [0.05, -0.1], rtol=1e-12)
    allclose(opt.v[0], [0.00025, 0.001], rtol=1e-12)
    allclose(p, [0.9, -1.9], rtol=0, atol=1e-7)
    opt.step([np.array([0.5, 1.0])])
    allclose(opt.m[0], [0.095, 0.01], rtol=1e-12)
    allclose(opt.v[0], [0.00049975, 0.001999], rtol=1e-12)
    allclose(p, [0.8, -1.9 - 1 / 190], rtol=0, atol=1e-7)
    assert opt.t == 2


def test_adam_follows_algorithm_1_for_random_gradients():
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 3e-3, 0.8, 0.99, 1e-6
    p = rng.normal(size=(3, 4))
    expected, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = reference.Adam([p], lr, b1, b2, eps)
    for t in range(1, 6):
        g = rng.normal(size=p.shape)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        expected -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        opt.step([g])
        allclose(p, expected, rtol=1e-12)


def test_adam_defaults_are_the_papers_and_it_updates_the_network_in_place():
    net = reference.NN([3, 2], np.random.default_rng(0))
    opt = reference.Adam(net.parameters())
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (1e-3, 0.9, 0.999, 1e-8)
    before = net.layers[0].W.copy()
    opt.step([np.ones_like(q) for q in net.parameters()])
    allclose(net.layers[0].W, before - 1e-3, rtol=0, atol=1e-9)
    allclose(net.layers[0].b, np.full(2, -1e-3), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- batches

@pytest.mark.parametrize("n, batch_size, sizes", [
    (10, 3, [3, 3, 3, 1]),
    (12, 4, [4, 4, 4]),
    (5, 8, [5]),
    (60000, 32, [32] * 1875),
    (100, 32, [32, 32, 32, 4]),
])
def test_epoch_batches_use_every_index_once_and_keep_the_last_partial_batch(n, batch_size, sizes):
    batches = reference.epoch_batches(n, batch_size, np.random.default_rng(0))
    assert [len(b) for b in batches] == sizes
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_epoch_batches_are_seeded():
    a = reference.epoch_batches(50, 8, np.random.default_rng(7))
    b = reference.epoch_batches(50, 8, np.random.default_rng(7))
    c = reference.epoch_batches(50, 8, np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_each_epoch_draws_a_fresh_permutation():
    rng = np.random.default_rng(0)
    first, second = reference.epoch_batches(50, 50, rng), reference.epoch_batches(50, 50, rng)
    assert not np.array_equal(first[0], second[0])


def test_gather_batch_scales_uint8_rows_to_unit_floats():
    images = np.array([[0, 255, 51], [102, 0, 0], [255, 255, 255]], np.uint8)
    x = reference.gather_batch(images, np.array([2, 0]))
    assert x.dtype == np.float32
    allclose(x, [[1, 1, 1], [0, 1, 0.2]], rtol=1e-6, atol=0)
    assert reference.gather_batch(images, np.array([1]), np.float64).dtype == np.float64


def test_accuracy_counts_argmax_hits_across_chunks():
    """A 2-class net whose logits are (pixel 0, pixel 1): it predicts the brighter pixel."""
    net = reference.NN([2, 2], np.random.default_rng(0))
    net.layers[0].W[:] = np.eye(2)
    images = np.array([[200, 10], [10, 200], [200, 10], [10, 200], [255, 0], [0, 255], [9, 8]], np.uint8)
    labels = np.array([0, 1, 1, 1, 0, 0, 0])  # 5 of 7 right
    for chunk in (1, 3, 7, 100):
        assert reference.accuracy(net, images, labels, chunk=chunk) == pytest.approx(5 / 7)


# ----------------------------------------------------------------------------- training

def _separable(n: int, seed: int):
    """uint8 images whose class c lights up pixels [78c, 78c+78), plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 784)).astype(np.uint8)
    for c in range(10):
        images[labels == c, 78 * c:78 * c + 78] = 255
    return images, labels


def test_train_reference_learns_a_separable_problem_and_reports_each_epoch():
    images, labels = _separable(300, 0)
    seen = []
    net = reference.train_reference(images, labels, (16,), batch_size=32, lr=1e-2, epochs=3,
                                    on_epoch=lambda e, n, loss: seen.append((e, loss)))
    assert [e for e, _ in seen] == [1, 2, 3]
    assert seen[-1][1] < seen[0][1]
    test_images, test_labels = _separable(200, 1)
    assert reference.accuracy(net, test_images, test_labels) >= 0.95
    assert all(q.dtype == np.float32 for q in net.parameters())


def test_train_reference_is_deterministic_and_draws_weights_before_batches():
    images, labels = _separable(70, 2)
    a = reference.train_reference(images, labels, (8,), epochs=2, seed=3)
    b = reference.train_reference(images, labels, (8,), epochs=2, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    untrained = reference.train_reference(images, labels, (8,), epochs=0, seed=3)
    fresh = reference.NN([784, 8, 10], np.random.default_rng(3), np.float32)
    for p, q in zip(untrained.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(p, q)


@pytest.mark.slow
def test_one_epoch_of_the_reference_on_mnist_reaches_95_percent(mnist):
    """Hidden (100,), batch 32, Adam lr 1e-3, 1 epoch, float32, seed 0 (about 25 s)."""
    losses = []
    net = reference.train_reference(mnist.train_images, mnist.train_labels, (100,), batch_size=32, lr=1e-3,
                                    epochs=1, dtype=np.float32, seed=0,
                                    on_epoch=lambda e, n, loss: losses.append(loss))
    assert len(losses) == 1 and 0 < losses[0] < 0.5
    assert reference.accuracy(net, mnist.test_images, mnist.test_labels) >= 0.95
