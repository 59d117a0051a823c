"""Counter-based random numbers: a pure function of ``(seed, epoch, example index, stream, counter)``.

A SplitMix64 finaliser (Steele, Lea & Flood 2014) is applied to a key built from the first four,
plus the counter. No generator state is carried from one example to the next, so what an example
sees (its warp, its dropout masks) does not depend on the batch it falls in, on the batch size,
on the part of the step that computes it, or on the thread count.

Streams of one example: :data:`STREAM_AUGMENT` (the warp's parameters and the elastic noise),
``STREAM_DROPOUT + l`` (the dropout mask of the input (l = 0) and of hidden layer l),
:data:`STREAM_TRANSFORM` (the flip, crop and erasing of :func:`fastmlp.engine.augment.transform_image`).
"""

from __future__ import annotations

import numpy as np

from .jit import kernel

STREAM_AUGMENT = 0
STREAM_DROPOUT = 1
STREAM_TRANSFORM = 1 << 20  # the clothes-photo transforms (flip, crop, erasing): past every dropout stream

_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_INV24 = 1.0 / (1 << 24)


@kernel
def mix64(z):
    """The SplitMix64 finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@kernel
def example_key(seed, epoch, index, stream):
    """The key of one example's stream: ``mix64`` chained over seed, epoch, index and stream."""
    k = mix64(np.uint64(seed) + _G)
    k = mix64(k + np.uint64(epoch) * _G)
    k = mix64(k + np.uint64(index) * _G)
    return mix64(k + np.uint64(stream) * _G)


@kernel
def bits24(key, counter):
    """24 random bits (uint64 in [0, 2^24)) for ``counter`` of a stream."""
    return mix64(np.uint64(key) + np.uint64(counter) * _G) >> _S40


@kernel
def uniform(key, counter):
    """A uniform float in [0, 1) with 24 random bits."""
    return np.float64(bits24(key, counter)) * _INV24


def keep_threshold(p: float) -> int:
    """A unit is dropped when ``bits24 < keep_threshold(p)``: probability ``round(p 2^24) / 2^24``."""
    return int(round(p * (1 << 24)))


@kernel
def drop_threshold(p):
    """Units whose 24 random bits fall below this are dropped (probability p, to 2^-24);
    :func:`keep_threshold` in Numba."""
    return np.uint64(int(p * 16777216.0 + 0.5))
