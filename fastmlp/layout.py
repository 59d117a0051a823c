"""The flat buffers' layout: the ``layout`` array's columns and the views of one layer or block (Numba).

``layout`` is an int64 array with one row per layer: ``(n_in, n_out, w_off, b_off)`` into a
flat float32 buffer ``[W1 | b1 | W2 | b2 | ...]`` (parameters, gradients, Adam's moments, the
weight average: all share it). Activation blocks of a workspace are (B, n) row-major slices (the
column split of :mod:`fastmlp.step_kernels` stores hidden layers' blocks transposed, (n, m)).
Every such buffer is allocated by :func:`aligned_zeros`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Column indices of the ``layout`` array.
N_IN, N_OUT, W_OFF, B_OFF = 0, 1, 2, 3

# Row shards per batch: a batch of m rows runs as min(SHARDS, m) shards of consecutive rows, in
# parallel on Numba's threads, each with single-threaded BLAS (see fastmlp.step_kernels). A
# property of the computation (its rounding), not of the machine: results never depend on the
# thread count.
SHARDS = 2


@njit(cache=True, error_model="numpy", inline="always")
def shard_bounds(m, n_shards, s):
    """Rows ``r0 .. r1 - 1`` of shard s of a batch of m rows cut into n_shards."""
    return s * m // n_shards, (s + 1) * m // n_shards


# The column split (see fastmlp.step_kernels) cuts a layer's units into SHARDS parts on multiples
# of COLUMN_TILE: OpenBLAS computes a product's rows in tiles of 16, and a part of 50 units ran
# its weight-gradient product 4% slower than parts of 48 and 52 ([100] at 32 rows).
COLUMN_TILE = 16


@njit(cache=True, error_model="numpy", inline="always")
def split_bounds(n, parts, p):
    """Units ``j0 .. j1 - 1`` of part p of n units cut into ``parts`` on multiples of COLUMN_TILE
    (a part may be empty when n is small)."""
    tiles = -(-n // COLUMN_TILE)
    return min(n, p * tiles // parts * COLUMN_TILE), min(n, (p + 1) * tiles // parts * COLUMN_TILE)


def column_split(sizes, batch_size) -> bool:
    """Whether a network of these layer sizes trains in the column split rather than as row shards.

    Measured with the feature-major column split and page-aligned buffers (2 threads, both splits
    alternating in one process; the column split's products in blocks for OpenBLAS's small-matrix
    kernels, :func:`fastmlp.blas.gemm_blocks`), columns over rows, 784 inputs: 1.26-1.88x for [100]
    at 32 to 128 rows, 1.19x at 150, 1.34-1.48x for [64] at 96 and 128, 1.41x for [32] at 32, 1.29x
    for [256, 128] at 128, 1.05x at 256, 1.03x for [1024] and [1024, 1024] at 512; but 0.99x for
    [100] at 176 and [128] at 192, 0.92x for [100] at 200, 0.86x at 512, 0.97x for [256] at 512,
    0.84x and 0.73x for [32] at 128 and 256, 0.89x for [16] at 32. The blocks (at least 8 units
    of at most a million multiply-adds) reach the first layer's products up to 159 rows. So: a
    first hidden layer wider than one tile, and at least half as wide as the batch is long up to
    COLUMN_SPLIT_BLOCK_ROWS rows, as wide beyond. The gain grows with the inputs (the first
    product): with 256 inputs the layer must be as wide as the batch ([100] at 200 rows: 0.92x,
    [256] at 512: 0.94x, [256, 128] at 128: 1.03x), and with few inputs row shards win the common
    small networks ([100] at 200 rows on 20 or 64 inputs: 0.77x, 0.83x). Row shards of many rows
    are efficient GEMMs; few rows are not, while a column part keeps every row.
    """
    sizes = list(sizes)
    hidden = sizes[1:-1]
    if not hidden or hidden[0] <= COLUMN_TILE or sizes[0] < COLUMN_SPLIT_INPUTS:
        return False
    wide = sizes[0] >= COLUMN_SPLIT_WIDE_INPUTS and batch_size <= COLUMN_SPLIT_BLOCK_ROWS
    return hidden[0] >= (0.5 if wide else 1.0) * batch_size


COLUMN_SPLIT_INPUTS = 256
COLUMN_SPLIT_WIDE_INPUTS = 512
COLUMN_SPLIT_BLOCK_ROWS = 160


# Measured with OpenBLAS (float32, AVX2): a GEMM computes its rows in tiles of 16, and rows of a
# last, partial tile go through edge kernels that round differently; with few output columns (10)
# a GEMM of 128 rows or more also rounds differently from one of 64 or fewer. So that a row's
# outputs never depend on its position among the rows (scikit-learn's checks ask it of
# predict_proba), inference pads its chunks to whole tiles and cuts each layer's rows on tile
# boundaries: into SHARDS shards for a layer of at least WIDE_LAYER outputs, into shards of
# NARROW_SHARD_TILES tiles for a narrower one.
ROW_TILE = 16
WIDE_LAYER = 64
NARROW_SHARD_TILES = 4


@njit(cache=True, error_model="numpy", inline="always")
def padded_rows(m, capacity):
    """m rows rounded up to whole ROW_TILEs, at most ``capacity`` (a workspace's rows)."""
    return min(-(-m // ROW_TILE) * ROW_TILE, capacity)


@njit(cache=True, error_model="numpy", inline="always")
def infer_shard_tiles(mp, n_out):
    """Tiles per inference shard of a layer with ``n_out`` outputs over mp rows (see above)."""
    tiles = -(-mp // ROW_TILE)
    return -(-tiles // SHARDS) if n_out >= WIDE_LAYER else NARROW_SHARD_TILES


@njit(cache=True, error_model="numpy", inline="always")
def infer_shard_bounds(mp, tiles_per_shard, s):
    """Rows ``r0 .. r1 - 1`` of inference shard s of mp rows, ``tiles_per_shard`` tiles each."""
    rows = ROW_TILE * tiles_per_shard
    return min(s * rows, mp), min((s + 1) * rows, mp)


# ----------------------------------------------------------------------------- buffers

# NumPy aligns a large array's data on 16 bytes only, so where a buffer starts varies from one
# allocation to the next. Measured at 784-100-10 / 32 (two threads, five trainers of one process
# alternating): trainers whose parameter, gradient and moment buffers started 16 bytes past a
# 32-byte boundary trained at 232k samples/s, those on 32-byte boundaries at 263-267k, every
# round; at 784-256-128-10 / 128, 3-6% apart. Starting every buffer on a page makes the speed
# the same in every process.
BUFFER_ALIGNMENT = 4096


def aligned_zeros(shape, dtype=np.float32) -> np.ndarray:
    """A C-contiguous array of zeros whose data starts on a BUFFER_ALIGNMENT-byte boundary.

    ``shape`` is an int or a tuple, as for ``np.zeros``. The array is a view into a slightly
    larger byte buffer (at most BUFFER_ALIGNMENT bytes more), which it keeps alive. (An empty
    array has no data to place.)
    """
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.zeros(nbytes + BUFFER_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % BUFFER_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


# ----------------------------------------------------------------------------- views

@njit(cache=True, error_model="numpy")
def weight_view(buf, layout, l):
    """Layer ``l``'s weight inside a flat buffer, (n_out, n_in), no copy."""
    n_in, n_out, off = layout[l, N_IN], layout[l, N_OUT], layout[l, W_OFF]
    return buf[off:off + n_out * n_in].reshape((n_out, n_in))


@njit(cache=True, error_model="numpy")
def bias_view(buf, layout, l):
    """Layer ``l``'s bias inside a flat buffer, (n_out,), no copy."""
    off = layout[l, B_OFF]
    return buf[off:off + layout[l, N_OUT]]


@njit(cache=True, error_model="numpy")
def block_view(buf, off, m, n):
    """Rows 0..m-1 of an (B, n) activation block starting at ``off``: (m, n), no copy."""
    return buf[off:off + m * n].reshape((m, n))


@njit(cache=True, error_model="numpy")
def rows_view(buf, off, n, r0, r1):
    """Rows r0..r1-1 of an activation block of width ``n`` starting at ``off``: (r1 - r0, n), no copy.

    A contiguous slice, so BLAS reads it in place (a row slice of a 2-D view may not be typed contiguous).
    """
    return buf[off + r0 * n:off + r1 * n].reshape((r1 - r0, n))


