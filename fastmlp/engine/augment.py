"""The per-image augmentation warp (Numba kernels), its random numbers from :mod:`fastmlp.engine.rng`.

The warp (:func:`warp_image`) maps each output pixel ``p = (col, row)`` to a source point::

    q = A^-1 (p + d(p) - c - t) + c          A = R(angle) [[1, shear], [0, 1]] * scale

(``c`` the image centre, ``t`` the shift), then samples the uint8 image there bilinearly, zero
outside (scipy.ndimage's ``order=1, mode="grid-constant"``). ``d`` is the elastic displacement
(Simard, Steinkraus & Platt 2003: uniform noise in [-1, 1] smoothed by a Gaussian of width
sigma, scaled by alpha). For speed the noise lives on a coarse K x K grid of spacing about
sigma (``K = 1 + round((side - 1) / sigma)``): it is smoothed there by a Gaussian of sigma /
spacing (radius ``int(3 sigma / spacing + 0.5)``, zero outside, as ``scipy.ndimage.gaussian_filter``
with ``mode="constant", truncate=3``), multiplied by ``alpha / spacing`` (smoothing white noise
on a grid of spacing s gives s times the standard deviation of the full-resolution field, so
alpha keeps Simard's meaning), and upsampled bilinearly, corner to corner, to every pixel
(2K^2 random numbers and ~(2r+1) 4K^2 multiply-adds per image instead of 2 side^2 and
4 (6 sigma + 1) side^2). :mod:`fastmlp.reference` computes the same with scipy.ndimage.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import kernel
from .rng import uniform

# Indices into the ``aug`` parameter array (float64) of the kernels.
AUG_ROTATE, AUG_SCALE, AUG_SHEAR, AUG_SHIFT, AUG_ALPHA, AUG_SIGMA, AUG_GRID, AUG_RADIUS = range(8)
AUG_WARP, AUG_FLIP, AUG_CROP, AUG_ERASE = range(8, 12)  # warp on (0/1); flip and erase chances; crop's pixels
AUG_LEN = 12

# Random erasing (Zhong et al. 2017): a rectangle of 2% to 40% of the image, aspect ratio 0.3 to 1/0.3.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)

N_AFFINE = 5            # counters 0..4 of the augment stream: angle, scale, shear, shift x, shift y
NOISE_FIRST = 8         # counters 8.. : the elastic noise, x field then y field, row-major

def elastic_grid(side: int, sigma: float) -> tuple[int, int, np.ndarray]:
    """``(K, radius, taps)``: the coarse grid, the smoothing radius and its normalised Gaussian taps."""
    K = int(min(side, max(2, 1 + round((side - 1) / sigma))))
    sigma_c = sigma * (K - 1) / (side - 1)
    radius = int(3.0 * sigma_c + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_c) ** 2)
    return K, radius, taps / taps.sum()


def aug_params(rotate: float, scale: float, shear: float, shift: float, alpha: float, sigma: float,
               side: int, flip: float = 0.0, crop: int = 0, erase: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``aug`` array and the Gaussian ``taps`` the kernels take (alpha 0: no elastic field; no
    rotation, scaling, shear, shift or alpha: no warp, the image copied), with the chances of a
    horizontal flip and of random erasing and the crop's largest shift (:func:`transform_image`)."""
    aug = np.zeros(AUG_LEN, np.float64)
    aug[:AUG_GRID] = rotate, scale, shear, shift, alpha, sigma
    aug[AUG_WARP] = 1.0 if any((rotate, scale, shear, shift, alpha)) else 0.0
    aug[AUG_FLIP], aug[AUG_CROP], aug[AUG_ERASE] = flip, crop, erase
    taps = np.ones(1, np.float64)
    if alpha > 0:
        K, radius, taps = elastic_grid(side, sigma)
        aug[AUG_GRID], aug[AUG_RADIUS] = K, radius
    return aug, taps


def scratch_size(side: int) -> int:
    """float64 scratch the warp needs: noise, fields and a temporary (5 side^2), per-pixel cells (2 side)."""
    return 5 * side * side + 2 * side


