"""The counter-based random numbers and the augmentation warp agree with their NumPy/scipy twins
in fastmlp.reference, and depend on (seed, epoch, example) alone."""

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.engine import augment, layers
from fastmlp.engine.records import Aug
from fastmlp.engine.rng import STREAM_AUGMENT, STREAM_DROPOUT, example_key, uniform

AFFINE = dict(rotate=12.0, scale=0.1, shear=0.15, shift=2.5)
ELASTIC = dict(alpha=34.0, sigma=4.0)


def key_of(seed, epoch, index, stream=STREAM_AUGMENT):
    """An example's stream key as the kernels hold it (uint64; Numba returns it as a Python int)."""
    return np.uint64(example_key(seed, epoch, index, stream))


def digit_like(rng, side=28):
    """A uint8 image with a bright blob and some texture, so that any misplaced sample shows."""
    img = rng.integers(0, 40, (side, side)).astype(np.float64)
    yy, xx = np.mgrid[:side, :side]
    img += 215 * np.exp(-((yy - side * 0.4) ** 2 + (xx - side * 0.55) ** 2) / (2 * (side / 6) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def kernel_warp(image, seed, epoch, index, rotate=0.0, scale=0.0, shear=0.0, shift=0.0, alpha=0.0, sigma=4.0):
    side = image.shape[0]
    aug, taps = augment.aug_params(rotate, scale, shear, shift, alpha, sigma, side)
    out = np.full(side * side, -1, np.float32)
    key = key_of(seed, epoch, index)
    augment.warp_image(image.reshape(-1), layers.input_scale(image), out, key, aug, taps,
                       np.zeros(augment.scratch_size(side)))
    return out.reshape(side, side)


def test_the_random_streams_match_the_numpy_twin_bit_for_bit():
    for seed, epoch, index, stream in [(0, 0, 0, 0), (3, 2, 7, 0), (2**40 + 5, 17, 59999, 3)]:
        key = key_of(seed, epoch, index, stream)
        ref_key = ref.stream_key(seed, epoch, index, stream)
        assert key == ref_key[0]
        got = [uniform(key, c) for c in range(50)]
        np.testing.assert_array_equal(got, ref.random_uniform(ref_key, np.arange(50)))


def test_uniforms_are_uniform_and_streams_are_independent():
    keys = [key_of(1, 1, i, 0) for i in range(2000)]
    u = np.array([uniform(k, 0) for k in keys])
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.005
    v = np.array([uniform(k, 1) for k in keys])
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.06
    assert key_of(1, 1, 0, 0) != key_of(1, 2, 0, 0) != key_of(2, 1, 0, 0)


def test_no_warp_is_the_identity():
    img = digit_like(np.random.default_rng(0))
    np.testing.assert_allclose(kernel_warp(img, 0, 0, 0), img / 255.0, atol=1e-7)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_the_affine_warp_matches_scipy_affine_transform(index):
    img = digit_like(np.random.default_rng(index))
    got = kernel_warp(img, 11, 3, index, **AFFINE)
    want = ref.augment_image(img, 11, 3, index, **AFFINE)  # ndimage.affine_transform, order 1
    assert np.abs(want - img / 255.0).mean() > 0.02  # it did move
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("params", [ELASTIC, {**AFFINE, **ELASTIC}, dict(alpha=8.0, sigma=1.5),
                                    dict(alpha=20.0, sigma=9.0, rotate=30.0)])
def test_the_elastic_warp_matches_scipy_map_coordinates_on_the_same_field(params):
    rng = np.random.default_rng(5)
    for index in range(3):
        img = digit_like(rng)
        got = kernel_warp(img, 2, 9, index, **params)
        want = ref.augment_image(img, 2, 9, index, **params)  # gaussian_filter, zoom, map_coordinates
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_the_elastic_field_has_simards_size():
    """alpha 34, sigma 4 moves pixels by about one pixel (standard deviation), smoothly."""
    dx, dy = ref.elastic_displacement(0, 0, 1, 34.0, 4.0)
    fields = np.array([ref.elastic_displacement(0, 0, i, 34.0, 4.0)[0] for i in range(200)])
    assert 0.5 < fields.std() < 2.0
    assert np.abs(np.diff(dx, axis=1)).max() < 1.0  # smooth: neighbours move alike


def test_float32_images_warp_like_uint8_images_over_255():
    img = digit_like(np.random.default_rng(9))
    as_float = (img / np.float32(255)).astype(np.float32)
    np.testing.assert_allclose(kernel_warp(as_float, 1, 1, 1, **AFFINE, **ELASTIC),
                               kernel_warp(img, 1, 1, 1, **AFFINE, **ELASTIC), atol=1e-6)


def test_gather_train_warps_and_drops_each_example_by_its_own_key():
    """The batch an example falls in, and its position there, change nothing."""
    rng = np.random.default_rng(2)
    images = np.array([digit_like(rng).reshape(-1) for _ in range(12)])
    labels = rng.integers(0, 10, 12).astype(np.uint8)
    aug, taps = augment.aug_params(12, 0.1, 0.15, 2.5, 34, 4, 28)
    scratch = np.zeros(augment.scratch_size(28))

    def gather(idx, p_in=0.25):
        x, y = np.zeros((len(idx), 784), np.float32), np.zeros(len(idx), np.int32)
        layers.gather_train(images, labels, np.asarray(idx, np.int64), x, y, 4, 6, Aug(aug, taps), scratch, p_in)
        return x, y

    x, y = gather([3, 7, 1, 10])
    np.testing.assert_array_equal(y, labels[[3, 7, 1, 10]])
    x2, _ = gather([10, 3])
    np.testing.assert_array_equal(x2, x[[3, 0]])
    for row, i in zip(x, [3, 7, 1, 10]):
        warped = ref.augment_image(images[i].reshape(28, 28), 4, 6, i, **AFFINE, **ELASTIC).reshape(-1)
        mask = ref.dropout_mask(4, 6, [i], STREAM_DROPOUT, 784, 0.25)[0]
        np.testing.assert_allclose(row, warped * mask, atol=4e-6)
    ink = np.array([ref.augment_image(images[i].reshape(28, 28), 4, 6, i, **AFFINE, **ELASTIC)
                    for i in [3, 7, 1, 10]]).reshape(4, -1) > 0
    assert 0.2 < ((x == 0) & ink).sum() / ink.sum() < 0.3  # about a quarter of the ink dropped


# ----------------------------------------------------------------------------- flips, crops, erasing

def test_the_clothes_transforms_match_the_numpy_twin_image_by_image():
    """Flip, crop with padding and random erasing, each image by its own random numbers, as the
    reference computes them; every transform shows up at these chances."""
    from fastmlp.engine.records import Aug
    rng = np.random.default_rng(3)
    images = np.array([digit_like(rng).reshape(-1) for _ in range(40)])
    labels = np.zeros(40, np.uint8)
    aug, taps = augment.aug_params(0, 0, 0, 0, 0, 4, 28, flip=0.5, crop=3, erase=0.5)
    assert aug[augment.AUG_WARP] == 0
    x, y = np.zeros((40, 784), np.float32), np.zeros(40, np.int32)
    idx = np.arange(40, dtype=np.int64)
    layers.gather_train(images, labels, idx, x, y, 7, 2, Aug(aug, taps), np.zeros(augment.scratch_size(28)), None)
    changed = 0
    for i in range(40):
        want = ref.transform_image(images[i].reshape(28, 28) / np.float32(255), 7, 2, i, flip=0.5, crop=3, erase=0.5)
        np.testing.assert_allclose(x[i].reshape(28, 28), want, atol=1e-6)
        changed += not np.allclose(want, images[i].reshape(28, 28) / 255.0)
    assert changed > 30
    flipped = ref.transform_image(images[0].reshape(28, 28) / 255.0, 7, 2, 0, flip=1.0)
    np.testing.assert_array_equal(flipped, images[0].reshape(28, 28)[:, ::-1] / 255.0)


def test_the_transforms_follow_the_warp_and_depend_on_the_example_alone():
    from fastmlp.engine.records import Aug
    rng = np.random.default_rng(4)
    images = np.array([digit_like(rng).reshape(-1) for _ in range(6)])
    labels = np.zeros(6, np.uint8)
    aug, taps = augment.aug_params(12, 0.1, 0.15, 2.5, 0, 4, 28, flip=0.5, crop=2, erase=0.5)
    scratch = np.zeros(augment.scratch_size(28))

    def gather(idx):
        x, y = np.zeros((len(idx), 784), np.float32), np.zeros(len(idx), np.int32)
        layers.gather_train(images, labels, np.asarray(idx, np.int64), x, y, 1, 3, Aug(aug, taps), scratch, None)
        return x

    both = gather([5, 2, 0])
    np.testing.assert_array_equal(gather([0, 5])[[1, 0]], both[[0, 2]])
    for row, i in zip(both, [5, 2, 0]):
        warped = ref.augment_image(images[i].reshape(28, 28), 1, 3, i, **AFFINE)
        np.testing.assert_allclose(row.reshape(28, 28), ref.transform_image(warped, 1, 3, i, 0.5, 2, 0.5), atol=4e-6)
