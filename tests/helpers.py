"""Helpers shared by the test modules (imported by them; no test module imports another)."""

from __future__ import annotations

import numpy as np

from fastmlp import reference as ref
from fastmlp.engine import augment
from fastmlp.engine.records import Aug, Data, Net, Optim, allocate_work, make_call, make_recipe
from fastmlp.engine.step import run_call
from fastmlp.model import MLP
from fastmlp.optim import Adam

#: Every option of the recipe on: one-cycle over 40 steps (8 of warm-up) to a floor of 0.01, weight
#: decay 0.01, max-norm 3, average 0.9, label smoothing 0.1, input dropout 0.2, hidden dropout 0.3.
FULL_RECIPE = dict(schedule=2, warmup=8, total=40, floor=0.01, weight_decay=0.01, max_norm=3.0, ema=0.9,
                   smoothing=0.1, dropout_input=0.2, dropout=0.3)
#: The warp of the full recipe (elastic) and its arguments as the reference takes them.
WARP = dict(rotate=12.0, scale=0.1, shear=0.15, shift=2.5, alpha=34.0, sigma=4.0)


def random_images(rng, n, n_in=784):
    """``n`` random uint8 images of ``n_in`` pixels and labels 0..9 (uint8)."""
    return rng.integers(0, 256, (n, n_in), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def warp_record(side=28, flip=0.0, crop=0, erase=0.0, **warp) -> Aug:
    """The kernels' :class:`~fastmlp.engine.records.Aug` for a warp (default :data:`WARP`), with the
    clothes-photo transforms' chances (none by default)."""
    w = {**WARP, **warp}
    return Aug(*augment.aug_params(w["rotate"], w["scale"], w["shear"], w["shift"], w["alpha"], w["sigma"], side,
                                   flip, crop, erase))


def engine_and_reference(sizes, seed=0):
    """An engine MLP and a float64 reference NN with the same weights (the reference's init)."""
    net = ref.NN(sizes, np.random.default_rng(seed), dtype=np.float64)
    model = MLP(sizes)
    model.set_from([p.astype(np.float32) for p in net.parameters()])
    return model, net


def run_steps(model, adam, images, labels, order, n_steps, batch, *, first=0, lr=1e-3, recipe=None, aug=None, seed=0,
              epoch=0, alpha=0.0, threads=2, columns=False, small=0, work=None, weights=None):
    """``n_steps`` training steps of ``model`` with ``adam``'s state, in one kernel call on ``threads``
    threads, as row shards or in the column split; ``recipe``: a dict of
    :func:`~fastmlp.engine.records.make_recipe`'s fields (None: the plain recipe); ``labels`` 2-D
    float32: regression targets; ``weights``: the examples' float32 weights. Returns
    ``(losses, correct)``; the caller advances ``adam`` if it goes on."""
    if work is None:
        scratch = augment.scratch_size(28) if aug is not None else 1
        work = allocate_work(model.sizes, batch, max(threads, 8), scratch, columns=columns, regression=labels.ndim == 2)
    losses = np.zeros(n_steps)
    call = make_call(first, n_steps, batch, adam.t, seed, epoch, lr, adam.beta1, adam.beta2, adam.eps, alpha, small)
    correct = run_call(columns, threads, Net(model.layout, model.params), Data(images, labels, order, weights), work,
                       Optim(adam.m, adam.v, adam.ema), aug, make_recipe(**recipe) if recipe else None, call, losses)
    return losses, correct


def fresh_adam(model, **kw) -> Adam:
    """An :class:`~fastmlp.optim.Adam` for ``model`` whose average starts at its parameters."""
    adam = Adam(model.num_parameters, **kw)
    adam.start_average(model.params)
    return adam


def activations(sizes, batch):
    """``(x, y, z, h, d, act_off)``: a workspace's activation buffers for batches of ``batch`` rows."""
    work = allocate_work(sizes, batch, 1)
    return work.x, work.y, work.z, work.h, work.d, work.act_off
