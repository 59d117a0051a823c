"""The flat buffers' layout: the ``layout`` array's columns and the views of one layer or block (Numba).

``layout`` is an int64 array with one row per layer: ``(n_in, n_out, w_off, b_off)`` into a
flat float32 buffer ``[W1 | b1 | W2 | b2 | ...]`` (parameters, gradients, Adam's moments, the
weight average: all share it). Activation blocks of a workspace are (B, n) row-major slices.
"""

from __future__ import annotations

from numba import njit

# Column indices of the ``layout`` array.
N_IN, N_OUT, W_OFF, B_OFF = 0, 1, 2, 3


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


