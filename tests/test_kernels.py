"""The Numba kernels compute what the NumPy reference computes, allocate nothing per step,
and compile once per argument type."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastmlp import augment, kernels, step_kernels, update_kernels
from fastmlp.layout import SHARDS
from fastmlp import reference as ref
from fastmlp.model import MLP
from fastmlp.optim import Adam

RTOL = 1e-5
ATOL = 1e-5

# Every option on: one-cycle over 40 steps (8 of warm-up) to a floor of 0.01, weight decay 0.01,
# max-norm 3, average 0.9, label smoothing 0.1, input dropout 0.2, hidden dropout 0.3.
FULL_RECIPE = np.zeros(kernels.R_LEN)
FULL_RECIPE[[kernels.R_SCHEDULE, kernels.R_WARMUP, kernels.R_TOTAL, kernels.R_FLOOR, kernels.R_WEIGHT_DECAY,
             kernels.R_MAX_NORM, kernels.R_EMA, kernels.R_SMOOTHING, kernels.R_DROP_IN,
             kernels.R_DROP_HIDDEN, kernels.R_ALPHA]] = [kernels.SCHED_ONECYCLE, 8, 40, 0.01, 0.01, 3.0, 0.9, 0.1,
                                                         0.2, 0.3, 1e-4]


def random_images(rng, n, n_in=784):
    return rng.integers(0, 256, (n, n_in), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


PLAIN = np.zeros(kernels.R_LEN)
NO_AUG, NO_TAPS, NO_SCRATCH = np.zeros(0), np.ones(1), np.zeros(1)


def run_steps(model, adam, ws, grads, images, labels, order, first, n_steps, batch, losses, lr=1e-3, t0=0,
              recipe=PLAIN, aug=NO_AUG, taps=NO_TAPS, scratch=NO_SCRATCH, seed=0, epoch=0, shards=SHARDS,
              columns=False, small=0):
    """``step_kernels.train_steps`` with Adam's hyperparameters and the recipe's arrays (plain by default),
    as row shards or in the column split (its products in blocks of at most ``small`` multiply-adds);
    ``grads`` (P,) or (shards, P) and ``scratch`` (one shard's) are given a row per shard."""
    shard_grads = grads if grads.ndim == 2 else np.zeros((shards, grads.size), np.float32)
    return step_kernels.train_steps(model.params, shard_grads, adam.m, adam.v, adam.ema, model.layout, images, labels,
                                    order, first, n_steps, batch, ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, lr,
                                    adam.beta1, adam.beta2, adam.eps, t0, losses, recipe, aug, taps,
                                    np.tile(scratch, (shards, 1)), np.zeros((2, shards)), seed, epoch, columns,
                                    small, np.zeros(2 * model.layout.shape[0], np.int64))


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


# ----------------------------------------------------------------------------- the recipe's kernels

def test_dropout_forward_and_backward_match_the_reference_with_the_same_masks():
    rng = np.random.default_rng(12)
    m, n_in, n_out, p = 9, 13, 40, 0.3
    x = rng.normal(size=(m, n_in)).astype(np.float32)
    W = rng.normal(size=(n_out, n_in)).astype(np.float32)
    b = rng.normal(size=n_out).astype(np.float32)
    idx = rng.choice(1000, m, replace=False).astype(np.int64)
    z, h = np.empty((m, n_out), np.float32), np.empty((m, n_out), np.float32)
    kernels.linear_relu_dropout_forward(x, W, b, z, h, idx, 5, 3, 2, p)
    mask = ref.dropout_mask(5, 3, idx, 2, n_out, p)
    z_ref, _ = ref.linear_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    h_ref, relu_back = ref.relu(z_ref)
    np.testing.assert_allclose(h, h_ref * mask, rtol=RTOL, atol=ATOL * 4)
    assert 0.2 < (mask == 0).mean() < 0.4
    dh = rng.normal(size=(m, n_out)).astype(np.float32)
    d, db = dh.copy(), np.empty(n_out, np.float32)
    kernels.relu_dropout_backward_bias_grad(d, z, db, np.float32(1 / (1 - p)))
    np.testing.assert_allclose(d, relu_back(dh * mask), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(db, relu_back(dh * mask).sum(0), rtol=RTOL, atol=ATOL * 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.3])
def test_label_smoothing_matches_the_reference(smoothing):
    rng = np.random.default_rng(13)
    logits = (3 * rng.normal(size=(17, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 17).astype(np.int32)
    dlogits = np.empty_like(logits)
    loss, correct = kernels.smoothed_cross_entropy(logits, labels, dlogits, smoothing)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits.astype(np.float64), labels, smoothing)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(dlogits, d_ref, rtol=1e-5, atol=1e-7)
    assert correct == int((logits.argmax(1) == labels).sum())
    if smoothing == 0:  # exactly the plain loss
        d_plain = np.empty_like(logits)
        assert kernels.softmax_cross_entropy(logits, labels, d_plain)[0] == loss
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
    code = {"constant": kernels.SCHED_CONSTANT, "cosine": kernels.SCHED_COSINE, "onecycle": kernels.SCHED_ONECYCLE}
    got = [kernels.lr_at_step(code[kind], 2e-3, k, 7.5, 50.0, 0.05) for k in range(60)]
    want = [ref.lr_schedule(kind, 2e-3, k, 7.5, 50, 0.05) for k in range(60)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if kind != "constant":
        assert max(got) == pytest.approx(2e-3, rel=0.02) and got[-1] == pytest.approx(1e-4)


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


@pytest.mark.parametrize("columns", [False, True], ids=["row shards", "column split"])
@pytest.mark.parametrize("sizes,batch", [([784, 100, 10], 32), ([784, 37, 23, 10], 7), ([784, 5, 5, 5, 5, 10], 1),
                                         ([784, 10], 5)])
def test_k_train_steps_agree_with_the_float64_reference(sizes, batch, columns):
    """From the same parameters and batches, 12 engine steps (float32), in either split of the work,
    land where 12 reference steps (float64) land, within float32 tolerance; the last batch is short."""
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
    run_steps(model, adam, ws, grads, images, labels, order, 0, steps, batch, losses, columns=columns)
    ref_losses = []
    for idx in (order[i:i + batch] for i in range(0, n, batch)):
        loss, d = ref.softmax_cross_entropy(net.forward(ref.gather_batch(images, idx, np.float64)), labels[idx])
        net.backward(d)
        opt_ref.step(net.gradients())
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("columns", [False, True], ids=["row shards", "column split"])
def test_k_train_steps_with_every_option_agree_with_the_reference(columns):
    """Augmentation (scipy.ndimage), dropout masks, label smoothing, one-cycle eta, AdamW, max-norm and
    the average: 14 engine steps over two epochs land where 14 float64 reference steps land."""
    rng = np.random.default_rng(15)
    sizes, batch, n, seed = [784, 24, 16, 10], 8, 52, 6
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes)
    r = FULL_RECIPE.copy()
    r[kernels.R_TOTAL] = 14
    r[kernels.R_ALPHA] = 0.0  # the L2 penalty has its own test against the reference
    adam = Adam(model.num_parameters, 2e-3, weight_decay=r[kernels.R_WEIGHT_DECAY], max_norm=r[kernels.R_MAX_NORM],
                ema_decay=r[kernels.R_EMA])
    adam.start_average(model.params)
    opt_ref = ref.Adam(net.parameters(), 2e-3, weight_decay=r[kernels.R_WEIGHT_DECAY], max_norm=r[kernels.R_MAX_NORM])
    avg_ref = [p.copy() for p in net.parameters()]
    aug_kw = dict(rotate=12.0, scale=0.1, shear=0.15, shift=2.5, alpha=34.0, sigma=4.0)
    aug, taps = augment.aug_params(*aug_kw.values(), 28)
    scratch = np.zeros(augment.scratch_size(28))
    ws, grads = model.workspace(batch), np.zeros_like(model.params)
    steps, ref_losses, losses = -(-n // batch), [], []
    for epoch in (1, 2):
        order = np.random.default_rng(epoch).permutation(n).astype(np.int64)
        out = np.zeros(steps)
        run_steps(model, adam, ws, grads, images, labels, order, 0, steps, batch, out, lr=2e-3, t0=adam.t,
                  recipe=r, aug=aug, taps=taps, scratch=scratch, seed=seed, epoch=epoch, columns=columns)
        adam.advance(steps)
        losses += list(out)
        for idx in (order[i:i + batch] for i in range(0, n, batch)):
            x = np.array([ref.augment_image(images[i].reshape(28, 28), seed, epoch, i, **aug_kw).reshape(-1)
                          for i in idx])
            x *= ref.dropout_mask(seed, epoch, idx, augment.STREAM_DROPOUT, 784, r[kernels.R_DROP_IN])
            masks = [ref.dropout_mask(seed, epoch, idx, augment.STREAM_DROPOUT + l + 1, h, r[kernels.R_DROP_HIDDEN])
                     for l, h in enumerate(sizes[1:-1])]
            loss, d = ref.softmax_cross_entropy(net.forward(x, masks), labels[idx], r[kernels.R_SMOOTHING])
            net.backward(d)
            k = opt_ref.t
            opt_ref.step(net.gradients(), ref.lr_schedule("onecycle", 2e-3, k, 8, 14, r[kernels.R_FLOOR]))
            ref.ema_update(avg_ref, net.parameters(), r[kernels.R_EMA], opt_ref.t)
            ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=3e-5)
    for got, want in zip([a for pair in model.views(adam.ema) for a in pair], avg_ref):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=3e-5)


def recipe_run(recipe, sizes=(784, 24, 16, 10), n=75, batch=8):
    """``run(shards, threads, columns=False, rows=n, small=0)``: train_steps over the first ``rows`` of a fixed
    order (``n`` = 75 and batch 8: ten steps, the last of 3 rows) with the plain or the full recipe,
    from fixed weights; returns (losses, params, average)."""
    import numba
    rng = np.random.default_rng(21)
    images, labels = random_images(rng, n)
    order = rng.permutation(n).astype(np.int64)
    full = recipe == "full"
    aug, taps = augment.aug_params(12, 0.1, 0.15, 2.5, 34, 4, 28) if full else (NO_AUG, NO_TAPS)
    scratch = np.zeros(augment.scratch_size(28)) if full else NO_SCRATCH

    def run(shards, threads, columns=False, rows=n, small=0):
        b = min(batch, rows)
        steps = -(-rows // b)
        model = MLP.initialized(list(sizes), np.random.default_rng(3))
        adam, losses = Adam(model.num_parameters, ema_decay=0.9 if full else 0.0), np.zeros(steps)
        adam.start_average(model.params)
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            run_steps(model, adam, model.workspace(b), np.zeros((shards, model.num_parameters), np.float32),
                      images, labels, order[:rows], 0, steps, b, losses, recipe=FULL_RECIPE if full else PLAIN,
                      aug=aug, taps=taps, scratch=scratch, seed=4, epoch=1, shards=shards, columns=columns,
                      small=small)
        finally:
            numba.set_num_threads(before)
        return losses, model.params, adam.ema
    return run


@pytest.mark.parametrize("recipe", ["plain", "full"])
def test_shards_give_the_batch_gradient_and_the_thread_count_changes_nothing(recipe):
    """A batch run as two row shards (each its own gradient buffer, summed by the update) lands where
    the batch run whole lands, within float32 round-off; and two shards give the same bits on one
    Numba thread as on two (the short last batch and a one-row batch included)."""
    run = recipe_run(recipe)
    whole, one_thread, two_threads = run(1, 1), run(2, 1), run(2, 2)
    for a, b in zip(one_thread, two_threads):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one_thread[0], whole[0], rtol=1e-5)
    np.testing.assert_allclose(one_thread[1], whole[1], rtol=1e-3, atol=1e-5)
    single = run(2, 2, rows=1)  # one row: one shard, the other buffer unused
    np.testing.assert_allclose(single[0], run(1, 1, rows=1)[0], rtol=1e-6)


# Blocks of at most 8 * 8 * 784 multiply-adds: the first layer's products at 8 rows (the batch) go
# in blocks of 8 units, the second's in one product, whatever the BLAS (see fastmlp.blas.gemm_blocks).
SMALL_TEST_LIMIT = 8 * 8 * 784


@pytest.mark.parametrize("small", [0, SMALL_TEST_LIMIT])
@pytest.mark.parametrize("sizes,batch", [((784, 40, 24, 10), 8), ((784, 40, 10), 8), ((784, 260, 130, 10), 20)])
@pytest.mark.parametrize("recipe", ["plain", "full"])
def test_the_column_split_gives_the_batch_gradient_and_the_thread_count_changes_nothing(recipe, sizes, batch, small):
    """The column split (layers cut by units into tile-aligned parts that the threads claim: 40 units
    as 16 + 24, 24 as 16 + 8, 130 as 64 + 66, 260 as 128 + 132; one hidden layer with plain Adam
    updates inside the backward pass; its products whole or in blocks of units) lands where the
    batch run whole lands, within float32 round-off, and gives the same bits on one Numba thread as
    on two (the short last batch and a one-row batch included)."""
    run = recipe_run(recipe, sizes=sizes, batch=batch)
    whole = run(1, 1)
    one_thread, two_threads = run(2, 1, columns=True, small=small), run(2, 2, columns=True, small=small)
    for a, b in zip(one_thread, two_threads):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one_thread[0], whole[0], rtol=1e-5)
    # Adam divides by sqrt(v), so round-off in a small gradient shows in its update: the wider net
    # (240k weights) gets a looser bound, still 20x below the learning rate.
    np.testing.assert_allclose(one_thread[1], whole[1], rtol=1e-3, atol=1e-5 if batch == 8 else 5e-5)
    for a, b in zip(run(2, 1, columns=True, rows=1, small=small), run(2, 2, columns=True, rows=1, small=small)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(run(2, 2, columns=True, rows=1, small=small)[0], run(1, 1, rows=1)[0], rtol=1e-6)


@pytest.mark.parametrize("small", [0, 8 * 13 * 24])
def test_the_column_split_pieces_match_the_reference_on_feature_major_blocks(small):
    """The column split's pieces, one part of units at a time: a hidden layer's forward pass lands
    transposed (unit j's m values at ``off + j m``), the logits row-major from it, and the gradient
    below a layer is the reference's ``dz @ W`` masked by ReLU, transposed, with the bias gradient
    its column sums; the same with products in blocks of units (``small``: the first layer's forward
    and weight-gradient products and the gradient below the second layer go in blocks of 8 units)."""
    rng = np.random.default_rng(12)
    m, sizes = 13, [20, 40, 24, 10]
    model = MLP.initialized(sizes, rng)
    ws, grads = model.workspace(m), np.zeros_like(model.params)
    ws.x[:m * 20] = rng.standard_normal(m * 20).astype(np.float32)
    x = ws.x[:m * 20].reshape(m, 20).astype(np.float64)
    Ws = [model.params[model.layout[l, 2]:model.layout[l, 3]].reshape(sizes[l + 1], sizes[l]).astype(np.float64)
          for l in range(3)]
    bs = [model.params[model.layout[l, 3]:model.layout[l, 3] + sizes[l + 1]].astype(np.float64) for l in range(3)]
    idx, off = np.arange(m, dtype=np.int64), ws.act_off
    z0, _ = ref.linear_forward(x, Ws[0], bs[0])
    h0, back0 = ref.relu(z0)
    z1, _ = ref.linear_forward(h0, Ws[1], bs[1])
    h1, back1 = ref.relu(z1)
    logits, _ = ref.linear_forward(h1, Ws[2], bs[2])
    for l, z_ref, h_ref in ((0, z0, h0), (1, z1, h1)):
        for j0, j1 in ((0, 16), (16, sizes[l + 1])):  # two parts of units
            step_kernels.layer_columns(model.params, model.layout, l, ws.x, ws.z, ws.h, off, m, j0, j1, idx, 0, 0, 0.0,
                                       small)
        n = sizes[l + 1]
        np.testing.assert_allclose(ws.z[off[l]:off[l] + n * m].reshape(n, m), z_ref.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ws.h[off[l]:off[l] + n * m].reshape(n, m), h_ref.T, rtol=1e-5, atol=1e-5)
    for r0, r1 in ((0, 6), (6, m)):
        step_kernels.output_rows(model.params, model.layout, ws.h, ws.z, off, m, r0, r1)
    np.testing.assert_allclose(ws.z[off[2]:off[2] + m * 10].reshape(m, 10), logits, rtol=1e-5, atol=1e-5)

    dlogits = rng.standard_normal((m, 10))
    ws.d[off[2]:off[2] + m * 10] = dlogits.ravel()
    dz1 = back1(dlogits @ Ws[2])
    for i0, i1 in ((0, 16), (16, 24)):
        step_kernels.input_grad_columns(model.params, grads, model.layout, 2, ws.z, ws.d, off, m, i0, i1, 0.0, small)
        step_kernels.weight_grad_rows(grads, model.layout, 1, ws.x, ws.h, ws.d, off, m, i0, i1, small)
    np.testing.assert_allclose(ws.d[off[1]:off[1] + 24 * m].reshape(24, m), dz1.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[1, 2]:model.layout[1, 3]].reshape(24, 40), dz1.T @ h0, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[1, 3]:model.layout[1, 3] + 24], dz1.sum(0), rtol=1e-5, atol=1e-5)
    dz0 = back0(dz1 @ Ws[1])
    for i0, i1 in ((0, 16), (16, 40)):
        step_kernels.input_grad_columns(model.params, grads, model.layout, 1, ws.z, ws.d, off, m, i0, i1, 0.0, small)
        step_kernels.weight_grad_rows(grads, model.layout, 0, ws.x, ws.h, ws.d, off, m, i0, i1, small)
        step_kernels.output_weight_grad_columns(grads, model.layout, ws.x, ws.h, ws.d, off, m, min(i0, 24), min(i1, 24))
    np.testing.assert_allclose(ws.d[off[0]:off[0] + 40 * m].reshape(40, m), dz0.T, rtol=1e-5, atol=1e-5)
    _, dW0, db0 = ref.linear_backward(dz0, x, Ws[0], bs[0])
    np.testing.assert_allclose(grads[model.layout[0, 2]:model.layout[0, 3]].reshape(40, 20), dW0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[0, 3]:model.layout[0, 3] + 40], db0, rtol=1e-5, atol=1e-5)
    _, dW2, _ = ref.linear_backward(dlogits, h1, Ws[2], bs[2])
    np.testing.assert_allclose(grads[model.layout[2, 2]:model.layout[2, 3]].reshape(10, 24), dW2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sizes", [(784, 40, 10), (784, 40, 24, 10), (784, 48, 40, 24, 10)])
def test_the_column_split_updates_in_its_backward_pass_exactly_as_adam_after_it(sizes):
    """Plain Adam fused into the column split's backward pass (each part of the weights updated once
    nothing later in the step reads it) gives the bits of the whole gradient followed by Adam."""
    rng = np.random.default_rng(5)
    images, labels = random_images(rng, 40)
    idx = rng.permutation(40)[:24].astype(np.int64)

    def step(fuse):
        model = MLP.initialized(list(sizes), np.random.default_rng(3))
        adam, ws = Adam(model.num_parameters), model.workspace(24)
        adam.m[:] = np.random.default_rng(8).standard_normal(adam.m.size).astype(np.float32) * 1e-3
        adam.v[:] = np.abs(adam.m) * 1e-2
        grads = np.full(model.num_parameters, np.nan, np.float32)  # every element must be written
        factors = update_kernels.adam_factors(1e-3, 0.9, 0.999, 1e-8, 3)
        step_kernels.column_step(model.params, grads, model.layout, images, labels, idx, ws.x, ws.y, ws.z, ws.h,
                                 ws.d, ws.act_off, NO_AUG, NO_TAPS, np.zeros((SHARDS, 1)), 0, 0, 0.0, 0.0, 0.0,
                                 np.zeros((2, SHARDS)), adam.m, adam.v, factors, fuse, 0,
                                 np.zeros(2 * model.layout.shape[0], np.int64))
        if not fuse:
            update_kernels.adam_update_shards(model.params, grads[None], 1, adam.m, adam.v, 1e-3, 0.9, 0.999, 1e-8, 3)
        return model.params, adam.m, adam.v, grads

    fused, after = step(True), step(False)
    for a, b in zip(fused, after):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(fused[3]).all()


@pytest.mark.parametrize("sizes", [(30, 10), (784, 40, 10), (784, 40, 24, 10), (784, 48, 40, 24, 10)])
@pytest.mark.parametrize("weight_decay,max_norm,ema_decay", [(0.0, 0.0, 0.0), (0.5, 1.2, 0.95)])
def test_the_column_split_update_is_adamw_by_the_parts_that_computed_the_gradient(sizes, weight_decay, max_norm,
                                                                                   ema_decay):
    """After a column-split step each thread updates the rows (the last layer: the columns) whose
    gradient it computed: the bits of the whole-buffer AdamW pass, which matches the reference."""
    rng = np.random.default_rng(21)
    model = MLP.initialized(list(sizes), rng)
    params_ref = [a.astype(np.float64) for pair in model.layers() for a in pair]
    avg_ref = [p.copy() for p in params_ref]
    opt_ref = ref.Adam(params_ref, 3e-2, weight_decay=weight_decay, max_norm=max_norm)
    whole, parts = Adam(model.num_parameters), Adam(model.num_parameters)
    p_whole, p_parts = model.params.copy(), model.params.copy()
    ema_whole, ema_parts = model.params.copy(), model.params.copy()
    for t in range(1, 5):
        lr = 3e-2 * t / 4
        grads = rng.normal(size=model.num_parameters).astype(np.float32)
        update_kernels.adamw_update(p_whole, grads, whole.m, whole.v, ema_whole, model.layout, lr, 0.9, 0.999, 1e-8,
                                    t, weight_decay, max_norm, ema_decay)
        decay, a = update_kernels.adamw_factors(lr, weight_decay, ema_decay, t)
        step_kernels.column_update(p_parts, grads, parts.m, parts.v, ema_parts, model.layout, SHARDS,
                                   update_kernels.adam_factors(lr, 0.9, 0.999, 1e-8, t), decay, max_norm, a)
        opt_ref.step([g.astype(np.float64) for pair in model.views(grads) for g in pair], lr)
        if ema_decay > 0:
            ref.ema_update(avg_ref, params_ref, ema_decay, t)
    for got, want in ((p_parts, p_whole), (parts.m, whole.m), (parts.v, whole.v), (ema_parts, ema_whole)):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(p_parts, model.params)
    for got, want in zip([a for pair in model.views(p_parts) for a in pair], params_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if ema_decay > 0:
        for got, want in zip([a for pair in model.views(ema_parts) for a in pair], avg_ref):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes,batch,columns", [
    ((784, 100, 10), 32, True), ((784, 256, 128, 10), 128, True), ((784, 1024, 1024, 10), 128, True),
    ((784, 1024, 10), 256, True), ((784, 100, 10), 128, True), ((784, 100, 10), 150, True),
    ((784, 64, 10), 128, True), ((784, 80, 10), 160, True), ((784, 100, 10), 176, False),
    ((784, 100, 10), 200, False), ((784, 256, 10), 256, True), ((784, 256, 10), 512, False),
    ((784, 1024, 1024, 10), 512, True), ((784, 100, 10), 512, False),
    ((784, 32, 10), 128, False), ((784, 16, 10), 32, False), ((784, 10), 8, False),
    ((256, 100, 10), 100, True), ((256, 100, 10), 200, False), ((100, 256, 128, 10), 32, False)])