@kernel
def affine_inverse(key, aug):
    """``(a, b, c, d, tx, ty)``: ``A^-1 = [[a, b], [c, d]]`` in (x, y) and the shift, from the stream."""
    angle = math.radians(aug[AUG_ROTATE] * (2.0 * uniform(key, 0) - 1.0))
    s = 1.0 + aug[AUG_SCALE] * (2.0 * uniform(key, 1) - 1.0)
    sh = aug[AUG_SHEAR] * (2.0 * uniform(key, 2) - 1.0)
    tx = aug[AUG_SHIFT] * (2.0 * uniform(key, 3) - 1.0)
    ty = aug[AUG_SHIFT] * (2.0 * uniform(key, 4) - 1.0)
    co, si = math.cos(angle), math.sin(angle)
    # A = s R [[1, sh], [0, 1]] = s [[co, co sh - si], [si, si sh + co]]; det = s^2
    a00, a01, a10, a11 = s * co, s * (co * sh - si), s * si, s * (si * sh + co)
    inv = 1.0 / (a00 * a11 - a01 * a10)
    return a11 * inv, -a01 * inv, -a10 * inv, a00 * inv, tx, ty


@kernel
def elastic_field(key, aug, taps, side, scratch):
    """The coarse displacement grids (x then y, each K x K) into ``scratch[2K^2 : 4K^2]``.

    ``scratch[:2K^2]`` receives the noise, ``scratch[4K^2 : 5K^2]`` is the row pass's temporary.
    """
    K, r = int(aug[AUG_GRID]), int(aug[AUG_RADIUS])
    KK = K * K
    gain = aug[AUG_ALPHA] * (K - 1) / (side - 1)
    for i in range(2 * KK):
        scratch[i] = 2.0 * uniform(key, NOISE_FIRST + i) - 1.0
    for f in range(2):
        noise, out, tmp = f * KK, 2 * KK + f * KK, 4 * KK
        for i in range(K):          # along rows: noise -> tmp
            for j in range(K):
                acc = 0.0
                for t in range(-r, r + 1):
                    if 0 <= i + t < K:
                        acc += taps[t + r] * scratch[noise + (i + t) * K + j]
                scratch[tmp + i * K + j] = acc
        for i in range(K):          # along columns: tmp -> out, times the gain
            for j in range(K):
                acc = 0.0
                for t in range(-r, r + 1):
                    if 0 <= j + t < K:
                        acc += taps[t + r] * scratch[tmp + i * K + j + t]
                scratch[out + i * K + j] = gain * acc


@kernel
def _sample(row, scale, side, sx, sy):
    """Bilinear sample of a (side x side) image row at (x, y), zero outside, times ``scale``."""
    fx, fy = math.floor(sx), math.floor(sy)
    ix, iy = int(fx), int(fy)
    wx, wy = sx - fx, sy - fy
    if 0 <= ix and ix + 1 < side and 0 <= iy and iy + 1 < side:
        o = iy * side + ix
        top = (1.0 - wx) * np.float64(row[o]) + wx * np.float64(row[o + 1])
        bot = (1.0 - wx) * np.float64(row[o + side]) + wx * np.float64(row[o + side + 1])
        return np.float32(((1.0 - wy) * top + wy * bot) * scale)
    acc = 0.0
    for dy in range(2):
        yy = iy + dy
        if 0 <= yy < side:
            w_y = wy if dy else 1.0 - wy
            for dx in range(2):
                xx = ix + dx
                if 0 <= xx < side:
                    acc += w_y * (wx if dx else 1.0 - wx) * np.float64(row[yy * side + xx])
    return np.float32(acc * scale)


