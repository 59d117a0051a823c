"""Whole training steps and training throughput.

* ``test_train_step``: one step (gather, forward, loss, backward, Adam) as one
  ``Trainer.steps(n_steps=1)`` call (one ``engine.step.run_call``, in the split the shape takes),
  beside the NumPy reference's step and beside the step's GEMMs alone (the BLAS floor, in NumPy and
  through Numba's ``np.dot``), on synthetic data.
* ``test_epoch_throughput``: training on real MNIST as ``fastmlp train`` drives it (about 20
  kernel calls per epoch), reported in samples/s through ``benchmark.extra_info``. A full epoch
  (55,000 images) for the small models, a fixed 100 steps for [1024,1024].
"""

from __future__ import annotations

import pytest
from common import CONFIGS, FastmlpTrainer, GemmFloor, GemmFloorNumba, ReferenceTrainer, config_name, sample_order

IMPLS = ["fastmlp", "reference", "gemms numpy", "gemms numba"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("hidden,batch_size", CONFIGS, ids=[config_name(*c) for c in CONFIGS])
def test_train_step(benchmark, synthetic, hidden, batch_size, impl):
    images, labels = synthetic
    n_batches = len(images) // batch_size
    order = sample_order(len(images), n_batches * batch_size)
    benchmark.group = f"train step {config_name(hidden, batch_size)}"
    counter = iter(range(10 ** 12))

    if impl == "fastmlp":
        t = FastmlpTrainer(hidden, batch_size, images, labels)

        def fn():
            t.steps(order, next(counter) % n_batches, 1)
    elif impl == "reference":
        t = ReferenceTrainer(hidden, batch_size, images, labels)

        def fn():
            s = next(counter) % n_batches
            t.step(order[s * batch_size:(s + 1) * batch_size])
    else:
        t = (GemmFloor if impl == "gemms numpy" else GemmFloorNumba)(hidden, batch_size)

        def fn():
            t.steps(1)
    fn()  # compile / warm up outside the timed rounds
    benchmark.extra_info["batch_size"] = batch_size
    benchmark(fn)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["samples_per_s"] = batch_size / benchmark.stats.stats.median


EPOCH_CASES = [((100,), 32, None), ((256, 128), 128, None), ((1024, 1024), 128, 100)]


@pytest.mark.mnist
@pytest.mark.parametrize("hidden,batch_size,steps", EPOCH_CASES,
                         ids=[config_name(h, b) + ("" if s is None else f"-{s}steps") for h, b, s in EPOCH_CASES])
def test_epoch_throughput(benchmark, mnist, record_throughput, hidden, batch_size, steps):
    images, labels, fit_idx = mnist
    t = FastmlpTrainer(hidden, batch_size, images, labels)
    n = len(fit_idx) if steps is None else steps * batch_size
    orders = [sample_order(fit_idx, n, seed=s) for s in range(8)]
    t.steps(orders[0], 0, 2)  # compile / warm up
    rounds = iter(orders * 4)
    benchmark.group = "epoch throughput (MNIST)"
    benchmark.pedantic(lambda: t.train(next(rounds)), rounds=3, iterations=1, warmup_rounds=0)
    record_throughput(benchmark, n)