def test_the_split_is_chosen_by_the_shape_alone(sizes, batch, columns):
    """Units are split when the first hidden layer is wider than a tile and, given 512 inputs or
    more, at least half as wide as the batch is long up to 160 rows, as wide beyond (as wide from
    256 inputs; never with fewer); otherwise rows. Never the machine: it decides the rounding."""
    assert step_kernels.column_split(sizes, batch) is columns


def test_train_steps_stop_at_a_non_finite_loss_and_mark_the_rest_nan():
    rng = np.random.default_rng(9)
    images, labels = random_images(rng, 64)
    model = MLP.initialized([784, 16, 10], rng)
    model.params[:] = np.float32(1e30)  # logits overflow to inf
    adam, ws, grads = Adam(model.num_parameters), model.workspace(8), np.zeros_like(model.params)
    losses = np.zeros(8)
    before = model.params.copy()
    run_steps(model, adam, ws, grads, images, labels, np.arange(64, dtype=np.int64), 0, 8, 8, losses)
    assert not np.isfinite(losses[0])
    assert np.all(np.isnan(losses[1:]))
    np.testing.assert_array_equal(model.params, before)  # no update from a non-finite step


@pytest.mark.parametrize("sizes", [[2, 100, 2], [20, 64, 10], [784, 256, 128, 10]])
def test_a_rows_logits_do_not_depend_on_where_it_sits_among_the_rows(sizes):
    """Inference pads to whole BLAS row tiles and runs shards of bounded size, so permuting the rows
    (or predicting a subset) permutes the logits bit for bit: scikit-learn's estimator checks ask
    it of predict_proba."""
    rng = np.random.default_rng(len(sizes))
    model = MLP.initialized(sizes, rng)
    for n in (30, 300, 1000):
        x = rng.standard_normal((n, sizes[0])).astype(np.float32)
        perm = rng.permutation(n)
        whole = model.logits(x)
        np.testing.assert_array_equal(model.logits(np.ascontiguousarray(x[perm])), whole[perm])
        np.testing.assert_array_equal(model.logits(x[7:20]), whole[7:20])


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
    each, made when the call starts; the steps themselves allocate nothing, with the plain recipe
    and with every option on (augmentation, dropout, smoothing, AdamW, max-norm, average, schedule),
    as row shards and in the column split."""
    code = textwrap.dedent("""
        import numpy as np
        from numba.core.runtime import _nrt_python, rtsys
        _nrt_python.memsys_enable_stats()
        from fastmlp import kernels, step_kernels
        from fastmlp.model import MLP
        from fastmlp.optim import Adam
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (300, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, 300).astype(np.uint8)
        model = MLP.initialized([784, 33, 17, 10], rng)
        adam, ws = Adam(model.num_parameters), model.workspace(32)
        g = np.zeros((2, model.num_parameters), np.float32)
        order, losses, out = rng.permutation(300).astype(np.int64), np.zeros(9), np.zeros((2, 2))
        counters = np.zeros(2 * model.layout.shape[0], np.int64)
        buffers = [model.params, g, adam.m, adam.v, ws.x, ws.y, ws.z, ws.h, ws.d]
        ids = [b.ctypes.data for b in buffers]
        from fastmlp import augment
        ema = model.params.copy()
        plain, full = np.zeros(kernels.R_LEN), np.array(%r)
        aug, taps = augment.aug_params(12, 0.1, 0.15, 2.5, 34, 4, 28)
        scratch = np.zeros((2, augment.scratch_size(28)))
        def call(k, recipe, aug, taps, columns):
            before = rtsys.get_allocation_stats().alloc
            step_kernels.train_steps(model.params, g, adam.m, adam.v, ema, model.layout, images, labels, order, 0,
                                     k, 32, ws.x, ws.y, ws.z, ws.h, ws.d, ws.act_off, 1e-3, 0.9, 0.999, 1e-8, 0,
                                     losses, recipe, aug, taps, scratch, out, 7, 1, columns,
                                     8 * 32 * 784 if columns else 0, counters)  # products in blocks of units
            return rtsys.get_allocation_stats().alloc - before
        call(1, plain, np.zeros(0), np.ones(1), False)  # compile / load from cache
        for columns in (False, True):
            one = call(1, plain, np.zeros(0), np.ones(1), columns)
            nine = call(9, plain, np.zeros(0), np.ones(1), columns)
            full_one, full_nine = call(1, full, aug, taps, columns), call(9, full, aug, taps, columns)
            print(one, nine, full_one, full_nine)
        assert [b.ctypes.data for b in buffers] == ids
    """ % (FULL_RECIPE.tolist(),))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    counts = list(map(int, out.stdout.split()))
    n_array_args = 22
    assert counts == [n_array_args] * 8, counts


def test_kernels_compile_once_per_argument_type():
    """Repeated training and evaluation calls reuse one compiled signature per kernel (other tests
    in the session may have compiled others, for float32 inputs or an L2 penalty: only the
    signatures these calls add are counted)."""
    watched = (step_kernels.train_steps, kernels.evaluate_rows, kernels.forward, kernels.backward, kernels.adamw_update,
               kernels.smoothed_cross_entropy, kernels.lr_at_step, kernels.linear_relu_dropout_forward,
               kernels.adam_update, kernels.gather_batch, kernels.softmax_cross_entropy)
    before = {kernel: set(kernel.signatures) for kernel in watched}
    rng = np.random.default_rng(11)
    images, labels = random_images(rng, 100)
    for hidden in ([12], [12, 8], [5, 5, 5]):
        for batch in (1, 10, 32):
            model = MLP.initialized([784, *hidden, 10], rng)
            adam, ws, g = Adam(model.num_parameters), model.workspace(batch), np.zeros_like(model.params)
            losses = np.zeros(3)
            run_steps(model, adam, ws, g, images, labels, np.arange(100, dtype=np.int64), 0, 3, batch, losses)
            model.evaluate(images, labels)
            # the whole recipe on: the same kernels, the same signatures
            adam = Adam(model.num_parameters, ema_decay=0.99)
            aug, taps = augment.aug_params(10, 0.1, 0.1, 2, 20, 4, 28)
            run_steps(model, adam, ws, g, images, labels, np.arange(100, dtype=np.int64), 0, 3, batch, losses,
                      recipe=FULL_RECIPE, aug=aug, taps=taps, scratch=np.zeros(augment.scratch_size(28)),
                      seed=5, epoch=2)
    for kernel in watched:
        used = set(kernel.signatures) - before[kernel]
        assert len(used) <= 1, (kernel, kernel.signatures)
    # Kernels called only from inside others have a dispatcher signature only once called from Python.
    for kernel in (step_kernels.train_steps, kernels.evaluate_rows):
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
    recipe = np.zeros(kernels.R_LEN)
    recipe[kernels.R_ALPHA] = alpha
    run_steps(model, adam, ws, grads, images, labels, order, 0, 5, batch, losses, recipe=recipe)
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