@kernel
def warp_image(row, scale, out, key, aug, taps, scratch):
    """``out`` (side^2 float32) = ``row`` (one flat image, uint8 or float32) warped, times ``scale``.

    ``key`` is the example's :data:`STREAM_AUGMENT` key. With ``aug[AUG_GRID] == 0`` there is no
    elastic field (affine only).
    """
    side = int(math.sqrt(out.shape[0]) + 0.5)
    a, b, c, d, tx, ty = affine_inverse(key, aug)
    cen = 0.5 * (side - 1)
    K = int(aug[AUG_GRID])
    if K == 0:
        for i in range(side):
            py = i - cen - ty
            for j in range(side):
                px = j - cen - tx
                out[i * side + j] = _sample(row, scale, side, a * px + b * py + cen, c * px + d * py + cen)
        return
    elastic_field(key, aug, taps, side, scratch)
    KK = K * K
    gx, gy = 2 * KK, 3 * KK
    cell, frac = 5 * side * side, 5 * side * side + side  # per pixel index: coarse cell and fraction
    per = (K - 1) / (side - 1)
    for i in range(side):
        g = i * per
        k = min(int(g), K - 2)
        scratch[cell + i] = k
        scratch[frac + i] = g - k
    for i in range(side):
        ki, fi = int(scratch[cell + i]), scratch[frac + i]
        for j in range(side):
            kj, fj = int(scratch[cell + j]), scratch[frac + j]
            o = ki * K + kj
            w00, w01, w10, w11 = (1 - fi) * (1 - fj), (1 - fi) * fj, fi * (1 - fj), fi * fj
            dxp = (w00 * scratch[gx + o] + w01 * scratch[gx + o + 1] + w10 * scratch[gx + o + K]
                   + w11 * scratch[gx + o + K + 1])
            dyp = (w00 * scratch[gy + o] + w01 * scratch[gy + o + 1] + w10 * scratch[gy + o + K]
                   + w11 * scratch[gy + o + K + 1])
            px, py = j + dxp - cen - tx, i + dyp - cen - ty
            out[i * side + j] = _sample(row, scale, side, a * px + b * py + cen, c * px + d * py + cen)


@kernel
def transform_image(x, side, key, aug, scratch):
    """The clothes-photo transforms, in place on one image ``x`` (side^2 float32), with random numbers
    of the example's :data:`~fastmlp.engine.rng.STREAM_TRANSFORM` key (counters 0 to 7):

    * a horizontal flip with chance ``aug[AUG_FLIP]`` (``u0 < p``);
    * a crop with padding: the image shifted by ``dx, dy`` whole pixels, each ``floor(u (2c + 1)) - c``
      for ``c = aug[AUG_CROP]`` (u1 for x, u2 for y), zeros shifted in;
    * random erasing with chance ``aug[AUG_ERASE]`` (u3; Zhong et al. 2017, set to zero, one try):
      area ``s = a0 + (a1 - a0) u4`` of the image (ERASE_AREA), aspect ``r = exp(ln r0 + (ln r1 -
      ln r0) u5)`` (ERASE_ASPECT), ``h = round(sqrt(s side^2 r))`` rows by ``w = round(sqrt(s
      side^2 / r))`` columns when both fit, at row ``floor(u6 (side - h + 1))`` and column
      ``floor(u7 (side - w + 1))``.
    """
    if aug[AUG_FLIP] > 0 and uniform(key, 0) < aug[AUG_FLIP]:
        for i in range(side):
            row = x[i * side:(i + 1) * side]
            for j in range(side // 2):
                row[j], row[side - 1 - j] = row[side - 1 - j], row[j]
    c = int(aug[AUG_CROP])
    if c > 0:
        dx = int(math.floor(uniform(key, 1) * (2 * c + 1))) - c
        dy = int(math.floor(uniform(key, 2) * (2 * c + 1))) - c
        for k in range(side * side):
            scratch[k] = x[k]
        for i in range(side):
            for j in range(side):
                si, sj = i - dy, j - dx
                x[i * side + j] = scratch[si * side + sj] if 0 <= si < side and 0 <= sj < side else 0.0
    if aug[AUG_ERASE] > 0 and uniform(key, 3) < aug[AUG_ERASE]:
        area = (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * uniform(key, 4)) * side * side
        lo, hi = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
        aspect = math.exp(lo + (hi - lo) * uniform(key, 5))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if h < side and w < side:
            top = int(math.floor(uniform(key, 6) * (side - h + 1)))
            left = int(math.floor(uniform(key, 7) * (side - w + 1)))
            for i in range(top, top + h):
                for j in range(left, left + w):
                    x[i * side + j] = 0.0
