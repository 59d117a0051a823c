"""Work claimed block by block: an atomic counter that Numba's threads share inside a parallel region.

A region's work is cut into blocks fixed by the shape; each thread takes the next unclaimed block
(``claim(counter, r)`` returns 0, 1, 2, ... across all threads, each number once) until none is left.
Which thread runs a block, and how many blocks each runs, varies from step to step; what a block
computes does not, so results never depend on it. A thread on a slowed core simply claims fewer
blocks, where a fixed share per thread would make the other wait.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _fetch_add(typingctx, counters, r):
    """``counters[r] += 1`` as one atomic read-modify-write (int64 array), returning the old value."""
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64 and counters.ndim == 1):
        return None
    if not isinstance(r, types.Integer):
        return None
    sig = types.int64(counters, r)

    def codegen(context, builder, signature, args):
        arr, index = args
        data = context.make_array(signature.args[0])(context, builder, arr).data
        slot = builder.gep(data, [context.cast(builder, index, signature.args[1], types.intp)])
        return builder.atomic_rmw("add", slot, ir.Constant(ir.IntType(64), 1), "monotonic")

    return sig, codegen


@njit(cache=True, error_model="numpy", inline="always")
def claim(counters, r):
    """The next block of region r: ``counters[r]`` before this thread's atomic increment.

    The region's counter must be 0 before the region starts (:func:`reset`). The parallel region's
    own start and end order the blocks' memory accesses; the counter only hands out numbers.
    """
    return _fetch_add(counters, r)


@njit(cache=True, error_model="numpy", inline="always")
def reset(counters):
    """Every region's counter back to 0 (outside any parallel region)."""
    for r in range(counters.shape[0]):
        counters[r] = 0
