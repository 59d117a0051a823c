"""Training steps: both splits of a step land where the float64 reference lands, give the same bits on
any number of threads, allocate nothing per step, and compile once per kind of run."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import FULL_RECIPE, WARP, activations, engine_and_reference, fresh_adam, random_images, run_steps, warp_record

from fastmlp import reference as ref
from fastmlp.engine import parts, step, update
from fastmlp.engine.columns import input_grad_columns, layer_columns, output_rows, output_weight_grad_columns, weight_grad_rows
from fastmlp.engine.records import Recipe
from fastmlp.engine.rng import STREAM_DROPOUT
from fastmlp.training.model import MLP
from fastmlp.training.optim import Adam

SPLITS = pytest.mark.parametrize("columns", [False, True], ids=["row shards", "column split"])


@pytest.mark.parametrize("sizes,batch,columns", [
    ([784, 100, 10], 32, False), ([784, 100, 10], 32, True), ([784, 37, 23, 10], 7, False),
    ([784, 37, 23, 10], 7, True), ([784, 5, 5, 5, 5, 10], 1, False), ([784, 5, 5, 5, 5, 10], 1, True),
    ([784, 10], 5, False), ([784, 30, 10], 300, False), ([784, 30, 10], 300, True)])
def test_k_train_steps_agree_with_the_float64_reference(sizes, batch, columns):
    """From the same parameters and batches, 12 engine steps (float32), in either split of the work
    (a network without a hidden layer has no units to split: row shards only), land where 12
    reference steps (float64) land, within float32 tolerance; the last batch is short."""
    rng = np.random.default_rng(7)
    n = 12 * batch - (batch // 2)  # the twelfth batch is short (unless batch is 1)
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes, seed=1)
    adam, opt_ref = Adam(model.num_parameters), ref.Adam(net.parameters())
    order = np.random.default_rng(8).permutation(n).astype(np.int64)
    steps = -(-n // batch)
    losses, correct = run_steps(model, adam, images, labels, order, steps, batch, columns=columns)
    ref_losses, ref_correct = [], 0
    for idx in (order[i:i + batch] for i in range(0, n, batch)):
        logits = net.forward(ref.gather_batch(images, idx, np.float64))
        loss, d = ref.softmax_cross_entropy(logits, labels[idx])
        ref_correct += int((logits.argmax(1) == labels[idx]).sum())
        net.backward(d)
        opt_ref.step(net.gradients())
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert abs(correct - ref_correct) <= 2  # a near-tie may break the other way in float32
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


@SPLITS
def test_k_train_steps_with_every_option_agree_with_the_reference(columns):
    """Augmentation (scipy.ndimage), dropout masks, label smoothing, one-cycle eta, AdamW, max-norm and
    the average: 14 engine steps over two epochs land where 14 float64 reference steps land."""
    rng = np.random.default_rng(15)
    sizes, batch, n, seed = [784, 24, 16, 10], 8, 52, 6
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes, seed=1)
    r = {**FULL_RECIPE, "total": 14}
    adam = fresh_adam(model, lr=2e-3, weight_decay=r["weight_decay"], max_norm=r["max_norm"], ema_decay=r["ema"])
    opt_ref = ref.Adam(net.parameters(), 2e-3, weight_decay=r["weight_decay"], max_norm=r["max_norm"])
    avg_ref = [p.copy() for p in net.parameters()]
    steps, ref_losses, losses = -(-n // batch), [], []
    for epoch in (1, 2):
        order = np.random.default_rng(epoch).permutation(n).astype(np.int64)
        out, _ = run_steps(model, adam, images, labels, order, steps, batch, lr=2e-3, recipe=r, aug=warp_record(),
                           seed=seed, epoch=epoch, columns=columns)
        adam.advance(steps)
        losses += list(out)
        for idx in (order[i:i + batch] for i in range(0, n, batch)):
            x = np.array([ref.augment_image(images[i].reshape(28, 28), seed, epoch, i, **WARP).reshape(-1)
                          for i in idx])
            x *= ref.dropout_mask(seed, epoch, idx, STREAM_DROPOUT, 784, r["dropout_input"])
            masks = [ref.dropout_mask(seed, epoch, idx, STREAM_DROPOUT + l + 1, h, r["dropout"])
                     for l, h in enumerate(sizes[1:-1])]
            loss, d = ref.softmax_cross_entropy(net.forward(x, masks), labels[idx], r["smoothing"])
            net.backward(d)
            k = opt_ref.t
            opt_ref.step(net.gradients(), ref.lr_schedule("onecycle", 2e-3, k, 8, 14, r["floor"]))
            ref.ema_update(avg_ref, net.parameters(), r["ema"], opt_ref.t)
            ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=3e-5)
    for got, want in zip([a for pair in model.views(adam.ema) for a in pair], avg_ref):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=3e-5)


@SPLITS
def test_train_steps_with_alpha_agree_with_the_reference_steps_with_the_penalty(columns):
    rng = np.random.default_rng(13)
    sizes, batch, alpha = [784, 37, 10], 16, 0.5
    n = 5 * batch - 3
    images, labels = random_images(rng, n)
    model, net = engine_and_reference(sizes, seed=1)
    adam, opt_ref = Adam(model.num_parameters), ref.Adam(net.parameters())
    order = np.arange(n, dtype=np.int64)
    losses, _ = run_steps(model, adam, images, labels, order, 5, batch, alpha=alpha, columns=columns)
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


def thread_runs(recipe, sizes, batch, columns, rows=75, seed=21):
    """``run(threads, rows)``: ten steps of batch ``batch`` over the first ``rows`` of a fixed order
    (the last batch short), plain or with the full recipe, from fixed weights, on ``threads``
    threads; returns (losses, correct, params, m, v, average)."""
    rng = np.random.default_rng(seed)
    images, labels = random_images(rng, max(rows, 2 * batch))
    order = rng.permutation(len(images)).astype(np.int64)
    full = recipe == "full"

    def run(threads, rows=rows):
        b = min(batch, rows)
        model = MLP.initialized(list(sizes), np.random.default_rng(3))
        adam = fresh_adam(model, ema_decay=0.9 if full else 0.0)
        losses, correct = run_steps(model, adam, images, labels, order[:rows], -(-rows // b), b,
                                    recipe=FULL_RECIPE if full else None,
                                    aug=warp_record(flip=0.5, crop=2, erase=0.5) if full else None,
                                    seed=4, epoch=1, threads=threads, columns=columns, alpha=1e-3 if full else 0.0)
        return losses, correct, model.params, adam.m, adam.v, adam.ema
    return run


@pytest.mark.parametrize("recipe", ["plain", "full"])
@pytest.mark.parametrize("sizes,batch,columns", [((784, 24, 16, 10), 8, False), ((784, 30, 10), 300, False),
                                                 ((784, 40, 24, 10), 8, True), ((784, 40, 10), 8, True),
                                                 ((784, 260, 130, 10), 20, True)])
def test_the_thread_count_changes_no_bit(recipe, sizes, batch, columns):
    """The parts of every phase are fixed by the shape (row shards, unit parts, update blocks), so 1,
    2, 3, 4 and 8 threads (more than this machine's cores included) give the same losses, correct
    counts, parameters, moments and average, bit for bit; so do a one-row batch and a short one."""
    run = thread_runs(recipe, sizes, batch, columns, rows=max(75, 2 * batch + 7))
    one = run(1)
    for threads in (2, 3, 4, 8):
        for a, b in zip(one, run(threads)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(run(1, rows=1), run(3, rows=1)):
        np.testing.assert_array_equal(a, b)


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
    x_buf, _, z, h, d, off = activations(sizes, m)
    grads = np.zeros_like(model.params)
    x_buf[:m * 20] = rng.standard_normal(m * 20).astype(np.float32)
    x = x_buf[:m * 20].reshape(m, 20).astype(np.float64)
    Ws = [model.params[model.layout[l, 2]:model.layout[l, 3]].reshape(sizes[l + 1], sizes[l]).astype(np.float64)
          for l in range(3)]
    bs = [model.params[model.layout[l, 3]:model.layout[l, 3] + sizes[l + 1]].astype(np.float64) for l in range(3)]
    idx = np.arange(m, dtype=np.int64)
    z0, _ = ref.linear_forward(x, Ws[0], bs[0])
    h0, back0 = ref.relu(z0)
    z1, _ = ref.linear_forward(h0, Ws[1], bs[1])
    h1, back1 = ref.relu(z1)
    logits, _ = ref.linear_forward(h1, Ws[2], bs[2])
    for l, z_ref, h_ref in ((0, z0, h0), (1, z1, h1)):
        for j0, j1 in ((0, 16), (16, sizes[l + 1])):  # two parts of units
            layer_columns(model.params, model.layout, l, x_buf, z, h, off, m, j0, j1, idx, 0, 0, None, small)
        n = sizes[l + 1]
        np.testing.assert_allclose(z[off[l]:off[l] + n * m].reshape(n, m), z_ref.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h[off[l]:off[l] + n * m].reshape(n, m), h_ref.T, rtol=1e-5, atol=1e-5)
    for r0, r1 in ((0, 6), (6, m)):
        output_rows(model.params, model.layout, h, z, off, m, r0, r1)
    np.testing.assert_allclose(z[off[2]:off[2] + m * 10].reshape(m, 10), logits, rtol=1e-5, atol=1e-5)

    dlogits = rng.standard_normal((m, 10))
    d[off[2]:off[2] + m * 10] = dlogits.ravel()
    dz1 = back1(dlogits @ Ws[2])
    for i0, i1 in ((0, 16), (16, 24)):
        input_grad_columns(model.params, grads, model.layout, 2, z, d, off, m, i0, i1, None, small)
        weight_grad_rows(grads, model.layout, 1, x_buf, h, d, off, m, i0, i1, small)
        output_weight_grad_columns(grads, model.layout, h, d, off, m, i0, i1)
    np.testing.assert_allclose(d[off[1]:off[1] + 24 * m].reshape(24, m), dz1.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[1, 2]:model.layout[1, 3]].reshape(24, 40), dz1.T @ h0, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[1, 3]:model.layout[1, 3] + 24], dz1.sum(0), rtol=1e-5, atol=1e-5)
    dz0 = back0(dz1 @ Ws[1])
    for i0, i1 in ((0, 16), (16, 40)):
        input_grad_columns(model.params, grads, model.layout, 1, z, d, off, m, i0, i1, None, small)
        weight_grad_rows(grads, model.layout, 0, x_buf, h, d, off, m, i0, i1, small)
    np.testing.assert_allclose(d[off[0]:off[0] + 40 * m].reshape(40, m), dz0.T, rtol=1e-5, atol=1e-5)
    _, dW0, db0 = ref.linear_backward(dz0, x, Ws[0], bs[0])
    np.testing.assert_allclose(grads[model.layout[0, 2]:model.layout[0, 3]].reshape(40, 20), dW0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[model.layout[0, 3]:model.layout[0, 3] + 40], db0, rtol=1e-5, atol=1e-5)
    _, dW2, _ = ref.linear_backward(dlogits, h1, Ws[2], bs[2])
    np.testing.assert_allclose(grads[model.layout[2, 2]:model.layout[2, 3]].reshape(10, 24), dW2, rtol=1e-4, atol=1e-5)


def test_plain_adam_inside_the_backward_pass_is_the_bits_of_adam_after_the_step():
    """With one hidden layer and the plain recipe the column split updates each part of the weights as
    soon as nothing later in the step reads it; a recipe whose options are all off takes the
    update phase after the step instead: the same bits."""
    rng = np.random.default_rng(5)
    images, labels = random_images(rng, 60)
    order = rng.permutation(60).astype(np.int64)

    def train(recipe):
        model = MLP.initialized([784, 40, 10], np.random.default_rng(3))
        adam = Adam(model.num_parameters)
        losses, _ = run_steps(model, adam, images, labels, order, 5, 12, columns=True, recipe=None, threads=2) \
            if recipe is None else run_with_recipe(model, adam, images, labels, order, recipe)
        return losses, model.params, adam.m, adam.v

    def run_with_recipe(model, adam, images, labels, order, recipe):
        from fastmlp.engine.records import Data, Net, Optim, allocate_work, make_call
        work = allocate_work(model.sizes, 12, 2, columns=True)
        losses = np.zeros(5)
        call = make_call(0, 5, 12, 0, 0, 0, 1e-3, 0.9, 0.999, 1e-8)
        step.run_call(True, 2, Net(model.layout, model.params), Data(images, labels, order, None), work,
                      Optim(adam.m, adam.v, adam.ema), None, recipe, call, losses)
        return losses, 0

    off = Recipe(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # every option off, yet a recipe
    for a, b in zip(train(None), train(off)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sizes", [(30, 10), (784, 40, 10), (784, 40, 24, 10), (784, 48, 40, 24, 10)])
@pytest.mark.parametrize("weight_decay,max_norm,ema_decay", [(0.0, 0.0, 0.0), (0.5, 1.2, 0.95)])
def test_the_update_by_parts_is_the_whole_buffers_adamw(sizes, weight_decay, max_norm, ema_decay):
    """The update phase's parts (weight rows and their biases in blocks; the column split's last layer
    by columns) give the bits of the whole-buffer AdamW pass, which matches the reference."""
    rng = np.random.default_rng(21)
    model = MLP.initialized(list(sizes), rng)
    params_ref = [a.astype(np.float64) for pair in model.layers() for a in pair]
    avg_ref = [p.copy() for p in params_ref]
    opt_ref = ref.Adam(params_ref, 3e-2, weight_decay=weight_decay, max_norm=max_norm)
    whole, rows, cols = Adam(model.num_parameters), Adam(model.num_parameters), Adam(model.num_parameters)
    p_whole, p_rows, p_cols = model.params.copy(), model.params.copy(), model.params.copy()
    e_whole, e_rows, e_cols = model.params.copy(), model.params.copy(), model.params.copy()
    L = len(sizes) - 1
    for t in range(1, 5):
        lr = 3e-2 * t / 4
        grads = rng.normal(size=model.num_parameters).astype(np.float32)
        update.adamw_update(p_whole, grads, whole.m, whole.v, e_whole, model.layout, lr, 0.9, 0.999, 1e-8, t,
                            weight_decay, max_norm, ema_decay)
        factors = update.adam_factors(lr, 0.9, 0.999, 1e-8, t)
        decay, a = update.adamw_factors(lr, weight_decay, ema_decay, t)
        for l, r0, r1 in parts.update_blocks(model.layout):  # the row split's blocks
            g = grads.copy()[None]
            update.update_rows_block(p_rows, g, 1, rows.m, rows.v, e_rows, model.layout, l, r0, r1, factors, decay,
                                     max_norm if l < L - 1 else None, a, 0.0)
        for l in range(L):  # the column split's parts
            n_in, n_out = sizes[l], sizes[l + 1]
            for p in range(2):
                if l < L - 1:
                    j0, j1 = parts.split_bounds(n_out, 2, p)
                    update.update_layer_rows(p_cols, grads, cols.m, cols.v, e_cols, model.layout, l, j0, j1, factors,
                                             decay, max_norm, a)
                else:
                    i0, i1 = parts.split_bounds(n_in, 2, p)
                    j0, j1 = parts.split_bounds(n_out, 2, p)
                    update.update_columns_part(p_cols, grads, cols.m, cols.v, e_cols, model.layout, l, i0, i1, j0, j1,
                                               factors, decay, a, 0.0)
        opt_ref.step([g.astype(np.float64) for pair in model.views(grads) for g in pair], lr)
        if ema_decay > 0:
            ref.ema_update(avg_ref, params_ref, ema_decay, t)
    for got in ((p_rows, rows.m, rows.v, e_rows), (p_cols, cols.m, cols.v, e_cols)):
        for a, b in zip(got, (p_whole, whole.m, whole.v, e_whole)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(p_whole, model.params)
    for got, want in zip([a for pair in model.views(p_whole) for a in pair], params_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if ema_decay > 0:
        for got, want in zip([a for pair in model.views(e_whole) for a in pair], avg_ref):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_train_steps_stop_at_a_non_finite_loss_and_mark_the_rest_nan():
    rng = np.random.default_rng(9)
    images, labels = random_images(rng, 64)
    for columns in (False, True):
        model = MLP.initialized([784, 32, 10], rng)
        model.params[:] = np.float32(1e30)  # logits overflow to inf
        before = model.params.copy()
        losses, _ = run_steps(model, Adam(model.num_parameters), images, labels, np.arange(64, dtype=np.int64), 8, 8,
                              columns=columns, threads=3)
        assert not np.isfinite(losses[0])
        assert np.all(np.isnan(losses[1:]))
        np.testing.assert_array_equal(model.params, before)  # no update from a non-finite step


# ----------------------------------------------------------------------------- no allocation, no recompile

def test_a_train_step_allocates_nothing_inside_the_kernel():
    """Numba's allocator counts every allocation (its statistics switched on). A call of 1 step and a
    call of 9 steps allocate exactly the same (the arguments' wrappers, made when the call starts):
    the steps themselves allocate nothing, with the plain recipe and with every option on, as row
    shards and in the column split, on one thread and on two."""
    code = textwrap.dedent("""
        import numpy as np
        from numba.core.runtime import _nrt_python, rtsys
        _nrt_python.memsys_enable_stats()
        from fastmlp.engine import augment
        from fastmlp.engine.records import Aug, Data, Net, Optim, allocate_work, make_call, make_recipe
        from fastmlp.engine.step import run_call
        from fastmlp.training.model import MLP
        from fastmlp.training.optim import Adam
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (300, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, 300).astype(np.uint8)
        model = MLP.initialized([784, 33, 17, 10], rng)
        adam = Adam(model.num_parameters, ema_decay=0.9)
        order, losses = rng.permutation(300).astype(np.int64), np.zeros(9)
        full = make_recipe(2, 8, 40, 0.01, 0.01, 3.0, 0.9, 0.1, 0.2, 0.3)
        aug = Aug(*augment.aug_params(12, 0.1, 0.15, 2.5, 34, 4, 28))
        def call(k, recipe, aug, columns, threads):
            work = allocate_work(model.sizes, 32, 2, augment.scratch_size(28), columns=columns)
            before = rtsys.get_allocation_stats().alloc
            run_call(columns, threads, Net(model.layout, model.params), Data(images, labels, order, None), work,
                     Optim(adam.m, adam.v, adam.ema), aug, recipe,
                     make_call(0, k, 32, 0, 7, 1, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 8 * 32 * 784 if columns else 0),
                     losses)
            return rtsys.get_allocation_stats().alloc - before
        for columns in (False, True):
            for threads in (1, 2):
                call(1, None, None, columns, threads), call(1, full, aug, columns, threads)  # compile
                print(call(1, None, None, columns, threads), call(9, None, None, columns, threads),
                      call(1, full, aug, columns, threads), call(9, full, aug, columns, threads))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split("\n")[:4]:
        one, nine, full_one, full_nine = map(int, line.split())
        assert one == nine and full_one == full_nine, out.stdout


def test_the_workers_compile_once_per_kind_of_run():
    """Layer sizes, batch sizes, thread counts and hyperparameters change no kernel's types: each
    worker has one compiled signature per split, image type and kind of recipe (plain or not, warped
    or not), whatever else changes (other tests may have compiled other kinds: only the ones these
    calls add are counted)."""
    workers = (step.row_worker, step.column_worker)
    before = {w: set(w.signatures) for w in workers}
    rng = np.random.default_rng(11)
    images, labels = random_images(rng, 100)
    for hidden in ([24], [24, 18], [20, 20, 20]):
        for batch in (1, 10, 32):
            for columns in (False, True):
                for threads in (1, 2):
                    model = MLP.initialized([784, *hidden, 10], rng)
                    run_steps(model, fresh_adam(model), images, labels, np.arange(100, dtype=np.int64), 3, batch,
                              columns=columns, threads=threads, lr=1e-3 * batch)
                    run_steps(model, fresh_adam(model, ema_decay=0.99), images, labels,
                              np.arange(100, dtype=np.int64), 3, batch, columns=columns, threads=threads,
                              recipe=FULL_RECIPE, aug=warp_record(), seed=5, epoch=2, alpha=1e-4)
    for w in workers:
        added = set(w.signatures) - before[w]
        assert len(added) <= 2, (w, added)  # plain and full recipe
        assert len(w.signatures) >= 2


# ----------------------------------------------------------------------------- sample weights, regression

@SPLITS
def test_weights_of_one_are_no_weights_bit_for_bit(columns):
    rng = np.random.default_rng(31)
    images, labels = random_images(rng, 90)
    order = rng.permutation(90).astype(np.int64)

    def train(weights):
        model = MLP.initialized([784, 40, 24, 10], np.random.default_rng(3))
        adam = Adam(model.num_parameters)
        losses, correct = run_steps(model, adam, images, labels, order, 8, 12, columns=columns, alpha=1e-3,
                                    weights=weights)
        return losses, correct, model.params, adam.m, adam.v

    for a, b in zip(train(None), train(np.ones(90, np.float32))):
        np.testing.assert_array_equal(a, b)


@SPLITS
def test_a_weighted_step_is_the_references_weighted_mean_and_integer_weights_repeat_rows(columns):
    """One step on a batch with weights 0, 1, 2 and 3 lands where the float64 reference's weighted mean
    loss steps (scikit-learn's: the gradient divided by the weights' sum, the L2 penalty too), and
    where an unweighted step on the batch with each row repeated its weight's times lands."""
    rng = np.random.default_rng(32)
    images, labels = random_images(rng, 24)
    weights = np.tile(np.array([0, 1, 2, 3], np.float32), 6)
    order = np.arange(24, dtype=np.int64)
    sizes, alpha = [784, 40, 10], 0.1
    model, net = engine_and_reference(sizes, seed=2)
    losses, _ = run_steps(model, Adam(model.num_parameters), images, labels, order, 1, 24, columns=columns,
                          alpha=alpha, weights=weights)
    loss, d = ref.softmax_cross_entropy(net.forward(ref.gather_batch(images, order, np.float64)), labels,
                                        weights=weights)
    net.backward(d)
    penalty, dpen = ref.l2_penalty([layer.W for layer in net.layers], alpha, float(weights.sum()))
    for layer, g in zip(net.layers, dpen):
        layer.dW = layer.dW + g
    ref.Adam(net.parameters()).step(net.gradients())
    assert losses[0] == pytest.approx(loss + penalty, rel=1e-5)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

    repeated = np.repeat(order, weights.astype(int))
    twin, _ = engine_and_reference(sizes, seed=2)
    run_steps(twin, Adam(twin.num_parameters), images, labels, rng.permutation(repeated).astype(np.int64), 1,
              len(repeated), columns=columns, alpha=alpha)
    np.testing.assert_allclose(twin.params, model.params, rtol=1e-4, atol=1e-6)


@SPLITS
@pytest.mark.parametrize("weighted", [False, True])
def test_regression_steps_agree_with_the_references_squared_error(columns, weighted):
    """Float32 targets (m, k) train an identity output on scikit-learn's squared error: the loss is
    its weighted mean over rows and outputs, the step its gradient over the rows' weights."""
    rng = np.random.default_rng(33)
    n, batch, sizes = 70, 16, [784, 40, 3]
    images, _ = random_images(rng, n)
    targets = rng.normal(size=(n, 3)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, n).astype(np.float32) if weighted else None
    model, net = engine_and_reference(sizes, seed=4)
    adam, opt_ref = Adam(model.num_parameters), ref.Adam(net.parameters())
    order = rng.permutation(n).astype(np.int64)
    steps = -(-n // batch)
    losses, correct = run_steps(model, adam, images, targets, order, steps, batch, columns=columns, weights=weights)
    assert correct == 0
    ref_losses = []
    for idx in (order[i:i + batch] for i in range(0, n, batch)):
        out = net.forward(ref.gather_batch(images, idx, np.float64))
        loss, d = ref.squared_error(out, targets[idx], None if weights is None else weights[idx])
        net.backward(d)
        opt_ref.step(net.gradients())
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-5)


@SPLITS
def test_weighted_regression_gives_the_same_bits_on_any_number_of_threads(columns):
    rng = np.random.default_rng(34)
    images, _ = random_images(rng, 75)
    targets = rng.normal(size=(75, 2)).astype(np.float32)
    weights = rng.uniform(0, 3, 75).astype(np.float32)
    order = rng.permutation(75).astype(np.int64)

    def train(threads):
        model = MLP.initialized([784, 40, 24, 2], np.random.default_rng(3))
        adam = Adam(model.num_parameters)
        losses, _ = run_steps(model, adam, images, targets, order, 10, 8, columns=columns, threads=threads,
                              weights=weights, alpha=1e-3)
        return losses, model.params, adam.m, adam.v

    one = train(1)
    for threads in (2, 3, 8):
        for a, b in zip(one, train(threads)):
            np.testing.assert_array_equal(a, b)
