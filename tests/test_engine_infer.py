"""Inference: logits from the reference's forward pass, and each row's logits from that row alone, the
same bits wherever it sits among the rows and whatever the thread count."""

import numpy as np
import pytest
from helpers import engine_and_reference, random_images

from fastmlp import reference as ref
from fastmlp.engine.infer import dense_feature_major
from fastmlp.training.model import MLP, log_softmax


@pytest.mark.parametrize("n_out,K,R", [(1, 1, 1), (3, 5, 7), (10, 100, 128), (37, 29, 33), (64, 784, 128)])
@pytest.mark.parametrize("relu", [False, True])
def test_a_dense_layer_on_feature_major_rows_is_the_reference_layer_transposed(n_out, K, R, relu):
    rng = np.random.default_rng(n_out + K + R)
    W = rng.normal(size=(n_out, K)).astype(np.float32)
    b = rng.normal(size=n_out).astype(np.float32)
    x = rng.normal(size=(K, R)).astype(np.float32)
    z = np.full((n_out, R), np.nan, np.float32)
    dense_feature_major(W, b, x, z, relu)
    want, _ = ref.linear_forward(x.T.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    if relu:
        want, _ = ref.relu(want)
    np.testing.assert_allclose(z, want.T, rtol=1e-5, atol=1e-5 * np.sqrt(K))


@pytest.mark.parametrize("sizes", [[2, 100, 2], [20, 64, 10], [784, 256, 128, 10], [784, 30, 10], [7, 3]])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_rows_logits_do_not_depend_on_where_it_sits_nor_on_the_thread_count(sizes, dtype):
    """Every output is a fixed sequence of fused multiply-adds over the row's own inputs, so permuting
    the rows, predicting a subset or a single row, and running on 1, 2, 3 or 8 threads give the same
    logits bit for bit, with any BLAS (scikit-learn's estimator checks ask it of predict_proba)."""
    rng = np.random.default_rng(len(sizes))
    model = MLP.initialized(sizes, rng)
    for n in (1, 30, 300, 1000):
        x = (rng.integers(0, 256, (n, sizes[0]), dtype=np.uint8) if dtype == np.uint8
             else rng.standard_normal((n, sizes[0])).astype(np.float32))
        whole = model.logits(x, threads=2)
        perm = rng.permutation(n)
        np.testing.assert_array_equal(model.logits(np.ascontiguousarray(x[perm]), threads=3), whole[perm])
        np.testing.assert_array_equal(model.logits(x[n // 3:n // 3 + 13], threads=1), whole[n // 3:n // 3 + 13])
        np.testing.assert_array_equal(model.logits(x[-1:], threads=8), whole[-1:])
        for threads in (1, 3, 8):
            np.testing.assert_array_equal(model.logits(x, threads=threads), whole)


def test_evaluate_and_predict_agree_with_the_reference_forward():
    rng = np.random.default_rng(10)
    images, labels = random_images(rng, 2500)  # many inference chunks
    model, net = engine_and_reference([784, 30, 10])
    logits_ref = net.forward(ref.gather_batch(images, np.arange(2500), np.float64))
    loss_ref, _ = ref.softmax_cross_entropy(logits_ref, labels)
    loss, acc = model.evaluate(images, labels)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert acc == pytest.approx((logits_ref.argmax(1) == labels).mean())
    np.testing.assert_array_equal(model.predict(images), logits_ref.argmax(1))
    rows = rng.permutation(2500)[:777]
    loss_rows, acc_rows = model.evaluate(images, labels, rows)
    loss_ref_rows, _ = ref.softmax_cross_entropy(logits_ref[rows], labels[rows])
    assert loss_rows == pytest.approx(loss_ref_rows, rel=1e-5)
    assert acc_rows == pytest.approx((logits_ref[rows].argmax(1) == labels[rows]).mean())


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_probabilities_are_the_reference_softmax_of_the_logits(dtype):
    rng = np.random.default_rng(14)
    images, _ = random_images(rng, 700, 20)
    if dtype == np.float32:
        images = rng.normal(size=(700, 20)).astype(np.float32)
    model, net = engine_and_reference([20, 9, 4])
    x = ref.gather_batch(images, np.arange(700), np.float64) if dtype == np.uint8 else images.astype(np.float64)
    logits = net.forward(x)
    np.testing.assert_allclose(model.probabilities(images), ref.softmax(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_softmax(model.logits(images)), ref.log_softmax(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.probabilities(images).sum(axis=1), 1.0, rtol=1e-6)


def test_log_softmax_is_finite_where_the_probability_underflows():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    out = log_softmax(logits)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[0.0, -2e4, -1e4], [-2e4, -2e4, 0.0]])
