"""The flat buffers' layout: the ``layout`` array's columns and the views of one layer or block (Numba).

``layout`` is an int64 array with one row per layer: ``(n_in, n_out, w_off, b_off)`` into a
flat float32 buffer ``[W1 | b1 | W2 | b2 | ...]`` (parameters, gradients, Adam's moments, the
weight average: all share it). Activation blocks of a workspace are (B, n) row-major slices (the
column split of :mod:`fastmlp.step_kernels` stores hidden layers' blocks transposed, (n, m)).
"""

from __future__ import annotations

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
# of COLUMN_TILE floats (64 bytes, a cache line) from the start of each row: two parts share at
# most the one line a row boundary falls in when rows are not whole lines.
COLUMN_TILE = 16


@njit(cache=True, error_model="numpy", inline="always")
def split_bounds(n, parts, p):
    """Units ``j0 .. j1 - 1`` of part p of n units cut into ``parts`` on multiples of COLUMN_TILE
    (a part may be empty when n is small)."""
    tiles = -(-n // COLUMN_TILE)
    return min(n, p * tiles // parts * COLUMN_TILE), min(n, (p + 1) * tiles // parts * COLUMN_TILE)


def column_split(sizes, batch_size) -> bool:
    """Whether a network of these layer sizes trains in the column split rather than as row shards.

    Measured on MNIST shapes (784 inputs; 2 threads, both splits alternating): the column split was
    faster when the first hidden layer had at least as many units as the batch has rows (and more
    than one tile of them): 1.1-2.3x at 16 to 64 rows, 1.05-1.2x at 128 ([256, 128], [512, 512],
    [1024, 1024]). Row shards were faster for narrower layers ([100] at 200 or 256 rows: 0.88x,
    [32] at 128: 0.84x) and at 200 rows or more unless the layer was at least 4 times wider than the
    batch ([256, 128] at 256 rows: 0.95x, [1024, 1024] at 512: 0.97x, [1024] at 256: 1.2x). Row
    shards of many rows are efficient GEMMs; few rows are not, while a column part keeps every row.
    With few inputs the first GEMMs are small either way and the column split's extra parallel
    regions cost more than they save ([256, 128] with 64 or 100 inputs: 0.7-1.0x at 32 to 128 rows).
    """
    sizes = list(sizes)
    hidden = sizes[1:-1]
    if not hidden or hidden[0] <= COLUMN_TILE or sizes[0] < COLUMN_SPLIT_INPUTS:
        return False
    ratio = 1 if batch_size <= COLUMN_SPLIT_BATCH else COLUMN_SPLIT_RATIO
    return hidden[0] >= ratio * batch_size


COLUMN_SPLIT_BATCH = 128
COLUMN_SPLIT_RATIO = 4
COLUMN_SPLIT_INPUTS = 256


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


