"""The flat buffers' layout: the ``layout`` array, views of one layer or block, page-aligned buffers.

``layout`` is an int64 array with one row per layer: ``(n_in, n_out, w_off, b_off)`` into a
flat float32 buffer ``[W1 | b1 | W2 | b2 | ...]`` (parameters, gradients, Adam's moments, the
weight average: all share it). Layer l's ``W`` is (n_out, n_in), row-major; its ``b`` (n_out,).
Activation blocks of a workspace are (B, n) row-major slices (the column split of
:mod:`fastmlp.engine.step` stores hidden layers' blocks transposed, (n, m)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .jit import kernel

# Column indices of the ``layout`` array.
N_IN, N_OUT, W_OFF, B_OFF = 0, 1, 2, 3


def make_layout(sizes: Sequence[int]) -> np.ndarray:
    """One row per layer of ``sizes = [n_0, ..., n_L]``: ``(n_in, n_out, weight offset, bias offset)``."""
    rows, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        rows.append((n_in, n_out, off, off + n_in * n_out))
        off += n_in * n_out + n_out
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def num_parameters(layout: np.ndarray) -> int:
    """Length of the flat buffer that ``layout`` describes."""
    return int(layout[-1, B_OFF] + layout[-1, N_OUT])


# NumPy aligns a large array's data on 16 bytes only, so where a buffer starts varies from one
# allocation to the next, and with it the speed of the vector loops (docs/tuning.md): every
# buffer starts on a page.
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

@kernel
def weight_view(buf, layout, l):
    """Layer ``l``'s weight inside a flat buffer, (n_out, n_in), no copy."""
    n_in, n_out, off = layout[l, N_IN], layout[l, N_OUT], layout[l, W_OFF]
    return buf[off:off + n_out * n_in].reshape((n_out, n_in))


@kernel
def bias_view(buf, layout, l):
    """Layer ``l``'s bias inside a flat buffer, (n_out,), no copy."""
    off = layout[l, B_OFF]
    return buf[off:off + layout[l, N_OUT]]


@kernel(inline=True)
def rows_view(buf, off, n, r0, r1):
    """Rows r0..r1-1 of an activation block of width ``n`` starting at ``off``: (r1 - r0, n), no copy.

    A contiguous slice, so BLAS reads it in place (a row slice of a 2-D view may not be typed contiguous).
    """
    return buf[off + r0 * n:off + r1 * n].reshape((r1 - r0, n))
